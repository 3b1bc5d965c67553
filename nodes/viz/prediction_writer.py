"""viz.PredictionWriter — writes skeletons as COCO keypoint results, streaming, frame by frame.

Every frame's results are appended to `folder/<filename stem>.jsonl` (predictions.jsonl) as one
line, {"file_name", "frame", "image_id" (when known), "results": [entries]}, and flushed at once,
so a killed process loses at most the frame in flight (the file is also fsync'ed at most every
`sync_period`, which bounds what a power cut loses). At a clean stop the results of every line go
into `folder/filename` (predictions.json), one JSON list written through a temporary file and a
rename. Memory stays flat however long the app runs: nothing is kept between frames.

Each entry is one person, in the COCO results format that pycocotools' ``COCO.loadRes`` reads:
{"image_id" (when known), "file_name", "frame", "category_id", "keypoints": [x, y, v] × K
(v = 1 for a found joint; a missing joint is 0, 0, 0), "score", "bbox": [x, y, w, h] around the
found keypoints}. `keypoint_map[k]` is the input joint of output keypoint k (null = always
missing); the default maps OpenPose COCO-18 parts to the 17 COCO keypoints. With `image_ids`
(a COCO annotations JSON) the image_id is looked up by the source's file name.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from graphflow import Codelet, NodeError, Param, Period, Rx
from graphflow.files import open_atomically, open_lines, resuming
from graphflow.packs.vision.messages import Skeleton2List

# shared/models/MANIFEST.md: "Mapping from model part to COCO-17 index" (OpenPose COCO-18 order;
# the neck, part 1, has no COCO keypoint).
OPENPOSE18_TO_COCO17 = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
# Its inverse: COCO-17 keypoint k comes from OpenPose part COCO17_FROM_OPENPOSE18[k]
# = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10].
COCO17_FROM_OPENPOSE18 = [OPENPOSE18_TO_COCO17.index(k) for k in range(17)]
UNKNOWN_NAMES_WARNED = 100  # image names missing from image_ids that get their own warning


def coco_entries(found: Skeleton2List, keypoint_map: list, category_id: int, image_id=None) -> list[dict]:
    """COCO result dicts, one per skeleton (vectorized over people and keypoints)."""
    joints = np.asarray(found.joints, dtype=np.float64)
    if joints.size == 0:
        return []
    present = np.array([j is not None for j in keypoint_map])
    index = np.array([j if j is not None else 0 for j in keypoint_map], dtype=np.int64)
    if index.size and index.max() >= joints.shape[1]:
        raise ValueError(f"keypoint_map refers to joint {int(index.max())}, but skeletons have "
                         f"{joints.shape[1]} joints")
    picked = joints[:, index]                                   # [P, K, 3]
    found_mask = present[None, :] & (picked[:, :, 2] > 0)       # [P, K]
    keypoints = np.zeros_like(picked)
    keypoints[..., :2] = np.where(found_mask[..., None], picked[..., :2], 0.0)
    keypoints[..., 2] = found_mask
    entries = []
    for person in range(joints.shape[0]):
        xy = keypoints[person, found_mask[person], :2]
        if len(xy) == 0:
            continue
        low, high = xy.min(axis=0), xy.max(axis=0)
        entry = {"file_name": Path(found.source).name, "frame": int(found.frame), "category_id": category_id,
                 "keypoints": [round(float(v), 2) for v in keypoints[person].ravel()],
                 "score": float(found.scores[person]),
                 "bbox": [round(float(v), 2) for v in (*low, *(high - low))]}
        if image_id is not None:
            entry = {"image_id": image_id, **entry}
        entries.append(entry)
    return entries


def _check_keypoint_map(value) -> None:
    if not value:
        raise ValueError("expected at least one keypoint")
    for k, joint in enumerate(value):
        if joint is not None and (isinstance(joint, bool) or not isinstance(joint, int) or joint < 0):
            raise ValueError(f"item {k}: expected a joint index or null, got {joint!r}")


class PredictionWriter(Codelet):
    """Streams every frame's skeletons as COCO keypoint results to a .jsonl file; the .json at stop."""

    skeletons = Rx(Skeleton2List, "Skeletons to record (image pixel coordinates).", queue_size=64,
                   policy="block")
    folder = Param(str, "out", "Output folder (created).", live=False)
    filename = Param(str, "predictions.json", "Results file name; the stream is the same name with .jsonl.", live=False)
    keypoint_map = Param(list, COCO17_FROM_OPENPOSE18, "For each output keypoint, the index of the input "
                                                       "joint, or null; default OpenPose COCO-18 → COCO-17.",
                         check=_check_keypoint_map)
    category_id = Param(int, 1, "COCO category of every result (1 = person).")
    image_ids = Param(str, "", "COCO annotations JSON whose images' file_name → id gives image_id; "
                               "empty = no image_id.", live=False)
    sync_period = Param(Period, "1s", "Longest time between fsyncs of the stream (what a power cut can lose); "
                                      "0 = after every frame.")

    def start(self):
        if Path(self.filename).name != self.filename or Path(self.filename).suffix != ".json":
            raise NodeError(f"filename {self.filename!r}: give a file name ending in .json (no folder: the "
                            f"folder param says where)")
        self._image_ids = read_image_ids(self.image_ids) if self.image_ids else {}
        self._unknown_images: set[str] = set()
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        # An earlier run's results would pass for this run's if this one is killed before its stop()
        # writes them: they go now (the stream holds this run's frames as they come).
        (folder / self.filename).unlink(missing_ok=True)
        self.stream_path = folder / (Path(self.filename).stem + ".jsonl")
        # Restarted after a failure (a split app's "restart": true): the frames before it stay.
        self._stream = open_lines(self.stream_path, append=resuming())
        self._synced = time.monotonic()
        self.frames = 0
        self.results = 0
        self.tick_on_message(self.skeletons)

    def tick(self):
        found = self.skeletons.read().payload
        name = Path(found.source).name
        image_id = self._image_ids.get(name)
        if self._image_ids and image_id is None:
            self._warn_unknown(name)
        try:
            entries = coco_entries(found, self.keypoint_map, self.category_id, image_id)
        except ValueError as exc:  # a keypoint_map for other skeletons than these
            raise NodeError(str(exc)) from None
        line = {"file_name": name, "frame": int(found.frame)}
        if image_id is not None:
            line["image_id"] = image_id
        line["results"] = entries
        try:
            self._stream.write(json.dumps(line).encode("utf-8") + b"\n")
            self._stream.flush()
            if time.monotonic() - self._synced >= self.sync_period:
                os.fsync(self._stream.fileno())
                self._synced = time.monotonic()
        except OSError as exc:  # a full disk: one line; the frames before are in the stream
            raise NodeError(f"cannot write {self.stream_path}: {exc.strerror or exc}") from None
        self.frames += 1
        self.results += len(entries)

    def stop(self):
        stream = getattr(self, "_stream", None)
        if stream is None:
            return
        stream.flush()
        os.fsync(stream.fileno())
        stream.close()
        self._stream = None
        target = Path(self.folder) / self.filename
        written = write_results_json(self.stream_path, target)
        self.log.info("%s: wrote %d result%s of %d frame%s to %s", self.full_name, written, "s"[:written != 1],
                      self.frames, "s"[:self.frames != 1], target)

    def _warn_unknown(self, name: str) -> None:
        if name in self._unknown_images or len(self._unknown_images) > UNKNOWN_NAMES_WARNED:
            return
        self._unknown_images.add(name)
        if len(self._unknown_images) > UNKNOWN_NAMES_WARNED:
            self.log.warning("%s: more than %d images are not in %s; no more warnings about that",
                             self.full_name, UNKNOWN_NAMES_WARNED, self.image_ids)
        else:
            self.log.warning("%s: %r is not in %s; its results have no image_id", self.full_name, name,
                             self.image_ids)


def read_image_ids(path: str) -> dict:
    """file_name -> id of the images of a COCO annotations file; NodeError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {image["file_name"]: image["id"] for image in data["images"]}
    except OSError as exc:
        raise NodeError(f"image_ids: cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NodeError(f"image_ids: {path} is not JSON ({exc})") from None
    except (KeyError, TypeError):
        raise NodeError(f"image_ids: {path} is no COCO annotations file (it needs \"images\" with "
                        f"\"file_name\" and \"id\")") from None


def read_stream(path: Path):
    """The frames of a predictions .jsonl file, one dict per line, in order. A last line cut short
    (the process was killed while writing it) is left out; any other bad line is an error."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not JSON ({exc})") from None


def write_results_json(stream: Path, target: Path) -> int:
    """Write the results of every frame in ``stream`` as one COCO results list to ``target``,
    entry by entry (never all in memory); returns the number of entries."""
    count = 0
    with open_atomically(target) as out:
        out.write(b"[")
        for frame in read_stream(stream):
            for entry in frame["results"]:
                out.write((", " if count else "").encode() + json.dumps(entry).encode("utf-8"))
                count += 1
        out.write(b"]")
    return count
