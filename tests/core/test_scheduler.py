"""Tick policies, queue policies, synchronization, shutdown and failures, on a controllable clock."""
import json
import threading
import time

import pytest

from graphflow import Codelet, Param, Rx, Tx
from graphflow.app import App
from graphflow.ports import QueueFull
from graphflow.loader import load_app
from graphflow.scheduler import ManualClock, Scheduler
from graphflow.packs.demo.add import Add
from graphflow.packs.demo.counter import Counter
from graphflow.packs.demo.messages import Number

from . import testpack


class Recorder(Codelet):
    """Ticks on message and records (now, value)."""
    number = Rx(Number, queue_size=100)

    def start(self):
        self.seen = []
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        self.seen.append((self.now(), message.payload.value))


class Clocked(Codelet):
    """Records the clock at each tick; optionally pretends a tick took `cost` seconds."""
    cost = Param(float, 0.0, "Seconds to advance the manual clock inside each tick.")

    def start(self):
        self.times = []
        self.tick_periodically("100ms")

    def tick(self):
        self.times.append(round(self.now(), 9))
        if self.cost:
            self.runtime.clock.advance(self.cost)


def wire(source, port, target, rx_port):
    source.outputs[port].connect(target.inputs[rx_port])


def test_periodic_ticks_on_schedule_without_drift():
    # Each tick takes 30 ms: a timer armed from the end of the tick (now + period) drifts by 30 ms
    # a tick; one kept on the grid (due + period) does not, not even after 1000 ticks.
    clock = ManualClock()
    clocked = Clocked("n", "c", {"cost": 0.03})
    scheduler = Scheduler([clocked], clock=clock)
    scheduler.run_until(1.0)
    assert clocked.times == pytest.approx([round(0.1 * k, 9) for k in range(11)], abs=1e-9)
    scheduler.run_until(100.0)
    assert len(clocked.times) == 1001 and clocked.times[-1] == pytest.approx(100.0, abs=1e-9)


def test_periodic_overrun_skips_missed_slots_and_keeps_phase():
    clock = ManualClock()
    clocked = Clocked("n", "c", {"cost": 0.25})
    Scheduler([clocked], clock=clock).run_until(1.0)
    # each tick lasts 0.25 s: the next free slot on the 100 ms grid is 0.3, then 0.6, 0.9
    assert clocked.times == pytest.approx([0.0, 0.3, 0.6, 0.9])


def test_run_until_needs_a_manual_clock_and_says_so():
    clocked = Clocked("n", "c")
    with pytest.raises(TypeError, match="ManualClock"):
        Scheduler([clocked], clock=time.monotonic).run_until(1.0)
    assert not hasattr(clocked, "times")  # refused before start(): nothing ran


@pytest.mark.parametrize("text,seconds", [("30Hz", 1 / 30), ("50ms", 0.05), ("2s", 2.0), (0.5, 0.5)])
def test_period_forms(text, seconds):
    counter = Counter("n", "c", {"tick_period": text})
    assert counter.tick_period == pytest.approx(seconds)


def test_on_message_ticks_once_per_message():
    clock = ManualClock()
    counter = Counter("src", "c", {"tick_period": "10ms", "count": 5})
    recorder = Recorder("sink", "r")
    wire(counter, "number", recorder, "number")
    scheduler = Scheduler([counter, recorder], clock=clock)
    scheduler.run_until(1.0)
    assert [v for _, v in recorder.seen] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [t for t, _ in recorder.seen] == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    assert scheduler.finished  # the source is exhausted and the graph drained


class _Logged(Codelet):
    """Relays numbers (or emits `count` of them, as fast as allowed, without an input) and appends
    its name to `log` at each tick (_tick_log gives all components one list)."""
    number = Rx(Number, queue_size=100)
    out = Tx(Number)
    count = Param(int, 0)

    def start(self):
        self.log, self.sent = [], 0
        if self.count:
            self.tick_periodically(0)
        else:
            self.tick_on_message(self.number)

    def tick(self):
        self.log.append(self.full_name)
        if self.count:
            self.out.publish(Number(float(self.sent)))
            self.sent += 1
            if self.sent == self.count:
                self.report_exhausted()
        else:
            self.out.publish(self.number.read().payload)


