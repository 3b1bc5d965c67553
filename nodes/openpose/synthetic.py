"""Synthetic OpenPose maps for tests and benchmarks.

``render`` draws people given as part coordinates (map cells) into heatmaps (a Gaussian per
part, max over people, plus a background channel) and PAFs (the unit vector of each limb on
the cells within ``paf_width`` of the segment, averaged where people overlap), following the
OpenPose training targets. ``random_people`` lays out upright people on a grid with random
sub-cell jitter, so a decoder can be checked against known ground truth.
"""
from __future__ import annotations

import numpy as np

from .paf import EDGES, EDGES_PAF, NUM_PARTS

# Upright person facing the camera, relative to the neck, in units of body height
# (the person's right side is on the image left). The head is drawn a bit large so that face
# parts stay > 1 cell apart for people ~15 cells tall.
TEMPLATE = np.array([
    (0.00, -0.16),   # nose
    (0.00, 0.00),    # neck
    (-0.12, 0.01),   # r_shoulder
    (-0.16, 0.18),   # r_elbow
    (-0.18, 0.34),   # r_wrist
    (0.12, 0.01),    # l_shoulder
    (0.16, 0.18),    # l_elbow
    (0.18, 0.34),    # l_wrist
    (-0.07, 0.34),   # r_hip
    (-0.08, 0.56),   # r_knee
    (-0.08, 0.78),   # r_ankle
    (0.07, 0.34),    # l_hip
    (0.08, 0.56),    # l_knee
    (0.08, 0.78),    # l_ankle
    (-0.05, -0.21),  # r_eye
    (0.05, -0.21),   # l_eye
    (-0.10, -0.17),  # r_ear
    (0.10, -0.17),   # l_ear
], dtype=np.float64)
TEMPLATE_TOP, TEMPLATE_BOTTOM, TEMPLATE_HALF_WIDTH = -0.21, 0.78, 0.18


def random_people(n: int, shape: tuple[int, int], seed: int = 0, jitter: float = 0.02,
                  margin: float = 2.0) -> np.ndarray:
    """``n`` non-overlapping upright people on a grid filling a map of ``shape`` = (H, W).

    Returns float64 [n, 18, 2] part coordinates (x, y) in map cells. Each person gets a random
    position inside its grid slot, a random scale (80-100 % of the slot) and per-part jitter of
    ``jitter`` x body height, so peaks fall at random sub-cell positions.
    """
    rng = np.random.default_rng(seed)
    H, W = shape
    cols = int(np.ceil(np.sqrt(n * W / H)))
    rows = int(np.ceil(n / cols))
    sh, sw = (H - 2 * margin) / rows, (W - 2 * margin) / cols
    span = TEMPLATE_BOTTOM - TEMPLATE_TOP
    height = min(sh / span, sw / (2 * TEMPLATE_HALF_WIDTH + 0.1))
    out = np.empty((n, NUM_PARTS, 2))
    for i in range(n):
        r, c = divmod(i, cols)
        h = height * rng.uniform(0.8, 1.0)
        x0 = margin + (c + 0.5) * sw + rng.uniform(-0.5, 0.5) * (sw - 2 * TEMPLATE_HALF_WIDTH * h - 1)
        y0 = margin + r * sh + (sh - span * h) * rng.uniform(0.0, 1.0) - TEMPLATE_TOP * h
        pts = TEMPLATE * h + rng.normal(0.0, jitter * h, size=TEMPLATE.shape)
        out[i] = pts + (x0, y0)
    # Keep every part at least one cell inside the map, where sub-cell refinement works.
    np.clip(out[..., 0], 1.0, W - 2.0, out=out[..., 0])
    np.clip(out[..., 1], 1.0, H - 2.0, out=out[..., 1])
    return out


def render(people: np.ndarray, shape: tuple[int, int], sigma: float = 1.0, paf_width: float = 1.0,
           edges=EDGES, edges_paf=EDGES_PAF, peak: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw people into (heatmaps [19, H, W], pafs [2 * len(edges), H, W]), float32.

    people: [P, 18, 2] (x, y) in map cells; a NaN part is absent (no peak, no limbs to it).
    sigma: Gaussian std of a part peak in cells; peak: its height. paf_width: half-width of a
    limb's field in cells. Channel 18 of the heatmaps is background = 1 - max over parts.
    """
    people = np.asarray(people, dtype=np.float64).reshape(-1, NUM_PARTS, 2)
    H, W = shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    hm = np.zeros((NUM_PARTS + 1, H, W), np.float32)
    pafs = np.zeros((2 * (max(edges_paf) + 1), H, W), np.float32)
    if len(people):
        d2 = (xs - people[..., 0, None, None]) ** 2 + (ys - people[..., 1, None, None]) ** 2
        g = peak * np.exp(-d2 / (2 * sigma ** 2))  # [P, 18, H, W]; NaN where absent
        hm[:NUM_PARTS] = np.nan_to_num(g).max(axis=0)
        for (pa, pb), plane in zip(edges, edges_paf):
            a, b = people[:, pa], people[:, pb]  # [P, 2]
            v = b - a
            length = np.hypot(v[:, 0], v[:, 1])
            ok = np.isfinite(length) & (length > 1e-6)
            if not ok.any():
                continue
            a, v, length = a[ok], v[ok], length[ok]
            u = v / length[:, None]
            rx, ry = xs - a[:, 0, None, None], ys - a[:, 1, None, None]
            along = rx * u[:, 0, None, None] + ry * u[:, 1, None, None]
            across = np.abs(rx * u[:, 1, None, None] - ry * u[:, 0, None, None])
            m = (along >= 0) & (along <= length[:, None, None]) & (across <= paf_width)
            cnt = m.sum(0)
            fx = (m * u[:, 0, None, None]).sum(0)
            fy = (m * u[:, 1, None, None]).sum(0)
            nz = cnt > 0
            pafs[2 * plane][nz] = fx[nz] / cnt[nz]
            pafs[2 * plane + 1][nz] = fy[nz] / cnt[nz]
    hm[NUM_PARTS] = 1.0 - hm[:NUM_PARTS].max(axis=0)
    return hm, pafs
