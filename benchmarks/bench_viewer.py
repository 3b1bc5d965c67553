"""Does the viewer slow the graph? The OpenPose app's frames/s with no viewer, side by side with
the same app watched by N WebSocket clients (default 30), each subscribed to the app's 2-D window
(the image with its skeletons) like a browser tab.

    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_viewer.py
    python benchmarks/bench_viewer.py --clients 30 --pairs 10 --phase 6 --input ../shared/data/images

One app runs throughout (its model loaded once); the measurement alternates phases of
``--phase`` seconds: no viewer at all (no server, no observer on the tap), then a viewer with N
clients connected and watching, or the other way round (the order alternates per pair), so
the shared machine's load drifts hit both alike. The clients run in a separate process (one
asyncio loop, N aiohttp connections) and count every frame they receive.

Throughput = messages/s on the app's skeleton channel (one per processed frame). Prints each
pair, the median of the per-pair ratios (target >= 0.95), the clients' frames/s, and the CPU
time of the viewer's two threads as a share of the app process's CPU time in the watched
phases: a figure the machine's noise hardly moves (the ratio's ceiling on a CPU-bound app).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared"))
APP = REPO / "apps" / "openpose.app.json"


# -- the clients' process ----------------------------------------------------------------------------
async def _client(url: str, window: dict, counts: list, index: int, connected: list, stop: asyncio.Event) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://") + "api/stream", max_msg_size=1 << 28) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "windows": [window]}))
            connected.append(index)
            receiving = asyncio.ensure_future(ws.receive())
            stopping = asyncio.ensure_future(stop.wait())
            while True:
                done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    receiving.cancel()
                    return
                message = receiving.result()
                if message.type == aiohttp.WSMsgType.BINARY:
                    n = struct.unpack(">I", message.data[:4])[0]
                    if json.loads(message.data[4:4 + n]).get("type") == "frame":
                        counts[index] += 1
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
                receiving = asyncio.ensure_future(ws.receive())


async def _watch(url: str, count: int, window: dict) -> None:
    """Connect ``count`` clients, say "connected", count frames from "go" until "stop"."""
    loop = asyncio.get_running_loop()
    counts, connected, stop = [0] * count, [], asyncio.Event()
    tasks = [asyncio.ensure_future(_client(url, window, counts, i, connected, stop)) for i in range(count)]
    while len(connected) < count:
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    start, before = time.monotonic(), list(counts)
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    elapsed = time.monotonic() - start
    rates = [(c - b) / elapsed for c, b in zip(counts, before)]
    stop.set()
    await asyncio.gather(*tasks)
    print(json.dumps({"frames_per_s": rates}), flush=True)


def clients_main(count: int, window: dict) -> None:
    for line in sys.stdin:  # "watch URL" per watched phase
        if line.startswith("watch "):
            asyncio.run(_watch(line.split()[1], count, window))


# -- the measuring process ---------------------------------------------------------------------------
def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def frame_rate(tx, seconds: float) -> float:
    """Messages/s on ``tx`` over ``seconds``, from the times of the first and last message seen
    (polled every 5 ms): at a few frames/s, counting whole frames in a window would be off by
    up to one frame in ten."""
    times, last, end = [], tx.published, time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.005)
        count = tx.published
        if count != last:
            times.append((time.monotonic(), count))
            last = count
    if len(times) < 2:
        return 0.0
    (t0, c0), (t1, c1) = times[0], times[-1]
    return (c1 - c0) / (t1 - t0)


class Clients:
    """The clients' process, kept for the whole run."""

    def __init__(self, count: int, window: list[str], width: int, height: int):
        self.process = subprocess.Popen([sys.executable, __file__, "--client", str(count), "--channels", ",".join(window),
                                         "--width", str(width), "--height", str(height)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def say(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def watch(self, url: str) -> None:
        self.say(f"watch {url}")
        assert self.process.stdout.readline().strip() == "connected"

    def stop(self) -> list[float]:
        self.say("stop")
        return json.loads(self.process.stdout.readline())["frames_per_s"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def measure(app, args, count: str, clients: Clients | None, window: list[str]) -> dict:
    """One phase: with ``clients`` (a viewer started for it, closed after) or without a viewer."""
    from graphflow.viewer import ViewerServer

    tx = app.channels()[count]
    server = None
    if clients is not None:
        server = ViewerServer("127.0.0.1", 0, max_clients=args.clients + 8).attach(app).start()
        clients.watch(server.url)
    time.sleep(args.settle)
    if clients is not None:
        clients.say("go")
        threads = [server._thread.native_id, server.stream._thread.native_id]
        viewer0 = sum(thread_cpu(t) for t in threads)
    cpu0 = process_cpu()
    result = {"frames_per_s": frame_rate(tx, args.phase), "cpu_s": process_cpu() - cpu0}
    if server is not None:
        result["viewer_cpu_s"] = sum(thread_cpu(t) for t in threads) - viewer0
        result["client_frames_per_s"] = clients.stop()
        result["replaced_unsent"] = sum(c.queue.dropped for c in server.clients.values())
        server.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", nargs="?", type=Path, default=APP)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--input", default=str(SHARED / "data" / "images"),
                        help="the app's io.input (default: shared/data/images, looped)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE/COMPONENT/PARAM=VALUE")
    parser.add_argument("--count", help="channel whose messages/s is the throughput (default: the window's skeletons)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--pairs", type=int, default=10, help="pairs of phases (without, with the viewer)")
    parser.add_argument("--phase", type=float, default=6.0, help="seconds measured per phase")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after a phase starts before measuring")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        clients_main(args.client, {"id": "bench", "renderer": "2d", "channels": args.channels.split(","),
                                   "width": args.width, "height": args.height})
        return
    os.environ.setdefault("GRAPHFLOW_MODEL_PATH", str(SHARED / "models"))
    io = json.loads(Path(args.app).read_text()).get("io", {})
    given = {s.split("=", 1)[0] for s in args.set}
    inputs = io.get("input") or []
    for name in [inputs] if isinstance(inputs, str) else inputs:
        if name not in given:
            args.set.append(f"{name}={args.input}")
    if args.app == APP and "feeder/image_loader/loop" not in given:
        args.set.append("feeder/image_loader/loop=true")
    outputs = io.get("output") or []
    out = tempfile.mkdtemp(prefix="bench_viewer_")
    args.set += [f"{name}={out}" for name in ([outputs] if isinstance(outputs, str) else outputs) if name not in given]

    from graphflow.app import App

    app = App.load(args.app, sets=args.set)
    channels = app.channels()
    windows = (app.spec.ui_config or {}).get("windows", {})
    window = next(([c["name"] for c in w["channels"]] for w in windows.values() if w.get("renderer", "2d") == "2d"),
                  None)
    if window is None:
        raise SystemExit(f"{args.app} has no 2-D window in its ui_config for the clients to watch")
    count = args.count or next(n for n in window if channels[n].message_type.render == "skeleton2")
    clients = Clients(args.clients, window, args.width, args.height)
    runner = threading.Thread(target=app.run, name="bench-app")
    runner.start()
    pairs = []
    try:
        time.sleep(args.warmup)
        for p in range(args.pairs):
            order = (False, True) if p % 2 == 0 else (True, False)
            results = {watched: measure(app, args, count, clients if watched else None, window) for watched in order}
            without, watched = results[False], results[True]
            pairs.append((without, watched))
            fps = watched["client_frames_per_s"]
            print(f"pair {p + 1:2}: no viewer {without['frames_per_s']:6.2f}, {args.clients} clients "
                  f"{watched['frames_per_s']:6.2f} frames/s (ratio {watched['frames_per_s'] / without['frames_per_s']:.3f});"
                  f" clients got {statistics.median(fps):.2f} frames/s (min {min(fps):.2f});"
                  f" viewer CPU {100 * watched['viewer_cpu_s'] / watched['cpu_s']:.1f}% of the process;"
                  f" {watched['replaced_unsent']} frames replaced unsent", flush=True)
    finally:
        app.request_stop()
        runner.join()
        clients.close()
    ratios = [w["frames_per_s"] / n["frames_per_s"] for n, w in pairs]
    share = sum(w["viewer_cpu_s"] for _, w in pairs) / sum(w["cpu_s"] for _, w in pairs)
    per_frame = sum(w["viewer_cpu_s"] for _, w in pairs) / sum(w["frames_per_s"] * args.phase for _, w in pairs)
    print()
    print(f"app: {args.app} on {args.input} (throughput on {count}); {args.clients} clients on a "
          f"{args.width}x{args.height} window of {', '.join(window)}")
    print(f"no viewer      median {statistics.median(n['frames_per_s'] for n, _ in pairs):.2f} frames/s")
    print(f"{args.clients} clients     median {statistics.median(w['frames_per_s'] for _, w in pairs):.2f} frames/s")
    print(f"per-pair ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"viewer threads' CPU: {100 * share:.1f}% of the app process's, {1000 * per_frame:.1f} ms per app frame")
    print(f"ratio with {args.clients} clients / without viewer: {statistics.median(ratios):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