def _tick_log(*components: _Logged) -> list[str]:
    """Run the components single-threaded at time 0 until idle; the order they ticked in."""
    scheduler = Scheduler(list(components), clock=ManualClock())
    scheduler.start()
    log = []
    for component in components:
        component.log = log
    scheduler.run_until(0.0)
    return log


def test_ready_work_furthest_downstream_runs_first():
    # One thread: a message goes all the way through before the source makes the next one
    # (first-come-first-served would interleave them and keep several in flight).
    source, relay, sink = _Logged("a", "src", {"count": 3}), _Logged("b", "relay"), _Logged("c", "sink")
    wire(source, "out", relay, "number")
    wire(relay, "out", sink, "number")
    assert _tick_log(source, relay, sink) == ["a/src", "b/relay", "c/sink"] * 3


def test_sources_due_together_take_turns():
    # Two unthrottled sources on one thread: neither may starve the other, whatever their order.
    first, second = _Logged("a", "src", {"count": 3}), _Logged("b", "src", {"count": 3})
    sinks = _Logged("c", "sink"), _Logged("d", "sink")
    wire(first, "out", sinks[0], "number")
    wire(second, "out", sinks[1], "number")
    sources = [name for name in _tick_log(first, second, *sinks) if name.endswith("/src")]
    assert sources == ["a/src", "b/src"] * 3


def test_synchronized_matches_by_acqtime_within_tolerance():
    adder = Add("add", "add", {"tolerance": "5ms"})
    recorder = Recorder("sink", "r")
    wire(adder, "total", recorder, "number")
    clock = ManualClock()
    scheduler = Scheduler([adder, recorder], clock=clock)
    scheduler.start()
    a_out, b_out = _Feeder("fa", "f"), _Feeder("fb", "f")
    for feeder in (a_out, b_out):
        feeder.runtime = scheduler
    wire(a_out, "out", adder, "a")
    wire(b_out, "out", adder, "b")
    a_out.out.publish(Number(1.0), acqtime=1.000)
    b_out.out.publish(Number(10.0), acqtime=0.990)   # too old for a@1.000: dropped
    b_out.out.publish(Number(20.0), acqtime=1.004)   # matches a@1.000
    a_out.out.publish(Number(2.0), acqtime=2.000)
    b_out.out.publish(Number(30.0), acqtime=2.010)   # outside tolerance: a@2.000 dropped when b moves on
    a_out.out.publish(Number(3.0), acqtime=2.011)    # matches b@2.010
    scheduler.run_pending()
    assert [v for _, v in recorder.seen] == [21.0, 33.0]
    assert adder.inputs["b"].dropped == 1 and adder.inputs["a"].dropped == 1


class _Feeder(Codelet):
    out = Tx(Number)


@pytest.mark.parametrize("policy, kept", [("latest", [2.0, 3.0, 4.0]),   # drops the oldest
                                          ("reject", [0.0, 1.0, 2.0])])  # refuses the new
def test_queue_policy_latest_and_reject_drop_and_count(policy, kept):
    recorder = Recorder("sink", "r")
    rx = recorder.inputs["number"]
    rx.configure(queue_size=3, policy=policy)
    feeder = _Feeder("f", "f")
    wire(feeder, "out", recorder, "number")
    for value in range(5):
        feeder.out.publish(Number(float(value)))
    assert rx.dropped == 2
    assert [rx.read().payload.value for _ in range(3)] == kept


def _drop_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and " dropped " in r.getMessage()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("policy", ["latest", "block"])
def test_an_app_that_ran_through_its_input_warns_of_the_messages_an_input_dropped(policy, caplog):
    """An app that ended by itself ran over a finite input (files, a video, a recording): each
    message was meant to be processed. Only the dropping queue says so, with its numbers."""
    source = testpack.Source("src", "s", {"tick_period": "0ms", "count": 200})
    slow = testpack.Collect("slow", "c", {"work_s": 0.0005})
    slow.inputs["number"].configure(queue_size=2, policy=policy)
    wire(source, "number", slow, "number")
    scheduler = Scheduler([source, slow], workers=2)
    scheduler.run(duration=20)
    rx = slow.inputs["number"]
    if policy == "block":
        assert rx.dropped == 0 and _drop_warnings(caplog) == []
    else:
        assert rx.dropped > 0 and len(slow.values) == 200 - rx.dropped
        assert _drop_warnings(caplog) == [
            f"slow/c/number dropped {rx.dropped} messages (queue 2, policy 'latest'); "
            f"to take every message of a finite input, give its edge \"queue\": {{\"policy\": \"block\"}}"]


