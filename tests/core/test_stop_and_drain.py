"""Every app ends (--max-ticks, --duration, exhausted sources, Ctrl-C, SIGTERM), and a stop
drains: every queued message is processed before stop(). Real processes, real signals."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graphflow.packs.demo.add import Add
from graphflow.packs.demo.messages import Number
from graphflow.testing import Harness

REPO = Path(__file__).resolve().parents[2]
TESTPACK = Path(__file__).resolve().parent / "testpack.py"


def graphflow(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graphflow.cli", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def slow_app(tmp_path: Path, work_s: float) -> Path:
    """A 1 ms counter (endless) into a sink taking ``work_s`` per number, through a block queue of 50."""
    app = tmp_path / "slow.app.json"
    app.write_text(json.dumps({
        "name": "slow", "modules": ["demo", str(TESTPACK)],
        "graph": {"nodes": [{"name": "source", "components": [{"name": "counter", "type": "demo.Counter"}]},
                            {"name": "sink", "components": [{"name": "writer", "type": "testpack.SlowWriter"}]}],
                  "edges": [{"source": "source/counter/number", "target": "sink/writer/number",
                             "queue": {"size": 50, "policy": "block"}}]},
        "config": {"source": {"counter": {"tick_period": "1ms", "count": 0}},
                   "sink": {"writer": {"path": str(tmp_path / "written.txt"), "work_s": work_s}}}}))
    return app


def wait_for_lines(path: Path, count: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_by_signal_processes_every_queued_message(tmp_path, sig):
    stats = tmp_path / "stats.json"
    run = graphflow("run", slow_app(tmp_path, 0.01), "--no-viewer", "--stats-json", stats)
    wait_for_lines(tmp_path / "written.txt", 60)  # the queue of 50 is full by now
    run.send_signal(sig)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    published = json.loads(stats.read_text())["channels"]["source/counter/number"]["messages"]
    written = (tmp_path / "written.txt").read_text().split()
    assert published > 60
    assert written == [str(value) for value in range(published)]  # every one, in order, none lost
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[sig]  # (a SIGTERM said nothing before)
    assert f"INFO graphflow.scheduler: {name}: draining the graph ({name} again to stop at once)" in err


@pytest.mark.timeout(120)
def test_a_second_ctrl_c_abandons_the_drain(tmp_path):
    run = graphflow("run", slow_app(tmp_path, 0.3), "--no-viewer", "--quiet")
    wait_for_lines(tmp_path / "written.txt", 2)
    run.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=30)
    assert time.monotonic() - started < 5  # the drain alone would take about 15 s (50 × 0.3 s)
    assert run.returncode == 0
    assert len((tmp_path / "written.txt").read_text().split()) < 40


@pytest.mark.timeout(60)
@pytest.mark.parametrize("limit", [["--max-ticks", "5"], ["--duration", "1"]])
def test_sources_feeding_a_synchronized_input_end_on_their_limit(tmp_path, limit):
    numbers = tmp_path / "numbers.jsonl"
    run = graphflow("run", "apps/demo.app.json", "--set", "ticker/ones/tick_period=10Hz",
                    "--set", "ticker/tens/tick_period=10Hz", "--set", "ticker/ones/count=0",
                    "--set", "ticker/tens/count=0", "--set", f"sink/writer/path={numbers}",
                    "--no-viewer", "--quiet", *limit)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    lines = numbers.read_text().splitlines()
    assert 1 <= len(lines) <= (5 if limit[0] == "--max-ticks" else 12)


@pytest.mark.timeout(60)
def test_exhausted_sources_end_the_app_with_a_half_pair_left_unmatched(tmp_path):
    # ones publishes 3 numbers, tens 5: two of tens' never find a partner; the app still ends.
    numbers = tmp_path / "numbers.jsonl"
    run = graphflow("run", "apps/demo.app.json", "--set", "ticker/ones/count=3", "--set", "ticker/tens/count=5",
                    "--set", f"sink/writer/path={numbers}", "--no-viewer", "--quiet")
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert len(numbers.read_text().splitlines()) == 3


def _add_with(tolerance: str, a: float, b: float) -> Harness:
    h = Harness(Add, {"tolerance": tolerance}).start()
    h.feed("a", Number(1.0), acqtime=a)
    h.feed("b", Number(2.0), acqtime=b)
    return h


def _ready_within(h: Harness, seconds: float = 5.0) -> bool:
    result = []
    asker = threading.Thread(target=lambda: result.append(h.ready()), daemon=True)
    asker.start()
    asker.join(seconds)
    assert not asker.is_alive(), "Synchronized.ready() did not return"
    return result[0]


@pytest.mark.timeout(30)
def test_synchronized_match_at_exactly_the_tolerance():
    # 1.000 - 0.990 is 0.010000000000000009 in floats: exactly the tolerance, written down.
    h = _add_with("10ms", 1.000, 0.990)
    assert _ready_within(h)
    h.tick()
    assert h.outputs("total")[0].payload.value == 3.0


@pytest.mark.timeout(30)
def test_synchronized_just_beyond_the_tolerance_drops_the_older():
    h = _add_with("10ms", 1.000, 0.9899)
    assert not _ready_within(h)
    assert h.component.inputs["b"].dropped == 1 and h.component.inputs["b"].available() == 0
    assert h.component.inputs["a"].available() == 1  # kept for a later partner


@pytest.mark.timeout(60)
def test_a_node_error_stops_the_app_in_one_line_after_processing_what_is_in_flight(tmp_path):
    from graphflow import Codelet, NodeError, Param, Period, Tx
    from graphflow.scheduler import Scheduler

    from . import testpack

    class Refuses(Codelet):
        """Publishes 0, 1, 2, then meets a problem the user must fix."""
        number = Tx(Number)
        tick_period = Param(Period, "1ms")

        def start(self):
            self.sent = 0
            self.tick_periodically(self.tick_period)

        def tick(self):
            if self.sent == 3:
                raise NodeError("input 'x.jpg' is cut short")
            self.number.publish(Number(float(self.sent)))
            self.sent += 1

    source = Refuses("src", "s")
    writer = testpack.SlowWriter("sink", "w", {"path": str(tmp_path / "out.txt"), "work_s": 0.05})
    source.outputs["number"].connect(writer.inputs["number"])
    scheduler = Scheduler([source, writer], workers=2)
    scheduler.run(duration=30)
    assert str(scheduler.failure) == "src/s: input 'x.jpg' is cut short"
    assert (tmp_path / "out.txt").read_text().split() == ["0", "1", "2"]  # drained, then stopped


@pytest.mark.timeout(60)
def test_a_failing_component_stops_the_app_after_the_rest_processed_what_is_in_flight(tmp_path):
    """An unexpected exception in one branch: that component ticks no more, but the messages
    already on their way elsewhere are processed (before: the app stopped at once, and a slow
    writer lost the frames it had queued)."""
    from graphflow.packs.demo.counter import Counter
    from graphflow.scheduler import Scheduler

    from . import testpack

    counter = Counter("src", "c", {"tick_period": "1ms", "count": 6})
    faulty = testpack.Faulty("bad", "f", {"fail_on": 3.0})
    writer = testpack.SlowWriter("sink", "w", {"path": str(tmp_path / "out.txt"), "work_s": 0.05})
    counter.outputs["number"].connect(faulty.inputs["number"])
    counter.outputs["number"].connect(writer.inputs["number"])
    scheduler = Scheduler([counter, faulty, writer], workers=2)
    scheduler.run(duration=30)
    assert scheduler.failure is not None and scheduler.failure.component == "bad/f"
    assert "RuntimeError: cannot handle 3" in scheduler.failure.traceback
    assert faulty.seen == [0.0, 1.0, 2.0]  # it ticked no more after failing
    published = counter.outputs["number"].published
    assert published >= 4
    assert (tmp_path / "out.txt").read_text().split() == [f"{v:g}" for v in range(published)]


@pytest.mark.timeout(60)
def test_a_failed_component_no_longer_holds_back_its_publishers(caplog):
    """The failed component's 'block' input was full: its publisher waited for room that never
    came, and the drain ran into its timeout (10 s, then 'did not drain'). Now what waits for the
    failed component is dropped and counted, and the rest drains at once."""
    from graphflow import Codelet, Rx
    from graphflow.packs.demo.counter import Counter
    from graphflow.packs.demo.scale import Scale
    from graphflow.scheduler import Scheduler

    class FailsAtOnce(Codelet):
        number = Rx(Number, queue_size=1, policy="block")

        def start(self):
            self.tick_on_message(self.number)

        def tick(self):
            self.number.read()
            time.sleep(0.05)  # the relay fills this input meanwhile
            raise RuntimeError("boom")

    counter, relay, failing = Counter("src", "c", {"tick_period": "1ms", "count": 40}), Scale("mid", "r"), \
        FailsAtOnce("bad", "f")
    relay.inputs["number"].configure(queue_size=50, policy="block")  # nothing lost before the relay
    counter.outputs["number"].connect(relay.inputs["number"])
    relay.outputs["scaled"].connect(failing.inputs["number"])
    scheduler = Scheduler([counter, relay, failing], workers=2, drain_timeout=30)
    with caplog.at_level("WARNING", logger="graphflow.scheduler"):
        scheduler.run(duration=50)
    assert scheduler.failure is not None and scheduler.failure.component == "bad/f"
    assert not [r for r in caplog.records if "did not drain" in r.getMessage()]
    assert relay.inputs["number"].available() == 0  # the relay passed on everything it had
    rx = failing.inputs["number"]
    assert rx.consumed + rx.dropped + rx.available() == relay.outputs["scaled"].published > 1  # nothing lost unseen
