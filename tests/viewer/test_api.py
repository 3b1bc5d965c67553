"""The viewer's JSON API and stream, without a browser: urllib and a WebSocket client against a
real server on a free port."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from graphflow.viewer import ViewerError, ViewerServer
from graphflow.viewer.encode import encode_image, heatmap, inspect_message, png, resolve, scalars
from graphflow.viewer.stream import SendQueue

from .conftest import StreamClient, found_joints, wait_for

pytestmark = pytest.mark.timeout(120)


# -- read-only endpoints -----------------------------------------------------------------------
def test_graph_lists_nodes_components_edges_and_windows(running, viewer_target):
    graph = running.get("/api/graph")
    components = {c["full_name"]: c for n in graph["nodes"] for c in n["components"]}
    assert viewer_target.image.rsplit("/", 1)[0] in components
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert any(source == viewer_target.image for source, _ in edges)
    assert viewer_target.image_window in graph["ui_config"]["windows"]
    assert all(policy for policy in graph["tick_policies"].values())


def test_stats_is_the_live_job_report(running, viewer_target):
    component = viewer_target.image.rsplit("/", 1)[0]
    stats = wait_for(lambda: (s := running.get("/api/stats"))["live"]["channels"] and s, message="live rates")
    assert stats["components"][component]["ticks"] > 0
    assert stats["components"][component]["tick_ms"]["median"] is not None
    assert stats["channels"][viewer_target.image]["messages"] > 0
    assert stats["live"]["channels"][viewer_target.image]["rate"] > 0
    assert stats["finished"] is False and stats["failure"] is None


def test_channels_have_type_and_rate(running, viewer_target):
    channels = wait_for(lambda: (c := {x["name"]: x for x in running.get("/api/channels")})
                        and c[viewer_target.image]["rate"] > 0 and c, message="a channel rate")
    assert channels[viewer_target.image]["message"] == "vision/Image"
    assert channels[viewer_target.image]["render"] == "image"
    assert channels[viewer_target.skeleton]["render"] == "skeleton2"
    assert "pixels" in channels[viewer_target.image]["fields"]


def test_a_channel_may_be_asked_for_by_its_subgraph_interface_name(tmp_path):
    """apps/scale_add.subgraph.json forwards its add/add/total as arith.interface/subgraph/total."""
    from graphflow.app import App
    from graphflow.viewer.api import Api, ApiError

    from tests.conftest import REPO

    app = App.load(REPO / "apps" / "demo.app.json", sets=[f"sink/writer/path={tmp_path / 'n.jsonl'}",
                                                          "ticker/ones/count=3", "ticker/tens/count=3"])
    app.run(duration=30)
    api = Api(app)
    by_interface = api.message("arith.interface/subgraph/total")
    assert by_interface["channel"] == "arith.add/add/total"
    by_name = api.message("arith.add/add/total")
    assert by_interface["header"]["uuid"] == by_name["header"]["uuid"] and by_interface["payload"] == by_name["payload"]
    with pytest.raises(ApiError, match="unknown channel"):
        api.message("arith.interface/subgraph/totl")


def test_a_live_app_answers_that_it_is_no_recording(running):
    # The page asks, to know whether to show a timeline; a 404 was an error in the browser's console.
    assert running.get("/api/recording") == {"recording": False}


def test_latest_message_summary_image_and_heatmap(running, viewer_target):
    message = running.latest(viewer_target.tensor)
    tensor = message["payload"]
    for part in viewer_target.tensor_path.split("."):
        tensor = tensor["items"][int(part)] if tensor.get("kind") == "list" else tensor[part]
    assert tensor["shape"] == viewer_target.tensor_shape and tensor["dtype"] == "float32"
    assert tensor["min"] <= tensor["mean"] <= tensor["max"] and tensor["heatmap"] is True
    assert set(message["header"]) >= {"uuid", "acqtime", "pubtime", "latency_ms"}

    with urllib.request.urlopen(running.url + f"api/messages/{viewer_target.image}/latest/image?width=200&height=200") as r:
        data = r.read()
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == 200

    url = running.url + f"api/messages/{viewer_target.tensor}/latest/heatmap?path={viewer_target.tensor_path}&index=3"
    with urllib.request.urlopen(url) as r:
        assert r.read().startswith(b"\x89PNG")
        assert json.loads(r.headers["X-Heatmap"])["index"] == 3


def test_a_heatmap_path_that_names_nothing_is_a_400_saying_so_plainly(running, viewer_target):
    """Before: the error was quoted twice (a KeyError's str), and 'tensors.-1' took the last item."""
    base = running.url + f"api/messages/{viewer_target.tensor}/latest/heatmap?path="
    for path, said in (("nope", "no field 'nope' in 'nope'"), ("tensors.-1", "no item '-1' in 'tensors.-1'"),
                       ("tensors.7", "no item '7' in 'tensors.7'")):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + path)
        assert info.value.code == 400
        assert json.loads(info.value.read())["error"] == f"{viewer_target.tensor}: {said}"