class _SkipSome(Codelet):
    """Passes numbers on, but none in `skip` (as an encoder that skips images it cannot encode)."""
    number = Rx(Number, queue_size=4, policy="block")
    out = Tx(Number)
    skip = Param(list, [])

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        message = self.number.read()
        if message.payload.value not in self.skip:
            self.out.publish(message.payload, acqtime=message.acqtime)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_synchronized_input_full_of_messages_nothing_will_match_does_not_stall_the_graph(workers, caplog):
    """A source feeds an adder twice: directly into a (a 'block' queue of 4), and through a node
    that publishes nothing for 10..15. Six unmatched messages fill a; the source waits for room
    there, and nothing else can run: the graph waited forever. Now the oldest is dropped (a
    warning, once) and every other pair is added: a + b = 2·v for each v not skipped."""
    source = testpack.Source("src", "s", {"tick_period": "2ms", "count": 30})  # acqtimes 2 ms apart
    skipper = _SkipSome("skip", "k", {"skip": [float(v) for v in range(10, 16)]})
    adder = Add("add", "add", {"tolerance": "0.5ms"})
    for rx in adder.inputs.values():
        rx.configure(queue_size=4, policy="block")
    recorder = Recorder("sink", "r")
    wire(source, "number", adder, "a")
    wire(source, "number", skipper, "number")
    wire(skipper, "out", adder, "b")
    wire(adder, "total", recorder, "number")
    scheduler = Scheduler([source, skipper, adder, recorder], workers=workers)
    scheduler.run(duration=30)
    assert scheduler.failure is None
    assert [v for _, v in recorder.seen] == [2.0 * v for v in range(30) if not 10 <= v <= 15]
    stalls = [r.getMessage() for r in caplog.records if "nothing else could run" in r.getMessage()]
    assert len(stalls) == 1 and stalls[0].startswith("add/add/a: dropped its oldest message")
    assert adder.inputs["a"].dropped == 6


class _Numbers(Codelet):
    """Publishes `count` numbers, one per tick, then is exhausted."""
    out = Tx(Number)
    count = Param(int, 3)

    def start(self):
        self.sent = 0
        self.tick_periodically("1ms")

    def tick(self):
        self.out.publish(Number(float(self.sent)))
        self.sent += 1
        if self.sent >= self.count:
            self.report_exhausted()


@pytest.mark.timeout(60)
def test_an_app_that_ran_through_its_input_warns_of_messages_no_tick_took(caplog):
    """A synchronized adder whose second input never gets a message (as a replay that feeds only
    one of a visualizer's inputs): its first input's messages are left, and the run says so."""
    numbers = _Numbers("numbers", "n")
    adder = Add("add", "add", {"tolerance": "1ms"})
    adder.inputs["a"].configure(queue_size=10)
    wire(numbers, "out", adder, "a")
    _Feeder("silent", "f").outputs["out"].connect(adder.inputs["b"])
    scheduler = Scheduler([numbers, adder], workers=1)
    scheduler.run(duration=20)
    assert scheduler.left_over == 3
    assert [r.getMessage() for r in caplog.records if "never took" in r.getMessage()] == [
        "add/add: messages its tick policy never took were left in its inputs (3 in a); it ticks "
        "synchronized a, b (tolerance 0.001s)"]


@pytest.mark.timeout(60)
def test_a_live_run_stopped_by_the_user_does_not_warn_of_drops(caplog):
    source = testpack.Source("src", "s", {"tick_period": "0ms", "count": 10**9})
    slow = testpack.Collect("slow", "c", {"work_s": 0.0005})
    slow.inputs["number"].configure(queue_size=2, policy="latest")
    wire(source, "number", slow, "number")
    scheduler = Scheduler([source, slow], workers=2)
    scheduler.run(duration=0.3)  # as Ctrl-C, SIGTERM or --duration: keeping the newest was the point
    assert slow.inputs["number"].dropped > 0 and _drop_warnings(caplog) == []
    assert not any("never took" in r.getMessage() for r in caplog.records)


