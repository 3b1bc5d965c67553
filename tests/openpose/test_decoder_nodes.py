"""The decoder steps as nodes: each one alone with the harness, the chain against the plain
functions, the subgraph inside an app, and each threshold param wired to its step."""
import json
import typing

import numpy as np
import pytest

from graphflow import Codelet, NodeError, Param, Rx, Tx
from graphflow.app import App
from graphflow.loader import load_app
from graphflow.testing import Harness
from graphflow.packs.openpose import paf, synthetic
from graphflow.packs.openpose.edge_candidates import EdgeCandidates
from graphflow.packs.openpose.edge_scores import EdgeScores
from graphflow.packs.openpose.edge_threshold import EdgeThreshold
from graphflow.packs.openpose.graph_matching import GraphMatching
from graphflow.packs.openpose.max_pool import MaxPool
from graphflow.packs.openpose.merge_split_graphs import MergeSplitGraphs
from graphflow.packs.openpose.non_maximum_suppression import NonMaximumSuppression
from graphflow.packs.openpose.part_candidates import PartCandidates
from graphflow.packs.openpose.peak_candidates import PeakCandidates
from graphflow.packs.openpose.refine_part_coordinates import RefinePartCoordinates
from graphflow.packs.vision.messages import ImageTransform, Tensors

CHAIN = [  # node class, its input port, its output port
    (MaxPool, "maps", "pooled"),
    (NonMaximumSuppression, "pooled", "peak_map"),
    (PeakCandidates, "peak_map", "peaks"),
    (PartCandidates, "peaks", "parts"),
    (EdgeCandidates, "parts", "candidates"),
    (EdgeScores, "candidates", "scored"),
    (EdgeThreshold, "scored", "edges"),
    (GraphMatching, "edges", "skeletons"),
    (MergeSplitGraphs, "skeletons", "merged"),
    (RefinePartCoordinates, "skeletons", "skeletons_out"),
]
IDENTITY = ImageTransform(1.0, 1.0, 0.0, 0.0, 432, 368)


def model_output(people, shape=(46, 54), transform=IDENTITY):
    heatmaps, pafs = synthetic.render(people, shape)
    return Tensors(["heatmaps", "pafs"], [heatmaps[None], pafs[None]], transform, "synthetic", 7)


def run_chain(tensors, config=None):
    """Feed ``tensors`` through every step with the harness; returns each step's output payload."""
    config = config or {}
    outputs, payload = {}, tensors
    for cls, rx, tx in CHAIN:
        h = Harness(cls, config.get(cls.__name__)).start()
        h.feed(rx, payload, acqtime=3.0)
        assert h.run_pending() == 1
        (message,) = h.outputs(tx)
        assert message.acqtime == 3.0
        payload = outputs[cls.__name__] = message.payload
    return outputs


@pytest.mark.parametrize("count,shape", [(1, (46, 54)), (5, (46, 54)), (12, (120, 160))])
def test_chain_recovers_every_person_within_half_a_cell(count, shape):
    people = synthetic.random_people(count, shape, seed=count)
    out = run_chain(model_output(people, shape), {"RefinePartCoordinates": {"output_scale": 1.0, "offset": 0.0}})
    skeletons = out["RefinePartCoordinates"]
    assert len(skeletons.scores) == count
    for person in people:
        errors = np.hypot(*(skeletons.joints[:, :, :2] - person[None]).transpose(2, 0, 1)).max(1)
        assert errors.min() < 0.5


def test_chain_equals_the_plain_decode_function():
    people = synthetic.random_people(5, (46, 54), seed=3)
    tensors = model_output(people)
    skeletons = run_chain(tensors)["RefinePartCoordinates"]
    expected = paf.decode(tensors.get("heatmaps"), tensors.get("pafs"))
    np.testing.assert_allclose(skeletons.joints[..., :2], np.nan_to_num(expected.parts[..., :2]), atol=1e-5)
    np.testing.assert_allclose(skeletons.scores, expected.score, atol=1e-6)


def test_output_is_mapped_to_the_original_image_through_the_transform():
    people = synthetic.random_people(2, (46, 54), seed=1)
    plain = run_chain(model_output(people))["RefinePartCoordinates"]
    scaled = run_chain(model_output(people, transform=ImageTransform(2.5, 2.5, 1.0, -4.0, 1080, 920)))
    out = scaled["RefinePartCoordinates"]
    found = plain.joints[..., 2] > 0
    np.testing.assert_allclose(out.joints[..., 0][found], plain.joints[..., 0][found] * 2.5 + 1.0, rtol=1e-5)
    np.testing.assert_allclose(out.joints[..., 1][found], plain.joints[..., 1][found] * 2.5 - 4.0, rtol=1e-5)
    assert (out.image_width, out.image_height, out.source, out.frame) == (1080, 920, "synthetic", 7)
    assert out.labels[1] == "neck" and [1, 8] in out.edges


