"""One hop between two processes on this host: graphflow, raw pyzmq, and dora-rs, side by side.

    python benchmarks/bench_channels.py [--small-count N] [--large-count N] [--skip-dora] [--json OUT]

For 64-byte messages and 4 MB frames, each transport moves messages from a sender process to a
receiver process; the receiver notes (receive time - send time) on the shared monotonic clock.
- latency: messages sent at a steady rate (1 kHz small, 50 Hz large), so nothing queues:
  p50 and p90 of the one-way latency in ms.
- throughput: messages sent as fast as the sender can, nothing dropped: messages/s received.
Transports (and one reference):
- graphflow: two `graphflow run` apps, a source → net.Publisher and net.Subscriber → a sink, over
  ipc:// (the 4 MB frames through shared memory: one copy).
- pyzmq: PUSH → PULL over ipc:// (what ZeroMQ does alone; no typing, no flow control): small
  frames sent and received with copy=True, 4 MB ones with copy=False (pyzmq's zero-copy frames
  cost more than they save below ~64 KB).
- 1 process: the same graphflow source → sink in one process, no hop (a reference: the most a
  hop can reach while each end ticks once per message).
- dora: dora-rs 1.1.0 (`pip install dora-rs-cli==1.1.0 dora-rs==1.1.0`), a sender → receiver
  dataflow of two Python nodes (`dora run`), arrow arrays, input queue large enough to drop nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from graphflow import Codelet, MessageType, Param, Period, Rx, Tx, field

REPO = Path(__file__).resolve().parent.parent
SMALL, LARGE = 64, 4 << 20


class Blob(MessageType, wire="bench/Blob"):
    """Bytes to move."""
    data: np.ndarray = field(doc="uint8 payload.")


class BlobSource(Codelet):
    """Publishes the same payload `count` times (send time = the header's acqtime)."""
    out = Tx(Blob)
    size = Param(int, 64)
    count = Param(int, 1000)
    tick_period = Param(Period, 0.0)

    def start(self):
        self.payload = np.zeros(self.size, np.uint8)
        self.sent = 0
        self.begin = time.monotonic() + 1.5  # the subscriber connects first: the timed stream starts connected
        self.tick_periodically(self.tick_period)

    def tick(self):
        if time.monotonic() < self.begin:
            time.sleep(0.01)
            return
        self.out.publish(Blob(self.payload))
        self.sent += 1
        if self.sent >= self.count:
            self.report_exhausted()


class BlobSink(Codelet):
    """Notes each message's one-way latency and its arrival time; writes them at the end."""
    blob = Rx(Blob, queue_size=100000, policy="block")
    out = Param(str)

    def start(self):
        self.latency, self.arrivals = [], []
        self.tick_on_message(self.blob)

    def tick(self):
        message = self.blob.read()
        now = time.monotonic()
        self.latency.append((now - message.acqtime) * 1e3)
        self.arrivals.append(now)

    def stop(self):
        Path(self.out).write_text(json.dumps({"latency_ms": self.latency, "arrivals": self.arrivals}))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def graphflow_hop(work: Path, size: int, count: int, period: float) -> dict:
    endpoint = f"ipc://{work}/gf.sock"
    queue = 4 if size >= 1 << 20 else 4096  # small: deep, as dora's input queue below (measured: 256 in
    # flight held the hop to the round trip of its credit, 47-53k/s; 4096, 58-66k/s)
    module = str(Path(__file__).resolve())
    publisher = {"name": "bench_pub", "modules": ["net", module], "graph": {"nodes": [
        {"name": "src", "components": [{"name": "source", "type": "bench_channels.BlobSource"}]},
        {"name": "tx", "components": [{"name": "publisher", "type": "net.Publisher"}]}],
        "edges": [{"source": "src/source/out", "target": "tx/publisher/message",
                   "queue": {"size": queue, "policy": "block"}}]},
        "config": {"src": {"source": {"size": size, "count": count, "tick_period": period}},
                   "tx": {"publisher": {"endpoint": endpoint, "message_type": "bench/Blob", "queue_size": queue}}}}
    subscriber = {"name": "bench_sub", "modules": ["net", module], "graph": {"nodes": [
        {"name": "rx", "components": [{"name": "subscriber", "type": "net.Subscriber"}]},
        {"name": "sink", "components": [{"name": "sink", "type": "bench_channels.BlobSink"}]}],
        "edges": [{"source": "rx/subscriber/message", "target": "sink/sink/blob"}]},
        "config": {"rx": {"subscriber": {"endpoint": endpoint, "message_type": "bench/Blob", "queue_size": queue}},
                   "sink": {"sink": {"out": str(work / "gf.json")}}}}
    (work / "pub.app.json").write_text(json.dumps(publisher))
    (work / "sub.app.json").write_text(json.dumps(subscriber))
    command = [sys.executable, "-m", "graphflow.cli", "run", "--no-viewer", "--quiet"]
    receiving = subprocess.Popen(command + [str(work / "sub.app.json")], env=_env(), stderr=subprocess.DEVNULL)
    sending = subprocess.run(command + [str(work / "pub.app.json")], env=_env(), stderr=subprocess.DEVNULL, timeout=600)
    receiving.wait(timeout=120)
    if sending.returncode or receiving.returncode:
        raise RuntimeError("graphflow hop failed")
    return json.loads((work / "gf.json").read_text())


def in_process(work: Path, size: int, count: int, period: float) -> dict:
    """The same source → sink in one graphflow process (no hop): the ceiling a hop approaches,
    since each end still ticks once per message."""
    module = str(Path(__file__).resolve())
    app = {"name": "bench_local", "modules": [module], "graph": {"nodes": [
        {"name": "src", "components": [{"name": "source", "type": "bench_channels.BlobSource"}]},
        {"name": "sink", "components": [{"name": "sink", "type": "bench_channels.BlobSink"}]}],
        "edges": [{"source": "src/source/out", "target": "sink/sink/blob", "queue": {"size": 256, "policy": "block"}}]},
        "config": {"src": {"source": {"size": size, "count": count, "tick_period": period}},
                   "sink": {"sink": {"out": str(work / "local.json")}}}}
    (work / "local.app.json").write_text(json.dumps(app))
    subprocess.run([sys.executable, "-m", "graphflow.cli", "run", "--no-viewer", "--quiet", str(work / "local.app.json")],
                   env=_env(), stderr=subprocess.DEVNULL, timeout=600, check=True)
    return json.loads((work / "local.json").read_text())


_PYZMQ_SENDER = """
import os, struct, sys, time, numpy as np, zmq
endpoint, size, count, period, done = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
context = zmq.Context()
sock = context.socket(zmq.PUSH); sock.connect(endpoint)
time.sleep(1.0)
payload = np.zeros(size, np.uint8)
pack = struct.Struct("<d").pack
for i in range(count):
    sock.send_multipart([pack(time.monotonic()), payload], copy=size < 65536)
    if period:
        time.sleep(period)
while not os.path.exists(done):  # (closing at once lost the last messages still queued, measured)
    time.sleep(0.05)
sock.close()
context.term()
"""

_PYZMQ_RECEIVER = """
import sys, json, struct, time, numpy as np, zmq
endpoint, count, out, small = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
sock = zmq.Context().socket(zmq.PULL); sock.bind(endpoint)
latency, arrivals = [], []
unpack = struct.Struct("<d").unpack
for _ in range(count):
    stamp, payload = sock.recv_multipart(copy=small)
    now = time.monotonic()
    view = np.frombuffer(payload if small else payload.buffer, np.uint8)
    latency.append((now - unpack(stamp if small else stamp.bytes)[0]) * 1e3)
    arrivals.append(now)
json.dump({"latency_ms": latency, "arrivals": arrivals}, open(out + ".tmp", "w"))
import os; os.rename(out + ".tmp", out)
"""


def pyzmq_hop(work: Path, size: int, count: int, period: float) -> dict:
    endpoint = f"ipc://{work}/zmq.sock"
    receiving = subprocess.Popen([sys.executable, "-c", _PYZMQ_RECEIVER, endpoint, str(count), str(work / "zmq.json"),
                                  "1" if size < 65536 else "0"])
    deadline = time.monotonic() + 30
    while not (work / "zmq.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # bound before the sender connects (a PUSH to a path not yet bound can lose its queue)
    subprocess.run([sys.executable, "-c", _PYZMQ_SENDER, endpoint, str(size), str(count), str(period),
                    str(work / "zmq.json")], timeout=600, check=True)
    receiving.wait(timeout=120)
    return json.loads((work / "zmq.json").read_text())


_DORA_SENDER = """
import os, time, numpy as np, pyarrow as pa
from dora import Node
node = Node()
size, count, period = int(os.environ["SIZE"]), int(os.environ["COUNT"]), float(os.environ["PERIOD"])
payload = np.zeros(size, np.uint8)
time.sleep(1.0)
for i in range(count):
    payload[:8] = np.frombuffer(np.float64(time.monotonic()).tobytes(), np.uint8)
    node.send_output("data", pa.array(payload))
    if period:
        time.sleep(period)
"""

_DORA_RECEIVER = """
import os, json, time, numpy as np
from dora import Node
node = Node()
count = int(os.environ["COUNT"])
latency, arrivals = [], []
for event in node:
    if event["type"] == "INPUT":
        now = time.monotonic()
        head = event["value"].slice(0, 8).to_numpy(zero_copy_only=False)
        latency.append((now - float(np.frombuffer(head.tobytes(), np.float64)[0])) * 1e3)
        arrivals.append(now)
        if len(latency) >= count:
            break
    elif event["type"] == "STOP":
        break
json.dump({"latency_ms": latency, "arrivals": arrivals}, open(os.environ["OUT"], "w"))
"""


def dora_hop(work: Path, size: int, count: int, period: float) -> dict:
    (work / "sender.py").write_text(_DORA_SENDER)
    (work / "receiver.py").write_text(_DORA_RECEIVER)
    out = work / "dora.json"
    (work / "flow.yml").write_text(f"""nodes:
  - id: sender
    path: sender.py
    outputs: [data]
    env: {{SIZE: "{size}", COUNT: "{count}", PERIOD: "{period}"}}
  - id: receiver
    path: receiver.py
    inputs:
      data: {{source: sender/data, queue_size: 1000000}}
    env: {{COUNT: "{count}", OUT: "{out}"}}
""")
    subprocess.run(["dora", "run", str(work / "flow.yml")], cwd=work, timeout=600, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def summarize(raw: dict, count: int) -> dict:
    latency = np.array(raw["latency_ms"])
    arrivals = np.array(raw["arrivals"])
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {"received": int(len(latency)), "sent": count,
            "p50_ms": float(np.percentile(latency, 50)), "p90_ms": float(np.percentile(latency, 90)),
            "per_s": float((len(arrivals) - 1) / span) if span > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-count", type=int, default=20000, help="64-byte messages per throughput run")
    parser.add_argument("--large-count", type=int, default=200, help="4 MB frames per run")
    parser.add_argument("--skip-dora", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    transports = {"graphflow": graphflow_hop, "pyzmq": pyzmq_hop, "1 process": in_process}
    if not args.skip_dora:
        if shutil.which("dora"):
            transports["dora"] = dora_hop
        else:
            print("dora not found (pip install dora-rs-cli==1.1.0 dora-rs==1.1.0): skipped")
    runs = [("64 B", SMALL, "latency", 1000, 0.001), ("64 B", SMALL, "throughput", args.small_count, 0.0),
            ("4 MB", LARGE, "latency", args.large_count, 0.02), ("4 MB", LARGE, "throughput", args.large_count, 0.0)]
    results: dict = {}
    for label, size, mode, count, period in runs:
        for name, hop in transports.items():
            with tempfile.TemporaryDirectory(prefix="bench-channels-") as folder:
                print(f"{label} {mode:10s} {name:9s} ...", end=" ", flush=True)
                figures = summarize(hop(Path(folder), size, count, period), count)
                results.setdefault(label, {}).setdefault(mode, {})[name] = figures
                rate = f"{figures['per_s']:,.0f}/s" if figures["per_s"] else "-"
                print(f"received {figures['received']}/{count}  p50 {figures['p50_ms']:.3f} ms  "
                      f"p90 {figures['p90_ms']:.3f} ms  {rate}")
    print()
    print(f"{'':6s} {'transport':10s} {'p50 ms':>9s} {'p90 ms':>9s} {'msgs/s':>10s}   (latency at a steady rate; "
          f"msgs/s unthrottled)")
    for label in results:
        for name in transports:
            latency = results[label]["latency"][name]
            rate = results[label]["throughput"][name]["per_s"]
            print(f"{label:6s} {name:10s} {latency['p50_ms']:9.3f} {latency['p90_ms']:9.3f} {rate or 0:10,.0f}")
    if "dora" in transports:
        print()
        large, small = results["4 MB"], results["64 B"]
        print(f"graphflow / dora: 4 MB p50 {large['latency']['graphflow']['p50_ms'] / large['latency']['dora']['p50_ms']:.2f}×"
              f" (target ≤ 0.15×); 64 B throughput {small['throughput']['graphflow']['per_s'] / small['throughput']['dora']['per_s']:.2f}×"
              f" (target ≥ 10×)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
