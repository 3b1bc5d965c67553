"""The viewer's JSON API and stream, without a browser: urllib and a WebSocket client against a
real server on a free port."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from graphflow.viewer import ViewerError, ViewerServer
from graphflow.viewer.encode import encode_image, heatmap, inspect_message, png, resolve, scalars
from graphflow.viewer.server import SendQueue
from graphflow.viewer.websocket import connect

from .conftest import found_joints, wait_for


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
    cv2 = pytest.importorskip("cv2")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == 200

    url = running.url + f"api/messages/{viewer_target.tensor}/latest/heatmap?path={viewer_target.tensor_path}&index=3"
    with urllib.request.urlopen(url) as r:
        assert r.read().startswith(b"\x89PNG")
        assert json.loads(r.headers["X-Heatmap"])["index"] == 3


def test_unknown_things_are_404_with_a_json_error(running):
    for path in ("/api/messages/no/such/channel/latest", "/api/nothing", "/static/../server.py"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(running.url + path.lstrip("/"))
        assert info.value.code == 404
        assert "error" in json.loads(info.value.read())


def test_static_page_and_assets_are_served(running):
    with urllib.request.urlopen(running.url) as r:
        html = r.read().decode()
    assert '<script type="module" src="/static/main.js">' in html
    for asset in ("main.js", "graph.js", "view2d.js", "style.css"):
        with urllib.request.urlopen(running.url + "static/" + asset) as r:
            assert r.status == 200 and len(r.read()) > 100
            assert "http://" not in asset  # no CDN


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
])
def test_bad_config_is_refused_and_changes_nothing(running, viewer_target, body, status, words):
    node, comp, name = viewer_target.param.split("/")
    other = viewer_target.plot_channel.split("/")  # math/scale/... : a second, valid change
    bodies = {"PARAM_UNKNOWN": {node: {comp: {"nosuchparam": 1}}},
              "PARAM_TYPE": {viewer_target.param: "abc"},
              "PARAM_RANGE": {viewer_target.param: viewer_target.bad_value},
              "MIXED": {f"{other[0]}/{other[1]}/gain": 5.0, viewer_target.param: viewer_target.bad_value}}
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
def _frames(ws, kinds, count, timeout=10.0):
    """Read stream messages until ``count`` of the given kinds arrived."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"timed out waiting for {kinds}; got {[g[0]['type'] for g in got]}"
        data = ws.recv()
        if isinstance(data, bytes):
            n = struct.unpack(">I", data[:4])[0]
            header, body = json.loads(data[4:4 + n]), data[4 + n:]
        else:
            header, body = json.loads(data), b""
        if header["type"] in kinds:
            got.append((header, body))
    return got


def test_stream_sends_synced_downscaled_frames_and_unwatched_costs_nothing(running, viewer_target):
    server = running.server
    assert viewer_target.image not in server.observer.watched
    ws = connect(running.url.replace("http", "ws") + "api/stream")
    try:
        ws.send_text(json.dumps({"op": "subscribe", "windows": [
            {"id": "w", "renderer": "2d", "channels": [viewer_target.image, viewer_target.skeleton],
             "width": 320, "height": 240}]}))
        frames = _frames(ws, {"frame"}, 3)
        assert server.observer.watched == {viewer_target.image, viewer_target.skeleton}
        for header, body in frames:
            assert header["image"]["width"] <= 320 and header["image"]["height"] <= 240
            assert body[:2] in (b"\xff\xd8", b"\x89P")  # JPEG (or PNG without opencv)
            overlay = header["overlays"][0]
            assert header["synced"] and overlay["acqtime"] == header["image"]["acqtime"]
            assert overlay["channel"] == viewer_target.skeleton and overlay["joints"]
        ws.send_text(json.dumps({"op": "subscribe", "windows": []}))  # all channels switched off
        wait_for(lambda: not server.observer.watched, message="nothing watched")
        assert server.observer not in running.app.tap.observers  # not even called any more
    finally:
        ws.close()


def test_stream_inspector_heatmap_plot_and_errors(running, viewer_target):
    ws = connect(running.url.replace("http", "ws") + "api/stream")
    try:
        ws.send_text(json.dumps({"op": "subscribe", "windows": [
            {"id": "i", "renderer": "inspector", "channels": [viewer_target.tensor],
             "heatmap": {"path": viewer_target.tensor_path, "index": 2}},
            {"id": "p", "renderer": "plot", "channels": [viewer_target.plot_channel]},
            {"id": "x", "renderer": "2d", "channels": ["no/such/channel"]}]}))
        (error, _), = _frames(ws, {"error"}, 1)
        assert "unknown channel 'no/such/channel'" in error["error"]
        (inspect, _), = _frames(ws, {"inspect"}, 1)
        assert inspect["channel"] == viewer_target.tensor
        (heat, data), = _frames(ws, {"heatmap"}, 1)
        assert heat["index"] == 2 and heat["channels"] == viewer_target.tensor_shape[0] and data.startswith(b"\x89PNG")
        (samples, _), = _frames(ws, {"samples"}, 1)
        assert samples["points"] and all(isinstance(v, float) for _, p in samples["points"] for v in p.values())
        ws.send_text("{broken")
        (error, _), = _frames(ws, {"error"}, 1)
        assert "malformed JSON" in error["error"]
    finally:
        ws.close()


# -- pieces --------------------------------------------------------------------------------------
def test_send_queue_keeps_only_the_newest_frame_per_window():
    queue = SendQueue(limit=4)
    for i in range(10):
        queue.put(("2d", "w"), f"frame {i}")
    queue.put(None, "hello")
    assert queue.get(0) == "frame 9" and queue.get(0) == "hello" and queue.get(0) is None
    assert queue.dropped == 9


def test_encoders():
    cv2 = pytest.importorskip("cv2")
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


def test_cli_port_in_use_does_not_run_the_app(viewer_target, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stats = tmp_path / "stats.json"
        result = _cli("run", str(viewer_target.app), *sum((["--set", s] for s in viewer_target.sets), []),
                      "--viewer-port", str(port), "--max-ticks", "2", "--stats-json", str(stats))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line
    assert f"port {port}" in result.stderr and "--viewer-port" in result.stderr
    assert not stats.exists() and "job report" not in result.stdout


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
    result = _cli("view", str(tmp_path / "run.rec"))
    assert result.returncode == 2 and "no recording at" in result.stderr and "cannot record" in result.stderr
    (tmp_path / "run.rec").write_bytes(b"")
    result = _cli("view", str(tmp_path / "run.rec"))
    assert result.returncode == 2 and "cannot replay recordings yet" in result.stderr