def test_missing_joints_have_score_zero():
    people = synthetic.random_people(1, (46, 54), seed=2)
    people[0, 4] = np.nan  # no right wrist
    out = run_chain(model_output(people))["RefinePartCoordinates"]
    assert out.joints[0, 4].tolist() == [0.0, 0.0, 0.0]
    assert (out.joints[0, np.arange(18) != 4, 2] > 0.5).all()


def test_threshold_heatmap_drops_weak_parts():
    people = synthetic.random_people(3, (46, 54), seed=4)
    heatmaps, pafs = synthetic.render(people, (46, 54))
    tensors = Tensors(["heatmaps", "pafs"], [heatmaps[None] * 0.5, pafs[None]], IDENTITY)
    low = run_chain(tensors, {"PartCandidates": {"threshold_heatmap": 0.1}})["PartCandidates"]
    high = run_chain(tensors, {"PartCandidates": {"threshold_heatmap": 0.6}})["PartCandidates"]
    assert len(low.peaks.score) == 3 * 18 and len(high.peaks.score) == 0


def test_threshold_part_counter_and_object_score_drop_people():
    people = synthetic.random_people(3, (46, 54), seed=5)
    people[0, 2:] = np.nan  # person 0 has only nose and neck
    tensors = model_output(people)
    def kept(**config):  # step 11 judges the people (step 10 keeps every one)
        return len(run_chain(tensors, {"MergeSplitGraphs": config})["MergeSplitGraphs"].skeletons.score)
    assert kept(threshold_part_counter=2) == 3
    assert kept(threshold_part_counter=3) == 2
    assert kept(threshold_object_score=5.0) == 0


def test_edge_thresholds_mark_rejected_connections():
    tensors = model_output(synthetic.random_people(2, (46, 54), seed=6))
    loose = run_chain(tensors, {"EdgeThreshold": {"threshold_edge_score": 0.05}})["EdgeThreshold"]
    strict = run_chain(tensors, {"EdgeThreshold": {"threshold_edge_score": 0.99}})["EdgeThreshold"]
    assert len(loose.kept.a) >= 2 * 17 and len(strict.kept.a) < len(loose.kept.a)
    assert len(strict.pairs.a) == len(loose.pairs.a)  # rejected ones stay for step 11
    counted = run_chain(tensors, {"EdgeThreshold": {"threshold_edge_sampling_counter": 11}})["EdgeThreshold"]
    assert len(counted.kept.a) == 0  # 10 samples can never reach 11


LIVE_CHANGES = {  # node: (param, a new value, what in its output the change shows in)
    "MaxPool": ("kernel", 7, lambda out: float(out.pooled.sum())),
    "NonMaximumSuppression": ("threshold", 0.99, lambda out: int(out.peaks.sum())),
    "PeakCandidates": ("refine", "none", lambda out: float(np.abs(out.peaks.x - np.round(out.peaks.x)).sum())),
    "PartCandidates": ("threshold_heatmap", 0.99, lambda out: len(out.peaks.score)),
    "EdgeCandidates": ("threshold_edge_size", 2.0, lambda out: len(out.pairs.a)),
    "EdgeScores": ("threshold_sample_score", 0.99, lambda out: int(out.pairs.count.sum())),
    "EdgeThreshold": ("threshold_edge_score", 0.99, lambda out: len(out.kept.a)),
    "MergeSplitGraphs": ("threshold_split_score", 2.0, lambda out: len(out.skeletons.score)),
    "RefinePartCoordinates": ("output_scale", 3.0, lambda out: float(np.nansum(out.joints[..., :2]))),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(LIVE_CHANGES))
