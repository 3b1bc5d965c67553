"""``graphflow view --connect``: the viewer on this machine for an app running in another process
(as it would on a Jetson), both as real OS processes, checked through the viewer's HTTP and
WebSocket API and once in Chromium; and the bad addresses a user may type."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from graphflow.viewer.remote import ViewError, view_endpoint

from .conftest import REPO, TEST_APP, StreamClient, wait_for

ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def graphflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "graphflow.cli", *args]


class Output:
    """A child's stdout+stderr, read by a thread (so the pipe never fills), searchable by line."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None and not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; got {self.lines}")


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def remote(viewer_target):
    """The viewer test app serving its view on a free port, and `graphflow view --connect` on it."""
    app = subprocess.Popen(graphflow("run", str(TEST_APP.app), *sum((["--set", s] for s in TEST_APP.sets), []),
                                     "--set", "counter/count/tick_period=20Hz", "--no-viewer",
                                     "--serve-view", "0", "--duration", "120", "--quiet"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    view = None
    try:
        address = Output(app).find(r"view --connect (\S+)[ )]").group(1)
        view = subprocess.Popen(graphflow("view", "--connect", address, "--viewer-port", "0", "--duration", "120"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        url = Output(view).find(r"viewer: (http://\S+/)").group(1)
        yield {"url": url, "app": app, "view": view, "address": address}
    finally:
        if view is not None:
            _stop(view)
        _stop(app)


@pytest.mark.timeout(90)
def test_the_remote_apps_graph_stats_and_messages_show_in_the_local_viewer(remote):
    url = remote["url"]
    graph = _get(url + "api/graph")
    assert graph["name"] == "viewer_test"
    assert {n["name"] for n in graph["nodes"]} == {"camera", "pose", "features", "counter", "math"}
    assert {n["process"] for n in graph["nodes"]} == {"remote"}
    # the numbers are the remote app's own: its counter ticks at 20 Hz there, and nowhere here
    first = wait_for(lambda: (s := _get(url + "api/stats"))["components"].get("counter/count", {}).get("ticks", 0) > 5
                     and s, timeout=20, message="remote stats")
    time.sleep(1.2)
    later = _get(url + "api/stats")
    assert later["components"]["counter/count"]["ticks"] > first["components"]["counter/count"]["ticks"]
    assert later["processes"]["remote"]["pid"] == remote["app"].pid
    assert later["processes"]["remote"]["connected"] is True
    # the newest message of a channel nobody watches still arrives (once a second)
    message = wait_for(lambda: _try(url + "api/messages/math/scale/scaled/latest"), timeout=10, message="a message")
    assert message["type"] == "demo/Number"
    value = message["payload"]["value"]["value"]
    assert value % 2 == 0 and value > 0  # gain 2 over a counter: an even number, sent by the remote app
    # a large message (the 2.6 MB picture) crosses only for a window that shows it: until then, a clear 404
    assert later["channels"][TEST_APP.image]["messages"] > 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(url + f"api/messages/{TEST_APP.image}/latest")
    assert refused.value.code == 404 and "only while a window shows the channel" in json.loads(refused.value.read())["error"]


@pytest.mark.timeout(90)
def test_a_watched_channel_streams_every_message_and_images_arrive_as_frames(remote):
    url = remote["url"]
    with StreamClient(url) as ws:
        ws.send({"op": "subscribe", "windows": [
            {"id": "numbers", "renderer": "plot", "channels": ["math/scale/scaled"]},
            {"id": "camera", "renderer": "2d", "channels": [TEST_APP.image, TEST_APP.skeleton],
             "width": 320, "height": 240}]})
        samples = ws.frames({"samples"}, 4, timeout=20)
        values = [v for header, _ in samples for v in _sample_values(header)][1:]  # (the first: the newest
        # message sent before the window opened) then every message of the watched channel, in order:
        # consecutive even numbers (gain 2 over a counter)
        steps = {b - a for a, b in zip(values, values[1:])}
        assert steps == {2.0}, values
        header, body = ws.frames({"frame"}, 1, timeout=20)[0]
        assert header["image"]["channel"] == TEST_APP.image and body[:2] == b"\xff\xd8"  # a JPEG of the remote image
        assert header["image"]["image_width"] == 810  # bus.jpg is 810×1080
        assert [o["channel"] for o in header["overlays"]] == [TEST_APP.skeleton]


@pytest.mark.timeout(60)
def test_a_param_change_in_the_local_viewer_applies_in_the_remote_app(remote):
    url = remote["url"]
    body = json.dumps({"math/scale/gain": 3.0}).encode()
    request = urllib.request.Request(url + "api/config", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["applied"] == {"math/scale/gain": 3.0}
    # the remote app now multiplies by 3: its messages say so (odd multiples of 3 appear)
    wait_for(lambda: (m := _try(url + "api/messages/math/scale/scaled/latest"))
             and m["payload"]["value"]["value"] % 3 == 0 and m["payload"]["value"]["value"] % 2 == 1,
             timeout=15, message="a value scaled by 3 from the remote app")


@pytest.mark.timeout(90)
def test_a_param_changed_through_another_viewer_shows_in_this_one(remote):
    """Two laptops watch one device: what one changes, the other's page shows (pushed on change)."""
    other = subprocess.Popen(graphflow("view", "--connect", remote["address"], "--viewer-port", "0", "--duration", "60"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        other_url = Output(other).find(r"viewer: (http://\S+/)").group(1)
        request = urllib.request.Request(other_url + "api/config", data=json.dumps({"math/scale/gain": 5.0}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["applied"] == {"math/scale/gain": 5.0}
        wait_for(lambda: _get(remote["url"] + "api/config")["components"]["math/scale"]["params"]["gain"]["value"] == 5.0,
                 timeout=15, message="the other viewer's change, here")
    finally:
        _stop(other)


@pytest.mark.timeout(60)
def test_chromium_shows_the_remote_graph_and_an_image(remote, browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(remote["url"])
        page.wait_for_selector("#graph-svg")
        page.wait_for_function("() => document.querySelectorAll('#graph-svg .node').length >= 5", timeout=15000)
        # where the nodes run: the process badge in the top bar and on every node
        page.wait_for_selector('#processes .badge.running[data-process="remote"]', timeout=15000)
        assert page.locator('#graph-svg .node[data-process="remote"]').count() == 5
        # the app's own camera window opens from its ui_config and draws the remote picture
        page.wait_for_function("""() => [...document.querySelectorAll('canvas')].some(c => {
            if (!c.width || !c.height) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 0; i < d.length; i += 4000) if (d[i] || d[i + 1] || d[i + 2]) return true;
            return false; })""", timeout=20000)
    finally:
        context.close()
    assert not errors, errors


def _try(url: str):
    try:
        return _get(url)
    except Exception:
        return None


def _sample_values(header: dict) -> list[float]:
    """The values of a ``samples`` message's points ([acqtime, {"value": v}] each)."""
    return [point[1]["value"] for point in header["points"]]


# -- bad addresses: one line, no hang --------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("address, expected", [
    ("nohost.invalid:5570", "host 'nohost.invalid' is not known"),
    ("127.0.0.1:1", "no graphflow app answered at tcp://127.0.0.1:1 within 1 s"),
    ("localhost:http", "is not a view address"),
    ("udp://10.0.0.1:5", "use tcp://HOST:PORT or ipc:///path"),
])
def test_a_bad_address_is_one_clear_line_and_no_hang(address, expected):
    started = time.monotonic()
    result = subprocess.run(graphflow("view", "--connect", address, "--timeout", "1", "--viewer-port", "0"),
                            capture_output=True, text=True, timeout=20, env=ENV)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert time.monotonic() - started < 15


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_a_bad_command_line(timeout):
    result = subprocess.run(graphflow("view", "--connect", "127.0.0.1:1", "--timeout", timeout, "--viewer-port", "0"),
                            capture_output=True, text=True, timeout=20, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        f"graphflow view: error: argument --timeout: expected a positive number of seconds, got {timeout!r}"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text, endpoint", [("5570", "tcp://127.0.0.1:5570"), ("jetson:5570", "tcp://jetson:5570"),
                                            ("[::1]:5570", "tcp://[::1]:5570"), ("0", "tcp://127.0.0.1:*"),
                                            ("ipc:///tmp/x.sock", "ipc:///tmp/x.sock")])
def test_view_addresses(text, endpoint):
    assert view_endpoint(text) == endpoint


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["", "host:", "host:65536", "host:-1", "tcp://host"])
def test_bad_view_addresses(text):
    with pytest.raises(ViewError):
        view_endpoint(text)


@pytest.mark.timeout(30)
def test_serving_the_view_off_loopback_needs_keys_or_insecure(tmp_path):
    result = subprocess.run(graphflow("run", str(REPO / "apps" / "demo.app.json"), "--no-viewer", "--serve-view",
                                      "0.0.0.0:0", "--max-ticks", "1", "--set", f"sink/writer/path={tmp_path}/n.jsonl"),
                            capture_output=True, text=True, timeout=25, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --serve-view: binding tcp://0.0.0.0:* shows the app to other hosts")


# -- an app split into processes: one viewer for all of them ---------------------------------------
def _split_app(tmp_path, count: int) -> Path:
    """A counter in process a, scaled and written in process b."""
    path = tmp_path / "split.app.json"
    path.write_text(json.dumps({
        "name": "split", "modules": ["demo"],
        "graph": {"nodes": [
            {"name": "counter", "process": "a", "components": [{"name": "count", "type": "demo.Counter"}]},
            {"name": "math", "process": "b", "components": [{"name": "scale", "type": "demo.Scale"}]},
            {"name": "sink", "process": "b", "components": [{"name": "writer", "type": "demo.NumberWriter"}]}],
            "edges": [{"source": "counter/count/number", "target": "math/scale/number"},
                      {"source": "math/scale/scaled", "target": "sink/writer/number"}]},
        "config": {"counter": {"count": {"tick_period": "20Hz", "count": count}},
                   "math": {"scale": {"gain": 2.0}},
                   "sink": {"writer": {"path": str(tmp_path / "numbers.jsonl")}}}}))
    return path


@pytest.mark.timeout(120)
def test_the_viewer_of_a_split_app_shows_every_process_its_nodes_stats_and_crossing_channels(tmp_path):
    supervisor = subprocess.Popen(graphflow("run", str(_split_app(tmp_path, 0)), "--viewer-port", "0",
                                            "--duration", "60", "--quiet"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                                  start_new_session=True)
    try:
        url = Output(supervisor).find(r"viewer: (http://\S+/) \(the whole app: 2 processes\)").group(1)
        graph = _get(url + "api/graph")
        assert {n["name"]: n["process"] for n in graph["nodes"]} == {"counter": "a", "math": "b", "sink": "b"}
        crossing = [e for e in graph["edges"] if e["source_process"] != e["target_process"]]
        assert [(e["source"], e["source_process"], e["target_process"]) for e in crossing] == \
            [("counter/count/number", "a", "b")]
        assert graph["processes"]["a"]["nodes"] == ["counter"] and graph["processes"]["b"]["nodes"] == ["math", "sink"]
        stats = wait_for(lambda: (s := _get(url + "api/stats"))["processes"]["b"]["connected"]
                         and s["processes"]["a"]["connected"] and "math/scale" in s["components"]
                         and "counter/count" in s["components"]  # (each one's stats come just after its hello)
                         and s["components"]["math/scale"]["ticks"] > 3 and s, timeout=30, message="both processes")
        pids = {name: p["pid"] for name, p in stats["processes"].items()}
        children = {pid for pid in pids.values()}
        assert len(children) == 2 and supervisor.pid not in children
        for pid in children:  # the pids are the supervisor's own children (the processes of the app)
            assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(supervisor.pid)
        assert "counter/count" in stats["processes"]["a"]["components"]
        assert "math/scale" in stats["processes"]["b"]["components"]
        # a message of process b's channel, shown by the one viewer
        message = wait_for(lambda: _try(url + "api/messages/math/scale/scaled/latest"), timeout=10, message="b's message")
        assert message["payload"]["value"]["value"] % 2 == 0
    finally:
        _stop(supervisor)


@pytest.mark.timeout(120)
def test_the_job_report_of_a_split_app_lists_the_channels_across_processes(tmp_path):
    result = subprocess.run(graphflow("run", str(_split_app(tmp_path, 30)), "--no-viewer",
                                      "--stats-json", str(tmp_path / "report.json")),
                            capture_output=True, text=True, timeout=100, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    [crossing] = report["crossings"]
    assert (crossing["source"], crossing["from"], crossing["to"]) == ("counter/count/number", "a", "b")
    assert crossing["targets"] == ["math/scale/number"]
    assert crossing["sent"] == crossing["received"] == 30 and crossing["dropped"] == 0
    assert "channels across processes" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("counter/count/number") and "→" in line)
    assert line.split()[1:6] == ["a", "→", "b", "30", "30"]


@pytest.mark.timeout(120)
def test_with_curve_keys_the_right_server_key_connects_and_a_wrong_one_is_one_clear_line(tmp_path):
    from graphflow.channels.security import make_keys

    make_keys("app", tmp_path / "keys")
    make_keys("other", tmp_path / "keys")
    app = subprocess.Popen(graphflow("run", str(REPO / "apps" / "demo.app.json"), "--no-viewer", "--quiet",
                                     "--set", "ticker/ones/count=100000", "--set", "ticker/tens/count=100000",
                                     "--set", f"sink/writer/path={tmp_path}/n.jsonl", "--duration", "60",
                                     "--serve-view", "0", "--serve-view-key", str(tmp_path / "keys" / "app.key_secret")),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        address = Output(app).find(r"view --connect (\S+)[ )]").group(1)
        wrong = subprocess.run(graphflow("view", "--connect", address, "--server-key", str(tmp_path / "keys" / "other.key"),
                                         "--timeout", "5", "--viewer-port", "0"),
                               capture_output=True, text=True, timeout=30, env=ENV)
        assert wrong.returncode == 2
        [line] = wrong.stderr.strip().splitlines()
        assert line == (f"error: cannot connect to tcp://{address}: security handshake failed: wrong --server-key "
                        f"(not the other end's public key)"), line
        plain = subprocess.run(graphflow("view", "--connect", address, "--timeout", "2", "--viewer-port", "0"),
                               capture_output=True, text=True, timeout=30, env=ENV)
        assert plain.returncode == 2 and plain.stderr.count("\n") == 1, plain.stderr
        assert plain.stderr.strip().endswith("the other end uses CURVE keys (give its --server-key), or is no "
                                             "graphflow app") or \
            "no graphflow app answered" in plain.stderr, plain.stderr
        right = subprocess.Popen(graphflow("view", "--connect", address, "--server-key", str(tmp_path / "keys" / "app.key"),
                                           "--viewer-port", "0", "--duration", "30"),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        try:
            url = Output(right).find(r"viewer: (http://\S+/)").group(1)
            assert _get(url + "api/graph")["name"] == "demo"
            wait_for(lambda: _try(url + "api/messages/ticker/ones/number/latest"), timeout=10, message="a message")
        finally:
            _stop(right)
    finally:
        _stop(app)


@pytest.mark.timeout(120)
def test_the_viewer_notices_a_remote_app_that_dies_and_resumes_when_it_is_started_again(tmp_path):
    import socket

    with socket.socket() as probe:  # a free port, for both runs of the app
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = graphflow("run", str(REPO / "apps" / "demo.app.json"), "--no-viewer", "--quiet", "--duration", "60",
                        "--serve-view", str(port), "--set", "ticker/ones/count=100000", "--set",
                        "ticker/tens/count=100000", "--set", f"sink/writer/path={tmp_path}/n.jsonl")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    second = view = None
    try:
        Output(first).find(r"view --connect")
        view = subprocess.Popen(graphflow("view", "--connect", f"127.0.0.1:{port}", "--viewer-port", "0",
                                          "--duration", "60"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        said = Output(view)
        url = said.find(r"viewer: (http://\S+/)").group(1)
        assert _get(url + "api/stats")["processes"]["remote"]["pid"] == first.pid
        first.kill()
        said.find(rf"lost remote at tcp://127.0.0.1:{port} \(silent 3 s\)", timeout=10)
        assert _get(url + "api/stats")["processes"]["remote"]["connected"] is False
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        said.find(rf"restarted \(pid {second.pid}\)", timeout=30)
        stats = wait_for(lambda: (s := _get(url + "api/stats"))["processes"]["remote"]["connected"] and s,
                         timeout=10, message="connected again")
        assert stats["processes"]["remote"]["pid"] == second.pid
    finally:
        for process in (view, second, first):
            if process is not None:
                _stop(process)


@pytest.mark.timeout(30)
def test_pushed_param_values_apply_where_they_differ_and_bad_ones_are_refused():
    from graphflow.app import App
    from graphflow.viewer.remote import _apply_params
    app = App.load(REPO / "apps" / "demo.app.json")
    _apply_params(app, {"arith.scale": {"scale": {"gain": 7.0}}, "elsewhere": {"x": {"y": 1}}})
    assert app.components["arith.scale/scale"].param_values()["gain"] == 7.0
    _apply_params(app, {"arith.scale": {"scale": {"gain": "not a number"}}})  # this side's type check refuses it
    assert app.components["arith.scale/scale"].param_values()["gain"] == 7.0
    for bad in ([], "x", None):
        with pytest.raises(ValueError, match="must be an object"):
            _apply_params(app, bad)
    _apply_params(app, {"arith.scale": 3, "n": {"c": [1]}})  # malformed levels are skipped, nothing raised


def test_the_serve_view_hint_names_an_address_a_viewer_can_reach_and_the_keys(tmp_path):
    """A wildcard bind was shown as 'view --connect 0.0.0.0:PORT', and a keyed one without the keys
    the viewer needs (found by a newcomer walkthrough)."""
    import socket

    keys = tmp_path / "keys"
    for name, folder in (("device", keys), ("laptop", keys / "clients")):
        assert subprocess.run([sys.executable, "-m", "graphflow.cli", "keys", name, "--dir", str(folder)],
                              capture_output=True, timeout=30).returncode == 0
    demo = Path(__file__).resolve().parents[2] / "apps" / "demo.app.json"
    for bind, extra, hint in (
            ("127.0.0.1:0", [], "graphflow view --connect 127.0.0.1:"),
            ("0.0.0.0:0", ["--serve-view-key", str(keys / "device.key_secret"), "--serve-view-clients",
                           str(keys / "clients")],
             f"graphflow view --connect {socket.gethostname()}:")):
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(demo), "--no-viewer", "--quiet",
                                 "--serve-view", bind, *extra, "--duration", "0.5"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        line = result.stdout.splitlines()[0]
        assert hint in line, line
        assert (f"--server-key {keys / 'device.key'} --key YOUR.key_secret)" in line) == bool(extra), line
