"""Running an app as a batch job: throughput benchmarks and COCO-format evaluation.

Both run the app as a user would (its own file, config and ``io`` section), with its sources
unthrottled: every source component that has a ``tick_period`` param gets 0 (as fast as the
graph accepts; the app's queue policies decide whether frames wait or are dropped).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tempfile
from pathlib import Path

from .app import App
from .loader import COMMAND_LINE, AppError, AppInvalid, AppSpec, load_app
from .progress import ProgressLine


def _sources(spec) -> list[str]:
    """Components no edge feeds."""
    fed = {edge.target.rsplit("/", 1)[0] for edge in spec.edges}
    return [c.full_name for c in spec.components if c.full_name not in fed]


def unthrottled(spec: AppSpec) -> AppSpec:
    """The spec with every source (no connected input) that has a ``tick_period`` set to 0."""
    return spec.with_params({name: {"tick_period": 0} for name in _sources(spec)
                             if "tick_period" in spec.types[name].params()})


def benchmark(app_file: Path, frames: int, overlays=(), sets=(), workers: int | None = None,
              io: dict[str, str] | None = None) -> dict:
    """Run up to ``frames`` ticks of every source, unthrottled; report frames/s and per-node latency.

    A source that runs out first (a single image without ``loop``) ends the run early: the
    figures count the frames it actually produced. Without an ``output`` in ``io`` (nor a set of
    what the app's io.output names), the outputs go to a temporary folder: a benchmark's files
    are no results, and must not replace those of a run in the app's own output folder."""
    io = dict(io or {})
    spec = load_app(app_file, overlays, sets, io=io)
    targets = spec.io.get("output", ())
    given = any(text.split("=", 1)[0].strip() in targets for text in sets)
    with tempfile.TemporaryDirectory(prefix="graphflow-bench-") as scratch:
        if targets and "output" not in io and not given:
            spec = load_app(app_file, overlays, sets, io={**io, "output": scratch})
        app = App(unthrottled(spec), workers=workers, max_ticks=frames)
        app.run()
    if app.failure is not None:
        raise RuntimeError(str(app.failure))
    scheduler = app.scheduler
    seconds = scheduler.ticking_until - scheduler.ticking_since
    report = app.report()
    produced = max((report["components"][name]["ticks"] for name in _sources(app.spec)), default=0)
    return {
        "app": str(app_file),
        "frames": produced,
        "seconds": seconds,
        "frames_per_s": produced / seconds if seconds > 0 else float("inf"),
        "drops": sum(c["drops"] for c in report["channels"].values()),
        "nodes": {name: {"ticks": c["ticks"], "median_ms": c["tick_ms"]["median"], "p90_ms": c["tick_ms"]["p90"]}
                  for name, c in report["components"].items()},
    }


log = logging.getLogger(__name__)

COCO_KEYPOINTS = 17  # a COCO person: 17 keypoints, each x, y, visibility; OKS has a sigma for each


def _is_number(value) -> bool:
    """A number NumPy takes as a finite float (an integer too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _numbers(value, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(map(_is_number, value))


def _shown(value) -> str:
    """A value in an error line: a list by its length (its items are rarely the problem), the rest cut short."""
    return f"a list of {len(value)}" if isinstance(value, list) else json.dumps(value)[:40]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coco_keypoints_problem(data) -> tuple[str, str] | None:
    """The first thing in a COCO annotations document that pycocotools' keypoint evaluation would
    trip over or silently score as nothing, as (JSON path, what is wrong); None when there is none.
    Checks the fields that COCO and COCOeval(iouType='keypoints') read, with the types they need
    (ids are sorted and used as keys, so they must be whole numbers)."""
    if not isinstance(data, dict):
        return "$", f"expected a JSON object with \"images\", \"annotations\" and \"categories\", " \
                    f"got {type(data).__name__ if data is not None else 'null'}"
    for key in ("images", "annotations", "categories"):
        if key not in data:
            return "$", f"no {json.dumps(key)}"
        if not isinstance(data[key], list):
            return f"$.{key}", "expected a list"

    def fields(where: str, item, expected: dict):
        """The problem with an object that must have ``expected`` keys (key -> test, what it must be)."""
        if not isinstance(item, dict):
            return where, "expected an object"
        for key, (test, what) in expected.items():
            if key not in item:
                return where, f"no {json.dumps(key)}"
            if not test(item[key]):
                return f"{where}.{key}", f"expected {what}, got {_shown(item[key])}"
        return None

    whole = (_whole, "a whole number")
    for i, category in enumerate(data["categories"]):
        problem = fields(f"$.categories[{i}]", category, {"id": whole})
        if problem:
            return problem
    if not any(isinstance(c.get("keypoints"), list) and len(c["keypoints"]) == COCO_KEYPOINTS
               for c in data["categories"]):
        return "$.categories", f"no category with {COCO_KEYPOINTS} \"keypoints\" names (the COCO person category)"
    for i, image in enumerate(data["images"]):
        problem = fields(f"$.images[{i}]", image, {
            "id": whole, "file_name": (lambda v: isinstance(v, str) and v.strip() != "", "a file name")})
        if problem:
            return problem
    category_ids = {category["id"] for category in data["categories"]}
    annotation_fields = {
        "id": whole, "image_id": whole,
        "category_id": (lambda v: _whole(v) and v in category_ids, "the id of a category in $.categories"),
        "keypoints": (lambda v: _numbers(v, 3 * COCO_KEYPOINTS),
                      f"{3 * COCO_KEYPOINTS} numbers ({COCO_KEYPOINTS} keypoints, each x, y, visibility)"),
        "num_keypoints": (lambda v: _whole(v) and 0 <= v <= COCO_KEYPOINTS, f"a whole number in [0, {COCO_KEYPOINTS}]"),
        "bbox": (lambda v: _numbers(v, 4), "4 numbers [x, y, width, height]"),
        "area": (lambda v: _is_number(v) and v >= 0, "a number, 0 or more"),
        "iscrowd": (lambda v: _whole(v) and v in (0, 1), "0 or 1"),
    }
    for i, annotation in enumerate(data["annotations"]):
        problem = fields(f"$.annotations[{i}]", annotation, annotation_fields)
        if problem:
            return problem
    for key in ("images", "annotations"):  # ids are keys: a repeated one silently replaces the first
        first: dict = {}
        for i, item in enumerate(data[key]):
            if item["id"] in first:
                return f"$.{key}[{i}].id", f"{item['id']} is also the id of $.{key}[{first[item['id']]}]"
            first[item["id"]] = i
    return None


def load_coco_keypoints(path: Path) -> dict:
    """Read and check a COCO keypoints annotations file; raises AppInvalid with one line naming
    the file and the JSON path of the first problem, before any work is done with it."""
    def invalid(where: str, what: str) -> AppInvalid:
        return AppInvalid([AppError(str(path), where, what)])

    if path.is_dir():
        raise invalid("$", "is a folder, expected a COCO annotations JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise invalid("$", f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise invalid("$", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise invalid("$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise invalid("$", "nested too deeply to read") from None
    problem = coco_keypoints_problem(data)
    if problem is not None:
        raise invalid(*problem)
    return data


class EvaluationInterrupted(RuntimeError):
    """The run was stopped (Ctrl-C) before it went through the images."""


def evaluate_coco(app_file: Path, annotations: Path, images: Path, overlays=(), sets=(),
                  workers: int | None = None, keep_output: Path | None = None) -> dict:
    """Run the app over a COCO image folder and score its ``predictions.json`` (COCO results
    format, written into the app's io.output folder) with pycocotools. Keypoint results are
    scored with OKS (iouType 'keypoints'), others as boxes. Without ``keep_output`` the outputs go to
    a temporary folder that is removed afterwards, also when the run fails."""
    try:
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        raise RuntimeError("graphflow eval needs pycocotools: pip install pycocotools") from None
    for path, what in ((annotations, "annotations file"), (images, "image folder")):
        if not path.exists():
            raise AppInvalid([AppError(COMMAND_LINE, str(path), f"{what} not found")])
    data = load_coco_keypoints(annotations)  # before the run: a bad file must not waste it
    if not images.is_dir():
        raise AppInvalid([AppError(COMMAND_LINE, str(images), "is not a folder (--images takes the folder of "
                                                              "the annotated images)")])
    if keep_output is not None and keep_output.is_dir() and keep_output.resolve() == images.resolve():
        raise AppInvalid([AppError(COMMAND_LINE, "--output", f"{keep_output} is the folder of the images: outputs "
                                   f"named like the images would replace them; choose another folder")])
    annotated = len(data["images"])
    data = _images_in_folder(data, annotations, images)
    if keep_output is not None:
        result = _evaluate_coco(app_file, data, images, overlays, sets, workers, keep_output)
    else:
        with tempfile.TemporaryDirectory(prefix="graphflow-eval-") as temporary:
            result = _evaluate_coco(app_file, data, images, overlays, sets, workers, Path(temporary))
        del result["output"]  # removed with the temporary folder
    return {**result, "annotated_images": annotated}


def _images_in_folder(data: dict, annotations: Path, folder: Path) -> dict:
    """The annotations of the images that are in ``folder`` (a warning says how many are not):
    an image the app never saw would count its people as missed. Refuses, before the run, a
    folder with none of them and images with no person to score (AP would be 0 or -1)."""
    in_folder = {file.name for file in folder.iterdir() if file.is_file()}
    present = [image for image in data["images"] if Path(image["file_name"]).name in in_folder]
    if not present:
        what = f"none of its {len(data['images'])} images (file_name) is in {folder}" if data["images"] \
            else "lists no images"
        raise AppInvalid([AppError(str(annotations), "$.images", what)])
    if len(present) < len(data["images"]):
        log.warning("%d of the %d images in %s are not in %s; evaluating on the %d that are",
                    len(data["images"]) - len(present), len(data["images"]), annotations, folder, len(present))
    ids = {image["id"] for image in present}
    keypoint_categories = {c["id"] for c in data["categories"] if len(c.get("keypoints") or ()) == COCO_KEYPOINTS}
    if not any(a["image_id"] in ids and a["category_id"] in keypoint_categories and a["num_keypoints"] > 0
               and not a["iscrowd"] for a in data["annotations"]):
        raise AppInvalid([AppError(str(annotations), "$.annotations", f"no person with keypoints (num_keypoints "
                                                                      f"> 0, not a crowd) on its images in {folder}: "
                                                                      f"nothing to score")])
    return {**data, "images": present}


def _ground_truth(data: dict):
    """A pycocotools COCO over an already checked annotations document."""
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = data
    with _quiet():
        gt.createIndex()
    return gt


def _quiet():
    """pycocotools prints each of its steps ('creating index...', 'DONE (t=0.00s)'); only its
    summary table is for the user."""
    return contextlib.redirect_stdout(io.StringIO())


def _frames_seen(output: Path) -> set[str] | None:
    """The file names of the frames the app processed, from its predictions stream (a line per
    frame, with or without people); None when it wrote no stream."""
    stream = output / "predictions.jsonl"
    if not stream.exists():
        return None
    names = set()
    for line in stream.read_text(encoding="utf-8").splitlines():
        try:
            names.add(Path(json.loads(line)["file_name"]).name)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill: its frame is not there
    return names


def _evaluate_coco(app_file: Path, data: dict, images: Path, overlays, sets, workers, output: Path) -> dict:
    from pycocotools.cocoeval import COCOeval

    spec = load_app(app_file, overlays, sets, io={"input": str(images), "output": str(output)})
    app = App(unthrottled(spec), workers=workers)
    with ProgressLine(app.components.values()):  # on a terminal: how far through the folder
        app.run()
    if app.failure is not None:
        raise RuntimeError(str(app.failure))
    if app.scheduler.stopped_early:  # Ctrl-C: the frames so far are no score of the set
        raise EvaluationInterrupted("interrupted before the app went through the images: nothing scored")
    predictions_file = output / "predictions.json"
    if not predictions_file.exists():
        raise RuntimeError(f"the app wrote no {predictions_file}; its io.output must name a folder "
                           f"where a prediction writer puts predictions.json")
    predictions = json.loads(predictions_file.read_text())
    seen = _frames_seen(output)
    evaluated = [image for image in data["images"] if seen is None or Path(image["file_name"]).name in seen]
    if not evaluated:
        raise RuntimeError(f"the app processed none of the {len(data['images'])} annotated images in {images} "
                           f"(its log says why)")
    if len(evaluated) < len(data["images"]):
        skipped = sorted(set(Path(image["file_name"]).name for image in data["images"]) - seen)
        log.warning("%d annotated image%s not evaluated (the app skipped %s): %s", len(skipped),
                    " was" if len(skipped) == 1 else "s were", "it" if len(skipped) == 1 else "them",
                    ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    gt = _ground_truth({**data, "images": evaluated})
    counts = {"images": len(evaluated), "output": str(output)}
    ids = {Path(image["file_name"]).name: image["id"] for image in evaluated}
    results = []
    for prediction in predictions:
        image_id = prediction.get("image_id", ids.get(Path(prediction.get("file_name", "")).name))
        if image_id in gt.imgs:
            results.append({**prediction, "image_id": image_id})
    kind = "keypoints" if results and "keypoints" in results[0] else "bbox"
    categories = {result.get("category_id") for result in results}
    if results and not categories & set(gt.cats):
        raise RuntimeError(f"the app's results are of category {sorted(categories, key=str)}, which the annotations do "
                           f"not have (their categories: {sorted(gt.cats)}): set the prediction writer's category_id")
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "predictions": 0, "iou_type": kind, **counts}
    with _quiet():
        evaluation = COCOeval(gt, gt.loadRes(results), kind)
        evaluation.params.imgIds = sorted(gt.imgs)
        evaluation.evaluate()
        evaluation.accumulate()
    evaluation.summarize()
    stats = evaluation.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "AR": float(stats[5] if kind == "keypoints" else stats[8]), "predictions": len(results),
            "iou_type": kind, **counts}
