"""Recording on the demo app (no model): the MCAP layout read back with the mcap library itself,
channel choice, drops and lossless mode, splitting, a full disk, a killed recorder, replay and info."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader

from graphflow import wire
from graphflow.app import App
from graphflow.cli import main
from graphflow.tap import Tap
from graphflow.recording.mcap_file import CHUNK_BYTES
from graphflow.recording.reader import Recording, RecordingInvalid
from graphflow.recording.writer import (ChannelFilter, Recorder, RecordingError, composed_app, parse_size,
                                        record_frames)
from graphflow.registry import Registry

DEMO_CHANNELS = {"ticker/ones/number", "ticker/tens/number", "arith.scale/scale/scaled", "arith.add/add/total"}


class Capture:
    """Every message published, by channel (what the recording must hold)."""

    def __init__(self):
        self.messages: dict[str, list] = {}

    def published(self, channel, message):
        self.messages.setdefault(channel.name, []).append(message)


def run_demo(repo, path, seconds=0.3, **recorder):
    """The demo app at 100 Hz for ``seconds`` (ended by a stop request: the demo app can hang when
    its counters run out at high rates, with or without a recorder), recorded to ``path``."""
    app = App.load(repo / "apps" / "demo.app.json", sets=[f"sink/writer/path={path.parent / 'numbers.jsonl'}",
                                                          "ticker/ones/tick_period=100Hz", "ticker/ones/count=1000000",
                                                          "ticker/tens/tick_period=100Hz", "ticker/tens/count=1000000"])
    capture = Capture()
    app.tap.subscribe(capture)
    rec = Recorder(path, app=composed_app(app.spec), **recorder).start(app)
    app.run(duration=seconds)
    rec.stop()
    assert app.failure is None
    assert sum(map(len, capture.messages.values())) >= 4
    return app, rec, capture


@pytest.mark.timeout(60)
def test_layout_read_back_with_the_mcap_library(repo, tmp_path):
    path = tmp_path / "demo.mcap"
    app, rec, capture = run_demo(repo, path)
    total = sum(map(len, capture.messages.values()))
    assert rec.recorded == total and rec.dropped_total == 0
    reader = make_reader(open(path, "rb"))
    header = reader.get_header()
    assert header.profile == "graphflow"
    summary = reader.get_summary()
    assert {c.topic for c in summary.channels.values()} == DEMO_CHANNELS
    assert all(c.message_encoding == "msgpack" for c in summary.channels.values())
    schemas = {s.name: s for s in summary.schemas.values()}
    assert set(schemas) == {"demo/Number"} and schemas["demo/Number"].encoding == "jsonschema"
    schema = json.loads(schemas["demo/Number"].data)
    assert schema["prefixItems"][0]["properties"]["fields"]["properties"]["value"]["type"] == "number"
    assert summary.chunk_indexes and all(c.compression == "lz4" for c in summary.chunk_indexes)  # default: lz4
    assert all(c.compressed_size < c.uncompressed_size / 2 for c in summary.chunk_indexes)  # numbers compress
    attachments = list(reader.iter_attachments())
    assert [a.name for a in attachments] == ["app.json"]
    app_json = json.loads(attachments[0].data)
    assert app_json["config"]["arith.scale"]["scale"]["gain"] == 3.0  # composed: the subgraph's config, expanded
    assert {e["source"] for e in app_json["graph"]["edges"]} >= {"ticker/ones/number", "arith.scale/scale/scaled"}
    published = {(name, m.uuid): m for name, messages in capture.messages.items() for m in messages}
    seen = 0
    for schema_record, channel, message in reader.iter_messages():
        items = msgpack.unpackb(message.data)  # any msgpack reader reads a record
        head = items[0]
        original = published[(channel.topic, head["uuid"])]
        assert message.log_time == round(original.acqtime * 1e9)
        assert message.publish_time == round(original.pubtime * 1e9)
        assert head["type"] == "demo/Number" and head["fields"]["value"] == original.payload.value
        decoded = wire.decode(record_frames(message.data))
        assert decoded.acqtime == original.acqtime and decoded.payload == original.payload
        seen += 1
    assert seen == len(published) == total


@pytest.mark.timeout(60)
def test_reader_orders_by_acqtime_and_reads_the_index(repo, tmp_path):
    path = tmp_path / "demo.mcap"
    _, _, capture = run_demo(repo, path)
    published = capture.messages["ticker/ones/number"]
    with Recording(path) as rec:
        assert rec.recovery is None and rec.message_count == sum(map(len, capture.messages.values()))
        times = [m.log_time for m in rec.messages()]
        assert times == sorted(times)
        ones = rec.times("ticker/ones/number")
        assert ones == [round(m.acqtime * 1e9) for m in published]
        middle = ones[12]
        found = rec.message_at("ticker/ones/number", middle + 1)
        assert found.log_time == middle and found.decode().payload.value == published[12].payload.value
        assert rec.message_at("ticker/ones/number", ones[0] - 1) is None
        window = list(rec.messages(["ticker/ones/number"], start=ones[5], end=ones[9]))
        assert [m.log_time for m in window] == ones[5:10]


@pytest.mark.timeout(60)
def test_channel_patterns_choose_and_a_pattern_matching_nothing_is_an_error(repo, tmp_path):
    path = tmp_path / "ticker.mcap"
    run_demo(repo, path, seconds=0.1, channels=["ticker/*"])
    with Recording(path) as rec:
        assert set(rec.by_topic) == {"ticker/ones/number", "ticker/tens/number"}
    app = App.load(repo / "apps" / "demo.app.json")
    with pytest.raises(RecordingError, match=r"--channels 'tikker/\*' matches no channel"):
        Recorder(tmp_path / "x.mcap", channels=["tikker/*"]).start(app)
    assert not (tmp_path / "x.mcap").exists()


@pytest.mark.timeout(60)
def test_channel_patterns_may_name_a_subgraph_interface(repo, tmp_path):
    """'arith.interface/*' selects the channels the demo's subgraph forwards (apps/scale_add.subgraph.json:
    total is arith.add/add/total; a and b are the tickers')."""
    path = tmp_path / "arith.mcap"
    run_demo(repo, path, seconds=0.1, channels=ChannelFilter(["arith.interface/*"], App.load(
        repo / "apps" / "demo.app.json").spec.channel_aliases))
    with Recording(path) as rec:
        assert set(rec.by_topic) == {"arith.add/add/total", "ticker/ones/number", "ticker/tens/number"}
    only_total = ChannelFilter(["arith.interface/subgraph/total"], {"arith.interface/subgraph/total": "arith.add/add/total"})
    assert only_total("arith.add/add/total") and not only_total("ticker/ones/number")
    only_total.check(["arith.add/add/total", "ticker/ones/number"])
    with pytest.raises(RecordingError, match="matches no channel"):
        ChannelFilter(["arith.interface/subgraph/totl"], {"arith.interface/subgraph/total": "x"}).check(["x"])


