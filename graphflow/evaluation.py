"""Running an app as a batch job: throughput benchmarks and COCO-format evaluation.

Both run the app as a user would (its own file, config and ``io`` section), with its sources
unthrottled: every source component that has a ``tick_period`` param gets 0 (as fast as the
graph accepts; the app's queue policies decide whether frames wait or are dropped).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .app import App
from .loader import COMMAND_LINE, AppError, AppInvalid, AppSpec, load_app


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
    figures count the frames it actually produced."""
    app = App(unthrottled(load_app(app_file, overlays, sets, io=io)), workers=workers, max_ticks=frames)
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
    if keep_output is not None:
        return _evaluate_coco(app_file, annotations, images, overlays, sets, workers, keep_output)
    with tempfile.TemporaryDirectory(prefix="graphflow-eval-") as temporary:
        result = _evaluate_coco(app_file, annotations, images, overlays, sets, workers, Path(temporary))
    del result["output"]  # removed with the temporary folder
    return result


def _evaluate_coco(app_file: Path, annotations: Path, images: Path, overlays, sets, workers, output: Path) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    spec = load_app(app_file, overlays, sets, io={"input": str(images), "output": str(output)})
    app = App(unthrottled(spec), workers=workers)
    app.run()
    if app.failure is not None:
        raise RuntimeError(str(app.failure))
    predictions_file = output / "predictions.json"
    if not predictions_file.exists():
        raise RuntimeError(f"the app wrote no {predictions_file}; its io.output must name a folder "
                           f"where a prediction writer puts predictions.json")
    predictions = json.loads(predictions_file.read_text())
    gt = COCO(str(annotations))
    ids = {Path(image["file_name"]).name: image["id"] for image in gt.dataset["images"]}
    results = []
    for prediction in predictions:
        image_id = prediction.get("image_id", ids.get(Path(prediction.get("file_name", "")).name))
        if image_id in gt.imgs:
            results.append({**prediction, "image_id": image_id})
    kind = "keypoints" if results and "keypoints" in results[0] else "bbox"
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "predictions": 0, "iou_type": kind,
                "output": str(output)}
    evaluation = COCOeval(gt, gt.loadRes(results), kind)
    evaluation.params.imgIds = sorted(gt.imgs)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    stats = evaluation.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "AR": float(stats[5] if kind == "keypoints" else stats[8]), "predictions": len(results),
            "images": len(gt.imgs), "iou_type": kind, "output": str(output)}
