"""Decoder thresholds exactly at their boundary, on hand-made inputs whose values are exact in
float32 (dyadic fractions), so a flipped comparison (>= to >, or the reverse) fails a test:
NMS (noise floor and plateau ties), part confidence, edge score and sample count, person part
count and object score, and the merge of split skeletons (threshold and merged score)."""
import numpy as np
import pytest

from graphflow.packs.openpose import paf

pytestmark = pytest.mark.timeout(60)


def just_above(value: float) -> float:
    return float(np.nextafter(np.float32(value), np.float32(np.inf)))


def single_peak(value: float) -> np.ndarray:
    heatmaps = np.zeros((1, 5, 5), np.float32)
    heatmaps[0, 2, 2] = value
    return heatmaps


# -- step 4: NMS ------------------------------------------------------------------------------
def test_nms_keeps_a_peak_exactly_at_the_noise_floor():
    heatmaps = single_peak(0.375)
    pooled = paf.max_pool(heatmaps)
    assert np.argwhere(paf.non_maximum_suppression(heatmaps, pooled, 0.375)).tolist() == [[0, 2, 2]]
    assert not paf.non_maximum_suppression(heatmaps, pooled, just_above(0.375)).any()


def test_nms_plateau_of_equal_maxima_gives_one_peak_and_a_hair_higher_neighbour_wins():
    heatmaps = single_peak(0.5)
    heatmaps[0, 2, 3] = 0.5  # equal neighbour: one peak, the first in raster order
    pooled = paf.max_pool(heatmaps)
    assert np.argwhere(paf.non_maximum_suppression(heatmaps, pooled, 0.25)).tolist() == [[0, 2, 2]]
    heatmaps[0, 2, 3] = just_above(0.5)  # strictly higher: only it is a peak
    pooled = paf.max_pool(heatmaps)
    assert np.argwhere(paf.non_maximum_suppression(heatmaps, pooled, 0.25)).tolist() == [[0, 2, 3]]


# -- step 6: part confidence --------------------------------------------------------------------
def peaks(scores, parts=None) -> paf.Peaks:
    n = len(scores)
    return paf.Peaks(np.asarray(parts if parts is not None else [0] * n, np.int32),
                     np.arange(n, dtype=np.float32), np.zeros(n, np.float32), np.asarray(scores, np.float32))


def test_part_candidates_keep_a_part_exactly_at_threshold_heatmap():
    found = peaks([0.25, 0.125, just_above(0.125), 0.0625])
    kept = paf.part_candidates(found, threshold_heatmap=0.125)
    assert kept.score.tolist() == [0.25, 0.125, just_above(0.125)]
    assert paf.part_candidates(found, threshold_heatmap=just_above(0.125)).score.tolist() == [0.25, just_above(0.125)]


# -- step 9: connection score and sample count --------------------------------------------------
def test_edge_threshold_keeps_a_connection_exactly_at_both_thresholds():
    scored = paf.Edges(link=np.zeros(4, np.int32), a=np.zeros(4, np.int32), b=np.ones(4, np.int32),
                       length=np.ones(4, np.float32), score=np.array([0.25, 0.25, 0.25, 0.125], np.float32),
                       count=np.array([8, 7, 9, 8], np.int32))
    assert paf.edge_threshold_mask(scored, 0.25, 8).tolist() == [True, False, True, False]
    assert paf.edge_threshold_mask(scored, just_above(0.25), 8).tolist() == [False] * 4
    assert paf.edge_threshold_mask(scored, 0.125, 9).tolist() == [False, False, True, False]


# -- step 11: a person's part count and object score (after step 10, which keeps everyone) ------
def chain_of_four():
    """Parts 0-1-2-3 (0.5 each) joined by three connections of 0.25: object score
    (4 x 0.5 + 3 x 0.25) / 4 = 0.6875."""
    parts = peaks([0.5] * 4, parts=[0, 1, 2, 3])
    edges = [[0, 1], [1, 2], [2, 3]]
    kept = paf.Edges(link=np.arange(3, dtype=np.int32), a=np.arange(3, dtype=np.int32),
                     b=np.arange(1, 4, dtype=np.int32), length=np.ones(3, np.float32),
                     score=np.full(3, 0.25, np.float32), count=np.full(3, 10, np.int32))
    return parts, kept, edges


