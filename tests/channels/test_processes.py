"""Apps split into OS processes, and apps joined by net bridges, run as real `graphflow run`
processes over real sockets."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from graphflow.channels import processes, shm
from graphflow.loader import load_app, read_json

from ..conftest import DATA
from .conftest import REPO, children_of, cmdline, run, start, write_app

IMAGES = DATA / "images"


def _running(pid: int) -> bool:
    """The process has not exited (an orphan that exited stays a zombie until PID 1 reaps it)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read().lower()
    except FileNotFoundError:
        return False


def images_app(tmp_path: Path, out: Path, loop: bool = False, restart: bool = False) -> Path:
    """Images loaded in process a, written (PNG, lossless) in process b: the pixels cross by
    shared memory."""
    return write_app(tmp_path / "images.app.json", {
        "name": "images", "modules": ["io", "viz"],
        "graph": {"nodes": [
            {"name": "feeder", "process": "a", "components": [{"name": "loader", "type": "io.ImageLoader"}]},
            {"name": "writer", "process": "b", "components": [{"name": "writer", "type": "viz.ImageWriter"}]}],
            "edges": [{"source": "feeder/loader/color", "target": "writer/writer/image",
                       "queue": {"size": 4, "policy": "block"}}]},
        "processes": {"a": {"restart": restart}, "b": {}},
        "config": {"feeder": {"loader": {"path": str(IMAGES), "tick_period": "20Hz", "loop": loop}},
                   "writer": {"writer": {"folder": str(out), "format": "png"}}}})


def numbers_apps(tmp_path: Path, endpoint: str, count: int, sent_type: str = "demo/Number",
                 expected_type: str = "demo/Number", policy: str = "block") -> tuple[Path, Path]:
    publisher = write_app(tmp_path / "pub.app.json", {
        "name": "pub", "modules": ["demo", "net"],
        "graph": {"nodes": [
            {"name": "src", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "out", "components": [{"name": "publisher", "type": "net.Publisher"}]}],
            "edges": [{"source": "src/counter/number", "target": "out/publisher/message"}]},
        "config": {"src": {"counter": {"tick_period": "100Hz", "count": count}},
                   "out": {"publisher": {"endpoint": endpoint, "message_type": sent_type, "policy": policy,
                                         "flush_timeout": 1.0}}}})
    numbers = expected_type == "demo/Number"
    sink = ({"type": "demo.NumberWriter", "port": "number", "config": {"path": str(tmp_path / "numbers.jsonl")}}
            if numbers else {"type": "viz.ImageWriter", "port": "image", "config": {"folder": str(tmp_path / "img")}})
    subscriber = write_app(tmp_path / "sub.app.json", {
        "name": "sub", "modules": ["demo", "net", "viz"],
        "graph": {"nodes": [
            {"name": "in", "components": [{"name": "subscriber", "type": "net.Subscriber"}]},
            {"name": "sink", "components": [{"name": "writer", "type": sink["type"]}]}],
            "edges": [{"source": "in/subscriber/message", "target": f"sink/writer/{sink['port']}"}]},
        "config": {"in": {"subscriber": {"endpoint": endpoint, "message_type": expected_type}},
                   "sink": {"writer": sink["config"]}}})
    return publisher, subscriber


