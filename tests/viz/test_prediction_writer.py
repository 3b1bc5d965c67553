"""viz.PredictionWriter: COCO results content, the OpenPose → COCO keypoint map, image ids,
streaming frame by frame to predictions.jsonl, predictions.json at stop()."""
import json
import os
import re

import numpy as np
import pytest

from graphflow import NodeError
from graphflow.testing import Harness
from graphflow.packs.viz.prediction_writer import COCO17_FROM_OPENPOSE18, OPENPOSE18_TO_COCO17, PredictionWriter
from graphflow.packs.vision.messages import Skeleton2List
COCO17 = ["nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
          "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"]
OPENPOSE18 = ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
              "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear"]


def test_default_keypoint_map_matches_the_part_names():
    assert COCO17_FROM_OPENPOSE18 == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
    assert [OPENPOSE18[j] for j in COCO17_FROM_OPENPOSE18] == COCO17
    assert PredictionWriter.keypoint_map.default == COCO17_FROM_OPENPOSE18


def test_keypoint_map_matches_the_manifest(model_path):
    text = (model_path / "MANIFEST.md").read_text()
    mapping = re.search(r"Mapping from model part to COCO-17 index: `(\[.*?\])`", text).group(1)
    assert json.loads(mapping.replace("None", "null")) == OPENPOSE18_TO_COCO17
    parts = re.search(r"\*\*Keypoint order \(OpenPose COCO-18\):\*\*\n(.*?), \(18 background\)", text, re.S).group(1)
    assert [p.split(" ", 1)[1] for p in re.split(r",\s*", parts.strip())] == OPENPOSE18


def person(points: dict[int, tuple[float, float, float]]) -> np.ndarray:
    joints = np.zeros((18, 3), np.float32)
    for index, value in points.items():
        joints[index] = value
    return joints


def test_results_file_content(tmp_path):
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"images": [{"id": 785, "file_name": "000000000785.jpg"}]}))
    first = person({0: (100, 50, 0.9), 1: (100, 80, 0.9), 2: (80, 80, 0.8), 5: (120, 82, 0.7),
                    10: (90, 300, 0.5), 15: (105, 45, 0.6)})
    second = person({4: (10, 20, 0.4)})
    h = Harness(PredictionWriter, {"folder": str(tmp_path / "out"), "image_ids": str(annotations)}).start()
    h.feed("skeletons", Skeleton2List(joints=np.stack([first, second]), scores=np.array([0.8, 0.3], np.float32),
                                      source="/coco/000000000785.jpg", frame=0))
    h.feed("skeletons", Skeleton2List(joints=np.zeros((0, 18, 3), np.float32), scores=np.zeros(0, np.float32),
                                      source="/coco/000000000786.jpg", frame=1))
    assert h.run_pending() == 2
    assert not (tmp_path / "out" / "predictions.json").exists()  # written in stop()
    h.stop()
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.json", "predictions.jsonl"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out" / "predictions.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert len(results) == 2
    a, b = results
    assert a["image_id"] == 785 and a["file_name"] == "000000000785.jpg" and a["category_id"] == 1
    assert a["score"] == pytest.approx(0.8)
    kp = np.array(a["keypoints"]).reshape(17, 3)
    assert kp[0].tolist() == [100, 50, 1]            # nose
    assert kp[1].tolist() == [105, 45, 1]            # l_eye ← OpenPose 15
    assert kp[5].tolist() == [120, 82, 1]            # l_shoulder ← 5
    assert kp[6].tolist() == [80, 80, 1]             # r_shoulder ← 2
    assert kp[16].tolist() == [90, 300, 1]           # r_ankle ← 10
    assert kp[2].tolist() == [0, 0, 0]               # r_eye missing
    assert int(kp[:, 2].sum()) == 5                  # the neck has no COCO keypoint
    assert a["bbox"] == [80, 45, 40, 255]
    kb = np.array(b["keypoints"]).reshape(17, 3)
    assert kb[10].tolist() == [10, 20, 1] and b["bbox"] == [10, 20, 0, 0]


def test_custom_keypoint_map_without_image_ids(tmp_path):
    joints = person({1: (5, 6, 1.0), 3: (7, 8, 1.0)})[None]
    h = Harness(PredictionWriter, {"folder": str(tmp_path), "filename": "neck.json",
                                   "keypoint_map": [1, None, 3], "category_id": 3}).start()
    h.feed("skeletons", Skeleton2List(joints=joints, scores=np.ones(1, np.float32), source="img.png"))
    h.run_pending()
    h.stop()
    (result,) = json.loads((tmp_path / "neck.json").read_text())
    assert "image_id" not in result and result["category_id"] == 3
    assert result["keypoints"] == [5, 6, 1, 0, 0, 0, 7, 8, 1]