def test_queue_policy_block_applies_backpressure_loses_nothing_and_blocks_no_worker():
    source = testpack.Source("src", "s", {"tick_period": "0ms", "count": 200})
    slow = testpack.Collect("slow", "c", {"work_s": 0.0005})  # queue of 4, policy block
    wire(source, "number", slow, "number")
    scheduler = Scheduler([source, slow], workers=2)
    scheduler.run(duration=20)
    assert slow.values == [float(v) for v in range(200)]
    assert slow.inputs["number"].dropped == 0
    assert scheduler.failure is None
    assert scheduler.blocked_publishes == 0  # the source was held back off the workers, not in publish()


def test_backpressure_through_a_synchronized_receiver_loses_nothing_and_ends():
    # The synchronized Add takes its matched messages while the scheduler decides it is ready,
    # which frees room for sources held back by its full inputs; the slow sink holds Add back.
    a = testpack.Source("a", "s", {"tick_period": "0ms", "count": 100})
    b = testpack.Source("b", "s", {"tick_period": "0ms", "count": 100})
    adder = Add("add", "add", {"tolerance": "10s"})
    slow = testpack.Collect("slow", "c", {"work_s": 0.0005})
    for source, port in ((a, "a"), (b, "b")):
        adder.inputs[port].configure(queue_size=2, policy="block")
        wire(source, "number", adder, port)
    wire(adder, "total", slow, "number")
    runner = threading.Thread(target=Scheduler([a, b, adder, slow], workers=2).run, kwargs={"duration": 30},
                              daemon=True)  # a deadlock fails the test instead of hanging it
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "the app did not end"
    assert slow.values == [2.0 * v for v in range(100)]


def test_queue_policy_block_single_threaded_runs_the_receiver_to_make_room():
    source = testpack.Source("src", "s", {"tick_period": "1ms", "count": 20})
    collect = testpack.Collect("c", "c")
    wire(source, "number", collect, "number")
    Scheduler([source, collect], clock=ManualClock()).run_until(1.0)
    assert collect.values == [float(v) for v in range(20)]


def test_block_within_one_node_is_reported_not_deadlocked():
    feeder = _Feeder("same", "f")
    collect = testpack.Collect("same", "c")
    wire(feeder, "out", collect, "number")
    scheduler = Scheduler([feeder, collect], clock=ManualClock())
    scheduler.start()
    scheduler._local.nodes = ["same"]  # as if inside a tick of node "same"
    for value in range(4):
        feeder.out.publish(Number(float(value)))
    with pytest.raises(QueueFull, match="would deadlock"):
        feeder.out.publish(Number(5.0))


def test_components_of_one_node_never_tick_together():
    testpack.Overlap.overlaps.clear()
    components = [testpack.Overlap("shared", f"c{i}") for i in range(3)]
    Scheduler(components, workers=3).run(duration=10)
    assert all(c.ticks == 30 for c in components)
    assert testpack.Overlap.overlaps == []


class _Ticker(Codelet):
    """Periodic every 20 ms, 30 ticks; the first tick triggers a slow component."""
    out = Tx(Number)

    def start(self):
        self.times = []
        self.tick_periodically("20ms")

    def tick(self):
        self.times.append(time.monotonic())
        if len(self.times) == 1:
            self.out.publish(Number(0.0))
        if len(self.times) == 30:
            self.report_exhausted()


class _Slow(Codelet):
    number = Rx(Number)

    def start(self):
        self.tick_on_message(self.number)

    def tick(self):
        self.number.read()
        time.sleep(0.3)


def test_periodic_component_keeps_time_while_another_worker_is_busy():
    # Worker 1 ticks the ticker, re-arms its timer, then takes the slow tick (300 ms). The idle
    # worker 2 must wake for the ticker's next slot, not sleep until the slow tick ends.
    ticker, slow = _Ticker("t", "t"), _Slow("s", "s")
    wire(ticker, "out", slow, "number")
    Scheduler([ticker, slow], workers=2).run(duration=10)
    gaps = [b - a for a, b in zip(ticker.times, ticker.times[1:])]
    assert max(gaps) < 0.15, f"the ticker waited {max(gaps) * 1e3:.0f} ms for a 20 ms slot"


