"""Per-frame time of the plain-function OpenPose PAF decoder (nodes/openpose/paf.py).

Cases: the golden bus.jpg maps (46x54) and synthetic frames with 1, 5 and 20 people at 46x54
and 120x160 map cells (nodes/openpose/synthetic.py). One thread (BLAS/OpenMP pinned to 1).
Prints median and p90 ms of ``paf.decode`` per case (with the JIT: steps 3-12 as one compiled
call), and a per-step breakdown (medians) of the step functions called one by one, as the
decoder's nodes call them.

    python benchmarks/bench_decoder_functions.py [--repeat 200] [--param name=value ...]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphflow.packs.openpose import paf, synthetic  # noqa: E402

REFERENCE = Path(os.environ.get("GRAPHFLOW_SHARED", ROOT.parent / "shared")) / "data" / "reference" / \
    "openpose_mobilenet_thin_bus_368x432.npz"


def cases():
    if REFERENCE.exists():
        z = np.load(REFERENCE)
        yield "bus.jpg reference 46x54", z["heatmaps"][0], z["pafs"][0]
    for shape in ((46, 54), (120, 160)):
        for n in (1, 5, 20):
            hm, pf = synthetic.render(synthetic.random_people(n, shape, seed=n), shape)
            yield f"synthetic {n:2d} people {shape[0]}x{shape[1]}", hm, pf


def steps(hm, pf, p):
    """Run the chain step by step, yielding (step name, seconds)."""
    t = time.perf_counter
    hm = hm[:paf.NUM_PARTS]
    t0 = t(); pooled = paf.max_pool(hm, p["kernel"])
    t1 = t(); pm = paf.non_maximum_suppression(hm, pooled, p["threshold_heatmap"])
    t2 = t(); pk = paf.peak_candidates(hm, pm, p["refine"])
    t3 = t(); parts = paf.part_candidates(pk, p["threshold_heatmap"])
    t4 = t(); cand = paf.edge_candidates(parts, paf.EDGES, p["threshold_edge_size"])
    t5 = t(); sc = paf.edge_scores(pf, parts, cand, paf.EDGES_PAF, p["edge_sampling_steps"],
                                   p["threshold_sample_score"], p["edge_sampling"])
    t6 = t(); kept = paf.edge_threshold(sc, p["threshold_edge_score"], p["threshold_edge_sampling_counter"])
    t7 = t(); sk = paf.graph_matching(parts, kept, paf.EDGES)
    t8 = t(); sk = paf.merge_split_graphs(sk, parts, sc, p["threshold_split_score"], p["threshold_part_counter"],
                                          p["threshold_object_score"])
    t9 = t(); paf.refine_part_coordinates(sk, p["refine_parts_coordinates"], p["output_scale"], p["offset"], hm)
    t10 = t()
    ts = [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10]
    names = ["max_pool", "nms", "peaks", "parts", "edge_cand", "edge_scores", "edge_thr", "matching",
             "merge", "refine"]
    return dict(zip(names, np.diff(ts))), len(cand.a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    params = {}
    for kv in args.param:
        k, v = kv.split("=", 1)
        default = paf.DEFAULTS.get(k)
        params[k] = v if isinstance(default, str) else type(default)(v) if default is not None else float(v)
    p = {**paf.DEFAULTS, **params}
    paf.warm_up()
    print(f"numpy {np.__version__}, compiled kernels: {paf.jit_enabled()} (GRAPHFLOW_JIT=0: NumPy), "
          f"params {params or 'defaults'}, {args.repeat} repeats, 1 thread")
    print(f"{'case':32s} {'people':>6s} {'pairs':>6s} {'median ms':>10s} {'p90 ms':>8s}   per-step medians (ms)")
    for name, hm, pf in cases():
        for _ in range(5):  # warm-up
            sk = paf.decode(hm, pf, **params)
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sk = paf.decode(hm, pf, **params)
            ts.append((time.perf_counter() - t0) * 1e3)
        st = [steps(hm, pf, p) for _ in range(max(20, args.repeat // 4))]
        npairs = st[0][1]
        med = {k: np.median([s[0][k] for s in st]) * 1e3 for k in st[0][0]}
        br = " ".join(f"{k}={v:.3f}" for k, v in med.items())
        print(f"{name:32s} {len(sk.score):6d} {npairs:6d} {np.median(ts):10.3f} {np.percentile(ts, 90):8.3f}   {br}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