def test_parse_size():
    assert parse_size("500MB") == 500_000_000
    assert parse_size("2MiB") == 2 * 1024 * 1024
    assert parse_size("64kB") == 64_000
    for bad in ("", "ten MB", "-5MB", "63.9kB"):
        with pytest.raises(RecordingError, match="--record-split"):
            parse_size(bad)


def _big_messages(count, shape=(480, 640, 3)):
    """A camera's output channel and ``count`` published-looking image messages, for driving the
    recorder directly."""
    from graphflow.messages import Header, Message
    from graphflow.ports import OutputChannel, Tx
    from graphflow.codelet import Codelet

    from graphflow.packs.vision.messages import Image

    class Camera(Codelet):
        color = Tx(Image)

    channel = OutputChannel(Camera.ports()["color"], Camera("camera", "cam"))
    pixels = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    return channel, [Message(Header(1.0 + i / 30, 1.0 + i / 30), Image(pixels=pixels, frame=i)) for i in range(count)]


@pytest.mark.timeout(60)
def test_a_slow_disk_drops_for_the_recorder_only_and_counts_it(tmp_path):
    channel, messages = _big_messages(200)
    tap = Tap()
    rec = Recorder(tmp_path / "drop.mcap", queue_messages=2, compression="zstd").attach(tap)
    for message in messages:  # as fast as a graph thread can: no waiting on the disk
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    assert rec.dropped_total > 0
    assert rec.recorded + rec.dropped_total == 200
    with Recording(tmp_path / "drop.mcap") as read:
        assert read.message_count == rec.recorded


@pytest.mark.timeout(60)
def test_lossless_makes_the_publisher_wait_and_keeps_everything(tmp_path):
    channel, messages = _big_messages(60)
    tap = Tap()
    rec = Recorder(tmp_path / "all.mcap", queue_messages=2, lossless=True).attach(tap)
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    assert rec.dropped_total == 0 and rec.recorded == 60
    with Recording(tmp_path / "all.mcap") as read:
        frames = [m.fields()[2]["frame"] for m in read.messages()]
    assert frames == list(range(60))


@pytest.mark.timeout(60)
def test_split_starts_new_files_past_the_size_each_complete(tmp_path):
    channel, messages = _big_messages(40)
    tap = Tap()
    rec = Recorder(tmp_path / "part.mcap", split_bytes=4_000_000, lossless=True, compression="none").attach(tap)
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    names = sorted(p.name for p in tmp_path.glob("part*.mcap"))
    assert names[0] == "part.mcap" and "part_001.mcap" in names and len(names) >= 4
    frames = []
    for name in ["part.mcap"] + sorted(n for n in names if n != "part.mcap"):
        size = (tmp_path / name).stat().st_size
        with Recording(tmp_path / name) as read:
            assert read.recovery is None  # each one finished, with its summary
            assert read.app() is None or isinstance(read.app(), dict)
            frames += [m.fields()[2]["frame"] for m in read.messages()]
        assert size < 4_000_000 + 2 * 921_600 + 100_000  # past the size by at most the chunk that crossed it
    assert frames == list(range(40))


def _small_filesystem(tmp_path, size="1536k"):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    return mount if done.returncode == 0 else None