def _app(tmp_path, nodes, edges, config=None, modules=("demo",)):
    data = {"name": "t", "modules": [*modules, str(testpack.__file__)],
            "graph": {"nodes": nodes, "edges": edges}, "config": config or {}}
    path = tmp_path / "t.app.json"
    path.write_text(json.dumps(data))
    return load_app(path)


def test_shutdown_drains_then_stops_in_reverse_topological_order(tmp_path):
    spec = _app(tmp_path,
                [{"name": "a", "components": [{"name": "src", "type": "testpack.Source"}]},
                 {"name": "b", "components": [{"name": "mid", "type": "testpack.Collect"}]},
                 {"name": "c", "components": [{"name": "end", "type": "testpack.Collect"}]}],
                [{"source": "b/mid/relay", "target": "c/end/number"},
                 {"source": "a/src/number", "target": "b/mid/number"}],
                {"a": {"src": {"count": 50, "tick_period": "0ms"}}, "c": {"end": {"work_s": 0.001}}})
    app = App(spec, workers=2)
    events = __import__("sys").modules[type(app.component("a/src")).__module__].EVENTS  # the pack as the app loaded it
    events.clear()
    app.run(duration=20)
    stops = [e for e in events if e[0] == "stop"]
    assert [e[1] for e in stops] == ["c/end", "b/mid", "a/src"]
    assert stops[0][2] == 50 and stops[1][2] == 50  # every message was processed before stop()
    assert app.scheduler.stop_order == ["c/end", "b/mid", "a/src"]


def test_max_ticks_stops_sources(tmp_path):
    counter = Counter("src", "c", {"tick_period": "1ms", "count": 0})
    recorder = Recorder("sink", "r")
    wire(counter, "number", recorder, "number")
    scheduler = Scheduler([counter, recorder], clock=ManualClock(), max_ticks=7)
    scheduler.run_until(10.0)
    assert len(recorder.seen) == 7 and scheduler.finished


def test_duration_stops_an_endless_app():
    counter = Counter("src", "c", {"tick_period": "5ms", "count": 0})
    scheduler = Scheduler([counter], workers=1)
    scheduler.run(duration=0.2)
    assert scheduler.finished and 5 <= scheduler._states[counter].ticks <= 60


def test_request_stop_from_another_thread():
    counter = Counter("src", "c", {"tick_period": "1ms", "count": 0})
    scheduler = Scheduler([counter], workers=1)
    threading.Timer(0.1, scheduler.request_stop).start()
    scheduler.run(duration=10)
    assert scheduler.finished and scheduler.stop_order == ["src/c"]


def test_failing_tick_stops_the_app_and_names_the_component():
    counter = Counter("src", "c", {"tick_period": "1ms", "count": 10})
    faulty = testpack.Faulty("bad", "f", {"fail_on": 2.0})
    wire(counter, "number", faulty, "number")
    scheduler = Scheduler([counter, faulty], clock=ManualClock())
    scheduler.run_until(1.0)
    assert scheduler.failure is not None
    assert scheduler.failure.component == "bad/f" and scheduler.failure.phase == "tick"
    assert "RuntimeError: cannot handle 2.0" in scheduler.failure.traceback
    assert faulty.seen == [0.0, 1.0]
    assert set(scheduler.stop_order) == {"src/c", "bad/f"}  # stop() still runs once for each


def test_failing_tick_with_continue_policy_logs_and_goes_on(caplog):
    counter = Counter("src", "c", {"tick_period": "1ms", "count": 5})
    faulty = testpack.Faulty("bad", "f", {"fail_on": 2.0})
    wire(counter, "number", faulty, "number")
    scheduler = Scheduler([counter, faulty], clock=ManualClock(), on_error={"bad": "continue"})
    scheduler.run_until(1.0)
    assert scheduler.failure is None
    assert faulty.seen == [0.0, 1.0, 3.0, 4.0]
    assert scheduler.stats.report()["components"]["bad/f"]["errors"] == 1
    assert "cannot handle 2.0" in caplog.text