def judged(parts, kept, edges, threshold_part_counter, threshold_object_score):
    """Steps 10-11 on the chain (nothing to merge): the people kept by step 11's cuts."""
    people = paf.graph_matching(parts, kept, edges, num_parts=4)
    return paf.merge_split_graphs(people, parts, kept, threshold_part_counter=threshold_part_counter,
                                  threshold_object_score=threshold_object_score, num_parts=4)


def test_a_person_with_exactly_threshold_part_counter_parts_is_kept():
    parts, kept, edges = chain_of_four()
    assert paf.graph_matching(parts, kept, edges, num_parts=4).index.tolist() == [[0, 1, 2, 3]]
    assert judged(parts, kept, edges, 4, 0.0).index.tolist() == [[0, 1, 2, 3]]
    assert len(judged(parts, kept, edges, 5, 0.0).score) == 0


def test_a_person_exactly_at_threshold_object_score_is_kept():
    parts, kept, edges = chain_of_four()
    people = judged(parts, kept, edges, 1, 0.6875)
    assert len(people.score) == 1 and people.edge_score.tolist() == [0.75]
    assert len(judged(parts, kept, edges, 1, just_above(0.6875)).score) == 0


# -- step 11: merging split skeletons -----------------------------------------------------------
def two_fragments():
    """Fragment A holds parts 0, 1 (connection sum 0.25), fragment B parts 2, 3 (0.5); one scored
    pair joins part 1 (A) to part 2 (B) with PAF score 0.375."""
    parts = peaks([0.5, 0.5, 0.25, 0.25], parts=[0, 1, 2, 3])
    index = np.array([[0, 1, -1, -1], [-1, -1, 2, 3]], np.int32)
    have = index >= 0
    table = np.where(have, index, 0)
    joints = np.stack([np.where(have, parts.x[table], np.nan), np.where(have, parts.y[table], np.nan),
                       np.where(have, parts.score[table], 0.0)], -1).astype(np.float32)
    skeletons = paf.Skeletons(joints, np.array([0.5, 0.25], np.float32), index, np.array([0.25, 0.5], np.float32))
    scored = paf.Edges(link=np.array([1], np.int32), a=np.array([1], np.int32), b=np.array([2], np.int32),
                       length=np.ones(1, np.float32), score=np.array([0.375], np.float32),
                       count=np.array([3], np.int32))
    return skeletons, parts, scored


def test_fragments_joined_exactly_at_threshold_split_score_are_merged_with_the_summed_score():
    skeletons, parts, scored = two_fragments()
    merged = paf.merge_split_graphs(skeletons, parts, scored, threshold_split_score=0.375, threshold_part_counter=1,
                                    threshold_object_score=0.0, num_parts=4)
    assert merged.index.tolist() == [[0, 1, 2, 3]]
    assert merged.edge_score.tolist() == [0.25 + 0.5 + 0.375]  # both fragments' sums and the join
    # person score: mean part confidence x sqrt(found / num_parts) = 0.375 x 1
    assert merged.score.tolist() == [0.375]
    assert np.isclose(merged.parts[0, :, 2], [0.5, 0.5, 0.25, 0.25]).all()


def test_fragments_joined_a_hair_below_threshold_split_score_stay_apart():
    skeletons, parts, scored = two_fragments()
    apart = paf.merge_split_graphs(skeletons, parts, scored, threshold_split_score=just_above(0.375),
                                   threshold_part_counter=1, threshold_object_score=0.0, num_parts=4)
    assert sorted(apart.index.tolist()) == sorted(skeletons.index.tolist())
    assert sorted(apart.edge_score.tolist()) == [0.25, 0.5]
