"""The real page in headless Chromium (Playwright) on the flagship app, apps/openpose.app.json
(real model, one picture in a loop): graph, image window with the skeleton overlay, channel
toggles, live params of the decoder, inspector of the model's output. Screenshots go to
$GRAPHFLOW_SCREENSHOTS if set."""
from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def viewer_target(openpose_target):
    """These tests run on the OpenPose app (conftest's ``running`` starts it once for the module)."""
    return openpose_target


def tensor_window(page, target):
    """The inspector window on the tensor channel: the app's own, or one opened from the channel tree."""
    if target.tensor_window:
        return window(page, target.tensor_window)
    page.locator(f'#channels-panel [data-channel-row="{target.tensor}"] button', has_text="inspect").click()
    return window(page, target.tensor.split("/", 1)[1] + " inspector")


def joint_count(running) -> int:
    return int((running.joints(running.target.skeleton)[..., 2] > 0).sum())


def window(page, name):
    return page.locator(f'.window[data-window="{name}"]')


def counter(locator, attribute: str) -> int:
    return int(locator.get_attribute(f"data-{attribute}") or 0)


def save(path: Path, data: bytes) -> np.ndarray:
    path.write_bytes(data)
    folder = os.environ.get("GRAPHFLOW_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / path.name).write_bytes(data)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def hsl_green_to_red(score: float) -> np.ndarray:
    """RGB of hsl(120·score, 100%, 50%), the joint colour."""
    h = round(120 * min(max(score, 0.0), 1.0))
    return np.array([255, 255 * h / 60, 0] if h < 60 else [255 * (120 - h) / 60, 255, 0], float)


def test_graph_renders_with_live_stats(page, running):
    graph = running.get("/api/graph")
    assert page.locator("#graph-svg g.node").count() == len(graph["nodes"])
    assert page.locator("#graph-svg g.edge").count() == len(graph["edges"])
    component = running.target.image.rsplit("/", 1)[0]
    stats = page.locator(f'#graph-svg g.comp[data-component="{component}"] .comp-stats')
    wait_for(lambda: "Hz" in stats.text_content() and "p90" in stats.text_content(), message="component stats")
    edge = page.locator(f'#graph-svg g.edge[data-channel="{running.target.image}"] text.rate').first
    wait_for(lambda: "msg/s" in edge.text_content() and not edge.text_content().startswith("0.0"),
             message="edge rate")
    assert page.locator("#run-state").text_content() == "running"
    assert page.locator("#timeline").count() == 0  # a live app: no recording's timeline


def test_image_window_shows_the_frame_with_the_skeleton_overlay(page, running, tmp_path):
    target = running.target
    win = window(page, target.image_window)

    def shown() -> dict:  # the frame's attributes and its note, read at one instant
        return win.evaluate("el => ({frames: +(el.dataset.frames || 0), joints: +(el.dataset.joints || 0), "
                            "synced: el.dataset.synced, note: el.querySelector('.win-note').textContent})")

    frame = wait_for(lambda: (s := shown())["frames"] >= 2 and s["joints"] > 0 and s["synced"] == "true" and s,
                     timeout=10, message="frames with their skeletons")
    assert frame["note"] == ""  # a synced frame carries no "overlay not in sync" note
    canvas = win.locator("canvas")
    shot = save(tmp_path / "overlay.png", canvas.screenshot())
    H, W = shot.shape[:2]
    running.latest(target.skeleton)
    joints = running.joints(target.skeleton)  # one picture in a loop: every frame has the same joints
    image = running.latest(target.image)["payload"]["pixels"]["shape"]
    ih, iw = image[:2]
    scale = min(W / iw, H / ih)
    ox, oy = (W - iw * scale) / 2, (H - ih * scale) / 2
    # 1. every found joint is a dot of its score's colour, where the joint is in the image
    found = [(x, y, s) for person in joints for x, y, s in person if s > 0]
    assert found and len(found) == counter(win, "joints")
    for x, y, s in found:
        cx, cy = round(ox + x * scale), round(oy + y * scale)
        rgb = np.median(shot[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3), axis=0)[::-1]
        assert np.abs(rgb - hsl_green_to_red(s)).max() < 40, (x, y, s, rgb)
    # 2. the rest is the picture itself (compare with the server's own rendering of the latest frame)
    dw, dh = round(iw * scale), round(ih * scale)
    with urllib.request.urlopen(running.url + f"api/messages/{target.image}/latest/image?width={dw}&height={dh}") as r:
        reference = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
    drawn = shot[round(oy):round(oy) + dh, round(ox):round(ox) + dw]
    reference = cv2.resize(reference, (drawn.shape[1], drawn.shape[0]))
    assert np.median(np.abs(drawn.astype(int) - reference.astype(int))) < 12
    assert drawn.std() > 20  # a real picture, not a flat fill
    # 3. hovering a joint tells its name and confidence
    x, y, s = found[0]
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + ox + x * scale + 2, box["y"] + oy + y * scale + 1)
    tooltip = win.locator(".tooltip")
    tooltip.wait_for(state="visible")
    assert f"score {s:.2f}" in tooltip.text_content()


