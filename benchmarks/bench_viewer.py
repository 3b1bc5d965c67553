"""Does the viewer slow the graph? Throughput of an app with no viewer, with an idle viewer, and
with a connected client that subscribes to an image channel (with its skeleton overlays) in a
2-D window, in a separate process, like a browser would.

    python benchmarks/bench_viewer.py                        # the viewer test app, source at full speed
    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_viewer.py apps/openpose.app.json \\
        --input ../shared/data/coco_val2017_mini/images --set feeder/image_loader/loop=true

The client watches the app's first 2-D ui_config window (OpenPose: "poses", the image and its
skeletons), else the first image channel with every skeleton2 channel over it (--image picks
the image channel). --input sets the app's io.input; its io.output params go to a temporary
folder (so the writers run as in `graphflow run` without filling out/).

Throughput = messages per second published on --count (default: the window's skeleton2
channel, else the first skeleton2 channel, else the busiest channel) after a warm-up. Prints
the ratio with/without client (target ≥ 0.95).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TEST_APP = REPO / "tests" / "viewer" / "app" / "viewer_test.app.json"
BUS = REPO.parent / "shared" / "data" / "images" / "bus.jpg"


def client_main(url: str, channels: list[str], width: int, height: int, seconds: float) -> None:
    """The client process: subscribe, receive (and drop) frames, report frames/s."""
    import struct

    from graphflow.viewer.websocket import connect

    ws = connect(url.replace("http://", "ws://") + "api/stream")
    ws.send_text(json.dumps({"op": "subscribe", "windows": [
        {"id": "bench", "renderer": "2d", "channels": [c for c in channels if c], "width": width, "height": height}]}))
    print("connected", flush=True)
    frames, nbytes, start = 0, 0, time.monotonic()
    ws.sock.settimeout(0.5)
    while time.monotonic() - start < seconds:
        try:
            data = ws.recv()
        except Exception:
            break
        if isinstance(data, bytes):
            n = struct.unpack(">I", data[:4])[0]
            if json.loads(data[4:4 + n]).get("type") == "frame":
                frames += 1
                nbytes += len(data)
    elapsed = time.monotonic() - start
    ws.close()
    print(json.dumps({"frames_per_s": frames / elapsed, "kbytes_per_frame": nbytes / max(frames, 1) / 1024}), flush=True)


def one_run(args, mode: str) -> dict:
    from graphflow.app import App
    from graphflow.viewer import ViewerServer

    app = App.load(args.app, sets=args.set, workers=args.workers)
    channels = app.channels()
    windows = (app.spec.ui_config or {}).get("windows", {})
    window = next(([c["name"] for c in w["channels"]] for w in windows.values()
                   if w.get("renderer", "2d") == "2d"), None)
    if window and not args.image:
        image = next((n for n in window if channels[n].message_type.render == "image"), None)
        overlays = [n for n in window if n != image]
    else:
        image = args.image or next((n for n, tx in channels.items() if tx.message_type.render == "image"), None)
        overlays = [n for n, tx in channels.items() if tx.message_type.render == "skeleton2"]
    skeletons = [n for n in overlays if channels[n].message_type.render == "skeleton2"] or \
        [n for n, tx in channels.items() if tx.message_type.render == "skeleton2"]
    count = args.count or (skeletons[0] if skeletons else None)
    server = client = None
    total = args.warmup + args.duration
    if mode != "no viewer":
        server = ViewerServer("127.0.0.1", 0).attach(app).start()
    if mode == "client":
        if image is None:
            raise SystemExit(f"{args.app} has no image channel to subscribe to (use --image)")
        client = subprocess.Popen([sys.executable, __file__, "--client", server.url, "--channels",
                                   ",".join([image, *overlays]), "--width", str(args.width), "--height",
                                   str(args.height), "--seconds", str(total + 5)],
                                  stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "connected"
    runner = threading.Thread(target=app.run, kwargs={"duration": total + 1})
    runner.start()
    time.sleep(args.warmup)
    if count is None:  # the busiest channel
        count = max(channels, key=lambda n: channels[n].published)
    c0, t0 = channels[count].published, time.monotonic()
    time.sleep(args.duration)
    c1, t1 = channels[count].published, time.monotonic()
    app.request_stop()
    runner.join()
    result = {"mode": mode, "channel": count, "throughput": (c1 - c0) / (t1 - t0), "window": [image, *overlays]}
    if client is not None:
        out, _ = client.communicate(timeout=total + 15)
        result.update(json.loads(out.strip().splitlines()[-1]))
    if server is not None:
        result["client_drops"] = sum(c.queue.dropped for c in server.clients.values())
        server.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", nargs="?", type=Path, default=TEST_APP)
    parser.add_argument("--set", action="append", default=None, metavar="NODE/COMPONENT/PARAM=VALUE")
    parser.add_argument("--input", help="what the app's io.input param is set to (as `graphflow run --input`)")
    parser.add_argument("--count", help="channel whose messages/s is the throughput")
    parser.add_argument("--image", help="image channel the client subscribes to (default: the first)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--channels", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.channels.split(","), args.width, args.height, args.seconds)
        return
    if args.set is None:
        args.set = [f"camera/source/path={BUS}", "camera/source/tick_period=0"] if args.app == TEST_APP else []
    io = json.loads(Path(args.app).read_text()).get("io", {})
    given = {s.split("=", 1)[0] for s in args.set}
    if args.input:
        inputs = io.get("input") or []
        for name in [inputs] if isinstance(inputs, str) else inputs:
            args.set.append(f"{name}={args.input}")
    outputs = io.get("output") or []
    out = tempfile.mkdtemp(prefix="bench_viewer_")
    args.set += [f"{name}={out}" for name in ([outputs] if isinstance(outputs, str) else outputs) if name not in given]
    modes = ["no viewer", "idle viewer", "client"]
    results = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in modes:  # interleaved, so drifts hit every mode alike
            result = one_run(args, mode)
            results[mode].append(result)
            extra = (f"  client {result['frames_per_s']:.1f} frames/s, {result['kbytes_per_frame']:.0f} KiB/frame,"
                     f" {result['client_drops']} frames replaced unsent") if mode == "client" else ""
            print(f"run {r + 1} {mode:12} {result['throughput']:9.1f} msg/s on {result['channel']}{extra}", flush=True)
    median = {m: statistics.median(x["throughput"] for x in results[m]) for m in modes}
    print()
    print(f"app: {args.app}")
    print(f"client window: {', '.join(c for c in results['client'][0]['window'] if c)}")
    for mode in modes:
        print(f"{mode:12} median {median[mode]:9.1f} msg/s")
    paired = [c["throughput"] / n["throughput"] for c, n in zip(results["client"], results["no viewer"])]
    print(f"per-round ratios client / no viewer: {', '.join(f'{r:.3f}' for r in paired)}"
          f" (spread shows the machine's noise)")
    ratio = median["client"] / median["no viewer"]
    print(f"ratio with client / without viewer: {ratio:.3f} (target >= 0.95)")
    print(f"ratio with client / idle viewer:    {median['client'] / median['idle viewer']:.3f}")


if __name__ == "__main__":
    main()
