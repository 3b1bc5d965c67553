"""Recording benchmarks (figures in benchmarks/README.md):

1. the OpenPose app's frames/s without and with ``--record`` (every channel), side by side: many
   short runs, the two of a round back to back, their order alternating from round to round, so
   that the shared machine's load hits both alike; the figure is the median of the rounds' ratios.
   Also the app's CPU time per frame (``time.process_time`` from its first frame on: the model load
   is not counted) with and without, and the recorder thread's own (``time.thread_time``): figures
   that other processes on the machine do not blur, unlike frames/s;
2. the recorder's throughput in raw 640×480×3 uint8 frames per second: frames published through
   a tap into the recorder in lossless mode (nothing dropped), timed until the file is finished;
   the frames are the COCO val mini images resized (distinct, natural images), per compression, to
   a file on disk and to /dev/shm (RAM: the recorder's own cost without the disk's), with the
   writer thread at normal priority (``--raw-nice``); also per CPU second of the writer thread;
3. the file size per frame of both.

    GRAPHFLOW_MODEL_PATH=../shared/models PYTHONPATH=$PWD python benchmarks/bench_recording.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from graphflow.app import App  # noqa: E402
from graphflow.messages import Header, Message  # noqa: E402
from graphflow.evaluation import unthrottled  # noqa: E402
from graphflow.tap import Tap  # noqa: E402
from graphflow.loader import load_app  # noqa: E402
from graphflow.recording.writer import DEFAULT_COMPRESSION, Recorder, composed_app  # noqa: E402

SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "data" / "coco_val2017_mini" / "images"


class FirstFrameCpu:
    """The process's CPU time when the first message is published: the run's start, after the model load."""

    def __init__(self):
        self.cpu: float | None = None

    def published(self, channel, message) -> None:
        if self.cpu is None:
            self.cpu = time.process_time()


def app_fps(frames: int, record: Path | None, compression: str, channels=()) -> tuple[float, dict]:
    app_file = REPO / "apps" / "openpose.app.json"
    out = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    sets = [f"feeder/image_loader/path={IMAGES}", "feeder/image_loader/loop=true",
            f"image_writer/image_writer/folder={out}", f"predictions/prediction_writer/folder={out}"]
    app = App(unthrottled(load_app(app_file, (), sets)), max_ticks=frames)
    recorder = None
    first = FirstFrameCpu()
    app.tap.subscribe(first)
    if record is not None:
        recorder = Recorder(record, app=composed_app(app.spec), compression=compression, channels=channels).start(app)
    app.run()
    if recorder is not None:
        recorder.stop()
    cpu = time.process_time() - first.cpu
    shutil.rmtree(out, ignore_errors=True)
    if app.failure is not None:
        raise SystemExit(str(app.failure))
    seconds = app.scheduler.ticking_until - app.scheduler.ticking_since
    facts = {"cpu_ms_per_frame": cpu / frames * 1e3}
    if recorder is not None:
        facts.update(recorded=recorder.recorded, dropped=recorder.dropped_total, bytes=recorder.bytes_written,
                     recorder_cpu_ms_per_frame=recorder.cpu_seconds / frames * 1e3)
    return frames / seconds, facts


def raw_frames(count: int) -> list[np.ndarray]:
    files = sorted(IMAGES.iterdir())
    images = [cv2.resize(cv2.imread(str(f)), (640, 480), interpolation=cv2.INTER_AREA) for f in files]
    return [images[i % len(images)] for i in range(count)]


def recorder_throughput(path: Path, frames: list[np.ndarray], compression: str, nice: int) -> dict:
    from graphflow.codelet import Codelet
    from graphflow.ports import OutputChannel, Tx
    from graphflow.packs.vision.messages import Image

    class Camera(Codelet):
        color = Tx(Image)

    channel = OutputChannel(Camera.ports()["color"], Camera("camera", "camera"))
    messages = []
    for index, pixels in enumerate(frames):
        pixels.setflags(write=False)
        messages.append(Message(Header(index / 30, index / 30), Image(pixels=pixels, frame=index)))
    tap = Tap()
    recorder = Recorder(path, lossless=True, compression=compression, queue_messages=64, nice=nice).attach(tap)
    started = time.perf_counter()
    for message in messages:
        for observe in tap.on_published:
            observe(channel, message)
    recorder.stop()  # everything written and the file finished
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {"frames_per_s": len(frames) / seconds, "mb_per_s": len(frames) * frames[0].nbytes / seconds / 1e6,
            "frames_per_cpu_s": len(frames) / recorder.cpu_seconds,
            "bytes_per_frame": size / len(frames), "dropped": recorder.dropped_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-frames", type=int, default=12, help="frames per app run (default 12)")
    parser.add_argument("--rounds", type=int, default=8, help="app runs with and without recording each (default 8)")
    parser.add_argument("--raw-frames", type=int, default=1500, help="frames for the recorder throughput")
    parser.add_argument("--compression", default=DEFAULT_COMPRESSION, choices=["zstd", "lz4", "none"],
                        help=f"the app runs' recording compression (default {DEFAULT_COMPRESSION}, as graphflow run --record)")
    parser.add_argument("--raw-compression", action="append", choices=["zstd", "lz4", "none"],
                        help="compressions for the recorder throughput (default all three)")
    parser.add_argument("--raw-nice", type=int, default=0,
                        help="the recorder thread's nice value for the throughput figures (default 0: the "
                             "recorder's own capacity; graphflow run uses 10, which yields to other processes too)")
    parser.add_argument("--channels", action="append", default=[], metavar="PATTERN",
                        help="record only these channels in the app runs (as graphflow run --channels; default all)")
    parser.add_argument("--skip-app", action="store_true")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {}
    disk = Path(tempfile.mkdtemp(prefix="bench-recording-", dir=str(REPO.parent) if os.access(REPO.parent, os.W_OK) else None))
    try:
        if not args.skip_app:
            app_fps(4, None, args.compression)  # warm up: model load, caches
            runs: dict[bool, list] = {False: [], True: []}
            for round_ in range(args.rounds):
                for record in ((False, True) if round_ % 2 == 0 else (True, False)):  # alternate who goes first
                    runs[record].append(app_fps(args.app_frames, disk / "app.mcap" if record else None,
                                                args.compression, args.channels))
                (without, plain), (with_, fact) = runs[False][-1], runs[True][-1]
                print(f"round {round_ + 1}: {without:.2f} frames/s without, {with_:.2f} with --record = "
                      f"{with_ / without:.3f}×; CPU per frame {plain['cpu_ms_per_frame']:.0f} ms without, "
                      f"{fact['cpu_ms_per_frame']:.0f} ms with, of which the recorder thread "
                      f"{fact['recorder_cpu_ms_per_frame']:.1f} ms ({fact['recorded']} messages, {fact['dropped']} dropped, "
                      f"{fact['bytes'] / 1e6:.1f} MB)", flush=True)
            # each round's two runs are neighbours in time (alike in the shared machine's load): the
            # median of the rounds' ratios, not the ratio of the medians
            ratios = [w[0] / wo[0] for w, wo in zip(runs[True], runs[False])]
            cpu_ratios = [wo[1]["cpu_ms_per_frame"] / w[1]["cpu_ms_per_frame"] for w, wo in zip(runs[True], runs[False])]
            recorder_ms = [w[1]["recorder_cpu_ms_per_frame"] for w in runs[True]]
            plain_ms = [wo[1]["cpu_ms_per_frame"] for wo in runs[False]]
            ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
            share = statistics.median(recorder_ms) / statistics.median(plain_ms)
            per_frame = statistics.median(w[1]["bytes"] for w in runs[True]) / args.app_frames
            results["app"] = {"frames": args.app_frames, "rounds": args.rounds, "compression": args.compression,
                              "channels": args.channels, "without": runs[False], "with": runs[True], "ratios": ratios,
                              "ratio": ratio, "cpu_ratios": cpu_ratios, "cpu_ratio": cpu_ratio,
                              "recorder_cpu_share": share, "bytes_per_frame": per_frame}
            print(f"OpenPose app: {statistics.median(r[0] for r in runs[False]):.2f} frames/s without, "
                  f"{statistics.median(r[0] for r in runs[True]):.2f} with --record; with/without {ratio:.3f}× "
                  f"(median of {args.rounds} rounds' ratios, {min(ratios):.3f}-{max(ratios):.3f}); frames per CPU second "
                  f"with/without {cpu_ratio:.3f}× ({min(cpu_ratios):.3f}-{max(cpu_ratios):.3f}); recorder thread "
                  f"{statistics.median(recorder_ms):.1f} ms CPU per frame = {share:.1%} of the app's "
                  f"{statistics.median(plain_ms):.0f} ms; {per_frame / 1e6:.2f} MB per frame "
                  f"({', '.join(args.channels) or 'every channel'}, {args.compression})", flush=True)

        frames = raw_frames(args.raw_frames) if not args.skip_raw else []
        results["raw"] = {}
        for where, folder in (("disk", disk), ("ram", Path("/dev/shm"))) if frames else ():
            for compression in args.raw_compression or ("zstd", "lz4", "none"):
                figures = recorder_throughput(folder / "raw.mcap", frames, compression, args.raw_nice)
                results["raw"][f"{where}/{compression}"] = figures
                print(f"recorder, raw 640×480×3 frames, {compression:4} to {where:4}: {figures['frames_per_s']:7.0f} frames/s "
                      f"({figures['mb_per_s']:6.0f} MB/s in; {figures['frames_per_cpu_s']:6.0f} per CPU second of "
                      f"the writer thread), {figures['bytes_per_frame'] / 1e3:6.0f} kB per frame", flush=True)
    finally:
        shutil.rmtree(disk, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
