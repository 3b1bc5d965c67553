"""The scheduler: a pool of worker threads ticking ready components.

- Periodic components keep their rate without drift (tick k is due at start + k·period; late
  ticks skip missed slots instead of bunching up).
- On-message and synchronized components become ready when their inputs say so.
- Every component has a tick policy (:mod:`graphflow.tick`); the scheduler asks each one when it
  is next due by the clock and whether its messages make it due now.
- Backpressure (the ``block`` queue policy) lives in the input channel; the scheduler only holds
  back ("parks") a component while an input it publishes into is full, and wakes it when a read
  makes room, so worker threads rarely wait in a publish (only when one tick publishes more than
  the room there was; then the channel asks :meth:`Scheduler.blocked`, which ticks the idle
  receiver on the waiting thread).
- Components of one node never tick at the same time.
- The app ends on request (Ctrl-C, SIGTERM, ``--duration``), when every source component is
  exhausted or has ticked ``max_ticks`` times, or when a component fails (it ticks no more). Either way the sources tick no more and the graph
  drains: every component that its queued messages make due ticks, until none is (messages that no
  tick policy will take, such as an unmatched half of a synchronized pair, are left). A drain
  asked for has ``drain_timeout`` seconds; a second request abandons it. Then ``stop()`` runs
  once per component, in reverse topological order.

The same scheduler runs single-threaded against a :class:`ManualClock` (``run_until``), which is
how tick policies are tested without sleeping.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import threading
import time
import traceback
from bisect import insort
from collections import deque
from dataclasses import dataclass

from .codelet import Codelet, NodeError
from .ports import InputChannel, QueueFull
from .runtime import Runtime
from .stats import Stats
from .tap import Tap
from .tick import TickPolicy

log = logging.getLogger("graphflow.scheduler")


class ManualClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``advance``/``set`` move it."""

    def __init__(self, start: float = 0.0):
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def set(self, time_: float) -> None:
        self.time = max(self.time, time_)


def _outlets(component: Codelet) -> tuple[InputChannel, ...]:
    """The 'block' inputs of other components that ``component`` publishes into. (Its own are left
    out: a component filling its own input is a deadlock, which the publish reports.)"""
    return tuple(rx for tx in component.outputs.values() for rx in tx.receivers
                 if rx.policy == "block" and rx.component is not component)


def _rank(state: "_State") -> int:
    return state.rank


@dataclass
class NodeFailure:
    component: str
    phase: str
    traceback: str  # the traceback, or for a NodeError its one-line message
    reported: bool = False  # a NodeError: the node's own words for the user, no traceback

    def __str__(self) -> str:
        if self.reported:
            return f"{self.component}: {self.traceback}"
        return f"component {self.component} failed in {self.phase}():\n{self.traceback}"


def _failure(component: Codelet, phase: str, error: BaseException) -> NodeFailure:
    if isinstance(error, NodeError):
        return NodeFailure(component.full_name, phase, str(error), reported=True)
    if isinstance(error, OSError) and phase in ("start", "stop"):
        # What a node opens in start() (a file, a folder, a port, a device) comes from the user's
        # params, and what it finishes in stop() (a results file) meets the disk as it is: one line
        # says which and why ("[Errno 28] No space left on device: 'out/x.json'"); -v the traceback.
        log.debug("%s failed in %s()", component.full_name, phase, exc_info=error)
        return NodeFailure(component.full_name, phase, str(error), reported=True)
    return NodeFailure(component.full_name, phase, traceback.format_exc())


class _State:
    __slots__ = ("component", "inputs", "only_input", "outlets", "node", "rank", "policy", "timed", "queued", "parked",
                 "running", "retrigger", "due", "ticks", "source", "done", "started", "durations")

    def __init__(self, component: Codelet, rank: int, durations):
        self.component = component
        self.inputs: tuple[InputChannel, ...] = tuple(component.inputs.values())
        self.only_input = self.inputs[0] if len(self.inputs) == 1 else None  # (the usual case, read directly)
        self.outlets: tuple[InputChannel, ...] = ()  # the 'block' inputs it publishes into (set by start)
        self.node = component.node_name
        self.rank = rank  # topological position: ready work furthest downstream runs first
        self.durations = durations  # tick durations (the job report's Samples)
        self.policy: TickPolicy | None = None
        self.timed = False  # due by the clock (its policy gives due times), else by messages
        self.queued = False  # waiting to run: in the ready list, the due queue, or parked
        self.parked = False  # held back until its outlets have room
        self.running = False
        self.retrigger = False
        self.due = 0.0
        self.ticks = 0
        self.source = False
        self.done = False
        self.started = False

    def outlet_full(self) -> bool:
        for rx in self.outlets:
            if rx.full():
                return True
        return False

    def watch_outlets(self, change: int) -> None:
        for rx in self.outlets:
            rx.waiters += change

    def consumed(self) -> int:
        """Messages taken from the component's inputs so far: the scheduler re-ticks only after progress."""
        total = 0
        for rx in self.inputs:
            total += rx.consumed
        return total