def test_a_keypoint_map_beyond_the_joints_is_an_error(tmp_path):
    h = Harness(PredictionWriter, {"folder": str(tmp_path), "keypoint_map": [40]}).start()
    h.feed("skeletons", Skeleton2List(joints=person({})[None], scores=np.ones(1, np.float32)))
    with pytest.raises(NodeError, match="^keypoint_map refers to joint 40, but skeletons have 18 joints$"):
        h.run_pending()
    with pytest.raises(ValueError, match="keypoint_map"):
        Harness(PredictionWriter, {"folder": str(tmp_path), "keypoint_map": ["x"]}).start()
    with pytest.raises(ValueError, match="keypoint_map.*at least one keypoint"):  # (a numpy error on the first frame)
        Harness(PredictionWriter, {"folder": str(tmp_path), "keypoint_map": []}).start()


@pytest.mark.parametrize("filename", ["", "sub/p.json", "p.txt", "p"])
def test_a_filename_that_is_no_json_file_name_is_refused_at_start(tmp_path, filename):
    # '' wrote the stream to a hidden '.jsonl' and failed at stop; 'sub/p.json' split the two files
    with pytest.raises(NodeError, match="give a file name ending in .json"):
        Harness(PredictionWriter, {"folder": str(tmp_path), "filename": filename}).start()


@pytest.mark.parametrize("content, message", [
    (None, "image_ids: cannot read .*: No such file or directory"),
    ("root:x:0:0:root:/root:/bin/bash\n", "image_ids: .* is not JSON"),
    ('{"annotations": []}', "image_ids: .* is no COCO annotations file"),
    ('{"images": [{"id": 1}]}', "image_ids: .* is no COCO annotations file"),
])
def test_an_image_ids_file_that_cannot_serve_is_one_line_at_start(tmp_path, content, message):
    ids = tmp_path / "ids.json"
    if content is not None:
        ids.write_text(content)
    with pytest.raises(NodeError, match=message):
        Harness(PredictionWriter, {"folder": str(tmp_path / "out"), "image_ids": str(ids)}).start()


def test_a_stream_write_that_fails_stops_the_app_in_one_line(tmp_path):
    h = Harness(PredictionWriter, {"folder": str(tmp_path)}).start()
    h.component._stream.close()
    h.component._stream = open("/dev/full", "wb")  # a device that is always full: ENOSPC on flush
    h.feed("skeletons", Skeleton2List(joints=person({})[None], scores=np.ones(1, np.float32)))
    with pytest.raises(NodeError, match=r"^cannot write .*predictions\.jsonl: No space left on device$"):
        h.run_pending()


# -- streaming: predictions.jsonl ---------------------------------------------------------------
def skeletons(frame, people=1, source=None):
    joints = np.stack([person({0: (10.0 + k, 20.0, 0.9), 2: (30.0, 40.0 + k, 0.8)}) for k in range(people)]) \
        if people else np.zeros((0, 18, 3), np.float32)
    return Skeleton2List(joints=joints, scores=np.full(people, 0.5, np.float32),
                         source=source or f"/data/{frame:04d}.jpg", frame=frame)


def lines_on_disk(path):
    # Read through a separate handle, as another process would after a kill.
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def test_every_frame_is_on_disk_as_one_line_as_soon_as_it_is_written(tmp_path):
    h = Harness(PredictionWriter, {"folder": str(tmp_path)}).start()
    stream = tmp_path / "predictions.jsonl"
    for frame, people in enumerate([2, 0, 1]):
        h.feed("skeletons", skeletons(frame, people))
        assert h.run_pending() == 1
        on_disk = lines_on_disk(stream)
        assert [line["frame"] for line in on_disk] == list(range(frame + 1))  # nothing waits in a buffer
        assert len(on_disk[-1]["results"]) == people and on_disk[-1]["file_name"] == f"{frame:04d}.jpg"
    assert not (tmp_path / "predictions.json").exists()
    h.stop()
    results = json.loads((tmp_path / "predictions.json").read_text())
    assert results == [entry for line in lines_on_disk(stream) for entry in line["results"]]
    assert [r["frame"] for r in results] == [0, 0, 2]


def test_the_stream_takes_its_name_from_filename(tmp_path):
    h = Harness(PredictionWriter, {"folder": str(tmp_path), "filename": "poses.json"}).start()
    h.feed("skeletons", skeletons(0))
    h.run_pending()
    h.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poses.json", "poses.jsonl"]


