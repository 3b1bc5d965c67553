"""Evaluate the OpenPose PAF decoder (nodes/openpose/paf.py) with COCO OKS AP.

Runs openpose_mobilenet_thin.onnx with onnxruntime (CPU, 2 threads) on a COCO mini set,
caches the raw model outputs under /tmp so that decoder tuning does not re-run the model,
decodes every image with ``paf.decode``, maps the 18 OpenPose parts to COCO-17, writes
a COCO results JSON and scores it with pycocotools ``COCOeval(iouType='keypoints')``.

Usage::

    python tools/eval_paf.py                       # val mini, input height 368, default params
    python tools/eval_paf.py --set train --height 432
    python tools/eval_paf.py --param threshold_heatmap=0.1 --param upsample=2
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "openpose_mobilenet_thin.onnx"
SETS = {
    "val": (SHARED / "data" / "coco_val2017_mini", "person_keypoints_val2017_mini.json"),
    "train": (SHARED / "data" / "coco_train2017_mini", "person_keypoints_train2017_mini.json"),
}
CACHE = Path(os.environ.get("PAF_CACHE", "/tmp/paf_eval_cache"))
STRIDE = 8
# Model part (OpenPose COCO-18) -> COCO-17 keypoint index; the neck (1) has no COCO counterpart.
PART_TO_COCO = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]


def input_size(w0: int, h0: int, height: int) -> tuple[int, int]:
    """Model input (W, H): height fixed, aspect kept, width rounded to a multiple of 8."""
    w = max(STRIDE, int(round(w0 * height / h0 / STRIDE)) * STRIDE)
    return w, height


def model_outputs(set_name: str, height: int, threads: int = 2) -> dict[int, dict]:
    """Run the model on every image of the set (or load the cached result).

    Returns {image_id: {"heatmaps": (19,h,w), "pafs": (38,h,w), "size_in": (W,H), "size0": (W0,H0)}}.
    """
    root, ann = SETS[set_name]
    cache_file = CACHE / f"{set_name}_h{height}.npz"
    meta = json.loads((root / ann).read_text())
    if cache_file.exists():
        z = np.load(cache_file)
        out = {}
        for im in meta["images"]:
            i = im["id"]
            out[i] = {"heatmaps": z[f"h{i}"], "pafs": z[f"p{i}"],
                      "size_in": tuple(z[f"s{i}"]), "size0": (im["width"], im["height"])}
        return out
    import cv2
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(MODEL), so, providers=["CPUExecutionProvider"])
    out, arrays = {}, {}
    t0 = time.perf_counter()
    for im in meta["images"]:
        img = cv2.imread(str(root / "images" / im["file_name"]))
        h0, w0 = img.shape[:2]
        w, h = input_size(w0, h0, height)
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        hm, pf = sess.run(["heatmaps", "pafs"], {"image": x.transpose(2, 0, 1)[None]})
        i = im["id"]
        out[i] = {"heatmaps": hm[0], "pafs": pf[0], "size_in": (w, h), "size0": (w0, h0)}
        arrays[f"h{i}"], arrays[f"p{i}"], arrays[f"s{i}"] = hm[0], pf[0], np.array([w, h])
    print(f"model: {len(out)} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, **arrays)
    return out


def to_coco(skel, image_id: int, size_in, size0) -> list[dict]:
    """Skeletons in model-input pixels -> COCO keypoint results in original-image pixels."""
    (w, h), (w0, h0) = size_in, size0
    sx, sy = w0 / w, h0 / h
    res = []
    for parts, score in zip(skel.parts, skel.score):
        kp = np.zeros((17, 3))
        for j, c in enumerate(PART_TO_COCO):
            if c is None or not parts[j, 2] > 0:
                continue
            # pixel-centre convention on both sides of the resize
            kp[c] = ((parts[j, 0] + 0.5) * sx - 0.5, (parts[j, 1] + 0.5) * sy - 0.5, parts[j, 2])
        vis = kp[:, 2] > 0
        if not vis.any():
            continue
        x0, y0 = kp[vis, :2].min(0)
        x1, y1 = kp[vis, :2].max(0)
        res.append({"image_id": int(image_id), "category_id": 1, "keypoints": kp.ravel().round(2).tolist(),
                    "score": float(score), "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return res


def evaluate(outputs: dict, ann_file: Path, params: dict | None = None, verbose: bool = False):
    """Decode all cached outputs with ``params`` and return (stats[10], results, decode_ms list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from graphflow.packs.openpose import paf

    params = params or {}
    results, times = [], []
    for i, o in outputs.items():
        t0 = time.perf_counter()
        skel = paf.decode(o["heatmaps"], o["pafs"], **params)
        times.append((time.perf_counter() - t0) * 1e3)
        results += to_coco(skel, i, o["size_in"], o["size0"])
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        gt = COCO(str(ann_file))
        if not results:
            return np.zeros(10), results, times
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(buf.getvalue().split("index created!")[-1].strip())
    return ev.stats, results, times


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="val", choices=sorted(SETS))
    ap.add_argument("--height", type=int, default=368, help="model input height (multiple of 8)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="decoder parameter override (repeatable)")
    ap.add_argument("--out", type=Path, help="write the COCO results JSON here")
    ap.add_argument("-q", "--quiet", action="store_true", help="one summary line only")
    args = ap.parse_args(argv)
    root, ann = SETS[args.set]
    if not root.exists():
        print(f"{root} not found; skipping", file=sys.stderr)
        return 0
    params = dict(kv.split("=", 1) for kv in args.param)
    params = {k: parse_value(v) for k, v in params.items()}
    outputs = model_outputs(args.set, args.height)
    stats, results, times = evaluate(outputs, root / ann, params, verbose=not args.quiet)
    if args.out:
        args.out.write_text(json.dumps(results))
    print(f"{args.set} h={args.height} {params}: AP {stats[0]:.3f} AP50 {stats[1]:.3f} AP75 {stats[2]:.3f} "
          f"APm {stats[3]:.3f} APl {stats[4]:.3f} AR {stats[5]:.3f} | people {len(results)} | "
          f"decode median {np.median(times):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
