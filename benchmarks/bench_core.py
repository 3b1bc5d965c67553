"""Core scheduler benchmarks: the cost of one hop and the throughput of trivial chains.

    python benchmarks/bench_core.py [--messages N] [--workers W] [--json OUT]

- hop latency: a source publishes; the receiver's tick notes (now - pubtime). Median and p90 in µs.
- one-hop throughput: a source publishing as fast as it can into one receiver whose queue applies
  backpressure (policy "block", nothing dropped): messages/s received.
- chain throughput: the same through a chain of 10 trivial relay nodes: messages/s out of the end.
- tick cost: that chain on ONE worker, one message per source tick: the framework's time per tick
  (read, message, publish, scheduling) = ticking time / ticks.
Targets (2-core machine): median hop overhead < 20 µs, ≥ 50,000 messages/s through one hop.
"""
import argparse
import json
import statistics
import time

from graphflow import Codelet, Param, Period, Rx, Tx
from graphflow.scheduler import Scheduler
from graphflow.packs.demo.messages import Number


class Source(Codelet):
    out = Tx(Number)
    count = Param(int, 1000)
    tick_period = Param(Period, 0.0)
    burst = Param(int, 1, "Messages published per tick.")

    def start(self):
        self.sent = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        for _ in range(min(self.burst, self.count - self.sent)):
            self.out.publish(Number(float(self.sent)))
            self.sent += 1
        if self.sent >= self.count:
            self.report_exhausted()


class Relay(Codelet):
    inp = Rx(Number, queue_size=256, policy="block")
    out = Tx(Number)

    def start(self):
        self.tick_on_message(self.inp)

    def tick(self):
        message = self.inp.read()
        self.out.publish(message.payload, acqtime=message.acqtime)


class Sink(Codelet):
    inp = Rx(Number, queue_size=256, policy="block")

    def start(self):
        self.received = 0
        self.delays = []
        self.tick_on_message(self.inp)

    def tick(self):
        message = self.inp.read()
        self.received += 1
        if self.record:
            self.delays.append(time.perf_counter() - message.pubtime)


def hop_latency(messages: int, workers: int) -> dict:
    """A paced source (1 kHz) so every message meets an idle receiver: the pure hop cost."""
    source = Source("src", "s", {"count": messages, "tick_period": "1ms"})
    sink = Sink("sink", "s")
    sink.record = True
    source.outputs["out"].connect(sink.inputs["inp"])
    Scheduler([source, sink], clock=time.perf_counter, workers=workers).run(duration=120)
    delays_us = sorted(d * 1e6 for d in sink.delays)
    return {"messages": len(delays_us), "median_us": statistics.median(delays_us),
            "p90_us": delays_us[int(0.9 * len(delays_us))]}


def relay_chain(messages: int, relays: int, workers: int | None, burst: int = 1):
    """source → relays → sink, wired; returns (scheduler, sink)."""
    source = Source("src", "s", {"count": messages, "burst": burst})
    chain = [Relay(f"relay{i}", "r") for i in range(relays)]
    sink = Sink("sink", "s")
    sink.record = False
    previous = source.outputs["out"]
    for relay in chain:
        previous.connect(relay.inputs["inp"])
        previous = relay.outputs["out"]
    previous.connect(sink.inputs["inp"])
    return Scheduler([source, *chain, sink], clock=time.perf_counter, workers=workers), sink


def throughput(messages: int, relays: int, workers: int | None) -> dict:
    scheduler, sink = relay_chain(messages, relays, workers, burst=64)
    start = time.perf_counter()
    scheduler.run(duration=300)
    elapsed = time.perf_counter() - start
    assert sink.received == messages, (sink.received, messages)
    return {"messages": messages, "relays": relays, "seconds": elapsed, "messages_per_s": messages / elapsed}


def tick_cost(messages: int, relays: int = 10) -> dict:
    scheduler, sink = relay_chain(messages, relays, workers=1)
    scheduler.run(duration=300)
    assert sink.received == messages, (sink.received, messages)
    ticks = messages * (relays + 2)
    return {"ticks": ticks, "us_per_tick": (scheduler.ticking_until - scheduler.ticking_since) / ticks * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="default: core count")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    results = {
        "hop_latency": hop_latency(min(args.messages, 2000), args.workers),
        "one_hop": throughput(args.messages, 0, args.workers),
        "chain_10": throughput(args.messages // 5, 10, args.workers),
        "tick_cost": min((tick_cost(args.messages // 20) for _ in range(5)), key=lambda r: r["us_per_tick"]),
    }
    hop, one, chain = results["hop_latency"], results["one_hop"], results["chain_10"]
    print(f"hop latency      median {hop['median_us']:.1f} µs   p90 {hop['p90_us']:.1f} µs   (target median < 20 µs)")
    print(f"one hop          {one['messages_per_s']:,.0f} messages/s   (target ≥ 50,000)")
    print(f"chain of 10      {chain['messages_per_s']:,.0f} messages/s out of the last node "
          f"({chain['messages_per_s'] * 11:,.0f} hops/s)")
    print(f"tick cost        {results['tick_cost']['us_per_tick']:.2f} µs per tick, one worker (best of 5)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