def test_a_line_cut_by_a_kill_is_left_out_and_a_bad_line_is_an_error(tmp_path):
    from graphflow.packs.viz.prediction_writer import read_stream, write_results_json

    stream = tmp_path / "p.jsonl"
    good = [{"file_name": "a.jpg", "frame": 0, "results": [{"score": 1.0}]},
            {"file_name": "b.jpg", "frame": 1, "results": []}]
    text = "".join(json.dumps(line) + "\n" for line in good)
    stream.write_text(text + '{"file_name": "c.jpg", "fra')
    assert list(read_stream(stream)) == good
    assert write_results_json(stream, tmp_path / "p.json") == 1
    assert json.loads((tmp_path / "p.json").read_text()) == [{"score": 1.0}]
    stream.write_text('{"file_name": "c.jpg", "fra\n' + text)
    with pytest.raises(ValueError, match=r"p\.jsonl: line 1 is not JSON"):
        list(read_stream(stream))


def test_memory_does_not_grow_with_the_number_of_frames(tmp_path):
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"images": [{"id": 1, "file_name": "0000.jpg"}]}))
    h = Harness(PredictionWriter, {"folder": str(tmp_path), "image_ids": str(annotations)}).start()
    writer = h.component

    def held():  # every container the writer keeps, by size
        return sum(len(v) for v in vars(writer).values() if isinstance(v, (list, dict, set, bytes, str)))

    sizes = []
    for frame in range(600):
        h.feed("skeletons", skeletons(frame, people=3))  # each with a name not in image_ids
        h.run_pending()
        if frame in (199, 599):
            sizes.append(held())
    h.stop()
    assert sizes[0] == sizes[1]
    assert writer.frames == 600 and writer.results == 1800
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == 1800


def test_the_stream_is_fsynced_at_most_every_sync_period(tmp_path, monkeypatch):
    from graphflow.packs.viz import prediction_writer

    synced = []
    monkeypatch.setattr(prediction_writer.os, "fsync", lambda fd: synced.append(fd))
    now = [100.0]
    monkeypatch.setattr(prediction_writer.time, "monotonic", lambda: now[0])
    h = Harness(PredictionWriter, {"folder": str(tmp_path), "sync_period": "1s"}).start()
    for step in (0.5, 0.25, 0.25, 0.75, 0.5):  # at 100.5, 100.75, 101.0 (sync, 1 s on), 101.75, 102.25 (sync)
        now[0] += step
        h.feed("skeletons", skeletons(0))
        h.run_pending()
    assert len(synced) == 2
    h.stop()
    assert len(synced) == 3  # and once more at stop
    h = Harness(PredictionWriter, {"folder": str(tmp_path / "every"), "sync_period": "0"}).start()
    for _ in range(3):
        h.feed("skeletons", skeletons(0))
        h.run_pending()
    assert len(synced) == 6


def test_an_earlier_runs_results_file_goes_when_a_run_starts(tmp_path):
    """A run killed before its stop() left the earlier run's predictions.json beside its own
    predictions.jsonl, passing for this run's results."""
    (tmp_path / "predictions.json").write_text('[{"earlier": "run"}]')
    h = Harness(PredictionWriter, {"folder": str(tmp_path)}).start()
    assert not (tmp_path / "predictions.json").exists() and (tmp_path / "predictions.jsonl").exists()
    h.stop()
    assert json.loads((tmp_path / "predictions.json").read_text()) == []


def test_a_restarted_writer_keeps_the_frames_of_the_run_before(tmp_path, monkeypatch):
    """A split app's process restarted after a failure ("restart": true; the supervisor sets
    GRAPHFLOW_RESUMING): the stream's earlier frames stay and go into predictions.json."""
    from graphflow.files import RESUMING_ENV

    earlier = {"file_name": "a.jpg", "frame": 0, "results": [{"file_name": "a.jpg", "score": 0.9}]}
    (tmp_path / "predictions.jsonl").write_text(json.dumps(earlier) + "\n" + '{"file_name": "b.j')  # cut by the kill
    monkeypatch.setenv(RESUMING_ENV, "1")
    h = Harness(PredictionWriter, {"folder": str(tmp_path)}).start()
    h.stop()
    assert json.loads((tmp_path / "predictions.json").read_text()) == earlier["results"]
    monkeypatch.delenv(RESUMING_ENV)
    Harness(PredictionWriter, {"folder": str(tmp_path)}).start().stop()  # a new run starts over
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