def test_a_live_param_change_reaches_the_next_tick(name):
    """The nodes read their params once (start) into plain attributes, not on every tick; a live
    change (set_param, applied between ticks) must still reach the step."""
    tensors = model_output(synthetic.random_people(3, (46, 54), seed=8))
    if name == "MergeSplitGraphs":  # faint body-head fields: heads and bodies for step 11 to rejoin
        pafs = tensors.get("pafs")
        for link in ((1, 0), (2, 16), (5, 17)):
            plane = paf.EDGES_PAF[paf.EDGES.index(link)]
            pafs[0, 2 * plane:2 * plane + 2] *= 0.045
    inputs = run_chain(tensors)
    index = [cls.__name__ for cls, _, _ in CHAIN].index(name)
    cls, rx, tx = CHAIN[index]
    payload = tensors if index == 0 else inputs[CHAIN[index - 1][0].__name__]
    param, value, seen = LIVE_CHANGES[name]
    h = Harness(cls).start()
    h.feed(rx, payload)
    h.run_pending()
    before = seen(h.outputs(tx)[-1].payload)
    h.set_param(param, value)
    h.feed(rx, payload)
    h.run_pending()
    assert seen(h.outputs(tx)[-1].payload) != before


def test_threshold_edge_size_drops_long_pairs():
    tensors = model_output(synthetic.random_people(4, (46, 54), seed=7))
    every = run_chain(tensors)["EdgeCandidates"]
    short = run_chain(tensors, {"EdgeCandidates": {"threshold_edge_size": 3.0}})["EdgeCandidates"]
    assert (short.pairs.length <= 3.0).all() and len(short.pairs.length) < len(every.pairs.length)


def test_max_pool_reuses_a_pooled_tensor_from_the_model():
    people = synthetic.random_people(1, (46, 54), seed=8)
    heatmaps, pafs = synthetic.render(people, (46, 54))
    marker = np.full_like(heatmaps[None], 0.25)
    tensors = Tensors(["heatmaps", "pafs", "pooled"], [heatmaps[None], pafs[None], marker], IDENTITY)
    h = Harness(MaxPool, {"pooled_tensor": "pooled"}).start()
    h.feed("maps", tensors)
    h.tick()
    assert (h.outputs("pooled")[0].payload.pooled == 0.25).all()


def test_upsampling_gives_the_same_people_in_the_same_place():
    people = synthetic.random_people(2, (46, 54), seed=9)
    native = run_chain(model_output(people))["RefinePartCoordinates"]
    fine = run_chain(model_output(people), {"MaxPool": {"upsample": 2}})["RefinePartCoordinates"]
    assert len(fine.scores) == len(native.scores) == 2
    order = np.argsort(native.joints[:, 1, 0]), np.argsort(fine.joints[:, 1, 0])
    np.testing.assert_allclose(fine.joints[order[1]][..., :2], native.joints[order[0]][..., :2], atol=1.5)


def test_missing_tensor_is_a_clear_error():
    h = Harness(MaxPool, {"pafs_tensor": "paf"}).start()
    h.feed("maps", model_output(synthetic.random_people(1, (46, 54))))
    with pytest.raises(NodeError, match="^pafs_tensor 'paf' is not one of the tensors received: heatmaps, pafs$"):
        h.tick()


@pytest.mark.parametrize("setting, said", [
    ("decoder.edge_candidates/edge_candidates/edges=[[0]]",
     "edges: item 0: expected [part_from, part_to], two part numbers, got [0]"),
    ('decoder.edge_candidates/edge_candidates/edges=[[1, 8], ["a", "b"]]',
     "edges: item 1: expected [part_from, part_to], two part numbers, got ['a', 'b']"),
    ("decoder.edge_candidates/edge_candidates/edges=[[1, true]]",
     "edges: item 0: expected [part_from, part_to], two part numbers, got [1, True]"),
    ("decoder.edge_candidates/edge_candidates/edges=[[-1, 2]]", "edges: item 0: part -1 is not one of the 18 parts (0..17)"),
    ("decoder.edge_candidates/edge_candidates/edges=[[0, 18]]", "edges: item 0: part 18 is not one of the 18 parts (0..17)"),
    ("decoder.edge_scores/edge_scores/edges_paf=[[0, 1]]",
     "edges_paf: item 0: expected a PAF plane number (0, 1, ...), got [0, 1]"),
    ("decoder.edge_scores/edge_scores/edges_paf=[0, -1]",
     "edges_paf: item 1: expected a PAF plane number (0, 1, ...), got -1"),
    ("decoder.refine/refine_part_coordinates/draw_edges=[[0, 1, 2]]",
     "draw_edges: item 0: expected [part_from, part_to], two part numbers, got [0, 1, 2]"),
])
def test_link_params_are_checked_when_the_app_is_validated(repo, setting, said):
    """Before: these passed validation and failed mid-run with a traceback (reshape, int(), numba
    typing), or silently decoded nobody (a part 99 that never has candidates)."""
    from graphflow.loader import AppInvalid

    with pytest.raises(AppInvalid) as error:
        load_app(repo / "apps" / "openpose.app.json", sets=[setting])
    (problem,) = error.value.errors
    assert str(problem).endswith(f"{setting}: {said}"), str(problem)
    load_app(repo / "apps" / "openpose.app.json", sets=["decoder.edge_candidates/edge_candidates/edges=[[0, 17]]",
                                                         "decoder.edge_scores/edge_scores/edges_paf=[0]"])


