"""``graphflow view FILE.mcap`` in headless Chromium: the recorded OpenPose app's page with a
timeline; seek and step, and the image window shows the recorded frame with its skeleton."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from graphflow.recording.reader import Recording

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

IMAGE = "feeder/image_loader/color"
SKELETONS = "decoder.refine/refine_part_coordinates/skeletons_out"
WINDOW = "poses"  # apps/openpose.app.json's ui_config window: the image with the skeletons


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from tests.conftest import DATA, MODELS, REPO

    images = DATA / "coco_val2017_mini" / "images"
    if not images.exists() or not (MODELS / "openpose_mobilenet_thin.onnx").exists():
        pytest.skip("shared data or models not found")
    folder = tmp_path_factory.mktemp("view")
    chosen = folder / "images"
    chosen.mkdir()
    for path in sorted(images.iterdir())[:4]:
        shutil.copy(path, chosen / path.name)
    import os

    env = {**os.environ, "GRAPHFLOW_MODEL_PATH": str(MODELS)}
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(REPO / "apps" / "openpose.app.json"),
                             "--no-viewer", "--quiet", "--input", str(chosen), "--output", str(folder / "out"),
                             "--record", str(folder / "run.mcap")], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return folder / "run.mcap"


@pytest.fixture(scope="module")
def frames(recording):
    """Per recorded frame: acqtime, pixels, found joints (independent of the viewer: the file)."""
    with Recording(recording) as rec:
        images = {m.log_time: m.fields()[2]["pixels"].copy() for m in rec.messages([IMAGE])}
        joints = {m.log_time: int((m.fields()[2]["joints"][..., 2] > 0).sum()) for m in rec.messages([SKELETONS])}
        start = rec.start_time
    assert len(images) == 4 and images.keys() == joints.keys()
    return [{"log_time": t, "seconds": (t - start) / 1e9, "acqtime": t / 1e9, "pixels": images[t], "joints": joints[t]}
            for t in sorted(images)]


@pytest.fixture(scope="module")
def served(recording):
    from graphflow.recording.view import serve

    session, player = serve(recording, port=0)
    yield session, player
    player.close()
    session.close()


@pytest.fixture(scope="module")
def browser():
    from tests.viewer.conftest import CHROMIUM, CHROMIUM_ARGS

    if CHROMIUM is None:
        pytest.fail("chromium is missing (apt-get install -y chromium)")
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served):
    session, _ = served
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(session.url)
    page.wait_for_selector("#timeline")
    page.wait_for_selector(f'.window[data-window="{WINDOW}"] canvas')
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def wait_for(check, timeout=30.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def shown(page) -> dict:
    return page.locator(f'.window[data-window="{WINDOW}"]').evaluate(
        "el => ({acqtime: +el.dataset.acqtime, joints: +(el.dataset.joints || 0), synced: el.dataset.synced})")


def bar(page) -> dict:
    return page.locator("#timeline").evaluate(
        "el => ({index: +el.dataset.index, acqtime: +el.dataset.acqtime, playing: el.dataset.playing})")


def shows_frame(page, frame) -> bool:
    now = shown(page)
    return abs(now["acqtime"] - frame["acqtime"]) < 1e-6 and now["joints"] == frame["joints"]


def closest_frame(page, frames) -> int:
    """Which recorded frame the canvas shows: the drawn image region against each frame's pixels."""
    canvas = page.locator(f'.window[data-window="{WINDOW}"] canvas')
    shot = cv2.imdecode(np.frombuffer(canvas.screenshot(), np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
    height, width = shot.shape[:2]
    errors = []
    for frame in frames:
        ih, iw = frame["pixels"].shape[:2]
        scale = min(width / iw, height / ih)
        w, h = int(iw * scale), int(ih * scale)
        x, y = (width - w) // 2, (height - h) // 2
        drawn = shot[y + 2:y + h - 2, x + 2:x + w - 2]
        expected = cv2.resize(frame["pixels"], (w, h), interpolation=cv2.INTER_AREA)[2:-2, 2:-2].astype(np.float32)
        if drawn.shape != expected.shape:
            errors.append(np.inf)
            continue
        errors.append(float(np.median(np.abs(drawn - expected))))
    return int(np.argmin(errors))


def post(session, body) -> dict:
    request = urllib.request.Request(session.url + "api/recording", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_seek_shows_the_recorded_frame_with_its_skeleton(page, served, frames):
    for target in (2, 0, 3):
        frame = frames[target]
        page.locator("#tl-seek").evaluate(
            f"el => {{ el.value = {frame['seconds'] + 1e-4}; el.dispatchEvent(new Event('change')); }}")
        wait_for(lambda: shows_frame(page, frame), message=f"frame {target} with {frame['joints']} joints")
        assert shown(page)["synced"] == "true"
        assert closest_frame(page, frames) == target
        assert abs(bar(page)["acqtime"] - frame["acqtime"]) < 1e-6


def test_step_moves_one_message_and_reaches_the_next_frame(page, served, frames):
    session, player = served
    post(session, {"action": "seek", "time": frames[1]["seconds"]})
    wait_for(lambda: shows_frame(page, frames[1]), message="frame 1")
    before = wait_for(lambda: bar(page)["index"] == player.index and bar(page), message="the bar at the seek")
    page.locator("#tl-step").click()
    wait_for(lambda: bar(page)["index"] == before["index"] + 1, message="one message on")
    assert player.index == before["index"] + 1 and bar(page)["playing"] == "false"
    steps = 1
    while player.times[player.index][0] < frames[2]["log_time"] or player.times[player.index][1] != SKELETONS:
        page.locator("#tl-step").click()
        steps += 1
        wait_for(lambda: bar(page)["index"] == before["index"] + steps, message=f"step {steps}")
        assert steps < 200
    wait_for(lambda: shows_frame(page, frames[2]), message="frame 2 after stepping")
    assert closest_frame(page, frames) == 2
    page.locator("#tl-back").click()  # one message back
    wait_for(lambda: bar(page)["index"] == before["index"] + steps - 1, message="one message back")


def test_play_pause_and_rate(page, served, frames):
    session, player = served
    post(session, {"action": "seek", "time": 0.0})
    page.locator("#tl-rate").select_option("4")
    page.locator("#tl-play").click()
    # At 4x a short recording may play to its end between two looks: playing, or already at the end.
    wait_for(lambda: bar(page)["playing"] == "true" or player.index == len(player.times) - 1, message="playing")
    wait_for(lambda: shows_frame(page, frames[-1]), timeout=60, message="the last frame, played")
    wait_for(lambda: bar(page)["playing"] == "false", message="stopped at the end")
    assert player.rate == 4.0 and player.index == len(player.times) - 1


def test_timeline_refuses_bad_requests(served):
    session, _ = served
    for body, expected in (({"action": "fly"}, "expected"), ({"action": "seek"}, "time"),
                           ({"action": "play", "rate": 0}, "rate"), ({"action": "step", "count": 0}, "count")):
        with pytest.raises(urllib.error.HTTPError) as error:
            post(session, body)
        assert error.value.code == 400 and expected in json.loads(error.value.read())["error"]


def test_a_damaged_chunk_is_skipped_and_the_page_says_so(browser, recording, tmp_path):
    """One flipped byte inside a middle chunk: playing through the recording skips that chunk's
    messages, /api/recording lists the chunk (byte offset and why) and the timeline says so."""
    from graphflow.recording.view import serve

    with Recording(recording) as rec:
        chunks = sorted(rec._chunks)
        every = len(list(rec.messages()))
    assert len(chunks) >= 3
    middle = chunks[len(chunks) // 2]
    raw = bytearray(recording.read_bytes())
    raw[middle.offset + middle.length - 20] ^= 0xFF  # inside the chunk's records
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(bytes(raw))
    session, player = serve(damaged, port=0)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(session.url)
        page.wait_for_selector("#timeline")
        assert post(session, {"action": "seek", "time": 0.0})["damaged"] == []  # nothing read yet, nothing known
        assert page.locator("#tl-damaged").inner_text() == ""
        state = post(session, {"action": "step", "count": len(player.times)})  # every message, one by one
        assert state["index"] == len(player.times) - 1 == every - 1
        assert [d["offset"] for d in state["damaged"]] == [middle.offset] and state["damaged"][0]["why"]
        wait_for(lambda: page.locator("#tl-damaged").inner_text() == "⚠ 1 damaged chunk skipped",
                 message="the timeline's damaged-chunk note")
        assert str(middle.offset) in page.locator("#tl-damaged").get_attribute("title")
    finally:
        context.close()
        player.close()
        session.close()


def test_params_of_a_recording_are_shown_but_cannot_change(page, served):
    """Nothing runs in a recording's app: a param change is refused (before: 200 "applied", and
    nothing happened), and the page shows every param with its input disabled."""
    session, _ = served
    config = json.loads(urllib.request.urlopen(session.url + "api/config", timeout=10).read())
    assert config["editable"] is False
    request = urllib.request.Request(session.url + "api/config", method="POST",
                                     data=json.dumps({"decoder.part_candidates/part_candidates/threshold_heatmap": 0.5}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 400 and "nothing runs" in json.loads(error.value.read())["error"]
    rows = page.locator(".param-row")
    assert rows.count() > 20
    assert page.locator(".param-row input:not([disabled]), .param-row select:not([disabled])").count() == 0