def test_failing_start_runs_nothing():
    class BadStart(Codelet):
        def start(self):
            raise ValueError("no camera")
    counter = Counter("src", "c", {"tick_period": "1ms"})
    scheduler = Scheduler([counter, BadStart("cam", "b")], clock=ManualClock())
    scheduler.run_until(1.0)
    assert scheduler.failure.component == "cam/b" and scheduler.failure.phase == "start"
    assert scheduler._states[counter].ticks == 0


def test_live_param_change_applies_on_next_tick():
    counter = Counter("src", "c", {"tick_period": "1ms", "count": 4})
    from graphflow.packs.demo.scale import Scale
    scale = Scale("s", "s", {"gain": 2.0})
    recorder = Recorder("sink", "r")
    wire(counter, "number", scale, "number")
    wire(scale, "scaled", recorder, "number")
    scheduler = Scheduler([counter, scale, recorder], clock=ManualClock())
    scheduler.run_until(0.0015)
    scale.set_param("gain", 10.0)
    with pytest.raises(ValueError, match="expected float"):
        scale.set_param("gain", "x")
    scheduler.run_until(1.0)
    assert [v for _, v in recorder.seen] == [0.0, 2.0, 20.0, 30.0]


def test_stats_report_counts_ticks_messages_and_latency():
    counter = Counter("src", "c", {"tick_period": "10ms", "count": 5})
    recorder = Recorder("sink", "r")
    wire(counter, "number", recorder, "number")
    scheduler = Scheduler([counter, recorder], clock=ManualClock())
    scheduler.run_until(1.0)
    report = scheduler.stats.report()
    assert report["components"]["src/c"]["ticks"] == 5
    channel = report["channels"]["src/c/number"]
    assert channel["messages"] == 5 and channel["drops"] == 0
    assert channel["rate"] == pytest.approx(100.0)
    assert channel["receivers"]["sink/r/number"]["latency_ms"]["median"] == pytest.approx(0.0)


def test_report_counts_running_time_from_when_ticking_began_not_from_start():
    """A model load or kernel compile in start() is reported apart: rates are per running second."""
    clock = ManualClock(100.0)

    class SlowStart(Recorder):
        def start(self):
            clock.advance(30.0)  # start() takes 30 s of the app's clock
            super().start()

    counter = Counter("src", "c", {"tick_period": "10ms", "count": 5})
    recorder = SlowStart("sink", "r")
    wire(counter, "number", recorder, "number")
    scheduler = Scheduler([counter, recorder], clock=clock)
    scheduler.run_until(130.05)
    report = scheduler.stats.report()
    assert report["start_s"] == pytest.approx(30.0)
    assert 0.029 <= report["elapsed_s"] <= 0.05  # five ticks 10 ms apart, the 30 s of start() not counted
    assert report["components"]["src/c"]["ticks"] == 5
    assert report["components"]["src/c"]["tick_rate"] == pytest.approx(5 / report["elapsed_s"])


class _FullDiskAtStop(Codelet):
    """Finishes a file in stop() on a disk that is full."""

    def start(self):
        self.tick_periodically("1ms")
        self.report_exhausted()

    def tick(self):
        pass

    def stop(self):
        raise OSError(28, "No space left on device", "out/predictions.json")


def test_a_file_a_component_cannot_finish_in_stop_is_one_line(caplog):
    scheduler = Scheduler([_FullDiskAtStop("writer", "w")], workers=1)
    scheduler.run(duration=10)
    failure = scheduler.failure
    assert failure is not None and failure.phase == "stop" and failure.reported
    assert str(failure) == "writer/w: [Errno 28] No space left on device: 'out/predictions.json'"
    assert "Traceback" not in caplog.text


@pytest.mark.timeout(30)
def test_an_app_with_nothing_to_start_it_ends_with_a_warning(caplog):
    """A subgraph file run on its own: its inputs unconnected, no source. It ran until killed."""
    recorder = Recorder("sink", "r")
    scheduler = Scheduler([recorder], workers=2)
    scheduler.run()
    assert scheduler.finished and scheduler.failure is None and recorder.seen == []
    assert any("nothing would ever start it; it ends" in r.getMessage() for r in caplog.records)