def test_unknown_things_are_404_with_a_json_error(running):
    for path in ("/api/messages/no/such/channel/latest", "/api/nothing", "/static/../server.py"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(running.url + path.lstrip("/"))
        assert info.value.code == 404
        assert "error" in json.loads(info.value.read())


_URL = r"""(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^\s'"`)]+"""  # scheme://host... or //host... (protocol-relative)


def asset_references(name: str, text: str) -> list[str]:
    """What loading ``name`` makes the browser fetch: HTML src/href, CSS url() and @import, JS
    static and dynamic imports, fetch(), new WebSocket/EventSource/Worker and image/script URLs."""
    import re
    from html.parser import HTMLParser

    found: list[str] = []
    if name.endswith(".html"):
        class Refs(HTMLParser):
            def handle_starttag(self, tag, attrs):
                for key, value in attrs:
                    if key in ("src", "href", "action", "poster", "data") and value:
                        found.append(value)

            def handle_data(self, data):
                found.extend(asset_references("inline.js", data))

        Refs().feed(text)
    elif name.endswith(".css"):
        found += re.findall(r"""url\(\s*['"]?([^'")\s]+)""", text)
        found += re.findall(r"""@import\s+['"]([^'"]+)""", text)
    else:
        found += re.findall(r"""\bimport\s*(?:[\w*{},\s]+from\s*)?['"]([^'"]+)['"]""", text)
        found += re.findall(r"""\b(?:import|fetch|WebSocket|EventSource|Worker|SharedWorker|importScripts)\s*\(\s*['"`]([^'"`]+)""", text)
        found += re.findall(r"""\.(?:src|href)\s*=\s*['"`]([^'"`]+)""", text)
        found += [m for m in re.findall(r"['\"`](" + _URL + ")", text) if not m.startswith("http://www.w3.org/")]
    return found


def is_external(reference: str) -> bool:
    import re
    return bool(re.match(_URL, reference)) and not reference.startswith("http://www.w3.org/")  # XML namespaces


def test_the_reference_finder_sees_external_urls():
    """The check below must be able to fail: each of these pulls something from another host."""
    bad = {"index.html": '<link rel="stylesheet" href="https://cdn.example/x.css"><script src="//cdn.example/a.js">'
                         '</script><script>fetch("https://api.example/x")</script>',
           "a.css": "body { background: url(http://img.example/b.png) } @import 'https://fonts.example/f.css';",
           "b.js": "import { x } from 'https://esm.example/x.js'; const w = new WebSocket(`wss://evil.example/s`);"
                   " img.src = 'http://img.example/c.png'; import('https://esm.example/y.js');"}
    for name, text in bad.items():
        refs = asset_references(name, text)
        assert refs and all(is_external(r) for r in refs), (name, refs)
    assert len(asset_references("b.js", bad["b.js"])) >= 4
    ok = "import { fmt } from './api.js'; const SVG = 'http://www.w3.org/2000/svg'; fetch(path, options);"
    assert not any(is_external(r) for r in asset_references("c.js", ok))


def test_static_page_and_assets_are_served_and_reference_nothing_external(running):
    """Everything the page loads comes from the viewer itself (no CDN: it works offline), and
    every asset it references is served with its type."""
    from graphflow.viewer.http import STATIC_DIR

    with urllib.request.urlopen(running.url) as r:
        html = r.read().decode()
    assert '<script type="module" src="/static/main.js">' in html
    pending, seen = ["index.html"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (STATIC_DIR / name).read_text()
        for reference in asset_references(name, text):
            assert not is_external(reference), f"{name} references {reference}"
            if reference.startswith(("#", "data:", "/api/")) or "${" in reference or reference == "path":
                continue
            local = reference.split("?")[0].rsplit("/", 1)[-1]
            pending.append(local)
    assert {"main.js", "api.js", "stream.js", "style.css", "view2d.js"} <= seen
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    for name in sorted(seen - {"index.html"}):
        with urllib.request.urlopen(running.url + "static/" + name) as r:
            assert r.status == 200 and r.read() == (STATIC_DIR / name).read_bytes()
            assert r.headers["Content-Type"].startswith(types[name[name.rindex("."):]])


# -- config --------------------------------------------------------------------------------------
def test_config_lists_params_with_type_default_doc_and_value(running, viewer_target):
    node, comp, name = viewer_target.param.split("/")
    config = running.get("/api/config")
    param = config["components"][f"{node}/{comp}"]["params"][name]
    assert param["type"] == "float" and param["doc"] and "default" in param
    assert config["config"][node][comp][name] == param["value"]


def test_post_config_applies_and_the_node_sees_it(running, viewer_target):
    low, high = viewer_target.param_values
    node, comp, name = viewer_target.param.split("/")
    assert running.param(viewer_target.param) == low
    at_low = found_joints(running.latest(viewer_target.skeleton))
    try:
        status, body = running.post("/api/config", {node: {comp: {name: high}}})
        assert status == 200 and body["applied"] == {viewer_target.param: high}
        assert running.param(viewer_target.param) == high
        wait_for(lambda: found_joints(running.latest(viewer_target.skeleton)) != at_low,
                 message="a different joint count after the param change")
        status, _ = running.post("/api/config", {viewer_target.param: low})  # the flat form works too
        assert status == 200
        wait_for(lambda: found_joints(running.latest(viewer_target.skeleton)) == at_low,
                 message="the joint count back after resetting the param")
    finally:
        running.post("/api/config", {viewer_target.param: low})


@pytest.mark.parametrize("body, status, words", [
    ({"nosuch": {"comp": {"x": 1}}}, 400, ["unknown component", "nosuch/comp"]),
    ("PARAM_UNKNOWN", 400, ["has no param", "nosuchparam"]),
    ("PARAM_TYPE", 400, ["expected float", "string"]),
    ("PARAM_RANGE", 400, ["expected a value in"]),
    ("MIXED", 400, ["expected a value in"]),
    ([1, 2], 400, ["expected a JSON object"]),
    ({"a/b": 1}, 400, ["not node/component/param"]),
    # read only in start(): before, 200 "applied", and the node went on with the old value
    ({"counter/count/tick_period": "1Hz"}, 400, ["counter/count/tick_period: is read only when the app starts"]),
    ("START_ONLY_MIXED", 400, ["counter/count/tick_period: is read only when the app starts"]),
])
def test_bad_config_is_refused_and_changes_nothing(running, viewer_target, body, status, words):
    node, comp, name = viewer_target.param.split("/")
    other = viewer_target.plot_channel.split("/")  # math/scale/... : a second, valid change
    bodies = {"PARAM_UNKNOWN": {node: {comp: {"nosuchparam": 1}}},
              "PARAM_TYPE": {viewer_target.param: "abc"},
              "PARAM_RANGE": {viewer_target.param: viewer_target.bad_value},
              "MIXED": {f"{other[0]}/{other[1]}/gain": 5.0, viewer_target.param: viewer_target.bad_value},
              "START_ONLY_MIXED": {f"{other[0]}/{other[1]}/gain": 5.0, "counter/count/tick_period": "1Hz"}}
    before = running.get("/api/config")["config"]
    code, answer = running.post("/api/config", bodies.get(body, body) if isinstance(body, str) else body)
    assert code == status
    for word in words:
        assert word in answer["error"], answer
    assert running.get("/api/config")["config"] == before


def test_malformed_json_and_wrong_content_type_are_refused(running):
    before = running.get("/api/config")["config"]
    code, answer = running.post("/api/config", None, raw=b"{not json")
    assert code == 400 and answer["error"].startswith("malformed JSON")
    code, answer = running.post("/api/config", None, raw=b'{"a": 1}', ctype="text/plain")
    assert code == 415 and "application/json" in answer["error"]
    code, answer = running.post("/api/config", None, raw=b'{}', headers={"Origin": "http://evil.example"})
    assert code == 403
    assert running.get("/api/config")["config"] == before


def test_foreign_host_header_is_refused(running):
    request = urllib.request.Request(running.url + "api/graph", headers={"Host": "evil.example:3000"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 403


# -- the stream ----------------------------------------------------------------------------------
def test_stream_sends_synced_downscaled_frames_and_unwatched_costs_nothing(running, viewer_target):
    server = running.server
    assert viewer_target.image not in server.observer.watched
    with StreamClient(running.url) as ws:
        ws.send({"op": "subscribe", "windows": [
            {"id": "w", "renderer": "2d", "channels": [viewer_target.image, viewer_target.skeleton],
             "width": 320, "height": 240}]})
        frames = ws.frames({"frame"}, 3)
        assert server.observer.watched == {viewer_target.image, viewer_target.skeleton}
        for header, body in frames:
            assert header["image"]["width"] <= 320 and header["image"]["height"] <= 240
            assert body[:2] in (b"\xff\xd8", b"\x89P")  # JPEG (or PNG without opencv)
            overlay = header["overlays"][0]
            assert header["synced"] and overlay["acqtime"] == header["image"]["acqtime"]
            assert overlay["channel"] == viewer_target.skeleton and overlay["joints"]
        ws.send({"op": "subscribe", "windows": []})  # all channels switched off
        wait_for(lambda: not server.observer.watched, message="nothing watched")
        assert server.observer not in running.app.tap.observers  # not even called any more


def test_stream_inspector_heatmap_plot_and_errors(running, viewer_target):
    with StreamClient(running.url) as ws:
        ws.send({"op": "subscribe", "windows": [
            {"id": "i", "renderer": "inspector", "channels": [viewer_target.tensor],
             "heatmap": {"path": viewer_target.tensor_path, "index": 2}},
            {"id": "p", "renderer": "plot", "channels": [viewer_target.plot_channel]},
            {"id": "x", "renderer": "2d", "channels": ["no/such/channel"]}]})
        (error, _), = ws.frames({"error"}, 1)
        assert "unknown channel 'no/such/channel'" in error["error"]
        (inspect, _), = ws.frames({"inspect"}, 1)
        assert inspect["channel"] == viewer_target.tensor
        (heat, data), = ws.frames({"heatmap"}, 1)
        assert heat["index"] == 2 and heat["channels"] == viewer_target.tensor_shape[0] and data.startswith(b"\x89PNG")
        (samples, _), = ws.frames({"samples"}, 1)
        assert samples["points"] and all(isinstance(v, float) for _, p in samples["points"] for v in p.values())
        ws.send("{broken")
        (error, _), = ws.frames({"error"}, 1)
        assert "malformed JSON" in error["error"]
        ws.send({"op": "ping", "t": 12.5})
        (pong, _), = ws.frames({"pong"}, 1)
        assert pong["t"] == 12.5


# -- pieces --------------------------------------------------------------------------------------
def test_send_queue_keeps_only_the_newest_frame_per_window():
    queue = SendQueue(limit=4)
    for i in range(10):
        queue.put(("2d", "w"), f"frame {i}")
    queue.put(None, "hello")
    assert queue.pop() == "frame 9" and queue.pop() == "hello" and queue.pop() is None
    assert queue.dropped == 9


def test_send_queue_wakes_its_writer_once_per_batch_and_caps_its_length():
    wakes = []
    queue = SendQueue(limit=3, wake=lambda: wakes.append(1))
    queue.put(("a",), 1)
    queue.put(("b",), 2)
    assert len(wakes) == 1  # the writer is already on its way
    assert queue.pop() == 1 and queue.pop() == 2 and queue.pop() is None
    queue.put(None, 3)
    assert len(wakes) == 2  # drained: the next put wakes it again
    for i in range(5):
        queue.put(None, i)
    assert [queue.pop() for _ in range(4)] == [2, 3, 4, None] and queue.dropped == 3


def test_encoders():
    import cv2
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:, :40] = (255, 0, 0)
    decoded = cv2.imdecode(np.frombuffer(png(rgb), np.uint8), cv2.IMREAD_COLOR)
    assert (decoded[0, 0] == (0, 0, 255)).all()  # BGR back
    data, mime, w, h = encode_image(np.zeros((1080, 810, 3), np.uint8), "bgr", 400, 400)
    assert mime == "image/jpeg" and (w, h) == (300, 400)
    data, info = heatmap(np.random.rand(19, 46, 54).astype(np.float32), 18)
    assert info["channels"] == 19 and info["width"] == 54
    data, info = heatmap(np.random.rand(1, 19, 46, 54).astype(np.float32), 5)  # a model's output: a batch of one
    assert info["channels"] == 19 and (info["width"], info["height"]) == (54, 46)
    with pytest.raises(ValueError, match="float tensor"):
        heatmap(np.zeros((2, 19, 4, 4), np.float32))  # a real batch: which picture?
    with pytest.raises(ValueError, match="out of range"):
        heatmap(np.zeros((19, 4, 4), np.float32), 19)
    with pytest.raises(ValueError, match="float tensor"):
        heatmap(np.zeros((4, 4), np.uint8))


def test_inspect_and_scalars_of_a_tensors_message():
    from graphflow.messages import Header, Message
    from graphflow.packs.vision.messages import Tensors
    big = np.arange(19 * 46 * 54, dtype=np.float32).reshape(19, 46, 54)
    payload = Tensors(names=["a", "b"], tensors=[big, np.array([1.0, np.nan], np.float32)], frame=3)
    summary = inspect_message(Message(Header(1.0, 1.5), payload), now=2.0)
    a, b = summary["payload"]["tensors"]["items"]
    assert a["shape"] == [19, 46, 54] and a["max"] == big.max() and "values" not in a
    assert b["values"][0] == 1.0 and b["max"] == 1.0  # NaN ignored in the statistics
    assert summary["header"]["latency_ms"] == 500.0 and summary["header"]["age_ms"] == 1000.0
    assert scalars(payload) == {"names#len": 2.0, "tensors#len": 2.0, "transform.scale_x": 1.0,
                                "transform.scale_y": 1.0, "transform.offset_x": 0.0, "transform.offset_y": 0.0,
                                "transform.image_width": 0.0, "transform.image_height": 0.0, "frame": 3.0}


def test_inspect_resolve_and_scalars_name_the_fields_of_a_record():
    from graphflow.messages import Header, Message
    from graphflow.packs.openpose import paf
    from graphflow.packs.openpose.messages import PeakList
    maps = np.zeros((18, 4, 5), np.float32)
    peaks = paf.Peaks(np.array([0, 1], np.int32), np.array([1.5, 2.0], np.float32),
                      np.array([3.0, 4.25], np.float32), np.array([0.9, 0.8], np.float32))
    payload = PeakList(peaks, maps, np.zeros((38, 4, 5), np.float32))
    shown = inspect_message(Message(Header(1.0, 1.0), payload))["payload"]["peaks"]
    assert shown["kind"] == "message" and shown["type"] == "Peaks"
    assert shown["fields"]["x"]["values"] == [3.0, 4.25] and shown["fields"]["x"]["path"] == "peaks.x"
    assert resolve(payload, "peaks.x") is peaks.x and resolve(payload, "peaks.1") is peaks.y
    plotted = scalars(payload)
    assert plotted["peaks.score#len"] == 2.0 and plotted["frame"] == 0.0


# -- the command line ----------------------------------------------------------------------------
def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ViewerError, match=f"port {port} .*--viewer-port"):
            ViewerServer("127.0.0.1", port)


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_port_in_use_runs_the_app_without_the_viewer(viewer_target, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stats = tmp_path / "stats.json"
        result = _cli("run", str(viewer_target.app), *sum((["--set", s] for s in viewer_target.sets), []),
                      "--viewer-port", str(port), "--max-ticks", "2", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("warning: viewer off: ")
    assert f"viewer port {port} on 127.0.0.1 is already in use" in lines[0] and "--viewer-port" in lines[0]
    assert json.loads(stats.read_text())["components"]  # the app ran
    assert "job report" in result.stdout and "viewer: http" not in result.stdout


def test_cli_an_app_that_fails_to_start_closes_its_viewer_without_a_graph_finished_line(repo, tmp_path):
    """Nothing ran, so there are no last messages to serve: before, 'graph finished; viewer closed
    (...)' followed the URL, about a graph that never started."""
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["nodes"][1]["subgraph"] = str(repo / "apps" / "scale_add.subgraph.json")
    app["config"]["sink"]["writer"]["path"] = str(tmp_path)  # a folder: the writer fails to open it in start()
    path = tmp_path / "fails.app.json"
    path.write_text(json.dumps(app))
    result = _cli("run", str(path), "--viewer-port", "0")
    assert result.returncode == 1
    assert result.stdout.startswith("viewer: http://127.0.0.1:") and len(result.stdout.splitlines()) == 1
    assert result.stderr.startswith("error: sink/writer: ") and "Traceback" not in result.stderr


def test_cli_viewer_stays_up_after_the_graph_finished_until_duration(viewer_target):
    sets = sum((["--set", s] for s in viewer_target.sets), [])
    process = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "run", str(viewer_target.app), *sets,
                                "--max-ticks", "3", "--viewer-port", "0", "--duration", "4", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split("viewer: ", 1)[1].split()[0]
        line = process.stdout.readline()
        assert line.startswith("graph finished; viewer still serving, Ctrl-C to quit")
        stats = json.loads(urllib.request.urlopen(url + "api/stats").read())
        assert stats["finished"] is True
        latest = json.loads(urllib.request.urlopen(url + f"api/messages/{viewer_target.image}/latest").read())
        assert latest["payload"]["frame"]["value"] == 2  # the last of 3 frames is still there
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_cli_no_viewer_and_view_stub(viewer_target, tmp_path):
    sets = sum((["--set", s] for s in viewer_target.sets), [])
    result = _cli("run", str(viewer_target.app), *sets, "--max-ticks", "2", "--no-viewer", "--quiet")
    assert result.returncode == 0 and "viewer" not in result.stdout
    result = _cli("view", str(tmp_path / "run.rec"))  # graphflow view: tests/recording/test_view.py
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "run.rec").write_bytes(b"")
    result = _cli("view", str(tmp_path / "run.rec"))
    assert result.returncode == 2 and "not an MCAP file" in result.stderr


def test_synchronize_matches_by_acqtime_and_waits_before_showing_unsynced():
    from graphflow.messages import Header, Message
    from graphflow.viewer.stream import synchronize

    def at(t: float):
        return Message(Header(t, t), None)

    images = [at(1.0), at(2.0), at(3.0)]
    skeletons = [at(0.5), at(1.0), at(2.0005)]
    image, (skeleton,), synced = synchronize(images, [skeletons], tolerance=1e-3)
    assert synced and image is images[1] and skeleton is skeletons[2]  # 3.0 has none yet: 2.0 it is
    assert synchronize(images, [skeletons], tolerance=1e-4)[0] is images[0]  # 2.0005 is 0.5 ms off
    lagging = [at(0.2)]  # older than every image held
    assert synchronize(images, [lagging], 1e-3, unsynced=False) is None  # a window that just opened waits
    image, (skeleton,), synced = synchronize(images, [lagging], 1e-3)
    assert not synced and image is images[-1] and skeleton is lagging[0]


@pytest.mark.parametrize("command", [["run", "apps/demo.app.json", "--max-ticks", "1", "--quiet"],
                                     ["view", "no-such-recording.mcap", "--duration", "0.1"]])
@pytest.mark.parametrize("option", [["--viewer-port", "70000"], ["--viewer-port", "-1"], ["--viewer-port", "x"],
                                    ["--viewer-host", "nosuch.invalid"]])
def test_a_malformed_viewer_option_is_a_usage_error_naming_that_option(command, option):
    from tests.conftest import REPO

    result = subprocess.run([sys.executable, "-m", "graphflow.cli", *command, *option], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert f"argument {option[0]}: " in error and "Traceback" not in result.stderr, result.stderr


def test_a_taken_viewer_port_suggests_only_options_the_command_has():
    """`graphflow view` has no --no-viewer: the server's error does not suggest it; `run` adds it."""
    from graphflow.viewer.cli import open_viewer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ViewerError) as refused:
            ViewerServer("127.0.0.1", port)
        assert "--no-viewer" not in str(refused.value) and "--viewer-port" in str(refused.value)
        import argparse
        import io

        said = io.StringIO()
        args = argparse.Namespace(no_viewer=False, viewer_host="127.0.0.1", viewer_port=port, viewer_insecure=False)
        assert open_viewer(args, err=said) is None
        assert said.getvalue().startswith("warning: viewer off: ") and "(or --no-viewer)" in said.getvalue()
