"""The OpenPose decoder as a chain of nodes against the same steps as plain functions.

    python benchmarks/bench_decoder_chain.py [--frames 200] [--rounds 9] [--cases TEXT] [--json OUT]

For each case (the golden bus.jpg maps, synthetic 1/5/20 people at 46×54 and 120×160 cells):
- functions: the same ten steps as plain function calls (``paf.decode_steps``, what the nodes
  call, one after the other) in a loop, joints mapped to image pixels as the chain's last step
  does; a frame's time is one call's. (``paf.decode``'s one-kernel path is not these steps: its
  time is given beside, as "one kernel";)
- chain: the decoder subgraph (apps/openpose_decoder.subgraph.json, ten nodes) in an app fed by
  a source publishing the same maps as fast as the chain accepts, on ONE worker thread. A frame's
  time is from the source's publish of the maps to the sink's read of the skeletons: the ten
  ticks and every hop between them, as a plain call is timed from call to return. ("interval",
  the time between two frames at the sink, also counts the test source's and sink's own ticks.)
A round's figure is the MEDIAN frame time: this VM's noise comes in bursts that stall some frames,
and a mean over a round carried them (round ratios ranged 0.7-1.8 that way). Rounds alternate
functions and chain so noise hits both alike; the ratio is the median of the rounds' ratios
(range: lowest-highest), and "µs/tick over" is the chain's extra time per frame spread over its
ten ticks. One thread everywhere (BLAS pinned to 1).
Targets: chain ≤ 1.15 × functions; functions < 2 ms (5 people, 46×54) and < 5 ms (20 people, 120×160).
"""
import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_decoder_functions import cases  # noqa: E402
from graphflow import Codelet, Param, Rx, Tx  # noqa: E402
from graphflow.app import App  # noqa: E402
from graphflow.loader import load_app  # noqa: E402
from graphflow.packs.openpose import paf  # noqa: E402
from graphflow.packs.vision.messages import ImageTransform, Skeleton2List, Tensors  # noqa: E402

PAYLOADS: dict[str, Tensors] = {}
DECODER_TICKS = 10


class MapsSource(Codelet):
    """Publishes the case's maps `frames` times, as fast as the chain accepts."""
    maps = Tx(Tensors)
    case = Param(str, "")
    frames = Param(int, 100)

    def start(self):
        self.sent = 0
        self.tick_periodically(0)

    def tick(self):
        self.maps.publish(self.payloads[self.case])
        self.sent += 1
        if self.sent >= self.frames:
            self.report_exhausted()


class Count(Codelet):
    skeletons = Rx(Skeleton2List, queue_size=64, policy="block")

    def start(self):
        self.arrivals = []  # when each frame's skeletons were read
        self.transits = []  # from the maps' publish (the frame's acqtime) to that read
        self.tick_on_message(self.skeletons)

    def tick(self):
        message = self.skeletons.read()
        now = self.now()
        self.arrivals.append(now)
        self.transits.append(now - message.acqtime)


def chain_ms(app_file: Path, case: str, frames: int, workers: int = 1) -> tuple[float, float]:
    """Median ms per frame through the chain (maps published → skeletons read), and the median
    interval between frames at the sink."""
    app = App(load_app(app_file, sets=[f"source/maps/case={case}", f"source/maps/frames={frames}"]), workers=workers)
    app.component("source/maps").payloads = PAYLOADS  # the app loaded this file as its own module
    app.run()
    assert app.failure is None, app.failure
    sink = app.component("sink/count")
    assert len(sink.arrivals) == frames, "frames were dropped"
    interval = statistics.median(b - a for a, b in zip(sink.arrivals, sink.arrivals[1:]))
    return statistics.median(sink.transits) * 1e3, interval * 1e3


