"""graphflow.wire against a plain memcpy, on one 1080×1920×3 uint8 image (6.2 MB).

    python benchmarks/bench_wire.py [--repeat N] [--json OUT]

Side by side, median and p90 over N runs:
- memcpy: ``np.copyto`` of the frame's bytes into a preallocated array (the floor of one copy).
- encode+decode: ``wire.encode`` then ``wire.decode`` of the frames (what a ZeroMQ hop does
  around the socket): zero-copy both ways, so it costs the header, not the pixels.
- pack+unpack: the same into one contiguous blob and back (files, recordings): one copy.
- small: encode+decode of a demo/Number message (the per-message overhead).
The ratio to memcpy is printed for each.
"""
import argparse
import json
import statistics
import time

import numpy as np

from graphflow import wire
from graphflow.messages import Header, Message
from graphflow.packs.demo.messages import Number
from graphflow.packs.vision.messages import Image


def timed(function, repeat: int) -> list[float]:
    function()  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    pixels = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    message = Message(Header(1.0, 1.0), Image(pixels, "bgr", "bench", 7))
    target = np.empty_like(pixels)
    small = Message(Header(1.0, 1.0), Number(3.0))

    def round_trip():
        decoded = wire.decode(wire.encode(message))
        assert decoded.payload.pixels.shape == pixels.shape

    cases = {
        "memcpy (np.copyto)": lambda: np.copyto(target, pixels),
        "wire encode+decode": round_trip,
        "wire pack+unpack": lambda: wire.unpack(wire.pack(message)),
        "wire encode+decode, demo/Number": lambda: wire.decode(wire.encode(small)),
    }
    results = {}
    for name, function in cases.items():
        times = timed(function, args.repeat)
        results[name] = {"median_us": statistics.median(times) * 1e6,
                         "p90_us": statistics.quantiles(times, n=10)[-1] * 1e6}
    floor = results["memcpy (np.copyto)"]["median_us"]
    print(f"1080×1920×3 uint8 frame ({pixels.nbytes / 1e6:.1f} MB), {args.repeat} runs each")
    print(f"{'':34s} {'median µs':>10s} {'p90 µs':>10s} {'× memcpy':>9s}")
    for name, figures in results.items():
        figures["ratio_to_memcpy"] = figures["median_us"] / floor
        print(f"{name:34s} {figures['median_us']:10.1f} {figures['p90_us']:10.1f} {figures['ratio_to_memcpy']:9.3f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