@pytest.mark.timeout(120)
def test_a_full_disk_stops_recording_with_one_line_and_the_app_runs_on(repo, tmp_path):
    mount = _small_filesystem(tmp_path)
    limit = {}
    target = (mount or tmp_path) / "full.mcap"
    if mount is None:  # no permission to mount: the kernel's file size limit fails the writes the same way
        limit = {"preexec_fn": lambda: (resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000)),
                                        signal.signal(signal.SIGXFSZ, signal.SIG_IGN))}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "graphflow.cli", "run", str(repo / "apps" / "demo.app.json"), "--no-viewer",
             "--record", str(target), "--set", "ticker/ones/tick_period=2kHz", "--set", "ticker/tens/tick_period=2kHz",
             "--set", "ticker/ones/count=10000000", "--set", "ticker/tens/count=10000000", "--record-compression", "none",
             "--duration", "4",
             "--set", f"sink/writer/path={tmp_path / 'numbers.jsonl'}", "--stats-json", str(tmp_path / "stats.json")],
            capture_output=True, text=True, timeout=100, cwd=repo, **limit)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("recording stopped")]
        assert len(lines) == 1, result.stderr
        assert ("disk full" if mount else "file size limit reached") in lines[0] and "the app runs on" in lines[0]
        assert "Traceback" not in result.stderr
        # the app ran on to its end (4 s at 2 kHz), though the disk filled long before
        report = json.loads((tmp_path / "stats.json").read_text())
        assert report["elapsed_s"] >= 4.0
        ticks = report["components"]["ticker/ones"]["ticks"]
        assert ticks > 2000 and report["channels"]["arith.add/add/total"]["messages"] > 2000
        assert "recorded" in result.stderr and f"{ticks * 4} messages" not in result.stderr
        with Recording(target) as read:  # what did reach the disk is readable
            assert read.recovery is not None and read.recovery.messages > 0
            assert all(m.fields()[0] == "demo/Number" for m in read.messages())
    finally:
        if mount is not None:
            subprocess.run(["umount", str(mount)])


@pytest.mark.timeout(120)
def test_sigkill_mid_recording_then_recovered_and_every_message_decodes(repo, tmp_path):
    target = tmp_path / "killed.mcap"
    process = subprocess.Popen(
        [sys.executable, "-m", "graphflow.cli", "run", str(repo / "apps" / "demo.app.json"), "--no-viewer",
         "--record", str(target), "--set", "ticker/ones/count=1000000", "--set", "ticker/tens/count=1000000",
         "--set", f"sink/writer/path={tmp_path / 'numbers.jsonl'}"],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (not target.exists() or target.stat().st_size < 20_000) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # longer than the flush interval after the first flush: what is lost is what came since the last
        killed_at = time.monotonic()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    Registry().load_pack("demo")
    with Recording(target) as read:
        assert read.recovery is not None
        assert read.recovery.messages > 0 and read.recovery.chunks > 0
        decoded = [m.decode() for m in read.messages()]  # raises on any message that does not decode
        assert len(decoded) == read.recovery.messages
        assert {type(m.payload).__name__ for m in decoded} == {"Number"}
        # at most about a second (the flush interval) is lost: the app clock is this machine's
        # monotonic clock, so the last recovered acqtime says how long before the kill it was
        ones = read.times("ticker/ones/number")
        assert len(ones) >= 30
        assert killed_at - ones[-1] / 1e9 < 1.0 + 0.5  # flush interval + scheduling slack
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "info", str(target)], capture_output=True,
                            text=True, cwd=repo, timeout=60)
    assert result.returncode == 0 and "not closed properly" in result.stdout
    assert f"recovered {len(decoded)} messages" in result.stdout


@pytest.mark.timeout(60)
def test_recovery_keeps_complete_chunks_only(repo, tmp_path):
    path = tmp_path / "whole.mcap"
    run_demo(repo, path, seconds=0.5, chunk_bytes=2_000)
    data = path.read_bytes()
    with Recording(path) as whole:
        chunks = sorted(whole._chunks, key=lambda c: c.offset)
        total = whole.message_count
    cut = chunks[3].offset + chunks[3].length // 2  # in the middle of the fourth chunk
    (tmp_path / "cut.mcap").write_bytes(data[:cut])
    Registry().load_pack("demo")
    with Recording(tmp_path / "cut.mcap") as read:
        assert read.recovery.chunks == 3
        assert read.recovery.kept_bytes == chunks[3].offset
        assert 0 < read.recovery.messages < total
        assert len([m.decode() for m in read.messages()]) == read.recovery.messages
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(RecordingInvalid, match="not an MCAP file"):
        Recording(tmp_path / "junk.mcap")
    with pytest.raises(RecordingInvalid, match="no such file"):
        Recording(tmp_path / "missing.mcap")


@pytest.mark.timeout(60)
def test_replay_feeds_the_app_in_place_of_its_sources_with_recorded_acqtimes(repo, tmp_path, capsys):
    path = tmp_path / "demo.mcap"
    run_demo(repo, path)
    live = [json.loads(line) for line in (tmp_path / "numbers.jsonl").read_text().splitlines()]
    out = tmp_path / "replayed.jsonl"
    # --duration: a guard only; the demo app's synchronized add can leave one unmatched message,
    # and the scheduler then waits for it at the end (seen with and without replay)
    code = main(["replay", str(path), str(repo / "apps" / "demo.app.json"), "--no-viewer", "--quiet",
                 "--rate", "max", "--set", f"sink/writer/path={out}", "--duration", "20"])
    assert code == 0
    assert "in place of ticker/ones, ticker/tens" in capsys.readouterr().err
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert replayed == live  # same values and the same acqtimes