def decode_to_image(heatmaps, pafs, transform: ImageTransform, decode=paf.decode_steps):
    """The chain's work as plain calls: steps 3-12, joints in original image pixels, 0 = missing."""
    scale, offset = paf.compose_image_mapping(paf.DEFAULTS["output_scale"], paf.DEFAULTS["offset"],
                                              (transform.scale_y, transform.scale_x),
                                              (transform.offset_y, transform.offset_x))
    skeletons = decode(heatmaps, pafs, output_scale=scale, offset=offset)
    joints = skeletons.parts
    joints[skeletons.index < 0] = 0.0
    return joints, skeletons.score


def functions_ms(heatmaps, pafs, frames: int, transform: ImageTransform = ImageTransform(),
                 decode=paf.decode_steps) -> float:
    """Median ms per call of the plain functions."""
    durations = []
    clock = time.perf_counter
    for _ in range(frames):
        start = clock()
        decode_to_image(heatmaps, pafs, transform, decode)
        durations.append(clock() - start)
    return statistics.median(durations) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cases", default="", help="only the cases whose name contains TEXT (e.g. '46x54')")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app_file = Path(tmp) / "chain.app.json"
        app_file.write_text(json.dumps({
            "name": "decoder_chain", "modules": [__file__],
            "graph": {"nodes": [
                {"name": "source", "components": [{"name": "maps", "type": "bench_decoder_chain.MapsSource"}]},
                {"name": "decoder", "subgraph": str(REPO / "apps" / "openpose_decoder.subgraph.json")},
                {"name": "sink", "components": [{"name": "count", "type": "bench_decoder_chain.Count"}]}],
                "edges": [{"source": "source/maps/maps", "target": "decoder.interface/subgraph/maps",
                           "queue": {"size": 1, "policy": "block"}},
                          {"source": "decoder.interface/subgraph/skeletons", "target": "sink/count/skeletons"}]}}))
        results = {}
        print(f"{'case':32} {'functions ms':>13} {'chain ms':>9} {'ratio':>6} {'range':>11} "
              f"{'µs/tick over':>13} {'interval ms':>12} {'ratio':>6} {'one kernel ms':>14}")
        # All maps first: their megabytes raise glibc's dynamic mmap/trim thresholds as a running
        # app's frames do. Otherwise the first case ran with the heap trimmed after every frame
        # (page faults), the plain functions hit harder than the chain.
        for name, heatmaps, pafs in list(cases()):
            if args.cases not in name:
                continue
            PAYLOADS[name] = Tensors(["heatmaps", "pafs"], [heatmaps[None], pafs[None]], ImageTransform())
            functions_ms(heatmaps, pafs, 100), chain_ms(app_file, name, 100)  # warm-up, not counted
            plain, chain, interval, fused = [], [], [], []
            for _ in range(args.rounds):
                plain.append(functions_ms(heatmaps, pafs, args.frames))
                fused.append(functions_ms(heatmaps, pafs, args.frames, decode=paf.decode))
                through, between = chain_ms(app_file, name, args.frames)
                chain.append(through)
                interval.append(between)
            f, c, i = statistics.median(plain), statistics.median(chain), statistics.median(interval)
            ratios = sorted(c_ / f_ for f_, c_ in zip(plain, chain))  # each round's pair ran back to back
            ratio = statistics.median(ratios)
            interval_ratio = statistics.median(i_ / f_ for f_, i_ in zip(plain, interval))
            overhead_us = (c - f) / DECODER_TICKS * 1e3
            one_kernel = statistics.median(fused)
            results[name] = {"functions_ms": f, "chain_ms": c, "ratio": ratio,
                             "ratio_range": [ratios[0], ratios[-1]], "overhead_us_per_tick": overhead_us,
                             "interval_ms": i, "interval_ratio": interval_ratio, "one_kernel_ms": one_kernel}
            print(f"{name:32} {f:13.3f} {c:9.3f} {ratio:6.2f} {ratios[0]:5.2f}-{ratios[-1]:<5.2f} "
                  f"{overhead_us:13.1f} {i:12.3f} {interval_ratio:6.2f} {one_kernel:14.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
