"""Fixtures of the viewer tests.

Everything app-specific lives in a ViewerTarget (channel names, the threshold param and two
values of it giving different joint counts). ``viewer_target`` is the small test app (fast: the
API tests); ``openpose_target`` is the flagship app, apps/openpose.app.json with the real model
on one picture in a loop (the browser tests: test_browser.py overrides ``viewer_target`` with it).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, MODELS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODEL_DIR = Path(os.environ.get("GRAPHFLOW_MODEL_PATH") or MODELS)
BUS = Path(os.environ.get("GRAPHFLOW_TEST_IMAGE") or DATA / "images" / "bus.jpg")
# OpenPose input: astronaut.png (public domain, one person: small, so fast on a CPU)
OPENPOSE_IMAGE = Path(os.environ.get("GRAPHFLOW_OPENPOSE_IMAGE") or DATA / "images" / "astronaut.png")
CHROMIUM = os.environ.get("GRAPHFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing(what: str) -> None:
    """Something a test needs is not there: in CI that fails the run (nothing but CUDA may skip
    there), elsewhere the test is skipped with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI runs every viewer test: install or stage it)", pytrace=False)
    pytest.skip(what)


@dataclass
class ViewerTarget:
    app: Path
    sets: list[str]              # --set overrides (NODE/COMPONENT/PARAM=VALUE)
    image: str                   # an image channel (render "image")
    skeleton: str                # a skeleton2 channel drawn over it
    image_window: str            # the app's ui_config 2d window showing both
    tensor: str                  # a channel with a float tensor
    tensor_path: str             # where the tensor is in its payload (dotted)
    tensor_shape: list[int]
    tensor_window: str | None    # the app's ui_config inspector window on it (None: open one from the channel tree)
    plot_channel: str            # a channel with scalar fields
    param: str                   # node/component/param that changes how many joints are found
    param_values: tuple          # two valid values of it giving different joint counts
    bad_value: object = 2.5      # a value the param refuses (out of range)
    extra: dict = field(default_factory=dict)


TEST_APP = ViewerTarget(
    app=HERE / "app" / "viewer_test.app.json", sets=[f"camera/source/path={BUS}"],
    image="camera/source/image", skeleton="pose/detector/skeletons", image_window="camera",
    tensor="features/heatmaps/tensors", tensor_path="tensors.0", tensor_shape=[19, 46, 54],
    tensor_window="heatmaps", plot_channel="math/scale/scaled",
    param="pose/detector/threshold", param_values=(0.5, 0.8), bad_value=2.5)



def openpose(image: Path, out: Path) -> ViewerTarget:
    """apps/openpose.app.json on ``image`` in a loop at 5 Hz (leaves CPU to the browser), writers into ``out``."""
    return ViewerTarget(
        app=REPO / "apps" / "openpose.app.json",
        sets=[f"feeder/image_loader/path={image}", "feeder/image_loader/loop=true",
              "feeder/image_loader/tick_period=5Hz", f"image_writer/image_writer/folder={out}",
              f"predictions/prediction_writer/folder={out}"],
        image="feeder/image_loader/color", skeleton="decoder.refine/refine_part_coordinates/skeletons_out",
        image_window="poses", tensor="inference/tensor_rt_inference/output", tensor_path="tensors.0",
        tensor_shape=[1, 19, 46, 46], tensor_window=None,  # heatmaps of a 512×512 picture: 368 rows → 46×46
        plot_channel="decoder.refine/refine_part_coordinates/skeletons_out",
        param="decoder.part_candidates/part_candidates/threshold_heatmap", param_values=(0.05, 0.9),
        bad_value=5.0)


@pytest.fixture(scope="session")
def viewer_target() -> ViewerTarget:
    if not BUS.exists():
        missing(f"test image {BUS} is missing (set GRAPHFLOW_SHARED or GRAPHFLOW_TEST_IMAGE)")
    _require_module("cv2")
    return TEST_APP


def _require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError:
        missing(f"python module {name} is missing (pip install -e .[dev])")


