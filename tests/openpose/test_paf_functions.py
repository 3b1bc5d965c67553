"""Tests of the plain OpenPose PAF decoding functions (nodes/openpose/paf.py).

Synthetic maps come from nodes/openpose/synthetic.py; the regression test uses the golden
bus.jpg model output in shared/data/reference (skipped when absent). No onnxruntime needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from graphflow.packs.openpose import paf, synthetic  # noqa: E402
from graphflow.packs.openpose.paf import EDGES, NUM_PARTS  # noqa: E402

SHAPE = (46, 54)
REFERENCE = Path(os.environ.get("GRAPHFLOW_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data" / "reference" / \
    "openpose_mobilenet_thin_bus_368x432.npz"
CELLS = dict(output_scale=1.0, offset=0.0)  # decode in map cells


def gaussian_map(shape, centres, sigma=1.0, value=1.0):
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    m = np.zeros(shape, np.float32)
    for x, y in centres:
        m = np.maximum(m, value * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
    return m


def match(skel, people):
    """For each true person, the max joint error (cells) of the best skeleton, and its index."""
    out = []
    for p in people:
        d = np.hypot(skel.parts[:, :, 0] - p[None, :, 0], skel.parts[:, :, 1] - p[None, :, 1])
        present = ~np.isnan(p[:, 0])
        worst = np.where(np.isnan(d[:, present]), np.inf, d[:, present]).max(1)
        i = int(np.argmin(worst))
        out.append((worst[i], i))
    return out


def run_steps(hm, pf, **kw):
    """The decode chain step by step, returning every intermediate."""
    p = {**paf.DEFAULTS, **kw}
    hm = hm[:NUM_PARTS]
    pooled = paf.max_pool(hm, p["kernel"])
    peak_map = paf.non_maximum_suppression(hm, pooled)
    peaks = paf.peak_candidates(hm, peak_map, p["refine"])
    parts = paf.part_candidates(peaks, p["threshold_heatmap"])
    cand = paf.edge_candidates(parts, EDGES, p["threshold_edge_size"])
    scored = paf.edge_scores(pf, parts, cand, paf.EDGES_PAF, p["edge_sampling_steps"],
                             p["threshold_sample_score"], p["edge_sampling"])
    kept = paf.edge_threshold(scored, p["threshold_edge_score"], p["threshold_edge_sampling_counter"])
    skel = paf.graph_matching(parts, kept, EDGES)
    merged = paf.merge_split_graphs(skel, parts, scored, p["threshold_split_score"], p["threshold_part_counter"],
                                    p["threshold_object_score"])
    return dict(peak_map=peak_map, peaks=peaks, parts=parts, cand=cand, scored=scored, kept=kept,
                skel=skel, merged=merged)


@pytest.fixture(scope="module")
def five():
    people = synthetic.random_people(5, SHAPE, seed=3)
    hm, pf = synthetic.render(people, SHAPE)
    return people, hm, pf


# ---------------------------------------------------------------------------------- steps 3-6


def test_max_pool_equals_brute_force():
    rng = np.random.default_rng(0)
    h = rng.random((3, 9, 11)).astype(np.float32)
    for k in (1, 3, 5):
        r = k // 2
        pad = np.pad(h, ((0, 0), (r, r), (r, r)), constant_values=-np.inf)
        ref = np.max([pad[:, i:i + 9, j:j + 11] for i in range(k) for j in range(k)], axis=0)
        np.testing.assert_array_equal(paf.max_pool(h, k), ref)
    with pytest.raises(ValueError):
        paf.max_pool(h, 2)


def test_nms_finds_peaks_breaks_ties_and_kernel_suppresses_neighbours():
    h = gaussian_map((12, 14), [(3.2, 4.1), (9.7, 7.6)])[None]
    peaks = paf.non_maximum_suppression(h, paf.max_pool(h))
    assert sorted(zip(*np.nonzero(peaks[0]))) == [(4, 3), (8, 10)]
    # a plateau of two equal maxima (Gaussian centred between two cells) gives one peak
    h = gaussian_map((12, 14), [(5.5, 6.0)])[None]
    assert paf.non_maximum_suppression(h, paf.max_pool(h)).sum() == 1
    # two peaks 2 cells apart: both survive a 3x3 window, one survives a 5x5 window
    h = gaussian_map((12, 14), [(5.0, 6.0), (7.0, 6.0)], sigma=0.5)
    h[6, 7] *= 0.9
    h = h[None]
    assert paf.non_maximum_suppression(h, paf.max_pool(h, 3)).sum() == 2
    assert paf.non_maximum_suppression(h, paf.max_pool(h, 5)).sum() == 1
    # threshold: cells below it are never peaks
    h = gaussian_map((12, 14), [(3.2, 4.1)], value=0.3)[None]
    assert paf.non_maximum_suppression(h, paf.max_pool(h), threshold=0.2).sum() == 1
    assert paf.non_maximum_suppression(h, paf.max_pool(h), threshold=0.4).sum() == 0


@pytest.mark.parametrize("method,tol", [("quadratic", 0.12), ("gaussian", 0.01), ("centroid", 0.3)])
def test_peak_candidates_subpixel(method, tol):
    true = [(3.3, 4.8), (9.6, 7.25)]
    h = gaussian_map((12, 14), true)[None]
    pk = paf.peak_candidates(h, paf.non_maximum_suppression(h, paf.max_pool(h)), method)
    got = sorted(zip(pk.x.tolist(), pk.y.tolist()))
    np.testing.assert_allclose(got, true, atol=tol)
    assert pk.part.dtype == np.int32 and np.all(pk.part == 0)
    np.testing.assert_allclose(pk.score, [h[0, 5, 3], h[0, 7, 10]])
    none = paf.peak_candidates(h, paf.non_maximum_suppression(h, paf.max_pool(h)), "none")
    assert np.all(none.x == np.round(none.x)) and np.all(none.y == np.round(none.y))


def test_part_candidates_threshold_heatmap():
    h = np.stack([gaussian_map((12, 14), [(3.0, 4.0)], value=v) for v in (0.1, 0.3, 0.9)])
    pk = paf.peak_candidates(h, paf.non_maximum_suppression(h, paf.max_pool(h)))
    assert len(paf.part_candidates(pk, 0.05).part) == 3
    kept = paf.part_candidates(pk, 0.2)
    assert kept.part.tolist() == [1, 2] and np.all(kept.score >= 0.2)
    assert len(paf.part_candidates(pk, 0.95).part) == 0


# ---------------------------------------------------------------------------------- steps 7-9


def make_peaks(parts_xy):
    part = np.array([p for p, _, _ in parts_xy], np.int32)
    x = np.array([x for _, x, _ in parts_xy], np.float32)
    y = np.array([y for _, _, y in parts_xy], np.float32)
    return paf.Peaks(part, y, x, np.ones(len(part), np.float32))


def test_edge_candidates_cartesian_product_and_threshold_edge_size():
    # 2 necks, 3 r_hips, 1 l_hip: link (1,8) -> 6 pairs, link (1,11) -> 2 pairs
    pk = make_peaks([(8, 0, 0), (1, 0, 5), (11, 3, 9), (8, 4, 9), (1, 20, 5), (8, 20, 9)])
    c = paf.edge_candidates(pk, [(1, 8), (1, 11), (2, 3)], 0)
    assert len(c.a) == 8
    pairs = {(int(l), int(a), int(b)) for l, a, b in zip(c.link, c.a, c.b)}
    assert pairs == {(0, n, h) for n in (1, 4) for h in (0, 3, 5)} | {(1, 1, 2), (1, 4, 2)}
    np.testing.assert_allclose(c.length, np.hypot(pk.x[c.b] - pk.x[c.a], pk.y[c.b] - pk.y[c.a]))
    # threshold_edge_size drops pairs longer than it (in cells); lowering it drops more
    short = paf.edge_candidates(pk, [(1, 8), (1, 11), (2, 3)], 6.0)
    assert len(short.a) == 4 and np.all(short.length <= 6.0)
    assert len(paf.edge_candidates(pk, [(1, 8), (1, 11)], 1.0).a) == 0
    assert len(paf.edge_candidates(make_peaks([]), EDGES, 0).a) == 0


def test_edge_scores_line_integral():
    # one limb (link 0: neck -> r_hip) pointing right along row 5, field on rows 4-6
    pf = np.zeros((38, 12, 20), np.float32)
    pf[0, 4:7, 3:16] = 1.0
    pk = make_peaks([(1, 3.2, 5.1), (8, 14.6, 5.3), (8, 9.0, 10.5)])
    c = paf.edge_candidates(pk, EDGES, 0)
    s = paf.edge_scores(pf, pk, c, edge_sampling_steps=10)
    good = (c.a == 0) & (c.b == 1)
    assert s.score[good][0] > 0.99 and s.count[good][0] == 10
    other = ~good  # to the peak 5 rows below: crosses the field for a few samples only
    assert s.score[other][0] < 0.5 and s.count[other][0] < 10
    # reversed field: the integral is negative and no sample passes
    r = paf.edge_scores(-pf, pk, c)
    assert r.score[good][0] < -0.99 and r.count[good][0] == 0
    # threshold_sample_score: raising it counts fewer samples
    weak = paf.edge_scores(0.3 * pf, pk, c)
    assert weak.count[good][0] == 10
    assert paf.edge_scores(0.3 * pf, pk, c, threshold_sample_score=0.5).count[good][0] == 0
    # edge_sampling_steps bounds the count
    assert paf.edge_scores(pf, pk, c, edge_sampling_steps=4).count[good][0] == 4
    # zero-length pair scores 0
    z = paf.edge_scores(pf, make_peaks([(1, 5, 5), (8, 5, 5)]), paf.edge_candidates(
        make_peaks([(1, 5, 5), (8, 5, 5)]), EDGES, 0))
    assert z.score[0] == 0 and z.count[0] == 0


def test_edge_scores_bilinear_sampling():
    # a field that grows linearly along x is sampled exactly by bilinear interpolation
    pf = np.zeros((38, 6, 20), np.float32)
    pf[0] = np.arange(20, dtype=np.float32)[None] / 20
    pk = make_peaks([(1, 2.5, 2.0), (8, 12.5, 2.0)])
    c = paf.edge_candidates(pk, EDGES, 0)
    s = paf.edge_scores(pf, pk, c, edge_sampling_steps=5, edge_sampling="bilinear")
    np.testing.assert_allclose(s.score, [np.mean(np.linspace(2.5, 12.5, 5)) / 20], rtol=1e-5)
    # nearest: samples at x = 2.5, 5, 7.5, 10, 12.5 read cells 3, 5, 8, 10, 13 (halves round up)
    s = paf.edge_scores(pf, pk, c, edge_sampling_steps=5, edge_sampling="nearest")
    np.testing.assert_allclose(s.score, [(3 + 5 + 8 + 10 + 13) / 5 / 20], rtol=1e-6)
    with pytest.raises(ValueError, match="edge_sampling"):
        paf.edge_scores(pf, pk, c, edge_sampling="cubic")


def test_edge_threshold_both_thresholds():
    e = paf.Edges(np.zeros(4, np.int32), np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32),
                  np.ones(4, np.float32), np.array([0.9, 0.5, 0.1, 0.9], np.float32),
                  np.array([10, 10, 10, 3], np.int32))
    assert paf.edge_threshold(e, 0.05, 8).a.tolist() == [0, 1, 2]
    assert paf.edge_threshold(e, 0.3, 8).a.tolist() == [0, 1]      # score threshold up: fewer
    assert paf.edge_threshold(e, 0.05, 2).a.tolist() == [0, 1, 2, 3]  # counter down: more
    assert paf.edge_threshold(e, 0.95, 0).a.tolist() == []


# ---------------------------------------------------------------------------------- steps 10-12


def test_greedy_one_to_one_equals_sequential_greedy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 60
        ka, kb = rng.integers(0, 8, n), rng.integers(0, 8, n)
        s = rng.random(n)
        got = paf._greedy_one_to_one(ka, kb, s, 8)
        ua, ub, ref = set(), set(), np.zeros(n, bool)
        for i in np.argsort(-s):
            if ka[i] not in ua and kb[i] not in ub:
                ua.add(ka[i]), ub.add(kb[i])
                ref[i] = True
        np.testing.assert_array_equal(got, ref)


def test_every_synthetic_person_recovered_within_half_a_cell(five):
    people, hm, pf = five
    st = run_steps(hm, pf)
    assert len(st["parts"].part) == 5 * NUM_PARTS  # steps 5-6: one part per part type and person
    skel = paf.refine_part_coordinates(st["merged"], output_scale=1.0, offset=0.0)
    assert len(skel.score) == 5
    res = match(skel, people)
    assert sorted(i for _, i in res) == list(range(5))  # one skeleton per person
    assert max(e for e, _ in res) < 0.5
    assert np.all(skel.index >= 0) and np.all(np.diff(skel.score) <= 0)  # complete, best first
    assert skel.parts.shape == (5, NUM_PARTS, 3) and skel.index.shape == (5, NUM_PARTS)


@pytest.mark.parametrize("n,shape,seed", [(1, (46, 54), 0), (8, (60, 80), 1), (12, (46, 54), 2)])
def test_decode_synthetic_scenes(n, shape, seed):
    people = synthetic.random_people(n, shape, seed=seed)
    hm, pf = synthetic.render(people, shape)
    skel = paf.decode(hm, pf, **CELLS)
    assert len(skel.score) == n
    res = match(skel, people)
    assert len({i for _, i in res}) == n and max(e for e, _ in res) < 0.5


def test_threshold_part_counter(five):
    people, _, _ = five
    people = people.copy()
    people[0, 8:14] = np.nan  # person 0 loses hips, knees, ankles: 12 parts left
    hm, pf = synthetic.render(people, SHAPE)
    assert len(paf.decode(hm, pf, threshold_part_counter=12).score) == 5
    assert len(paf.decode(hm, pf, threshold_part_counter=13).score) == 4  # raising it drops
    skel = paf.decode(hm, pf, threshold_part_counter=12, **CELLS)
    assert sorted((skel.index >= 0).sum(1).tolist()) == [12, 18, 18, 18, 18]


def test_threshold_object_score(five):
    people, _, _ = five
    hm, pf = synthetic.render(people, SHAPE)
    weak_hm, _ = synthetic.render(people[:1], SHAPE, peak=0.2)
    strong_hm, _ = synthetic.render(people[1:], SHAPE)
    hm[:NUM_PARTS] = np.maximum(weak_hm[:NUM_PARTS], strong_hm[:NUM_PARTS])
    # object score = (sum part scores + sum edge scores) / parts ~ (0.2 * 18 + ~17) / 18 ~ 1.15
    # for the weak person and ~1.9 for the others
    assert len(paf.decode(hm, pf, threshold_object_score=0.4).score) == 5
    skel = paf.decode(hm, pf, threshold_object_score=1.5, **CELLS)
    assert len(skel.score) == 4
    assert match(skel, people[:1])[0][0] > 1.0  # the weak person is the one dropped


def test_merge_split_graphs_threshold_split_score():
    people = synthetic.random_people(1, SHAPE, seed=5)
    hm, pf = synthetic.render(people, SHAPE)
    pf[0:2] *= 0.2  # weak neck -> r_hip and neck -> l_hip fields: both legs split off at step 9
    pf[6:8] *= 0.2
    st = run_steps(hm, pf, threshold_edge_score=0.5)
    assert sorted((st["skel"].index >= 0).sum(1).tolist()) == [3, 3, 12]  # step 10 keeps fragments
    merged = paf.merge_split_graphs(st["skel"], st["parts"], st["scored"], threshold_split_score=0.1)
    assert len(merged.score) == 1 and np.all(merged.index >= 0)
    assert merged.edge_score[0] > st["skel"].edge_score.sum()
    # raising the threshold above the weak links' score keeps the fragments apart
    kept = paf.merge_split_graphs(st["skel"], st["parts"], st["scored"], threshold_split_score=0.5,
                                  threshold_part_counter=1)
    assert len(kept.score) == 3
    # ... and then the 3-part legs fall under the part-count cut (judged after merging)
    assert len(paf.merge_split_graphs(st["skel"], st["parts"], st["scored"], threshold_split_score=0.5).score) == 1


def test_refine_part_coordinates_scale_offset_and_refinement():
    h = gaussian_map((12, 14), [(3.3, 4.8)])[None].repeat(NUM_PARTS, 0)
    parts = np.full((1, NUM_PARTS, 3), np.nan, np.float32)
    parts[0, :, 0], parts[0, :, 1], parts[0, :, 2] = 3.0, 5.0, 1.0  # integer cells
    sk = paf.Skeletons(parts, np.ones(1, np.float32), np.zeros((1, NUM_PARTS), np.int32),
                       np.zeros(1, np.float32))
    out = paf.refine_part_coordinates(sk, False, output_scale=8.0)
    np.testing.assert_allclose(out.parts[0, 0, :2], [3 * 8 + 2.8, 5 * 8 + 2.8], rtol=1e-6)
    out = paf.refine_part_coordinates(sk, False, output_scale=(4.0, 8.0), offset=(0.0, 3.5))
    np.testing.assert_allclose(out.parts[0, 0, :2], [3 * 8 + 3.5, 5 * 4])
    # refinement from the heatmap, then identity scale: the true sub-cell centre
    ref = paf.refine_part_coordinates(sk, True, output_scale=1.0, offset=0.0, heatmaps=h)
    np.testing.assert_allclose(ref.parts[0, :, :2], np.tile([3.3, 4.8], (NUM_PARTS, 1)), atol=0.12)
    # idempotent: refining already refined coordinates gives the same positions
    again = paf.refine_part_coordinates(ref, True, output_scale=1.0, offset=0.0, heatmaps=h)
    np.testing.assert_allclose(again.parts, ref.parts)
    with pytest.raises(ValueError):
        paf.refine_part_coordinates(sk, True)


def test_decode_output_scale_and_upsample(five):
    people, hm, pf = five
    px = paf.decode(hm, pf)  # stride 8, default offset
    cells = paf.decode(hm, pf, **CELLS)
    np.testing.assert_allclose(px.parts[..., :2], cells.parts[..., :2] * 8 + 2.8, atol=1e-4)
    up = paf.decode(hm, pf, upsample=2)
    assert len(up.score) == 5
    # upsampled decoding lands on the same image pixels (within half a native cell)
    res = match(up, people * 8 + 2.8)
    assert max(e for e, _ in res) < 4.0
    hm2, pf2 = paf.upsample(hm, pf, 3)
    assert hm2.shape == (19, 138, 162) and pf2.shape == (38, 138, 162)
    with pytest.raises(TypeError):
        paf.decode(hm, pf, thresold_heatmap=0.1)


def test_empty_maps_give_no_skeletons():
    hm = np.zeros((19, 10, 12), np.float32)
    pf = np.zeros((38, 10, 12), np.float32)
    skel = paf.decode(hm, pf)
    assert skel.parts.shape == (0, NUM_PARTS, 3) and skel.score.shape == (0,)


# ---------------------------------------------------------------------------------- regression

# paf.decode(defaults) on the golden bus.jpg maps (input 432x368; pixels in model input).
# Sanity-checked by eye against the image: two full-body men (left, middle), the person at the
# right edge (side-on, 13 parts after step 11 joins the arm + ear fragment), and the person cut
# off at the left edge (neck + legs, x = 2.8 = column 0).
BUS_COUNTS = [17, 18, 13, 7]
BUS_SCORES = [0.656, 0.649, 0.27, 0.13]
BUS_XY = {  # person: {part: (x, y)}, a few parts each
    0: {0: (75.06, 153.2), 1: (64.3, 168.33), 4: (82.89, 190.13), 10: (38.77, 291.07), 13: (99.65, 289.5)},
    1: {0: (154.8, 152.86), 1: (152.8, 168.8), 4: (140.56, 219.31), 10: (141.48, 276.77),
        17: (161.37, 150.82)},
    2: {0: (422.19, 149.48), 5: (421.67, 165.73), 7: (400.33, 198.15), 10: (387.0, 286.91),
        13: (386.52, 288.15)},
    3: {1: (2.8, 203.6), 10: (2.8, 285.66), 13: (7.57, 284.77)},
}


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference maps not available")
def test_regression_bus_reference():
    z = np.load(REFERENCE)
    skel = paf.decode(z["heatmaps"], z["pafs"])
    assert len(skel.score) == 4
    assert (skel.index >= 0).sum(1).tolist() == BUS_COUNTS
    np.testing.assert_allclose(skel.score, BUS_SCORES, atol=0.01)
    for p, joints in BUS_XY.items():
        for j, xy in joints.items():
            np.testing.assert_allclose(skel.parts[p, j, :2], xy, atol=0.05)
    # missing parts are NaN with score 0
    miss = skel.index < 0
    assert np.all(np.isnan(skel.parts[..., 0][miss])) and np.all(skel.parts[..., 2][miss] == 0)


@pytest.mark.timeout(300)
def test_max_people_keeps_the_best_and_zero_keeps_all():
    people = synthetic.random_people(25, (60, 80), seed=25)
    hm, pf = synthetic.render(people, (60, 80))
    everyone = paf.decode(hm, pf)
    assert len(everyone.score) == 25  # no cap by default (COCO's evaluation counts at most 20)
    capped = paf.decode(hm, pf, max_people=20)
    assert len(capped.score) == 20
    np.testing.assert_array_equal(capped.score, everyone.score[:20])
    assert len(paf.decode(hm, pf, max_people=25).score) == 25
    with pytest.raises(ValueError, match="max_people"):
        paf.decode(hm, pf, max_people=-1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("jit", [True, False] if paf.kernels.AVAILABLE else [False])
@pytest.mark.parametrize("heatmaps,pafs,message", [
    ((19, 20, 20), (10, 20, 20), "pafs has 10 channels but edges_paf uses plane 18"),
    ((19, 20, 20), (38, 10, 20), "heatmaps are 20x20 cells but pafs 10x20"),
    ((20, 20), (38, 20, 20), r"must be \(C, H, W\) or \(1, C, H, W\)"),
    ((2, 19, 20, 20), (2, 38, 20, 20), r"must be \(C, H, W\) or \(1, C, H, W\)"),
])
def test_maps_that_do_not_fit_are_a_clear_error(jit, heatmaps, pafs, message):
    """The compiled kernels read the maps without bounds checks: maps that do not fit the link
    table or each other are refused with one line saying what is wrong, on both code paths."""
    before = paf.jit_enabled()
    rng = np.random.default_rng(0)
    try:
        paf.use_jit(jit)
        with pytest.raises(ValueError, match=message):
            paf.decode(rng.random(heatmaps, np.float32), rng.random(pafs, np.float32))
    finally:
        paf.use_jit(before)


@pytest.mark.timeout(120)
def test_edge_scores_refuses_a_plane_the_pafs_do_not_have():
    parts = paf.Peaks(np.array([1, 8], np.int32), np.array([2.0, 6.0], np.float32),
                      np.array([3.0, 3.0], np.float32), np.ones(2, np.float32))
    pairs = paf.edge_candidates(parts)
    with pytest.raises(ValueError, match="pafs has 2 channels but edges_paf uses plane 18"):
        paf.edge_scores(np.zeros((2, 10, 10), np.float32), parts, pairs)
    with pytest.raises(ValueError, match="the candidates use link 0 but edges_paf has 0 planes"):
        paf.edge_scores(np.zeros((38, 10, 10), np.float32), parts, pairs, edges_paf=[])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("jit", [True, False] if paf.kernels.AVAILABLE else [False])
@pytest.mark.parametrize("link", [19, -1])
def test_edge_scores_refuses_a_pair_whose_link_has_no_plane(jit, link):
    """The kernel reads a pair's plane without bounds checks: a link outside edges_paf is refused
    before anything is read, on both code paths, naming the link."""
    parts = paf.Peaks(np.array([1, 8], np.int32), np.array([2.0, 6.0], np.float32),
                      np.array([3.0, 3.0], np.float32), np.ones(2, np.float32))
    good = paf.edge_candidates(parts)
    pairs = good._replace(link=np.array([0, link], np.int32), a=np.repeat(good.a, 2), b=np.repeat(good.b, 2),
                          length=np.repeat(good.length, 2))
    planes = np.array(paf.EDGES_PAF, np.int64)
    planes.setflags(write=False)
    before = paf.jit_enabled()
    try:
        paf.use_jit(jit)
        assert paf.edge_scores(np.zeros((38, 10, 10), np.float32), parts, good, planes).score.shape == (1,)
        with pytest.raises(ValueError, match=f"the candidates use link {link} but edges_paf has 19 planes"):
            paf.edge_scores(np.zeros((38, 10, 10), np.float32), parts, pairs, planes)
    finally:
        paf.use_jit(before)


@pytest.mark.timeout(120)
def test_edge_scores_checks_a_changed_plane_list_again():
    """edge_scores remembers a read-only plane list's range; a writable one may change between
    calls, so it is checked every time."""
    parts = paf.Peaks(np.array([1, 8], np.int32), np.array([2.0, 6.0], np.float32),
                      np.array([3.0, 3.0], np.float32), np.ones(2, np.float32))
    pairs = paf.edge_candidates(parts)
    planes = np.array(paf.EDGES_PAF, np.int64)
    paf.edge_scores(np.zeros((38, 10, 10), np.float32), parts, pairs, planes)
    planes[0] = 19
    with pytest.raises(ValueError, match="pafs has 38 channels but edges_paf uses plane 19"):
        paf.edge_scores(np.zeros((38, 10, 10), np.float32), parts, pairs, planes)