def test_switching_a_channel_off_stops_its_updates(page, running):
    target = running.target
    win = tensor_window(page, target)
    wait_for(lambda: counter(win, "updates") >= 2, message="inspector updates")
    page.locator(f'#channels-panel input[data-channel="{target.tensor}"]').uncheck()
    assert not win.locator(f'input[data-channel="{target.tensor}"]').is_checked()  # the window follows
    wait_for(lambda: all(target.tensor not in w.channels for c in running.server.clients.values()
                         for w in c.windows.values()), message="the server to drop the channel")
    time.sleep(0.3)  # what was already in flight
    before = counter(win, "updates")
    time.sleep(1.5)
    assert counter(win, "updates") == before
    assert win.locator(".win-status").text_content() == "(off)"
    page.locator(f'#channels-panel input[data-channel="{target.tensor}"]').check()
    wait_for(lambda: counter(win, "updates") > before, message="updates after switching back on")


def test_editing_a_param_in_the_page_changes_what_the_node_outputs(page, running):
    target = running.target
    low, high = target.param_values
    win = window(page, target.image_window)
    wait_for(lambda: counter(win, "joints") > 0, timeout=10, message="joints")
    assert running.param(target.param) == low
    at_low = joint_count(running)
    page.click('.tabs button[data-tab="params"]')
    row = page.locator(f'.param-row[data-param="{target.param}"]')
    try:
        row.locator("input").fill(str(high))
        row.locator("input").press("Enter")
        row.locator(".param-ok").wait_for()
        assert running.param(target.param) == high
        at_high = wait_for(lambda: (n := joint_count(running)) != at_low and str(n), message="new output")
        assert int(at_high) < at_low  # a higher threshold: fewer joints
        wait_for(lambda: counter(win, "joints") == joint_count(running), message="the overlay to follow")
    finally:
        running.post("/api/config", {target.param: low})


def test_a_bad_edit_is_refused_with_a_visible_error(page, running, tmp_path):
    target = running.target
    before = running.param(target.param)
    page.click('.tabs button[data-tab="params"]')
    row = page.locator(f'.param-row[data-param="{target.param}"]')
    for bad, words in ((str(target.bad_value), "expected a value in"), ("abc", "expected float")):
        row.locator("input").fill(bad)
        row.locator("input").press("Enter")
        page.locator("#error-banner").wait_for(state="visible")
        wait_for(lambda: words in page.locator("#error-text").text_content(), message=words)
        assert words in row.locator(".param-error").text_content()
        assert "invalid" in row.locator("input").get_attribute("class")
        assert running.param(target.param) == before
        save(tmp_path / "bad_edit.png", page.screenshot())
        page.click("#error-close")


def test_a_param_read_only_at_start_is_shown_but_not_editable(page, running):
    """The loader's path is read in start(): its input is disabled and says why; a live
    param next to it stays editable."""
    page.click('.tabs button[data-tab="params"]')
    path = page.locator('.param-row[data-param="feeder/image_loader/path"]')
    assert path.locator("input").is_disabled() and "at start only" in path.locator(".ptype").text_content()
    assert "read when the app starts" in path.locator("input").get_attribute("title")
    assert page.locator(f'.param-row[data-param="{running.target.param}"] input').is_enabled()


def test_inspector_shows_tensor_shape_and_heatmap(page, running):
    target = running.target
    win = tensor_window(page, target)
    shape = win.locator(".tensor-shape").first
    shape.wait_for()
    assert shape.text_content() == "shape [" + ", ".join(map(str, target.tensor_shape)) + "]"
    win.locator(".heatmap-toggle").first.click()
    wait_for(lambda: counter(win, "heatmaps") >= 1, message="a heatmap")
    wait_for(lambda: win.locator("img.heatmap-image").evaluate("i => i.naturalWidth") == target.tensor_shape[-1],
             message="the heatmap image")
    index = win.locator(".heatmap-index").first
    index.fill("5")
    index.press("Enter")
    index.blur()
    wait_for(lambda: "channel 5 of" in (win.locator(".heatmap-range").first.text_content() or ""),
             message="heatmap of channel 5")


def test_windows_open_from_the_channel_tree_and_the_graph(page, running):
    target = running.target
    row = page.locator(f'#channels-panel [data-channel-row="{target.plot_channel}"]')
    row.locator("button", has_text="plot").click()
    plot = page.locator('.window[data-renderer="plot"]', has=page.locator(f'input[data-channel="{target.plot_channel}"]'))
    wait_for(lambda: plot.count() >= 1 and counter(plot.first, "updates") >= 2, message="plot updates")
    assert row.locator("input[type=checkbox]").is_checked()
    assert plot.first.locator(".legend label").count() >= 1
    component = target.image.rsplit("/", 1)[0]
    page.locator(f'#graph-svg g.comp[data-component="{component}"]').click()
    ticks = page.locator(f'.window[data-window="{component} ticks"]')
    wait_for(lambda: ticks.locator(".legend label").count() >= 2, message="tick duration series")