def test_edges_paf_beyond_the_model_pafs_stops_the_app_in_one_line():
    outputs = run_chain(model_output(synthetic.random_people(2, (46, 54))))
    h = Harness(EdgeScores, {"edges_paf": [0] * 18 + [19]}).start()  # 38 channels: planes 0..18
    h.feed("candidates", outputs["EdgeCandidates"])
    with pytest.raises(NodeError, match=r"^pafs has 38 channels but edges_paf uses plane 19$"):
        h.tick()
    h = Harness(EdgeScores, {"edges_paf": [0] * 18 + [18]}).start()  # the last plane there is: fine
    h.feed("candidates", outputs["EdgeCandidates"])
    h.tick()


class _MapsSource(Codelet):
    maps = Tx(Tensors)
    frames = Param(int, 3)

    def start(self):
        self.sent = 0
        self.tick_periodically("1ms")

    def tick(self):
        people = synthetic.random_people(2 + self.sent, (46, 54), seed=self.sent)
        self.maps.publish(model_output(people))
        self.sent += 1
        if self.sent >= self.frames:
            self.report_exhausted()


class _Collect(Codelet):
    from graphflow.packs.vision.messages import Skeleton2List
    skeletons = Rx(Skeleton2List, policy="block")

    def start(self):
        self.counts = []
        self.tick_on_message(self.skeletons)

    def tick(self):
        self.counts.append(len(self.skeletons.read().payload.scores))


def test_decoder_subgraph_runs_inside_an_app(tmp_path, repo):
    pack = tmp_path / "mapspack.py"
    pack.write_text("from tests.openpose import test_decoder_nodes as t\n"
                    "class MapsSource(t._MapsSource): pass\n"
                    "class Collect(t._Collect): pass\n")
    app = {"name": "decoder_test", "modules": ["mapspack.py"], "graph": {
        "nodes": [{"name": "source", "components": [{"name": "maps", "type": "mapspack.MapsSource"}]},
                  {"name": "decoder", "subgraph": str(repo / "apps" / "openpose_decoder.subgraph.json")},
                  {"name": "sink", "components": [{"name": "collect", "type": "mapspack.Collect"}]}],
        "edges": [{"source": "source/maps/maps", "target": "decoder.interface/subgraph/maps"},
                  {"source": "decoder.interface/subgraph/skeletons", "target": "sink/collect/skeletons"}]},
        "config": {"decoder.part_candidates": {"part_candidates": {"threshold_heatmap": 0.1}}}}
    (tmp_path / "d.app.json").write_text(json.dumps(app))
    spec = load_app(tmp_path / "d.app.json")
    assert spec.params_of("decoder.part_candidates/part_candidates") == {"threshold_heatmap": 0.1}
    built = App(spec)
    built.run(duration=60)
    assert built.failure is None
    assert built.component("sink/collect").counts == [2, 3, 4]


@pytest.mark.timeout(300)
def test_messages_are_flat_and_pass_arrays_by_reference():
    from graphflow import MessageType
    from graphflow.packs.openpose import messages
    decoder_types = [messages.PoseMaps, messages.PeakMap, messages.PeakList, messages.EdgeList,
                     messages.SkeletonCandidates]
    for cls in decoder_types:
        for name, hint in typing.get_type_hints(cls).items():
            assert not (isinstance(hint, type) and issubclass(hint, tuple(decoder_types))), (cls, name)
    outputs = run_chain(model_output(synthetic.random_people(2, (46, 54), seed=11)))
    heatmaps = outputs["MaxPool"].heatmaps
    for step in ("NonMaximumSuppression", "PeakCandidates", "PartCandidates", "EdgeCandidates", "EdgeScores",
                 "EdgeThreshold", "GraphMatching", "MergeSplitGraphs"):
        assert outputs[step].heatmaps is heatmaps, step  # by reference, never copied
        assert not any(isinstance(getattr(outputs[step], f), MessageType) and f != "transform"
                       for f in vars(outputs[step])), step
    assert outputs["EdgeScores"].parts is outputs["PartCandidates"].peaks
    assert outputs["GraphMatching"].pairs is outputs["EdgeScores"].pairs  # step 11 sees every scored pair