def test_split_makes_one_app_per_process_with_bridges_on_the_crossing_edges(tmp_path):
    app_file = REPO / "apps" / "openpose_split.app.json"
    os.environ.setdefault("GRAPHFLOW_MODEL_PATH", str(REPO.parent / "shared" / "models"))
    spec = load_app(app_file)
    parts = processes.split(read_json(app_file), app_file, spec, tmp_path)
    assert sorted(parts) == ["inference", "post"]
    inference, post = parts["inference"], parts["post"]
    assert inference.nodes == ["feeder", "encoder", "inference"]
    assert post.nodes == ["decoder", "viz", "image_writer", "predictions"]
    # the two crossing edges (model maps → decoder, image → visualizer), with their queues
    assert sorted(inference.publishers) == ["net.tx0/publisher", "net.tx1/publisher"]
    tx = {c["publisher"]["message_type"]: c["publisher"] for n, c in inference.app["config"].items() if n.startswith("net.tx")}
    assert set(tx) == {"vision/Tensors", "vision/Image"}
    assert (tx["vision/Tensors"]["queue_size"], tx["vision/Tensors"]["policy"]) == (2, "block")
    assert (tx["vision/Image"]["queue_size"], tx["vision/Image"]["policy"]) == (16, "block")
    assert all(c["endpoint"].startswith(f"ipc://{tmp_path}/") for c in tx.values())
    rx_edges = [e for e in post.app["graph"]["edges"] if e["source"].startswith("net.rx")]
    assert sorted(e["target"] for e in rx_edges) == ["decoder.interface/subgraph/maps", "viz/visualizer/image"]
    assert "net" in post.app["modules"] and Path(post.app["graph"]["nodes"][0]["subgraph"]).is_absolute()
    # each part is a valid app on its own
    for part in parts.values():
        file = write_app(tmp_path / f"{part.name}.app.json", part.app)
        load_app(file)
    assert processes.route_sets(["feeder/image_loader/path=x", "decoder.part_candidates/part_candidates/"
                                 "threshold_heatmap=0.1"], parts) == {
        "inference": ["feeder/image_loader/path=x"],
        "post": ["decoder.part_candidates/part_candidates/threshold_heatmap=0.1"]}
    with pytest.raises(processes.SplitError, match="no process runs node 'nowhere'"):
        processes.route_sets(["nowhere/x/y=1"], parts)


