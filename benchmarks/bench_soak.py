"""Soak: does a long run keep its memory and threads flat? The OpenPose app loops an image folder
through `graphflow run` (a real process, with its web viewer), while N WebSocket clients (one
separate process, like browser tabs) watch its "poses" window (from the app file's ui_config). Every --sample seconds the app
process's resident memory (VmRSS) and thread count are read from /proc; frames are the lines of
its predictions.jsonl.

    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_soak.py                 # 10 minutes
    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_soak.py --minutes 4 --warmup 1

Reported: the memory slope after the warm-up (least-squares fit over the samples, MiB per
minute; target < 1), the memory at the end of the warm-up and at the end, the thread count
(first and most after the warm-up), frames/s of the app and frames/s each client received.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "apps" / "openpose.app.json"
COCO_MINI = Path("data") / "coco_val2017_mini" / "images"
MIB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (bytes) and Threads of a live process, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
            elif key == "Threads":
                values[key] = int(rest)
    return values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_viewer(url: str, app: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise SystemExit(f"the app ended before its viewer answered (exit {app.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no viewer at {url} after {timeout:.0f} s")


def slope_per_minute(times: list[float], values: list[float]) -> float:
    """Least-squares slope of values over times (seconds), per minute."""
    n = len(times)
    if n < 2:
        return float("nan")
    mean_t, mean_v = sum(times) / n, sum(values) / n
    var = sum((t - mean_t) ** 2 for t in times)
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / var if var else float("nan")


# -- the clients' process ----------------------------------------------------------------------
async def _client(url: str, window: dict, seconds: float, counts: list[int], index: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://") + "api/stream", max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "windows": [window]}))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if message.type == aiohttp.WSMsgType.BINARY:
                    counts[index] += 1
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break


def clients_main(url: str, count: int, channels: list[str], seconds: float) -> None:
    window = {"id": "soak", "renderer": "2d", "channels": channels, "width": 640, "height": 480}
    counts = [0] * count
    start = time.monotonic()

    async def run_all():
        await asyncio.gather(*(_client(url, window, seconds, counts, k) for k in range(count)))

    asyncio.run(run_all())
    elapsed = time.monotonic() - start
    print(json.dumps({"frames_per_s": [c / elapsed for c in counts]}), flush=True)


# -- the soak ----------------------------------------------------------------------------------
def soak(args) -> dict:
    out = Path(tempfile.mkdtemp(prefix="graphflow-soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "graphflow.cli", "run", str(args.app), "--quiet", "--input", str(args.images),
               "--output", str(out), "--set", "feeder/image_loader/loop=true", "--viewer-port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    app = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=open(out / "app.log", "wb"))
    clients = None
    try:
        wait_for_viewer(url, app)
        windows = (json.loads(Path(args.app).read_text()).get("ui_config") or {}).get("windows") or {}
        poses = windows.get("poses") or next(iter(windows.values()), {"channels": []})
        channels = [c["name"] if isinstance(c, dict) else c for c in poses.get("channels", [])]
        total = args.minutes * 60.0
        clients = subprocess.Popen([sys.executable, __file__, "--clients-only", url, "--clients", str(args.clients),
                                    "--channels", ",".join(channels), "--seconds", str(total)],
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        stream = out / "predictions.jsonl"
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < total:
            time.sleep(min(args.sample, max(0.0, total - (time.monotonic() - start))))
            if app.poll() is not None:
                raise SystemExit(f"the app ended during the soak (exit {app.returncode}); see {out / 'app.log'}")
            status = proc_status(app.pid)
            frames = stream.read_bytes().count(b"\n") if stream.exists() else 0
            elapsed = time.monotonic() - start
            samples.append({"t": elapsed, "rss": status["VmRSS"], "threads": status["Threads"], "frames": frames})
            minutes, seconds = divmod(int(elapsed), 60)
            print(f"  {minutes:2d}:{seconds:02d}  rss {status['VmRSS'] / MIB:7.1f} MiB  threads {status['Threads']:3d}"
                  f"  frames {frames:6d}", flush=True)
        client_result = json.loads(clients.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        if clients is not None and clients.poll() is None:
            clients.kill()
            clients.communicate()
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(timeout=60)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
    warm = [s for s in samples if s["t"] >= args.warmup * 60.0]
    if len(warm) < 2:
        raise SystemExit("too few samples after the warm-up: run longer or sample more often")
    frames_per_s = (warm[-1]["frames"] - warm[0]["frames"]) / (warm[-1]["t"] - warm[0]["t"])
    result = {
        "minutes": args.minutes, "warmup_minutes": args.warmup, "clients": args.clients,
        "rss_slope_mib_per_min": slope_per_minute([s["t"] for s in warm], [s["rss"] / MIB for s in warm]),
        "rss_after_warmup_mib": warm[0]["rss"] / MIB, "rss_end_mib": warm[-1]["rss"] / MIB,
        "threads_after_warmup": warm[0]["threads"], "threads_max": max(s["threads"] for s in warm),
        "frames": warm[-1]["frames"], "frames_per_s": frames_per_s,
        "client_frames_per_s": client_result["frames_per_s"], "exit_code": app.returncode,
        "samples": samples,
    }
    if app.returncode == 0:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    else:
        result["output"] = str(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", type=Path, default=APP)
    parser.add_argument("--images", type=Path, help="the folder the app loops over (default: shared/data/"
                                                    "coco_val2017_mini/images beside the checkout or the models)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the memory fit")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, help="also write the figures (and every sample) here")
    parser.add_argument("--clients-only", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--channels", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_only:
        clients_main(args.clients_only, args.clients, [c for c in args.channels.split(",") if c], args.seconds)
        return
    if "GRAPHFLOW_MODEL_PATH" not in os.environ and (REPO.parent / "shared" / "models").is_dir():
        os.environ["GRAPHFLOW_MODEL_PATH"] = str(REPO.parent / "shared" / "models")
    if args.images is None:
        models = [Path(p) for p in os.environ.get("GRAPHFLOW_MODEL_PATH", "").split(os.pathsep) if p]
        found = [shared / COCO_MINI for shared in [REPO.parent / "shared", *(m.parent for m in models)]
                 if (shared / COCO_MINI).is_dir()]
        if not found:
            raise SystemExit("no shared/data/coco_val2017_mini/images found: pass --images")
        args.images = found[0]
    print(f"soak: {args.app.name} looping {args.images} with the viewer and {args.clients} clients, "
          f"{args.minutes:g} min (warm-up {args.warmup:g} min)", flush=True)
    result = soak(args)
    print()
    print(f"memory slope after warm-up: {result['rss_slope_mib_per_min']:+.2f} MiB/min (target < 1)")
    print(f"resident memory: {result['rss_after_warmup_mib']:.1f} MiB after warm-up, {result['rss_end_mib']:.1f} MiB at the end")
    print(f"threads: {result['threads_after_warmup']} after warm-up, at most {result['threads_max']}")
    print(f"app: {result['frames']} frames, {result['frames_per_s']:.2f} frames/s after warm-up; clients received "
          + ", ".join(f"{f:.2f}" for f in result["client_frames_per_s"]) + " frames/s")
    print(f"app exit code after SIGTERM: {result['exit_code']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
