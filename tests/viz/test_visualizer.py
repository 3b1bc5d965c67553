"""viz.Visualizer: skeletons drawn on a real image, joint colours, threshold, sync by acqtime."""

import cv2
import numpy as np
import pytest

from graphflow.testing import Harness
from graphflow.packs.viz.visualizer import Visualizer, auto_thickness, color_bgr
from graphflow.packs.vision.messages import Image, Skeleton2List
from tests.conftest import DATA

BUS = DATA / "images" / "bus.jpg"


def bus_or_grey():
    return cv2.imread(str(BUS)) if BUS.exists() else np.full((1080, 810, 3), 128, np.uint8)


def skeletons(joints, edges, source="bus.jpg"):
    joints = np.asarray(joints, np.float32)
    return Skeleton2List(joints=joints, scores=np.ones(len(joints), np.float32), labels=[], edges=edges,
                         source=source, image_width=810, image_height=1080)


def test_joints_and_limbs_are_drawn_in_openpose_colours():
    pixels = bus_or_grey()
    joints = [[[100, 200, 0.9], [300, 200, 0.8], [300, 500, 0.01], [600, 800, 0.0]],
              [[150, 900, 0.7], [400, 900, 0.7], [0, 0, 0.0], [0, 0, 0.0]]]
    h = Harness(Visualizer, {"min_confidence": 0.05}).start()
    h.feed("image", Image(pixels=pixels, source="bus.jpg", frame=3, fps=12.5), acqtime=1.0)
    h.feed("skeletons", skeletons(joints, [[0, 1], [1, 2], [2, 3]]), acqtime=1.0)
    assert h.run_pending() == 1
    (message,) = h.outputs("annotated")
    out = message.payload
    assert message.acqtime == 1.0 and out.source == "bus.jpg" and out.frame == 3 and out.color_order == "bgr"
    assert out.fps == 12.5  # the writer makes the video at its input's frame rate
    assert out.pixels.shape == pixels.shape
    canvas = out.pixels
    for person, joint in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        x, y = joints[person][joint][:2]
        assert tuple(canvas[y, x]) == color_bgr(joint), (person, joint)
    # limb 0 joins joints 0 and 1: its midpoint has limb colour 0
    assert tuple(canvas[200, 200]) == color_bgr(0)
    assert tuple(canvas[900, 275]) == color_bgr(0)
    # joint 2 is below min_confidence, joint 3 not found: neither they nor their limbs are drawn
    assert np.array_equal(canvas[500, 300], pixels[500, 300])
    assert np.array_equal(canvas[350, 300], pixels[350, 300])
    assert np.array_equal(canvas[800, 600], pixels[800, 600])
    # the input image itself is untouched (messages are shared read-only)
    assert not np.array_equal(canvas, pixels)


def test_colour_order_of_rgb_input_is_converted_to_bgr():
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[..., 0] = 255  # red in RGB
    h = Harness(Visualizer).start()
    h.feed("image", Image(pixels=pixels, color_order="rgb"), acqtime=0.0)
    h.feed("skeletons", skeletons(np.zeros((0, 18, 3)), []), acqtime=0.0)
    h.run_pending()
    out = h.outputs("annotated")[0].payload
    assert out.color_order == "bgr" and tuple(out.pixels[50, 50]) == (0, 0, 255)


def test_images_and_skeletons_are_matched_by_acqtime():
    pixels = np.zeros((200, 200, 3), np.uint8)
    h = Harness(Visualizer, {"tolerance": "1ms"}).start()
    for t in (1.0, 2.0, 3.0):
        h.feed("image", Image(pixels=pixels, frame=int(t)), acqtime=t)
    h.feed("skeletons", skeletons([[[50, 50, 1.0]]], []), acqtime=2.0)
    assert h.run_pending() == 1
    (message,) = h.outputs("annotated")
    assert message.acqtime == 2.0 and message.payload.frame == 2
    assert tuple(message.payload.pixels[50, 50]) == color_bgr(0)


def test_thickness_scales_with_image_size():
    assert auto_thickness(1080, 810) == 3
    assert auto_thickness(100, 100) == 1
    assert auto_thickness(2160, 3840) == 7


@pytest.mark.parametrize("thickness", [1, 6])
def test_explicit_thickness(thickness):
    pixels = np.zeros((100, 100, 3), np.uint8)
    h = Harness(Visualizer, {"thickness": thickness, "draw_joints": False}).start()
    h.feed("image", Image(pixels=pixels), acqtime=0.0)
    h.feed("skeletons", skeletons([[[10, 50, 1], [90, 50, 1]]], [[0, 1]]), acqtime=0.0)
    h.run_pending()
    column = h.outputs("annotated")[0].payload.pixels[:, 50]
    solid = int((column.max(axis=1) > 127).sum())
    assert thickness <= solid <= thickness + 2  # OpenCV's anti-aliased lines come out about 1 px wider