def test_a_process_option_for_a_process_no_node_names_is_an_error(tmp_path):
    app = json.loads((REPO / "apps" / "openpose_split.app.json").read_text())
    app["processes"]["typo"] = {}
    with pytest.raises(processes.SplitError, match=r"processes.typo: no node runs in process 'typo'"):
        processes.split(app, REPO / "apps" / "openpose_split.app.json", None, tmp_path)
    del app["processes"]["typo"]
    app["processes"]["post"] = {"restart": True}
    typos = [index for index, node in enumerate(app["graph"]["nodes"]) if node.get("process") == "post"]
    for index in typos:
        app["graph"]["nodes"][index]["process"] = "psot"  # a typo of 'post' on its nodes
    with pytest.raises(processes.SplitError, match=rf"processes.post: no node runs in process 'post' .*; "
                                                   rf"\$.graph.nodes\[{', '.join(map(str, typos))}\] name process 'psot': "
                                                   rf"did you mean 'post'\?"):
        processes.split(app, REPO / "apps" / "openpose_split.app.json", None, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_split_openpose_app_predicts_what_the_single_process_app_does(tmp_path, model_path, shared_data):
    image = shared_data / "images" / "bus.jpg"
    split = run(["run", "apps/openpose_split.app.json", "--input", str(image), "--output", str(tmp_path / "split"),
                 "--no-viewer", "--stats-json", str(tmp_path / "split.json")], timeout=240)
    assert split.returncode == 0, split.stdout + split.stderr
    single = run(["run", "apps/openpose.app.json", "--input", str(image), "--output", str(tmp_path / "single"),
                  "--no-viewer"], timeout=240)
    assert single.returncode == 0, single.stderr
    ours = json.loads((tmp_path / "split" / "predictions.json").read_text())
    theirs = json.loads((tmp_path / "single" / "predictions.json").read_text())
    assert len(theirs) >= 2 and ours == theirs  # the bus has people in it; same order, same numbers
    assert "== process inference" in split.stdout and "== process post" in split.stdout
    report = json.loads((tmp_path / "split.json").read_text())["processes"]
    assert sorted(report) == ["inference", "post"]
    assert report["post"]["report"]["channels"]["net.rx0/subscriber/message"]["messages"] == 1
    one = run(["run", "apps/openpose_split.app.json", "--single-process", "--input", str(image),
               "--output", str(tmp_path / "one"), "--no-viewer"], timeout=240)
    assert one.returncode == 0 and "== process" not in one.stdout
    assert json.loads((tmp_path / "one" / "predictions.json").read_text()) == theirs


@pytest.mark.timeout(120)
def test_images_cross_by_shared_memory_unchanged_and_no_segment_is_left(tmp_path):
    out = tmp_path / "out"
    result = run(["-v", "run", str(images_app(tmp_path, out)), "--no-viewer", "--stats-json", str(tmp_path / "r.json")],
                 timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared memory" in result.stderr  # both ends on this host: the pixels went by shared memory
    written = sorted(out.glob("*.png"))
    sources = sorted(p for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png"))
    assert len(written) == len(sources) == 3
    for source in sources:
        target = out / (source.stem + ".png")
        np.testing.assert_array_equal(cv2.imread(str(target)), cv2.imread(str(source)))
    pids = [entry["pid"] for entry in json.loads((tmp_path / "r.json").read_text())["processes"].values()]
    assert len(pids) == 2 and all(shm.segments_of(pid) == [] for pid in pids)


def _children_by_process(supervisor: int, timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for pid in children_of(supervisor):
            line = cmdline(pid)
            for name in ("a", "b"):
                if f"/{name}.app.json" in line:
                    found[name] = pid
        if len(found) == 2:
            return found
        time.sleep(0.1)
    raise AssertionError("the supervisor did not start both processes")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("victim", ["a", "b"])
def test_kill_9_of_one_process_stops_the_app_with_a_clear_message_and_no_leaked_segment(tmp_path, victim):
    supervisor = start(["run", str(images_app(tmp_path, tmp_path / "out", loop=True)), "--no-viewer"])
    try:
        pids = _children_by_process(supervisor.pid)
        deadline = time.monotonic() + 30
        while len(list((tmp_path / "out").glob("*.png"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # images are flowing (through shared memory) before the kill
        assert shm.segments_of(pids["a"]), "the publisher's segments should exist while it runs"
        os.kill(pids[victim], signal.SIGKILL)
        output, _ = supervisor.communicate(timeout=30)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert supervisor.returncode == 1
    assert f"process '{victim}' (pid {pids[victim]}) was killed by SIGKILL; stopping the app" in output
    for pid in pids.values():
        assert not _running(pid)
        assert shm.segments_of(pid) == []


@pytest.mark.timeout(120)
def test_a_process_with_restart_true_is_started_again(tmp_path):
    supervisor = start(["run", str(images_app(tmp_path, tmp_path / "out", loop=True, restart=True)),
                        "--no-viewer", "--duration", "12"])
    try:
        pids = _children_by_process(supervisor.pid)
        time.sleep(2)
        os.kill(pids["a"], signal.SIGKILL)
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert f"process 'a' (pid {pids['a']}) was killed by SIGKILL; restarting it (1 of 5)" in output
    assert "== process a" in output and "restarted 1×" in output
    assert shm.segments_of(pids["a"]) == []


@pytest.mark.timeout(120)
def test_a_subscriber_started_before_its_publisher_gets_everything(tmp_path, endpoint):
    publisher, subscriber = numbers_apps(tmp_path, endpoint, count=50)
    receiving = start(["run", str(subscriber), "--no-viewer"])
    time.sleep(2.0)
    sending = run(["run", str(publisher), "--no-viewer"], timeout=60)
    output, _ = receiving.communicate(timeout=60)
    assert sending.returncode == 0 and receiving.returncode == 0, output
    values = [json.loads(line)["value"] for line in (tmp_path / "numbers.jsonl").read_text().splitlines()]
    assert values == [float(i) for i in range(50)]
    assert "WARNING" not in output + sending.stderr  # nothing lost: the bridges' counts are -v details


@pytest.mark.timeout(120)
def test_an_edge_out_of_a_subgraph_crosses_processes_like_any_edge(tmp_path):
    """The demo app with its subgraph (scale → add) in the main process and the counters and the
    writer in two others: the edges into the subgraph's interface and the one out of it all cross,
    and the file equals a single-process run's (the edge out was refused: 'connects nothing')."""
    app = json.loads((REPO / "apps" / "demo.app.json").read_text())
    for node in app["graph"]["nodes"]:
        if "subgraph" in node:
            node["subgraph"] = str((REPO / "apps" / node["subgraph"]).resolve())
        else:
            node["process"] = {"ticker": "src", "sink": "out"}[node["name"]]
    out = tmp_path / "numbers.jsonl"
    app["config"]["sink"]["writer"]["path"] = str(out)
    app_file = write_app(tmp_path / "demo_split.app.json", app)
    split = run(["run", str(app_file), "--no-viewer", "--stats-json", str(tmp_path / "stats.json")], timeout=90)
    assert split.returncode == 0, split.stdout + split.stderr
    values = [json.loads(line)["value"] for line in out.read_text().splitlines()]
    single = run(["run", str(app_file), "--no-viewer", "--quiet", "--single-process"], timeout=60)
    assert single.returncode == 0, single.stderr
    assert values == [json.loads(line)["value"] for line in out.read_text().splitlines()] and len(values) > 10
    crossings = {c["source"]: c for c in json.loads((tmp_path / "stats.json").read_text())["crossings"]}
    total = crossings["arith.interface/subgraph/total"]
    assert (total["from"], total["to"], total["sent"], total["received"]) == ("main", "out", len(values), len(values))


SLOW_START = """
import time
from graphflow import Codelet, Param

class SlowStart(Codelet):
    \"\"\"Takes its time in start(), as a node loading a model does.\"\"\"
    seconds = Param(float, 2.0, "How long start() takes.")

    def start(self):
        time.sleep(self.seconds)
"""


@pytest.mark.timeout(120)
def test_a_process_slow_to_start_loses_no_early_message(tmp_path):
    """Process a counts 60 numbers at 200 Hz into an edge with a queue of 8 (policy latest: 40 ms
    of slack for a loaded machine, a small part of the 300 ms the numbers take); process b takes
    2 s to start. a's graph waits for b's subscriber before it ticks, so b writes all 60,
    as one process would, and nothing is counted dropped."""
    (tmp_path / "slow_start.py").write_text(SLOW_START)
    app = write_app(tmp_path / "slow.app.json", {
        "name": "slow", "modules": ["demo", str(tmp_path / "slow_start.py")],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"},
                                                           {"name": "model", "type": "slow_start.SlowStart"}]}],
            "edges": [{"source": "src/counter/number", "target": "sink/writer/number",
                       "queue": {"size": 8, "policy": "latest"}}]},
        "processes": {"a": {}, "b": {}},
        "config": {"src": {"counter": {"tick_period": "200Hz", "count": 60}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}})
    result = run(["run", str(app), "--no-viewer", "--stats-json", str(tmp_path / "stats.json")], timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    values = [json.loads(line)["value"] for line in (tmp_path / "numbers.jsonl").read_text().splitlines()]
    assert values == [float(i) for i in range(60)]
    crossing = json.loads((tmp_path / "stats.json").read_text())["crossings"][0]
    assert (crossing["sent"], crossing["received"], crossing["dropped"]) == (60, 60, 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("policy", ["latest", "block"])
def test_messages_a_bridge_could_not_deliver_are_counted_dropped(tmp_path, endpoint, policy):
    """A publisher alone (no subscriber ever comes), queue 2: under policy latest the 18 oldest of
    20 messages are pushed out of its queue, and the 2 left are not delivered when it stops; under
    block all 20 wait and are not delivered. Its job report counts every one dropped on the
    bridge's input (before, the ones left at the stop were not counted)."""
    publisher, subscriber = numbers_apps(tmp_path, endpoint, count=20, policy=policy)
    app = json.loads(publisher.read_text())
    app["config"]["out"]["publisher"].update(queue_size=2 if policy == "latest" else 32, flush_timeout=0.2)
    write_app(publisher, app)
    result = run(["run", str(publisher), "--no-viewer", "--stats-json", str(tmp_path / "stats.json")], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    channel = json.loads((tmp_path / "stats.json").read_text())["channels"]["src/counter/number"]
    assert channel["receivers"]["out/publisher/message"]["dropped"] == 20


@pytest.mark.timeout(120)
def test_a_type_mismatch_is_refused_at_connect_with_both_ends_named(tmp_path, endpoint):
    publisher, subscriber = numbers_apps(tmp_path, endpoint, count=20, expected_type="vision/Image",
                                         policy="latest")
    sending = start(["run", str(publisher), "--no-viewer"])
    receiving = run(["run", str(subscriber), "--no-viewer"], timeout=60)
    sent_output, _ = sending.communicate(timeout=60)
    assert "WARNING out/publisher" in sent_output and "1 subscriber refused" in sent_output
    assert receiving.returncode == 1
    text = receiving.stdout + receiving.stderr
    assert "publisher out/publisher" in text and "sends demo/Number" in text
    assert "subscriber in/subscriber" in text and "expects vision/Image" in text


@pytest.mark.timeout(120)
def test_processes_started_separately_with_dash_dash_process(tmp_path):
    app = images_app(tmp_path, tmp_path / "out")
    second = start(["run", str(app), "--process", "b", "--no-viewer"])
    first = run(["run", str(app), "--process", "a", "--no-viewer"], timeout=60)
    output, _ = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, output
    assert "== process b" in output and "== process a" not in output
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    bad = run(["run", str(app), "--process", "c", "--no-viewer"], timeout=60)
    assert bad.returncode == 2 and "--process c: the app has no such process (it has: a, b)" in bad.stderr
    both = run(["run", str(app), "--process", "a", "--single-process", "--no-viewer"], timeout=60)
    assert both.returncode == 2 and both.stderr.startswith("error: --process runs one process of a split app")


@pytest.mark.timeout(120)
def test_kill_9_of_the_supervisor_stops_its_processes_too(tmp_path):
    supervisor = start(["run", str(images_app(tmp_path, tmp_path / "out", loop=True)), "--no-viewer"])
    pids = _children_by_process(supervisor.pid)
    time.sleep(2)
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.communicate(timeout=30)
    deadline = time.monotonic() + 40  # each stops as on SIGTERM: drains, flushes (up to 5 s), unlinks
    while time.monotonic() < deadline and any(_running(pid) for pid in pids.values()):
        time.sleep(0.1)
    alive = [pid for pid in pids.values() if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "a process outlived its supervisor"
    assert all(shm.segments_of(pid) == [] for pid in pids.values())  # they stopped cleanly, segments unlinked


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_process_cleanly_with_one_report(tmp_path, how):
    supervisor = start(["run", str(images_app(tmp_path, tmp_path / "out", loop=True)), "--no-viewer"])
    try:
        pids = _children_by_process(supervisor.pid)
        time.sleep(3)
        os.kill(supervisor.pid, how)
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert supervisor.returncode == 0, output
    assert "job report: 2 processes" in output and "== process a" in output and "== process b" in output
    assert "net.rx0/subscriber/message" in output  # b's channels are in the one report
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") and shm.segments_of(pid) == []


SLOW_PACK = """
import time
from graphflow import Codelet, Rx, Tx
from graphflow.packs.demo.messages import Number


class Slow(Codelet):
    \"\"\"Passes each number on after 10 ms (work still in flight when the app is stopped).\"\"\"
    number = Rx(Number, queue_size=32, policy="block")
    passed = Tx(Number)

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        time.sleep(0.01)
        self.passed.publish(message.payload, acqtime=message.acqtime)
"""


def counting_app(tmp_path: Path) -> Path:
    """Numbers counted in process a (200 Hz, forever), passed on by a slower node there (a backlog
    to drain at stop) and written in process b."""
    (tmp_path / "slow.py").write_text(SLOW_PACK)
    return write_app(tmp_path / "count.app.json", {
        "name": "count", "modules": ["demo", "./slow.py"],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "slow", "process": "a", "components": [{"name": "slow", "type": "slow.Slow"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "src/counter/number", "target": "slow/slow/number"},
                      {"source": "slow/slow/passed", "target": "sink/writer/number",
                       "queue": {"size": 64, "policy": "block"}}]},
        "config": {"src": {"counter": {"tick_period": "200Hz", "count": 0}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["--duration", signal.SIGINT, signal.SIGTERM])
def test_a_stopped_split_app_loses_no_message_in_flight_between_its_processes(tmp_path, how):
    """The processes stop as one graph: the counting process first, the writing one once it has
    written what was sent. Before, every process stopped at once (and each applied --duration by
    itself): the writer's subscriber stopped while numbers were still on their way, which were lost
    ('2 messages not delivered'), and a publisher left waiting for room was killed after 8 s."""
    stats = tmp_path / "stats.json"
    command = ["run", str(counting_app(tmp_path)), "--no-viewer", "--stats-json", str(stats)]
    began = time.monotonic()
    if how == "--duration":
        supervisor = start(command + ["--duration", "3"])
    else:
        supervisor = start(command)
        _children_by_process(supervisor.pid)
        time.sleep(4)
        os.kill(supervisor.pid, how)
    try:
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert supervisor.returncode == 0, output
    assert "killing" not in output and "not delivered" not in output, output
    written = [json.loads(line)["value"] for line in (tmp_path / "numbers.jsonl").read_text().splitlines()]
    report = json.loads(stats.read_text())
    published = report["processes"]["a"]["report"]["channels"]["slow/slow/passed"]["messages"]
    assert published > 100 and written == [float(n) for n in range(published)]  # every number, in order
    (crossing,) = report["crossings"]
    assert crossing["sent"] == crossing["received"] == published and crossing["dropped"] == 0
    if how == "--duration":
        assert time.monotonic() - began < 3 + 15  # (start-up and the drain; before: up to 3 + 30 s)


@pytest.mark.timeout(120)
def test_the_processes_import_what_the_supervisor_imports_not_a_copy_in_the_current_folder(tmp_path):
    """Run from a folder holding a graphflow/ of its own (a checkout beside the installed one): the
    children were started as `python -m graphflow.cli`, which imported that copy first."""
    import shutil
    import subprocess

    command = shutil.which("graphflow")
    assert command, "the graphflow command is installed (pip install -e .)"
    (tmp_path / "graphflow").mkdir()
    (tmp_path / "graphflow" / "__init__.py").write_text("raise ImportError('the copy in the current folder')\n")
    result = subprocess.run([command, "run", str(counting_app(tmp_path)), "--no-viewer", "--quiet", "--duration", "2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and "the copy in the current folder" not in result.stderr, result.stderr
    assert (tmp_path / "numbers.jsonl").read_text().count("\n") > 50


@pytest.mark.timeout(120)
def test_run_options_reach_the_processes_or_are_refused(tmp_path):
    """--on-bad-input reaches the process whose loader has the param; --record of a whole split
    app is refused (one file per app is not what it would make), and records one --process."""
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "b.png").write_bytes(b"not a png")
    app = images_app(tmp_path, tmp_path / "out")
    stopped = run(["run", str(app), "--no-viewer", "--quiet", "--set", f"feeder/loader/path={folder}",
                   "--on-bad-input", "stop"], timeout=90)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "b.png" in stopped.stderr and "Traceback" not in stopped.stderr

    refused = run(["run", str(app), "--no-viewer", "--record", str(tmp_path / "all.mcap")], timeout=60)
    assert refused.returncode == 2
    assert "--record: with an app split into processes, record one process (--process NAME)" in refused.stderr
    assert not (tmp_path / "all.mcap").exists()

    recording = tmp_path / "a.mcap"
    one = run(["run", str(app), "--process", "a", "--no-viewer", "--quiet", "--set", "feeder/loader/tick_period=0",
               "--record", str(recording)], timeout=90)  # (no subscriber: its publisher waits 5 s, then ends)
    assert one.returncode == 0, one.stdout + one.stderr
    assert recording.exists() and "recorded" in one.stderr


@pytest.mark.timeout(60)
def test_a_bridge_that_cannot_work_says_so_in_one_line(tmp_path):
    """A user's mistake in a bridge's settings (here a key file that is not there): one line naming
    the node once, no traceback."""
    app = write_app(tmp_path / "bad.app.json", {
        "name": "bad", "modules": ["net", "demo"],
        "graph": {"nodes": [{"name": "in", "components": [{"name": "subscriber", "type": "net.Subscriber"}]},
                            {"name": "sink", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
                  "edges": [{"source": "in/subscriber/message", "target": "sink/writer/number"}]},
        "config": {"in": {"subscriber": {"endpoint": "tcp://127.0.0.1:5999", "message_type": "demo/Number",
                                         "curve_server_key": str(tmp_path / "missing.key")}},
                   "sink": {"writer": {"path": str(tmp_path / "n.jsonl")}}}})
    result = run(["run", str(app), "--no-viewer"], timeout=50)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: in/subscriber: curve_server_key: key file {tmp_path / 'missing.key'} not found" in result.stderr


@pytest.mark.timeout(120)
def test_a_process_that_fails_at_start_stops_the_processes_feeding_it_promptly(tmp_path):
    """b fails in start() after its subscriber connected; a, publishing into it (policy block),
    waited for the dead receiver, in the drain and again in its flush at stop, until the
    supervisor killed it after 8 s."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "slow_start.py").write_text(SLOW_START)
    app = write_app(tmp_path / "fails.app.json", {
        "name": "fails", "modules": ["demo", str(tmp_path / "slow_start.py")],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            # b's subscriber connects, then its model loads (1 s; a publishes meanwhile), then its writer fails
            {"name": "sink", "process": "b", "components": [{"name": "model", "type": "slow_start.SlowStart"},
                                                           {"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "src/counter/number", "target": "sink/writer/number"}]},
        "processes": {"a": {}, "b": {}},
        "config": {"src": {"counter": {"tick_period": "200Hz", "count": 0}},
                   "sink": {"model": {"seconds": 1.0},
                            "writer": {"path": str(tmp_path / "folder")}}}})  # a folder: fails in start()
    started = time.monotonic()
    result = run(["run", str(app), "--no-viewer", "--quiet"], timeout=90)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Is a directory" in output, output
    assert "did not stop within" not in output and elapsed < 6, (elapsed, output)  # (5 s of it waiting before)


@pytest.mark.timeout(120)
def test_a_split_app_stopped_in_its_first_second_stops_at_once_and_cleanly(tmp_path):
    """--duration 0.1 (as a systemctl stop or a Ctrl-C right after the start): a process took
    the SIGTERM before it could handle it and died of it; that was reported as a failure (exit 1),
    and the process it fed waited out a 10 s drain for an end that could not come."""
    app = write_app(tmp_path / "early.app.json", {
        "name": "early", "modules": ["demo"],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "src/counter/number", "target": "sink/writer/number"}]},
        "processes": {"a": {}, "b": {}},
        "config": {"src": {"counter": {"tick_period": "100Hz", "count": 300}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}})
    started = time.monotonic()
    result = run(["run", str(app), "--no-viewer", "--duration", "0.1"], timeout=90)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exited with status" not in result.stdout + result.stderr and elapsed < 6, elapsed


@pytest.mark.timeout(120)
def test_messages_lost_with_a_subscriber_that_went_silent_are_counted(tmp_path):
    """b stopped (SIGSTOP) for 4 s: a's publisher drops it as silent, with the
    messages queued for it; they were lost, and the report said 0 dropped. Now those are counted.
    (One more may be lost uncounted: handed to the socket before the drop, it never reached b.)"""
    app = write_app(tmp_path / "pause.app.json", {
        "name": "pause", "modules": ["demo"],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "src/counter/number", "target": "sink/writer/number",
                       "queue": {"size": 4, "policy": "block"}}]},
        "processes": {"a": {}, "b": {}},
        "config": {"src": {"counter": {"tick_period": "100Hz", "count": 400}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}})
    supervisor = start(["run", str(app), "--no-viewer", "--stats-json", str(tmp_path / "stats.json")])
    try:
        pids = _children_by_process(supervisor.pid)
        deadline = time.monotonic() + 30
        while not (tmp_path / "numbers.jsonl").exists() or (tmp_path / "numbers.jsonl").stat().st_size < 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(pids["b"], signal.SIGSTOP)
        time.sleep(4)
        os.kill(pids["b"], signal.SIGCONT)
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    written = len((tmp_path / "numbers.jsonl").read_text().splitlines())
    stats = json.loads((tmp_path / "stats.json").read_text())
    crossing = next(c for c in stats["crossings"] if c["channel"] == "src/counter/number")
    assert "went silent" in output or "silent" in output, output
    assert written < 400 and crossing["dropped"] >= 1, (written, crossing, output[-3000:])
    assert 399 <= written + crossing["dropped"] <= 400, (written, crossing, output[-3000:])


@pytest.mark.timeout(120)
def test_a_restarted_process_adds_to_what_its_writers_wrote_before(tmp_path):
    """b ("restart": true) killed mid-run: the restarted writer opened its file anew, and the
    numbers written before the restart were gone (the file began at 125)."""
    app = write_app(tmp_path / "again.app.json", {
        "name": "again", "modules": ["demo"],
        "graph": {"nodes": [
            {"name": "src", "process": "a", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "src/counter/number", "target": "sink/writer/number",
                       "queue": {"size": 4, "policy": "block"}}]},
        "processes": {"a": {}, "b": {"restart": True}},
        "config": {"src": {"counter": {"tick_period": "100Hz", "count": 300}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}})
    numbers = tmp_path / "numbers.jsonl"
    supervisor = start(["run", str(app), "--no-viewer"])
    try:
        pids = _children_by_process(supervisor.pid)
        deadline = time.monotonic() + 30
        while not numbers.exists() or numbers.read_text().count("\n") < 50:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(pids["b"], signal.SIGKILL)
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert "restarting it (1 of 5)" in output, output
    values = [json.loads(line)["value"] for line in numbers.read_text().splitlines()]  # every line whole
    assert values[:50] == [float(i) for i in range(50)] and values[-1] == 299.0
    assert values == sorted(set(values))  # each once, in order (what was in flight at the kill is lost)


def test_run_folders_of_supervisors_that_are_gone_are_removed_by_the_next(tmp_path, monkeypatch):
    """kill -9 of a supervisor left its /tmp/graphflow-run-* folder (sockets, app files, stats)
    for good; about 90 had piled up on a test machine."""
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    for name, owner in (("dead", str(dead_pid)), ("alive", str(os.getppid())), ("unknown", None)):
        folder = tmp_path / f"graphflow-run-{name}"
        folder.mkdir()
        (folder / "a.sock").write_text("")
        if owner is not None:
            (folder / processes.OWNER_FILE).write_text(owner)
    processes._remove_run_dirs_of_dead_supervisors()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graphflow-run-alive", "graphflow-run-unknown"]
