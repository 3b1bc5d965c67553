"""Recording benchmarks (figures in benchmarks/README.md):

1. the OpenPose app's frames/s without and with ``--record`` (every channel), side by side:
   runs alternate (off, on, off, on, ...) so that the shared machine's load hits both alike;
2. the recorder's throughput in raw 640×480×3 uint8 frames per second: frames published through
   a tap into the recorder in lossless mode (nothing dropped), timed until the file is finished;
   the frames are the COCO val mini images resized (distinct, natural images), per compression, to
   a file on disk and to /dev/shm (RAM: the recorder's own cost without the disk's), with the
   writer thread at normal priority (``--raw-nice``);
3. the file size per frame of both, and the recorder thread's CPU time against the app's (a
   figure the machine's load does not blur, unlike frames/s on a shared machine).

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
from graphflow.recording.writer import Recorder, composed_app  # noqa: E402

SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "data" / "coco_val2017_mini" / "images"


def app_fps(frames: int, record: Path | None, compression: str, channels=()) -> tuple[float, dict]:
    app_file = REPO / "apps" / "openpose.app.json"
    out = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    sets = [f"feeder/image_loader/path={IMAGES}", "feeder/image_loader/loop=true",
            f"image_writer/image_writer/folder={out}", f"predictions/prediction_writer/folder={out}"]
    app = App(unthrottled(load_app(app_file, (), sets)), max_ticks=frames)
    recorder = None
    if record is not None:
        recorder = Recorder(record, app=composed_app(app.spec), compression=compression, channels=channels).start(app)
    cpu = time.process_time()
    app.run()
    if recorder is not None:
        recorder.stop()
    cpu = time.process_time() - cpu
    if app.failure is not None:
        raise SystemExit(str(app.failure))
    seconds = app.scheduler.ticking_until - app.scheduler.ticking_since
    facts = {}
    if recorder is not None:
        facts = {"recorded": recorder.recorded, "dropped": recorder.dropped_total, "bytes": recorder.bytes_written,
                 "recorder_cpu_s": recorder.cpu_seconds, "process_cpu_s": cpu}
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
            "bytes_per_frame": size / len(frames), "dropped": recorder.dropped_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-frames", type=int, default=32, help="frames per app run (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="app runs with and without recording each (default 3)")
    parser.add_argument("--raw-frames", type=int, default=1500, help="frames for the recorder throughput")
    parser.add_argument("--compression", default="lz4", choices=["zstd", "lz4", "none"],
                        help="the app runs' recording compression (default lz4, as graphflow run --record)")
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

    if not args.skip_app:
        app_fps(4, None, args.compression)  # warm up: model load, caches
        without, with_, facts = [], [], []
        for round_ in range(args.rounds):
            without.append(app_fps(args.app_frames, None, args.compression)[0])
            fps, fact = app_fps(args.app_frames, disk / "app.mcap", args.compression, args.channels)
            with_.append(fps)
            facts.append(fact)
            print(f"round {round_ + 1}: {without[-1]:.2f} frames/s without, {with_[-1]:.2f} with --record "
                  f"= {with_[-1] / without[-1]:.3f}× ({fact['recorded']} messages, {fact['dropped']} dropped, "
                  f"{fact['bytes'] / 1e6:.1f} MB; recorder thread {fact['recorder_cpu_s'] / args.app_frames * 1e3:.0f} ms "
                  f"CPU per frame = {fact['recorder_cpu_s'] / (fact['process_cpu_s'] - fact['recorder_cpu_s']):.1%} "
                  f"of the app's CPU)", flush=True)
        # each round's two runs are neighbours in time (alike in the shared machine's load): the
        # median of the rounds' ratios, not the ratio of the medians
        ratios = [w / wo for w, wo in zip(with_, without)]
        ratio = statistics.median(ratios)
        shares = [f["recorder_cpu_s"] / (f["process_cpu_s"] - f["recorder_cpu_s"]) for f in facts]
        results["app"] = {"frames": args.app_frames, "rounds": args.rounds, "without_fps": without, "with_fps": with_,
                          "ratios": ratios, "ratio": ratio, "recorder_cpu_share": shares, "bytes_per_frame": facts[-1]["bytes"] / args.app_frames,
                          "dropped": [f["dropped"] for f in facts]}
        print(f"OpenPose app: {statistics.median(without):.2f} frames/s without, {statistics.median(with_):.2f} with "
              f"--record; with/without {ratio:.3f}× (median of {args.rounds} rounds' ratios, "
              f"{min(ratios):.3f}-{max(ratios):.3f}); recorder CPU {statistics.median(shares):.1%} of the app's; "
              f"{results['app']['bytes_per_frame'] / 1e6:.2f} MB per frame "
              f"({', '.join(args.channels) or 'every channel'}, {args.compression})")

    frames = raw_frames(args.raw_frames) if not args.skip_raw else []
    results["raw"] = {}
    for where, folder in (("disk", disk), ("ram", Path("/dev/shm"))) if frames else ():
        for compression in ("zstd", "lz4", "none"):
            figures = recorder_throughput(folder / "raw.mcap", frames, compression, args.raw_nice)
            results["raw"][f"{where}/{compression}"] = figures
            print(f"recorder, raw 640×480×3 frames, {compression:4} to {where:4}: {figures['frames_per_s']:7.0f} frames/s "
                  f"({figures['mb_per_s']:6.0f} MB/s in), {figures['bytes_per_frame'] / 1e3:6.0f} kB per frame", flush=True)
    shutil.rmtree(disk, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