class Scheduler(Runtime):
    """Runs a set of wired components.

    Args:
        components: every component, in topological order (sources first).
        clock: a callable returning seconds; a :class:`ManualClock` for deterministic tests.
        workers: worker threads (default: the core count).
        on_error: node name → ``"stop"`` (default: a failing tick stops the app with an
            error) or ``"continue"`` (log it and go on).
        max_ticks: stop after every source component ticked this many times.
        drain_timeout: seconds a requested stop waits for the graph to drain.
    """

    def __init__(self, components: list[Codelet], *, clock=time.monotonic, workers: int | None = None,
                 tap: Tap | None = None, on_error: dict[str, str] | None = None,
                 max_ticks: int | None = None, drain_timeout: float = 10.0):
        super().__init__(clock=clock, tap=tap)
        self.components = list(components)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.on_error = on_error or {}
        self.max_ticks = max_ticks
        self.drain_timeout = drain_timeout
        self.stats = Stats(clock)
        self.stats.track(self.components)
        self.failure: NodeFailure | None = None
        self.stop_order: list[str] = []
        self._states = {c: _State(c, rank, self.stats.ticks[c.full_name])
                        for rank, c in enumerate(self.components)}
        for component in self.components:
            component.runtime = self
        # One lock guards the scheduling state; idle workers wait on _work (a notify is skipped
        # when nobody waits, the common case). Reentrant: a signal handler (SIGTERM's
        # request_stop) runs on the main thread, which may be holding it at that moment.
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)
        self._idle_workers = 0
        # Message-triggered states, sorted by rank; the most downstream runs first, so a message
        # goes through before the sources start the next: fewer messages in flight, lower latency,
        # a smaller working set (measured: the 20-person decoder chain ran 9% faster than
        # first-come-first-served). Timed states that are due wait in _due, first due first served
        # (so no source starves another), and run when no triggered work can.
        self._ready: list[_State] = []
        self._due: deque[_State] = deque()
        self._parked: list[_State] = []  # queued states whose outlets are full
        self._timers: list = []
        self._seq = itertools.count()
        self._busy_nodes: set[str] = set()
        self.blocked_publishes = 0  # times a publish found a 'block' input full and asked to wait
        self._relieved: set[str] = set()  # inputs that dropped a message to end a stall (warned once)
        self._draining = False
        self._finished = threading.Event()
        self._ended = False  # mirrors _finished, read without a call on the hot path
        self._stop_requested = False
        self._abandoned = False  # a stop that does not wait for the drain
        self._drain_deadline: float | None = None  # time.monotonic() by which a requested drain ends
        self.left_over = 0  # messages still queued when the graph stopped
        self._threads: list[threading.Thread] = []
        self._local = threading.local()
        self._started = False
        self._stopped = False
        self.ticking_since: float | None = None  # clock time when start() finished
        self.ticking_until: float | None = None  # clock time when the graph finished or stopped

    # -- Runtime interface (called by ports and components) ----------------------------------
    def input_ready(self, component: Codelet) -> None:
        state = self._states.get(component)
        if state is None:
            return
        with self._lock:
            if state.running:
                state.retrigger = True
            elif not state.queued and not state.done and state.policy is not None \
                    and not state.timed and self._policy_ready(state.policy):
                self._queue(state)
                if self._idle_workers:
                    self._work.notify()

    def blocked(self, rx: InputChannel) -> bool:
        """A publish waits for room in the full ``block`` input ``rx`` (see :mod:`graphflow.ports`):
        tick its receiver on this thread if it is idle (that makes room without a thread switch),
        else let the channel wait for another worker's read. Refuses a wait that could not end."""
        if self._abandoned:
            return False
        if rx.component.node_name in self._running_nodes():
            raise QueueFull(f"input {rx.name} is full with policy 'block', and its receiver's node "
                            f"{rx.component.node_name!r} is waiting on this publish: this would deadlock")
        receiver = self._states.get(rx.component)
        with self._lock:
            self.blocked_publishes += 1
            state = self._take(receiver) if receiver is not None else None
        if state is not None:
            self._run(state, self._running_nodes())
        elif not self._threads:
            raise QueueFull(f"input {rx.name} is full with policy 'block' and its receiver cannot tick now")
        return True

    def room_made(self, rx: InputChannel) -> None:
        """A read made room in an input that parked states watch."""
        with self._lock:
            if self._parked:
                self._unpark()

    def _policy_ready(self, policy: TickPolicy) -> bool:
        """Ask the policy under the lock. A synchronized one drops and takes messages as it
        matches them, which may make room that a parked state waits for."""
        ready = policy.ready()
        if self._parked:
            self._unpark()
        return ready

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> bool:
        """Call every component's ``start()`` (sources first) and arm the tick policies."""
        self._started = True
        now = self.clock()
        for component in self.components:
            state = self._states[component]
            state.outlets = _outlets(component)
            try:
                component.start()
            except Exception as error:
                self.failure = _failure(component, "start", error)
                self._set_finished()
                return False
            state.started = True
            state.policy = component.tick_policy
            for rx in () if state.policy is None else state.policy.starved():  # known only now, after start()
                log.warning("input %s is not connected: the component will never tick", rx.name)
            due = None if state.policy is None else state.policy.next_due(None, now)
            state.timed = due is not None
            state.source = state.policy is not None and state.policy.self_driven and not any(
                rx.sources for rx in component.inputs.values())
            if due is not None:
                state.due = due
                heapq.heappush(self._timers, (due, next(self._seq), state))
            elif state.policy is not None:
                self.input_ready(component)
        for component in self.components:  # after every start(): a peer's start may be what it waits for
            try:
                component.wait_ready()
            except KeyboardInterrupt:  # Ctrl-C before the first tick: stop, nothing ran
                log.info("interrupted before the graph started")
                self._stop_requested = True
                self._set_finished()
                return False
            except Exception as error:
                self.failure = _failure(component, "start", error)
                self._set_finished()
                return False
        self.ticking_since = self.clock()
        self.stats.ticking_began(self.ticking_since)
        if not any(s.source for s in self._states.values()) and self.max_ticks is not None:
            log.warning("max_ticks is set but the app has no clock-driven source components")
        return True

    def request_stop(self, why: str = "") -> None:
        """Stop (Ctrl-C, SIGTERM): the sources tick no more, the graph drains (at most
        ``drain_timeout`` s), then every component stops. A second request abandons the drain.
        ``why`` (``"Ctrl-C"``, ``"SIGTERM"``) is said in a line when given."""
        with self._lock:
            if self._stop_requested:
                log.warning("stopping now, without waiting for the graph to drain")
                self._abandon()
                return
            if why:
                log.info("%s: draining the graph (%s again to stop at once)", why, why)
            self._begin_stop()

    def _begin_stop(self) -> None:
        """Caller holds the lock."""
        if self._stop_requested:
            return
        self._stop_requested = True
        self._drain_deadline = time.monotonic() + self.drain_timeout
        for state in self._states.values():
            if state.source:
                state.done = True  # its timer is dropped when it comes due
        for state in [state for state in self._due if state.done]:
            self._due.remove(state)
            state.queued = False
        for state in [state for state in self._parked if state.done]:
            self._parked.remove(state)
            state.queued = state.parked = False
            state.watch_outlets(-1)
        self._draining = True
        if self._drained():
            self._finish()
        elif self._idle_workers:
            self._work.notify_all()

    def _abandon(self) -> None:
        """Caller holds the lock."""
        self._stop_requested = self._abandoned = True
        self._finish()

    def _set_finished(self) -> None:
        self._ended = True
        self._finished.set()

    def _finish(self) -> None:
        """Mark the run finished and wake every waiter. Caller holds the lock."""
        self._set_finished()
        self._work.notify_all()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def stopped_early(self) -> bool:
        """The run did not end by itself: a stop was asked for (Ctrl-C, SIGTERM, the duration) or a
        component failed."""
        return self._stop_requested

    @property
    def stop_requested(self) -> bool:
        """Ctrl-C, SIGTERM, the duration or a failure asked the app to stop (it may be draining)."""
        return self._stop_requested or self._finished.is_set()

    def run(self, duration: float | None = None) -> None:
        """Start, run with worker threads until done, drain, then stop every component."""
        if not self._started and not self.start():
            self.shutdown()
            return
        if not any(s.policy is not None and (s.timed or s.policy.self_driven) for s in self._states.values()):
            # (a subgraph file run on its own, an app whose source was left out)
            log.warning("no component of the app ticks by the clock or takes messages from outside (a source): "
                        "nothing would ever start it; it ends")
            with self._lock:
                self._draining = True
                if self._drained():
                    self._finish()
        self._threads = [threading.Thread(target=self._worker, name=f"graphflow-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not self._finished.is_set():
                try:
                    self._finished.wait(0.1 if deadline is None else
                                        min(0.1, max(0.0, deadline - time.monotonic())))
                    now = time.monotonic()
                    if deadline is not None and now >= deadline and not self._stop_requested:
                        with self._lock:
                            self._begin_stop()
                    if self._drain_deadline is not None and now >= self._drain_deadline \
                            and not self._finished.is_set():
                        log.warning("the graph did not drain within %.1f s; stopping without it",
                                    self.drain_timeout)
                        with self._lock:
                            self._abandon()
                except KeyboardInterrupt:
                    self.request_stop("Ctrl-C")
        finally:
            with self._lock:
                self._finish()
            self._join_then_shutdown()

    def _join_then_shutdown(self) -> None:
        """Wait for the workers (each ends its tick), then stop every component, whatever Ctrl-C
        comes meanwhile: a third Ctrl-C skipped the writers' stop(), which finishes their files."""
        for thread in self._threads:
            while thread.is_alive():
                try:
                    thread.join()
                except KeyboardInterrupt:
                    log.warning("the components finish their ticks and stop(), which completes their outputs")
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self.shutdown()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def run_until(self, time_: float) -> None:
        """Single-threaded: run everything due up to ``time_`` on a :class:`ManualClock`."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError(f"run_until needs a scheduler built with clock=ManualClock(), not {clock!r}")
        if not self._started and not self.start():
            return
        while not self._finished.is_set():
            self.run_pending()
            with self._lock:
                due = self._timers[0][0] if self._timers else None
            if due is None or due > time_ or self._finished.is_set():
                break
            clock.set(due)
        if not self._finished.is_set():
            clock.set(time_)
            self.run_pending()
        if self._finished.is_set():
            self.shutdown()

    def run_pending(self) -> None:
        """Single-threaded: tick every component that is ready now, until none is."""
        nodes = self._running_nodes()
        while True:
            with self._lock:
                state = None if self._finished.is_set() else self._take_runnable()
            if state is None:
                return
            self._run(state, nodes)

    def shutdown(self) -> None:
        """Run ``stop()`` once for every started component, sinks first (reverse topological)."""
        if self._stopped:
            return
        self._stopped = True
        self._set_finished()
        self.ticking_until = self.clock()
        self.left_over = sum(rx.available() for c in self.components for rx in c.inputs.values())
        if self.left_over:
            log.info("%d message(s) were still queued at stop", self.left_over)
        if not self._stop_requested and self.failure is None:
            self._warn_of_lost_messages()
        for component in reversed(self.components):
            if not self._states[component].started:
                continue
            self.stop_order.append(component.full_name)
            try:
                component.stop()
            except Exception as error:
                failure = _failure(component, "stop", error)
                if self.failure is None:
                    self.failure = failure  # what the run reports (the command line prints it once)
                else:
                    log.error("%s", failure)

    # -- internals ----------------------------------------------------------------------------
    def _warn_of_lost_messages(self) -> None:
        """The app ended by itself, its input run through (a folder, a video, a recording): each
        message was meant to be processed, so an input that dropped some, and a component that
        left some untaken, say so. (On a live input stopped by the user, keeping the newest is the
        point: no warning.)"""
        for component in self.components:
            inputs = list(component.inputs.values())
            policy = component.tick_policy
            # With several inputs the tick policy may drop or leave messages too (synchronized: those
            # that match none on the other inputs): say what it is.
            ticks = f"; {component.full_name} ticks {policy.describe()}" if policy and len(inputs) > 1 else ""
            for rx in inputs:
                if rx.dropped:
                    advice = "" if rx.policy == "block" else \
                        '; to take every message of a finite input, give its edge "queue": {"policy": "block"}'
                    # (not "of N received": a refused message was never received, and a bridge adds
                    # what its sender dropped on the wire)
                    log.warning("%s dropped %d message%s (queue %d, policy %r%s)%s", rx.name, rx.dropped,
                                "" if rx.dropped == 1 else "s", rx.queue_size, rx.policy, ticks, advice)
            left = [f"{rx.available()} in {rx.decl.name}" for rx in inputs if rx.available()]
            if left and policy is not None:
                log.warning("%s: messages its tick policy never took were left in its inputs (%s); it ticks %s",
                            component.full_name, ", ".join(left), policy.describe())

    def _running_nodes(self) -> list[str]:
        """This thread's stack of nodes in a tick (a block-queue publish can tick another inline)."""
        nodes = getattr(self._local, "nodes", None)
        if nodes is None:
            nodes = self._local.nodes = []
        return nodes

    def _worker(self) -> None:
        nodes = self._running_nodes()
        state: _State | None = None
        while True:
            if state is None:
                with self._lock:
                    while True:
                        if self._finished.is_set():
                            return
                        state = self._take_runnable()
                        if state is not None:
                            break
                        if self._parked and self._stalled() and self._relieve():
                            continue
                        delay = self._timers[0][0] - self.clock() if self._timers else None
                        self._idle_workers += 1
                        try:
                            self._work.wait(None if delay is None else max(delay, 0.0))
                        finally:
                            self._idle_workers -= 1
            state = self._run(state, nodes, take_next=True)

    def _take_runnable(self):
        """Move due timers to the due queue, then take the most downstream triggered state whose
        node is idle, else the first due periodic one. Caller holds the lock."""
        if self._timers:
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, state = heapq.heappop(self._timers)
                if not state.done and not state.queued:
                    self._queue(state)
        busy = self._busy_nodes
        ready = self._ready
        if ready and ready[-1].node not in busy:  # the usual case: the most downstream one can run
            return self._mark_running(ready.pop())
        for index in range(len(ready) - 2, -1, -1):  # most downstream first
            state = ready[index]
            if state.node not in busy:
                del ready[index]
                return self._mark_running(state)
        for state in self._due:
            if state.node not in busy:
                self._due.remove(state)
                return self._mark_running(state)
        return None

    def _mark_running(self, state: _State) -> _State:
        state.queued = False
        state.running = True
        self._busy_nodes.add(state.node)
        return state

    def _queue(self, state: _State) -> None:
        """Queue a state that may tick: to run, or parked while an input it publishes into is
        full (a worker would otherwise block in its publish). Caller holds the lock."""
        state.queued = True
        if state.outlets and state.outlet_full():
            # Watch the outlets, then look again: a read that makes room after this second look
            # sees a waiter and calls space_freed, which waits for this lock and unparks.
            state.watch_outlets(1)
            if state.outlet_full():
                state.parked = True
                self._parked.append(state)
                return
            state.watch_outlets(-1)
        if state.timed:
            self._due.append(state)
        else:
            self._enqueue(state)

    def _unpark(self) -> None:
        """Queue the parked states whose outlets have room now. Caller holds the lock."""
        still = []
        for state in self._parked:
            if state.outlet_full():
                still.append(state)
                continue
            state.parked = False
            state.watch_outlets(-1)
            if state.timed:
                self._due.append(state)
            else:
                self._enqueue(state)
        if len(still) != len(self._parked):
            self._parked = still
            if self._idle_workers:
                self._work.notify()

    def _enqueue(self, state: _State) -> None:
        """Add a triggered state to the ready list, kept sorted by rank. Caller holds the lock."""
        ready = self._ready
        if not ready or ready[-1].rank <= state.rank:
            ready.append(state)  # the usual case: empty, or the most downstream so far
        else:
            insort(ready, state, key=_rank)

    def _take(self, state: _State):
        """Mark a queued state as running, if its node is idle. Caller holds the lock."""
        if not state.queued or state.parked or state.node in self._busy_nodes:
            return None
        (self._due if state.timed else self._ready).remove(state)
        return self._mark_running(state)

    def _run(self, state: _State, nodes: list[str], take_next: bool = False) -> _State | None:
        """Tick one component. With ``take_next``, return the next runnable state, taken under the
        same lock hold that books this tick (one lock round trip per tick on a busy worker)."""
        component = state.component
        nodes.append(state.node)
        only = state.only_input
        consumed_before = only.consumed if only is not None else state.consumed()
        if component._pending_params:
            component.apply_pending_params()
        failed = False
        clock = self.clock
        start = clock()
        try:
            component.tick()
        except Exception as error:
            failed = True
            failure = _failure(component, "tick", error)
            self.stats.error(component)
            if self.on_error.get(state.node, "stop") == "continue":
                log.error("component %s failed in tick() (policy: continue):\n%s",
                          component.full_name, failure.traceback)
            else:
                self.failure = self.failure or failure
        duration = clock() - start
        nodes.pop()
        state.durations.add(duration)
        for observe in self.tap.on_ticked:
            observe(component, start, duration)
        consumed = (only.consumed if only is not None else state.consumed()) != consumed_before
        with self._lock:
            state.running = False
            self._busy_nodes.discard(state.node)
            state.ticks += 1
            if failed and self.failure is not None:
                # The failed component ticks no more, the sources stop, and what is in flight
                # elsewhere is processed: the frames before the failure keep their outputs.
                state.done = True
                self._stop_reading(state)
                self._begin_stop()
                if self._ended:
                    return None
            if component.exhausted or (state.source and self.max_ticks is not None
                                       and state.ticks >= self.max_ticks):
                state.done = True
            if state.timed:
                if not state.done:
                    self._arm_timer(state)
            elif state.policy is not None and not state.done and (consumed or state.retrigger) \
                    and self._policy_ready(state.policy):
                self._queue(state)
            state.retrigger = False
            if not self._draining and state.source and state.done:
                self._draining = all(s.done for s in self._states.values() if s.source)
            if self._draining and self._drained():
                self._finish()
                return None
            if take_next and not self._ended:
                following = self._take_runnable()
                if following is not None and (self._ready or self._due) and self._idle_workers:
                    self._work.notify()  # more work than this worker takes
                return following
            if (self._ready or self._due) and self._idle_workers:
                self._work.notify()
            return None

    def _stop_reading(self, failed: _State) -> None:
        """A component that failed reads no more: what waits in its inputs is dropped (counted as
        drops), and they no longer hold back their publishers, who would otherwise wait for room
        that never comes (and the drain for its timeout). Caller holds the lock."""
        closed = set(failed.inputs)
        for rx in closed:
            rx.policy = "latest"  # a publish never waits here again
        for state in self._states.values():
            if not closed.intersection(state.outlets):
                continue
            if state.parked:
                state.watch_outlets(-1)
            state.outlets = tuple(rx for rx in state.outlets if rx not in closed)
            if state.parked:
                state.watch_outlets(1)
        for rx in closed:
            rx.dropped += rx.available()
            rx.clear()  # wakes publishers waiting in the channel
        if self._parked:
            self._unpark()

    def _stalled(self) -> bool:
        """Nothing runs, nothing is ready, and nothing can become ready by itself: every state
        that the clock or the outside world makes due (sources, periodic components, network
        subscribers) is parked or done. Then only making room can let the graph go on. Caller
        holds the lock."""
        if self._ready or self._due:
            return False
        for state in self._states.values():
            if state.running:
                return False
            if state.parked or state.done or state.policy is None:
                continue
            if state.timed or state.policy.self_driven:
                return False
        return True

    def _relieve(self) -> bool:
        """A stalled graph (see _stalled): let the receivers of the full inputs that the parked
        states wait on make room, where their tick policy can (a synchronized one drops a message
        nothing will match). True when some room was made. Caller holds the lock."""
        relieved = False
        for state in list(self._parked):
            for rx in state.outlets:
                receiver = self._states.get(rx.component)
                if not rx.full() or receiver is None or receiver.policy is None or receiver.done:
                    continue
                if self._policy_ready(receiver.policy):  # (taking its matched messages, if any)
                    if not receiver.queued:
                        self._queue(receiver)
                    relieved = True
                elif receiver.policy.relieve(rx):
                    relieved = True
                    if rx.name not in self._relieved:
                        self._relieved.add(rx.name)
                        log.warning("%s: dropped its oldest message, which matched none on the other inputs of "
                                    "%s while nothing else could run (every source waited for room here); a "
                                    "component upstream published nothing for it? (said once; the drops are "
                                    "counted)", rx.name, rx.component.full_name)
        if relieved:
            self._unpark()
        return relieved

    def _arm_timer(self, state: _State) -> None:
        due = state.policy.next_due(state.due, self.clock()) if state.policy is not None else None
        if due is None:
            state.timed = False
            return
        state.due = due
        heapq.heappush(self._timers, (due, next(self._seq), state))

    def _drained(self) -> bool:
        """No component can tick again for the messages there are: none is queued or running.
        (Messages no tick policy takes stay queued; they must not keep the app alive.)"""
        return not (self._ready or self._due or self._parked or any(s.running for s in self._states.values()))