@pytest.mark.timeout(60)
def test_replay_reports_how_far_through_the_recording_it_is(repo, tmp_path):
    """The progress line's figures: k of the n recorded messages of the fed channels (n from the
    file itself), with the recording's name; a --start cut knows only k."""
    from graphflow.loader import load_app
    from graphflow.recording.replay import ReplayOptions, build_replay_app

    path = tmp_path / "demo.mcap"
    run_demo(repo, path, seconds=0.2)
    sources = ["ticker/ones/number", "ticker/tens/number"]
    with Recording(path) as rec:
        recorded = len(list(rec.messages(sources)))
        spec = load_app(repo / "apps" / "demo.app.json", sets=[f"sink/writer/path={tmp_path / 'out.jsonl'}"])
        for options, expected in ((ReplayOptions(rate=None), (recorded, recorded, "demo.mcap")),
                                  (ReplayOptions(rate=None, start=0.0), (recorded, None, "demo.mcap"))):
            app, _ = build_replay_app(spec, rec, options)
            player = app.components["replay/player"]
            app.run(duration=20)
            assert app.failure is None and player.progress == expected


CHAIN_APP = {"name": "chain", "modules": ["demo"],
             "graph": {"nodes": [{"name": "ticker", "components": [{"name": "ones", "type": "demo.Counter"}]},
                                 {"name": "sink", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
                       "edges": [{"source": "ticker/ones/number", "target": "sink/writer/number"}]},
             "config": {"ticker": {"ones": {"tick_period": "100Hz", "count": 30}}}}


@pytest.mark.timeout(120)
def test_replay_rate_start_end_and_loop(repo, tmp_path):
    app = tmp_path / "chain.app.json"
    app.write_text(json.dumps(CHAIN_APP))
    path = tmp_path / "chain.mcap"
    live = tmp_path / "live.jsonl"
    assert main(["run", str(app), "--no-viewer", "--quiet", "--record", str(path),
                 "--set", f"sink/writer/path={live}"]) == 0
    with Recording(path) as rec:
        span = rec.duration
        ones = rec.times("ticker/ones/number")
    assert len(ones) == 30 and span > 0.25
    out = tmp_path / "replayed.jsonl"
    args = ["replay", str(path), str(app), "--no-viewer", "--quiet", "--set", f"sink/writer/path={out}"]
    started = time.monotonic()
    assert main(args + ["--rate", "0.5"]) == 0
    assert time.monotonic() - started >= span / 0.5 * 0.95  # twice as slow as recorded
    assert out.read_text() == live.read_text()
    started = time.monotonic()
    assert main(args + ["--rate", "max"]) == 0
    assert time.monotonic() - started < span * 4  # not paced (startup included)
    assert main(args + ["--rate", "max", "--loop", "--duration", "1.5"]) == 0
    values = [json.loads(line) for line in out.read_text().splitlines()]
    acqtimes = [v["acqtime"] for v in values]
    assert len(values) >= 3 * 30 and acqtimes == sorted(acqtimes)  # looped: acqtimes keep rising
    assert [v["value"] for v in values[:60]] == list(range(30)) * 2
    start, end = (ones[5] - ones[0]) / 1e9, (ones[9] - ones[0]) / 1e9
    assert main(args + ["--rate", "max", "--start", str(start), "--end", str(end)]) == 0
    assert [json.loads(line)["value"] for line in out.read_text().splitlines()] == [5, 6, 7, 8, 9]
    # onto an input port: it is fed instead of what was wired to it (the counter, then unused, goes)
    assert main(args + ["--rate", "max", "--map", "ticker/ones/number=sink/writer/number"]) == 0
    assert out.read_text() == live.read_text()


@pytest.mark.timeout(60)
def test_replay_map_may_name_a_subgraph_interface_port(repo, tmp_path):
    """--map onto arith.interface/subgraph/a and /b (apps/scale_add.subgraph.json): onto the channels
    that feed them, the tickers'. The demo adds 3·a + b of matched pairs: 3·i + 10·i = 13·i."""
    path = tmp_path / "ticker.mcap"
    run_demo(repo, path, seconds=0.2, channels=["ticker/*"])
    out = tmp_path / "replayed.jsonl"
    assert main(["replay", str(path), str(repo / "apps" / "demo.app.json"), "--no-viewer", "--quiet",
                 "--rate", "max", "--set", f"sink/writer/path={out}",
                 "--map", "ticker/ones/number=arith.interface/subgraph/a",
                 "--map", "ticker/tens/number=arith.interface/subgraph/b"]) == 0
    values = [json.loads(line)["value"] for line in out.read_text().splitlines()]
    assert len(values) >= 5 and all(value % 13 == 0 for value in values)


def test_replay_options_that_do_not_fit_are_one_line_errors(repo, tmp_path, capsys):
    path = tmp_path / "demo.mcap"
    run_demo(repo, path, seconds=0.1, channels=["arith.*"])
    app = str(repo / "apps" / "demo.app.json")
    cases = [
        (["--rate", "fast"], "--rate 'fast'"),
        (["--rate", "0"], "--rate '0'"),
        (["--map", "nonsense"], "expected RECORDED_CHANNEL=node/component/port"),
        (["--map", "ticker/ones/number=ticker/ones/number"], "the recording has no channel 'ticker/ones/number'"),
        (["--map", "arith.scale/scale/scaled=ticker/ones/nmber"], "has no port 'nmber'"),
        (["--map", "arith.scale/scale/scaled=tikcer/ones/number"], "no component 'tikcer/ones'"),
        ([], "holds none of the app's source channels"),
        (["--start", "2", "--end", "1"], "is not after --start"),
    ]
    for extra, expected in cases:
        assert main(["replay", str(path), app, "--no-viewer", "--quiet", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (extra, err)
    assert main(["replay", str(tmp_path / "nope.mcap"), app, "--no-viewer"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_info_prints_channels_counts_and_the_app(repo, tmp_path, capsys):
    path = tmp_path / "demo.mcap"
    _, _, capture = run_demo(repo, path)
    counts = {name: len(messages) for name, messages in capture.messages.items()}
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{sum(counts.values())} messages on 4 channels" in out and "app: demo" in out
    assert "ticker/ones/number" in out and "demo/Number" in out
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {c["channel"]: c["messages"] for c in info["channels"]} == counts
    assert info["app"] == "demo" and info["attachments"] == ["app.json"] and info["recovered"] is None
    (tmp_path / "junk.mcap").write_text("hello")
    assert main(["info", str(tmp_path / "junk.mcap")]) == 2
    assert "not an MCAP file" in capsys.readouterr().err


def test_record_options_errors(repo, tmp_path, capsys):
    app = str(repo / "apps" / "demo.app.json")
    assert main(["run", app, "--no-viewer", "--quiet", "--channels", "ticker/*"]) == 2
    assert "give --record FILE.mcap too" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["run", app, "--no-viewer", "--quiet", "--record", str(tmp_path / "file" / "x.mcap")]) == 2
    assert f"cannot make its folder {tmp_path / 'file'}" in capsys.readouterr().err
    # a folder that does not exist yet is made, as --output makes its own
    assert main(["run", app, "--no-viewer", "--quiet", "--record", str(tmp_path / "new" / "x.mcap")]) == 0
    assert (tmp_path / "new" / "x.mcap").stat().st_size > 0
    assert main(["run", app, "--no-viewer", "--quiet", "--record", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_channel_filter():
    chosen = ChannelFilter(["feeder/*", "*/skeletons*"])
    assert chosen("feeder/image_loader/color") and chosen("decoder/x/skeletons_out")
    assert not chosen("encoder/e/tensor")
    assert ChannelFilter()("anything")


# -- bad inputs (hypothesis) -----------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory):
    return _small_recording(tmp_path_factory.mktemp("fuzz") / "small.mcap")


def _small_recording(path, **options) -> bytes:
    """40 small image messages in chunks of ~3 kB."""
    from graphflow.messages import Header, Message

    channel, _ = _big_messages(1, shape=(4, 4, 3))
    tap = Tap()
    rec = Recorder(path, lossless=True, chunk_bytes=3_000, **options).attach(tap)
    for index in range(40):
        for observe in tap.on_published:
            observe(channel, Message(Header(1.0 + index / 10, 1.0 + index / 10),
                                     channel.message_type(pixels=np.full((4, 4, 3), index, np.uint8), frame=index)))
    rec.stop()
    return path.read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_open_or_fail_with_one_line(small_recording, tmp_path, data):
    """Cut or flipped bytes: the file opens (what is intact) or is refused as RecordingInvalid;
    reading gives messages or RecordingInvalid/WireError, nothing else."""
    raw = bytearray(small_recording)
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.integers(0, max(0, cut - 1)), max_size=3), label="flips")
    damaged = raw[:cut]
    for at in flips:
        if at < len(damaged):
            damaged[at] ^= 0xFF
    path = tmp_path / "damaged.mcap"
    path.write_bytes(bytes(damaged))
    try:
        rec = Recording(path)
    except RecordingInvalid as exc:
        assert str(exc).startswith(str(path))
        return
    with rec:
        try:
            for message in rec.messages():
                frame = message.fields()[2]["frame"]
                assert 0 <= frame < 40 or flips
        except (RecordingInvalid, wire.WireError):
            assert flips or rec.recovery is not None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_a_damaged_chunk_in_a_finished_file_is_skipped_once_and_the_rest_is_read(compression, tmp_path, caplog):
    """One flipped byte inside a chunk of a properly closed file (its summary intact): its CRC
    fails (or, compressed, its decompression), so its messages are skipped with one warning naming
    the chunk, and every other message is read as recorded (before: an uncompressed chunk was
    read unchecked, its damaged bytes passed on; a compressed one stopped replay with a traceback)."""
    intact = tmp_path / "intact.mcap"
    small_recording = _small_recording(intact, compression=compression)
    with Recording(intact) as rec:
        chunks = sorted(rec._chunks)
        every = [message.fields()[2]["frame"] for message in rec.messages()]
    assert every == list(range(40)) and len(chunks) >= 3
    middle = chunks[len(chunks) // 2]
    raw = bytearray(small_recording)
    raw[middle.offset + middle.length - 20] ^= 0xFF  # inside the chunk's records, before the next record
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="graphflow.recording"), Recording(damaged) as rec:
        assert rec.recovery is None  # the summary is intact: nothing says the file is damaged until read
        frames = [message.fields()[2]["frame"] for message in rec.messages()]
        frames_again = [message.fields()[2]["frame"] for message in rec.messages()]
        assert list(rec.damaged) == [middle.offset]
        assert ("crc" if compression == "none" else "lz4") in rec.damaged[middle.offset].lower()
    lost = sorted(set(every) - set(frames))
    assert frames == frames_again and lost and lost == list(range(lost[0], lost[-1] + 1))  # one chunk's run
    assert frames == [frame for frame in every if frame not in lost]
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert warnings == [f"{damaged}: the chunk at byte {middle.offset} is damaged ({rec.damaged[middle.offset]}); "
                        f"its messages are skipped"]


@pytest.fixture(scope="module")
def demo_player(tmp_path_factory):
    from tests.conftest import REPO
    from graphflow.recording.view import Player, recorded_app

    path = tmp_path_factory.mktemp("player") / "demo.mcap"
    run_demo(REPO, path, seconds=0.2)
    rec = Recording(path)
    holder = {}
    app = recorded_app(rec, clock=lambda: holder["player"].clock() if "player" in holder else 0.0)
    player = holder["player"] = Player(rec, app).start()
    yield player
    player.close()
    rec.close()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.fixed_dictionaries(
    {"action": st.sampled_from(["play", "pause", "step", "seek", "jump"])},
    optional={"rate": json_values, "time": json_values, "count": json_values})))
def test_timeline_requests_answer_or_refuse_in_one_line(demo_player, body):
    from graphflow.recording.view import PlayerError

    try:
        state = demo_player.control(body)
    except PlayerError as exc:
        assert "\n" not in str(exc)
        return
    finally:
        demo_player.pause()
    assert -1 <= state["index"] < state["messages"] and 0.0 <= state["position"] <= state["end"] + 1e-9


def test_export_errors_are_one_line(repo, tmp_path, capsys):
    path = tmp_path / "demo.mcap"
    run_demo(repo, path, seconds=0.1)
    for args, expected in ((["--images", str(tmp_path / "png")], "holds no image channel"),
                           (["--video", str(tmp_path / "v.mp4")], "holds no image channel"),
                           (["--coco", str(tmp_path / "c.json")], "has no PredictionWriter components"),
                           (["--coco", str(tmp_path / "c.json"), "--coco-writer", "sink/nope"], "no such component")):
        assert main(["export", str(path), *args]) == 2, args
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (args, err)
    assert main(["export", str(tmp_path / "missing.mcap"), "--images", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_the_writer_thread_yields_the_cpu_to_the_graph(tmp_path):
    from graphflow.recording.writer import RECORDER_NICE

    tap = Tap()
    rec = Recorder(tmp_path / "nice.mcap").attach(tap)
    try:
        native = wait_for_native_id(rec)
        assert os.getpriority(os.PRIO_PROCESS, native) == os.getpriority(os.PRIO_PROCESS, 0) + RECORDER_NICE == 10
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # the graph's threads keep theirs
    finally:
        rec.stop()


def wait_for_native_id(rec) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        native = rec._thread.native_id
        if native is not None and os.getpriority(os.PRIO_PROCESS, native) != 0:
            return native
        time.sleep(0.01)
    return rec._thread.native_id


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (Linux /proc/self/io rchar)."""
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


@pytest.mark.timeout(60)
def test_opening_and_indexing_reads_the_index_not_the_file(tmp_path):
    channel, messages = _big_messages(60)
    tap = Tap()
    rec = Recorder(tmp_path / "big.mcap", lossless=True, compression="none").attach(tap)
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    size = (tmp_path / "big.mcap").stat().st_size
    assert size > 50_000_000
    before = _bytes_read()
    with Recording(tmp_path / "big.mcap") as read:
        entries = read.index("camera/cam/color")   # every message's time: what the viewer's timeline needs
        middle = read.message_at("camera/cam/color", entries[30][0])  # one seek: one chunk
        assert len(entries) == 60 and middle.fields()[2]["frame"] == 30
        read_bytes = _bytes_read() - before
    assert read_bytes < CHUNK_BYTES + 1_000_000, f"read {read_bytes:,} of {size:,} bytes"  # one chunk


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_large_arrays_are_written_as_given_and_checked_by_the_mcap_library(tmp_path, compression):
    """The recorder writes arrays from the messages' own memory, in slices: the mcap library's reader
    (CRCs checked) must find every message's bytes equal to msgpack's own packing of the wire
    frames, and every message index entry must point at its message in the decompressed chunk."""
    import struct

    from mcap.records import Chunk, MessageIndex
    from mcap.stream_reader import StreamReader, get_chunk_data_stream

    from graphflow.codelet import Codelet
    from graphflow.messages import Header, Message
    from graphflow.packs.vision.messages import Image
    from graphflow.ports import OutputChannel, Tx

    class Camera(Codelet):
        color = Tx(Image)

    channel = OutputChannel(Camera.ports()["color"], Camera("camera", "cam"))
    rng = np.random.default_rng(1)
    # tiny, just past the 16 kB gathering limit, past one 256 kB slice, a camera frame: both paths
    shapes = [(1, 1, 3), (48, 114, 3), (96, 1000, 3), (480, 640, 3)] * 4
    pictures = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in shapes]
    for pixels in pictures:
        pixels[:, pixels.shape[1] // 2:] = 0  # half black: compressible
    messages = [Message(Header(1.0 + i / 30, 1.0 + i / 30), Image(pixels=pixels, frame=i))
                for i, pixels in enumerate(pictures)]
    path = tmp_path / f"{compression}.mcap"
    tap = Tap()
    rec = Recorder(path, lossless=True, compression=compression, chunk_bytes=1_500_000).attach(tap)
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    expected = []
    for message in messages:  # msgpack's own packing of [header, arrays...], not the recorder's
        frames = wire.encode(message)
        expected.append(msgpack.packb([msgpack.unpackb(frames[0]), *(bytes(f) for f in frames[1:])]))
    with open(path, "rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        got = [m.data for _, _, m in reader.iter_messages()]
        chunks = reader.get_summary().chunk_indexes
    assert got == expected
    assert len(chunks) > 1 and all(c.compression == ("" if compression == "none" else compression) for c in chunks)
    if compression != "none":
        assert sum(c.compressed_size for c in chunks) < 0.7 * sum(c.uncompressed_size for c in chunks)
    times = sorted(round(m.acqtime * 1e9) for m in messages)
    indexed = []
    with open(path, "rb") as stream:
        for index in chunks:
            stream.seek(index.chunk_start_offset)
            chunk = next(StreamReader(stream, skip_magic=True, emit_chunks=True).records)
            assert isinstance(chunk, Chunk) and chunk.uncompressed_crc != 0
            data_stream, length = get_chunk_data_stream(chunk, validate_crc=True)
            data = data_stream.read(length)
            for offset in index.message_index_offsets.values():
                stream.seek(offset)
                entries = next(StreamReader(stream, skip_magic=True).records)
                assert isinstance(entries, MessageIndex)
                for log_time, position in entries.records:
                    assert data[position] == 0x05  # a Message record starts there
                    assert struct.unpack_from("<Q", data, position + 1 + 8 + 2 + 4)[0] == log_time
                    indexed.append(log_time)
    assert sorted(indexed) == times


@pytest.mark.timeout(30)
@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_chunks_that_do_not_shrink_are_stored_as_they_are_and_compression_tried_again_later(tmp_path, compression):
    from graphflow.recording.mcap_file import PAYS, McapFile

    rng = np.random.default_rng(2)
    noise = [rng.integers(0, 256, 100_000, dtype=np.uint8) for _ in range(6)]
    for data in noise:
        data[85_000:] = 0  # compresses to ~0.85: less than it takes to pay
    calm = [np.full(100_000, i, dtype=np.uint8) for i in range(6)]  # compresses to almost nothing
    path = tmp_path / "adaptive.mcap"
    file = McapFile(path, profile="graphflow", library="test", compression=compression, chunk_bytes=100_000)
    channel = file.channel_id("data", "bytes", b"{}", "jsonschema", "msgpack", {})
    for i, data in enumerate(noise + calm):  # one message, one chunk
        file.add_message(channel, i, i, i, [data.data], data.nbytes)
    file.finish()
    with open(path, "rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        assert [m.data for _, _, m in reader.iter_messages()] == [d.tobytes() for d in noise + calm]
        chunks = sorted(reader.get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    stored = [c.compression for c in chunks]
    # noise: compressed (no gain) → 1 stored → compressed → 2 stored → compressed → 4 stored (the
    # first 4 calm chunks) → compressed, and it pays: every chunk after is compressed
    c = compression
    assert stored == [c, "", c, "", "", c, "", "", "", "", c, c]
    assert all(PAYS * x.uncompressed_size < x.compressed_size < 0.9 * x.uncompressed_size
               for x in chunks[:6] if x.compression)
    assert all(x.compressed_size < 0.05 * x.uncompressed_size for x in chunks[10:])


@pytest.mark.timeout(30)
def test_the_publishing_thread_only_enqueues_the_writer_thread_serializes(tmp_path, monkeypatch):
    """The tap callback runs on the graph's threads: it must put a reference on the queue and
    nothing more; serializing (wire.encode) happens on the recorder's own thread."""
    encoded_on = []
    encode = wire.encode

    def watched(message):
        encoded_on.append(threading.current_thread().name)
        return encode(message)

    monkeypatch.setattr(wire, "encode", watched)
    channel, messages = _big_messages(20)
    tap = Tap()
    rec = Recorder(tmp_path / "where.mcap", lossless=True).attach(tap)
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    rec.stop()
    assert rec.recorded == 20
    assert encoded_on == ["graphflow-recorder"] * 20


@pytest.mark.parametrize("length", [0, 1, 15, 16, 255, 256, 65535, 65536, 70000])
def test_msgpack_heads_are_msgpacks_own(length):
    """The record's array and bin heads, written by hand around the arrays' memory, must be the ones
    msgpack itself writes for an array of ``length`` items and a bin of ``length`` bytes."""
    from graphflow.recording.mcap_file import msgpack_array_header, msgpack_bin_header

    items = msgpack.packb([0] * length)
    assert items.startswith(msgpack_array_header(length)) and len(items) == len(msgpack_array_header(length)) + length
    blob = msgpack.packb(bytes(length))
    assert blob == msgpack_bin_header(length) + bytes(length)


def test_every_recording_run_option_is_passed_on_to_a_split_apps_process():
    """run_options_given rebuilds what add_run_options parsed (a new option left out would be
    dropped, silently, by the processes of a split app)."""
    import argparse

    from graphflow.recording.cli import add_run_options, run_options_given

    parser = argparse.ArgumentParser()
    add_run_options(parser)
    values = {"--record": "x.mcap", "--channels": "a/*", "--record-split": "5MB", "--record-compression": "zstd",
              "--foxglove-port": "9000"}
    flags = [action.option_strings[-1] for action in parser._actions if action.dest != "help"]
    argv = [part for flag in flags for part in ([flag, values[flag]] if flag in values else [flag])]
    parsed = parser.parse_args(argv)
    again = parser.parse_args(run_options_given(parsed))
    assert vars(again) == {**vars(parsed), "record": Path("x.mcap").resolve()}
    assert run_options_given(parser.parse_args([])) == []


DOUBLING_PACK = '''
from graphflow import Codelet, Rx, Tx
from graphflow.packs.demo.messages import Number


class Double(Codelet):
    """Doubles every number."""
    number = Rx(Number, "In.")
    doubled = Tx(Number, "Out.")

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        self.doubled.publish(Number(2 * message.payload.value), acqtime=message.acqtime)
'''


@pytest.mark.timeout(120)
def test_a_recording_of_an_app_with_a_pack_beside_it_opens_in_the_viewer_from_anywhere(tmp_path):
    """The recording keeps the folder each pack was named from; the viewer builds the recorded
    app with it (it once rebuilt the app in a temporary folder, where './mypack' is not)."""
    import socket

    project = tmp_path / "project"
    (project / "mypack").mkdir(parents=True)
    (project / "mypack" / "__init__.py").write_text(DOUBLING_PACK)
    app = {"name": "doubling", "modules": ["demo", "./mypack"],
           "graph": {"nodes": [{"name": "count", "components": [{"name": "c", "type": "demo.Counter"}]},
                               {"name": "double", "components": [{"name": "d", "type": "mypack.Double"}]}],
                     "edges": [{"source": "count/c/number", "target": "double/d/number"}]},
           "config": {"count": {"c": {"count": 5, "tick_period": "10ms"}}}}
    (project / "doubling.app.json").write_text(json.dumps(app))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(project / "doubling.app.json"),
                          "--record", str(tmp_path / "run.mcap"), "--no-viewer", "--quiet"],
                         capture_output=True, text=True, cwd=elsewhere, timeout=60)
    assert run.returncode == 0, run.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    view = subprocess.run([sys.executable, "-m", "graphflow.cli", "view", str(tmp_path / "run.mcap"),
                           "--viewer-port", str(port), "--duration", "1"],
                          capture_output=True, text=True, cwd=elsewhere, timeout=60)
    assert view.returncode == 0, view.stderr
    assert f"http://127.0.0.1:{port}/" in view.stdout


def _foreign_mcap(path: Path) -> Path:
    """Another program's recording: a msgpack channel under a graphflow channel and type name that
    holds no graphflow record, and a JSON channel."""
    from mcap.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start()
        schema = writer.register_schema(name="demo/Number", encoding="", data=b"")
        channel = writer.register_channel(topic="ticker/ones/number", message_encoding="msgpack", schema_id=schema)
        for i in range(3):
            writer.add_message(channel_id=channel, log_time=i * 1000, data=b"\x93\x01\x02\x03", publish_time=i * 1000)
        other = writer.register_channel(topic="/foo", message_encoding="json",
                                        schema_id=writer.register_schema(name="y", encoding="jsonschema", data=b"{}"))
        writer.add_message(channel_id=other, log_time=5000, data=b"{}", publish_time=5000)
        writer.finish()
    return path


@pytest.mark.timeout(60)
def test_replaying_another_programs_recording_is_one_line_naming_what_it_holds(repo, tmp_path, capsys):
    """Its msgpack under a graphflow name went to a WireError traceback; a --map of its JSON
    channel said the recording had no such channel."""
    path = _foreign_mcap(tmp_path / "other.mcap")
    args = ["replay", str(path), str(repo / "apps" / "demo.app.json"), "--no-viewer", "--quiet",
            "--set", f"sink/writer/path={tmp_path / 'n.jsonl'}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        f"error: replay/player: {path}: a message on ticker/ones/number cannot be read (written by another program?)")
    assert main(args + ["--map", "/foo=ticker/tens/number"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --map /foo=ticker/tens/number: '/foo' holds json messages of another program, not graphflow's "
        "(graphflow's channels there: ['ticker/ones/number'])")


@pytest.mark.timeout(60)
def test_replay_names_the_params_that_differ_from_the_recordings(repo, tmp_path, capsys):
    """The recording carries its app's params; a replay with others may give other results, and
    said nothing of it."""
    path = tmp_path / "demo.mcap"
    run_demo(repo, path, seconds=0.2, channels=["ticker/*"])
    args = ["replay", str(path), str(repo / "apps" / "demo.app.json"), "--no-viewer", "--quiet", "--rate", "max",
            "--set", f"sink/writer/path={tmp_path / 'n.jsonl'}"]
    assert main(args) == 0
    assert "differ from the recording" not in capsys.readouterr().err  # (the writer's path differs: a sink's)
    assert main(args + ["--set", "arith.scale/scale/gain=5"]) == 0
    assert "params that differ from the recording's: arith.scale/scale/gain 5.0 (recorded 3.0)" in \
        capsys.readouterr().err
