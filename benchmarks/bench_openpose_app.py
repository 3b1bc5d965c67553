"""The OpenPose app against a plain sequential Python loop doing the same work, side by side.

    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_openpose_app.py [--frames N] [--rounds R] [--json OUT]

Both process the same N frames (the images of shared/data/images, cycled) with the same model,
encoder settings, decoder and drawing, and write the annotated images and predictions:

- app:  `graphflow bench apps/openpose.app.json` (the graph, its worker threads, its queues);
- loop: for each image: read → encode → infer (ONNX Runtime, same session options) → decode
  (nodes/openpose/paf.decode) → draw → write, one after the other.

Rounds alternate app and loop so the shared machine's noise hits both alike; a first round warms
both up and is not counted. The figure is the median of the rounds' app/loop ratios.
Target: app frames/s ≥ loop frames/s.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from graphflow.evaluation import benchmark  # noqa: E402
from graphflow.loader import load_app  # noqa: E402
from graphflow.packs.ml import _encoding  # noqa: E402
from graphflow.packs.ml._onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from graphflow.models import find_model  # noqa: E402
from graphflow.packs.openpose import paf  # noqa: E402
from graphflow.packs.viz.prediction_writer import COCO17_FROM_OPENPOSE18, coco_entries  # noqa: E402
from graphflow.packs.viz.visualizer import auto_thickness, draw_skeletons  # noqa: E402
from graphflow.packs.vision.messages import Skeleton2List  # noqa: E402

APP = REPO / "apps" / "openpose.app.json"


def frame_folder(images: Path, frames: int, into: Path) -> Path:
    """A folder with ``frames`` images, the shared ones cycled (symlinks, sorted names)."""
    into.mkdir()
    sources = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    for i in range(frames):
        source = sources[i % len(sources)]
        (into / f"{i:05d}{source.suffix}").symlink_to(source.resolve())
    return into


def plain_loop(folder: Path, out: Path, config: dict) -> float:
    """The same pipeline as sequential Python; returns frames/s (model load excluded)."""
    enc, inf = config["encoder"], config["inference"]
    backend = OnnxRuntimeBackend(find_model(inf["model_file_path"]), ["CPUExecutionProvider"])
    files = sorted(folder.iterdir())
    predictions = []
    start = time.perf_counter()
    for frame, path in enumerate(files):
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        plan = _encoding.plan(*pixels.shape[:2], enc["rows"], enc["cols"], enc["keep_aspect_ratio"],
                              enc["size_multiple"])
        tensor = _encoding.encode_cpu(pixels, plan, gain=1.0, bias=0.0, pad_value=0.0,
                                      interpolation=enc["interpolation"], index_order="201", batch_dim=True)
        heatmaps, pafs = backend.run({"image": tensor}, ["heatmaps", "pafs"])
        transform = plan.transform()
        scale, offset = paf.compose_image_mapping(paf.DEFAULTS["output_scale"], paf.DEFAULTS["offset"],
                                                  (transform.scale_y, transform.scale_x),
                                                  (transform.offset_y, transform.offset_x))
        skeletons = paf.decode(heatmaps, pafs, output_scale=scale, offset=offset)  # joints in image pixels
        joints = skeletons.parts
        joints[skeletons.index < 0] = 0.0
        annotated = pixels.copy()
        draw_skeletons(annotated, joints, paf.EDGES[:17], 0.05, auto_thickness(*pixels.shape[:2]))
        cv2.imwrite(str(out / f"{path.stem}.jpg"), annotated, [cv2.IMWRITE_JPEG_QUALITY, 95])
        found = Skeleton2List(joints, skeletons.score, list(paf.PART_NAMES), [], str(path), frame)
        predictions += coco_entries(found, COCO17_FROM_OPENPOSE18, 1)
    (out / "predictions.json").write_text(json.dumps(predictions))
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    spec = load_app(APP)
    config = {"encoder": spec.params_of("encoder/color_camera_encoder"),
              "inference": spec.params_of("inference/tensor_rt_inference")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = frame_folder(args.images, args.frames, Path(tmp) / "frames")
        app_rates, loop_rates, nodes = [], [], {}
        for round_ in range(-1, args.rounds):  # round -1 warms up both (caches, ORT arenas), not counted
            out_app, out_loop = Path(tmp) / f"app{round_}", Path(tmp) / f"loop{round_}"
            out_loop.mkdir()
            result = benchmark(APP, args.frames, sets=[f"feeder/image_loader/path={folder}",
                                                       f"image_writer/image_writer/folder={out_app}",
                                                       f"predictions/prediction_writer/folder={out_app}"])
            loop_fps = plain_loop(folder, out_loop, config)
            assert len(json.loads((out_app / "predictions.json").read_text())) == \
                len(json.loads((out_loop / "predictions.json").read_text())), "app and loop disagree"
            if round_ < 0:
                continue
            app_rates.append(result["frames_per_s"])
            loop_rates.append(loop_fps)
            nodes = result["nodes"]
            print(f"round {round_}: app {app_rates[-1]:.2f} frames/s, loop {loop_rates[-1]:.2f} frames/s, "
                  f"ratio {app_rates[-1] / loop_rates[-1]:.3f}", flush=True)
    app_fps, loop_fps = statistics.median(app_rates), statistics.median(loop_rates)
    ratios = sorted(a / b for a, b in zip(app_rates, loop_rates))  # each round's pair ran back to back
    ratio = statistics.median(ratios)
    print(f"\n{args.frames} frames, {args.rounds} rounds: app {app_fps:.2f} frames/s, plain loop {loop_fps:.2f} "
          f"frames/s (medians); ratio app/loop {ratio:.3f} (median of rounds, range {ratios[0]:.3f}-"
          f"{ratios[-1]:.3f}; target ≥ 1)")
    print(f"{'component':44} {'median ms':>10} {'p90 ms':>10}")
    for name, node in nodes.items():
        print(f"{name:44} {node['median_ms']:>10.2f} {node['p90_ms']:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "app_fps": app_rates, "loop_fps": loop_rates,
                                         "ratio": ratio, "ratio_range": [ratios[0], ratios[-1]],
                                         "nodes": nodes}, indent=2))


if __name__ == "__main__":
    main()