@pytest.fixture(scope="session")
def openpose_target(tmp_path_factory) -> ViewerTarget:
    """The flagship app on the models of GRAPHFLOW_MODEL_PATH (else the shared folder); the app
    runs for a whole module, so the variable is set here for the session."""
    if not (MODEL_DIR / "openpose_mobilenet_thin.onnx").exists():
        missing(f"models not found at {MODEL_DIR} (set GRAPHFLOW_MODEL_PATH)")
    if not OPENPOSE_IMAGE.exists():
        missing(f"test image {OPENPOSE_IMAGE} is missing (set GRAPHFLOW_SHARED or GRAPHFLOW_OPENPOSE_IMAGE)")
    _require_module("cv2")
    _require_module("onnxruntime")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHFLOW_MODEL_PATH", str(MODEL_DIR))
        yield openpose(OPENPOSE_IMAGE, tmp_path_factory.mktemp("openpose_out"))


class Running:
    """An app running in this process with a viewer on a free port."""

    def __init__(self, target: ViewerTarget, **server_options):
        from graphflow.app import App
        from graphflow.viewer import ViewerServer

        self.target = target
        self.app = App.load(target.app, sets=target.sets)
        self.server = ViewerServer("127.0.0.1", 0, **server_options).attach(self.app).start()
        self.url = self.server.url
        self.thread = threading.Thread(target=self.app.run, name="test-app", daemon=True)
        self.thread.start()

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body, *, raw: bytes | None = None, ctype="application/json", headers=None):
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method="POST",
                                         headers={"Content-Type": ctype, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def latest(self, channel: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(f"/api/messages/{channel}/latest")
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def joints(self, channel: str) -> np.ndarray:
        """[people, joints, (x, y, score)] of the latest skeleton2 message, in full (the JSON
        summary lists values only for small arrays)."""
        _, message = self.server.api.latest(channel)
        return np.asarray(message.payload.joints, float).reshape(-1, len(message.payload.labels), 3)

    def param(self, path: str):
        node, comp, name = path.split("/")
        return self.get("/api/config")["config"][node][comp][name]

    def close(self) -> None:
        self.app.request_stop()
        self.thread.join(timeout=10)
        self.server.close()


@pytest.fixture(scope="module")
def running(viewer_target):
    app = Running(viewer_target)
    try:
        app.latest(viewer_target.skeleton, timeout=10)
        yield app
    finally:
        app.close()


def found_joints(message: dict) -> int:
    """Joints with score > 0 in an inspected skeleton2 message."""
    joints = message["payload"]["joints"]
    if "values" in joints:
        return sum(1 for person in joints["values"] for j in person if j[2] > 0)
    raise AssertionError("skeleton too large to count from the summary")


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


# -- browser ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None or not Path(CHROMIUM).exists():
        missing("chromium is missing (apt-get install -y chromium, or set GRAPHFLOW_CHROMIUM)")
    _require_module("playwright")
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, running):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(running.url)
    page.wait_for_selector("#graph-svg")
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


# -- a WebSocket client for the tests (aiohttp's, driven synchronously on a loop of its own) ----
class StreamClient:
    """``/api/stream`` as a test sees it: ``send`` JSON, ``recv`` (header, body) pairs."""

    def __init__(self, url: str, headers: dict | None = None):
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        self.ws = self.loop.run_until_complete(
            self.session.ws_connect(url.replace("http://", "ws://") + "api/stream", headers=headers or {},
                                    max_msg_size=1 << 28))

    async def _session(self):
        import aiohttp
        return aiohttp.ClientSession()

    def send(self, value) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.loop.run_until_complete(self.ws.send_str(text))

    def recv(self, timeout: float = 10.0):
        """The next message as (header dict, body bytes); raises EOFError when the stream closed."""
        import aiohttp

        message = self.loop.run_until_complete(self.ws.receive(timeout=timeout))
        if message.type == aiohttp.WSMsgType.TEXT:
            return json.loads(message.data), b""
        if message.type == aiohttp.WSMsgType.BINARY:
            data = message.data
            n = struct.unpack(">I", data[:4])[0]
            return json.loads(data[4:4 + n]), data[4 + n:]
        raise EOFError(f"stream closed ({message.type.name}, code {self.ws.close_code})")

    def frames(self, kinds: set, count: int, timeout: float = 10.0) -> list:
        """Read until ``count`` messages of the given types arrived."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {kinds}; got {[g[0]['type'] for g in got]}"
            header, body = self.recv(left)
            if header["type"] in kinds:
                got.append((header, body))
        return got

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.ws.close())
        self.loop.run_until_complete(self.session.close())
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
