"""The scheduler: a pool of worker threads ticking ready components.

- Periodic components keep their rate without drift (tick k is due at start + k·period; late
  ticks skip missed slots instead of bunching up).
- On-message and synchronized components become ready when their inputs say so.
- Components of one node never tick at the same time.
- The app ends on request (Ctrl-C, SIGTERM, ``--duration``), or when every source component is
  exhausted or has ticked ``max_ticks`` times; the graph then drains (every queued message is
  processed) and ``stop()`` runs once per component, in reverse topological order.

The same scheduler runs single-threaded against a :class:`ManualClock` (``run_until``), which is
how tick policies are tested without sleeping.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass

from .codelet import Codelet, Periodic, Runtime
from .ledger import Ledger, Stats
from .ports import InputChannel, QueueFull

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


@dataclass
class NodeFailure:
    component: str
    phase: str
    traceback: str

    def __str__(self) -> str:
        return f"component {self.component} failed in {self.phase}():\n{self.traceback}"


class _State:
    __slots__ = ("component", "node", "policy", "queued", "running", "retrigger", "due", "ticks",
                 "source", "done", "started")

    def __init__(self, component: Codelet):
        self.component = component
        self.node = component.node_name
        self.policy = None
        self.queued = False
        self.running = False
        self.retrigger = False
        self.due = 0.0
        self.ticks = 0
        self.source = False
        self.done = False
        self.started = False


class Scheduler(Runtime):
    """Runs a set of wired components.

    Args:
        components: every component, in topological order (sources first).
        clock: a callable returning seconds; a :class:`ManualClock` for deterministic tests.
        workers: worker threads (default: the core count).
        error_policy: node name → ``"stop"`` (default: a failing tick stops the app with an
            error) or ``"continue"`` (log it and go on).
        max_ticks: stop after every source component ticked this many times.
    """

    def __init__(self, components: list[Codelet], *, clock=time.monotonic, workers: int | None = None,
                 ledger: Ledger | None = None, error_policy: dict[str, str] | None = None,
                 max_ticks: int | None = None):
        super().__init__(clock=clock, ledger=ledger or Ledger())
        self.ledger.set_clock(clock)
        self.components = list(components)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.error_policy = error_policy or {}
        self.max_ticks = max_ticks
        self.stats = Stats(clock)
        self.stats.track(self.components)
        self.ledger.subscribe(self.stats)
        self.failure: NodeFailure | None = None
        self.stop_order: list[str] = []
        self._states = {c: _State(c) for c in self.components}
        for component in self.components:
            component.runtime = self
        self._cond = threading.Condition()
        self._ready: list[_State] = []
        self._timers: list = []
        self._seq = itertools.count()
        self._busy_nodes: set[str] = set()
        self._space_waiters = 0  # publishers waiting on a full 'block' input
        self._draining = False
        self._finished = threading.Event()
        self._stop_requested = False
        self._threads: list[threading.Thread] = []
        self._local = threading.local()
        self._started = False
        self._stopped = False
        self.ticking_since: float | None = None  # clock time when start() finished
        self.ticking_until: float | None = None  # clock time when the graph finished or stopped

    # -- Runtime interface (called by ports and components) ----------------------------------
    def now(self) -> float:
        return self.clock()

    def input_ready(self, component: Codelet) -> None:
        state = self._states.get(component)
        if state is None:
            return
        with self._cond:
            if state.running:
                state.retrigger = True
            elif not state.queued and not state.done and state.policy is not None \
                    and not isinstance(state.policy, Periodic) and state.policy.ready():
                state.queued = True
                self._ready.append(state)
                self._cond.notify()

    def wait_for_space(self, rx: InputChannel) -> bool:
        """A ``block`` input is full: tick its receiver here if it is idle (this drains the queue
        without a thread switch), else wait until the receiver reads."""
        if self._stop_requested:
            return False
        running = getattr(self._local, "nodes", [])
        if rx.component.node_name in running:
            raise QueueFull(f"input {rx.name} is full with policy 'block', and its receiver's node "
                            f"{rx.component.node_name!r} is waiting on this publish: this would deadlock")
        receiver = self._states.get(rx.component)
        with self._cond:
            state = self._take(receiver) if receiver is not None else None
            if state is None and self._threads:
                self._space_waiters += 1
                try:
                    self._cond.wait(0.01)
                finally:
                    self._space_waiters -= 1
                return True
        if state is None:
            raise QueueFull(f"input {rx.name} is full with policy 'block' and its receiver cannot tick now")
        self._run(state)
        return True

    def space_freed(self, rx: InputChannel) -> None:
        if self._space_waiters:  # a racy read is fine: waiters also wake every 10 ms
            with self._cond:
                self._cond.notify_all()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> bool:
        """Call every component's ``start()`` (sources first) and arm the tick policies."""
        self._started = True
        now = self.clock()
        for component in self.components:
            state = self._states[component]
            try:
                component.start()
            except Exception:
                self.failure = NodeFailure(component.full_name, "start", traceback.format_exc())
                self._finished.set()
                return False
            state.started = True
            state.policy = component.tick_policy
            state.source = isinstance(state.policy, Periodic) and not any(
                rx.sources for rx in component.inputs.values())
            if isinstance(state.policy, Periodic):
                state.due = now
                heapq.heappush(self._timers, (now, next(self._seq), state))
            elif state.policy is not None:
                self.input_ready(component)
        self.ticking_since = self.clock()
        if not any(s.source for s in self._states.values()) and self.max_ticks is not None:
            log.warning("max_ticks is set but the app has no periodic source components")
        return True

    def request_stop(self) -> None:
        """Stop as soon as the running ticks return (Ctrl-C, SIGTERM, duration)."""
        with self._cond:
            self._stop_requested = True
            self._finished.set()
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def run(self, duration: float | None = None) -> None:
        """Start, run with worker threads until done, drain, then stop every component."""
        if not self._started and not self.start():
            self.shutdown()
            return
        self._threads = [threading.Thread(target=self._worker, name=f"graphflow-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not self._finished.is_set():
                timeout = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
                self._finished.wait(timeout)
                if deadline is not None and time.monotonic() >= deadline:
                    self.request_stop()
        except KeyboardInterrupt:
            log.info("interrupted; stopping")
            self.request_stop()
        finally:
            with self._cond:
                self._finished.set()
                self._cond.notify_all()
            for thread in self._threads:
                thread.join()
            self.shutdown()

    def run_until(self, time_: float) -> None:
        """Single-threaded: run everything due up to ``time_`` on a :class:`ManualClock`."""
        if not self._started and not self.start():
            return
        while not self._finished.is_set():
            self.run_pending()
            with self._cond:
                due = self._timers[0][0] if self._timers else None
            if due is None or due > time_ or self._finished.is_set():
                break
            self.clock.set(due)
        if not self._finished.is_set():
            self.clock.set(time_)
            self.run_pending()
        if self._finished.is_set():
            self.shutdown()

    def run_pending(self) -> None:
        """Single-threaded: tick every component that is ready now, until none is."""
        while True:
            with self._cond:
                state = None if self._finished.is_set() else self._take_runnable()
            if state is None:
                return
            self._run(state)

    def shutdown(self) -> None:
        """Run ``stop()`` once for every started component, sinks first (reverse topological)."""
        if self._stopped:
            return
        self._stopped = True
        self._finished.set()
        self.ticking_until = self.clock()
        for component in reversed(self.components):
            if not self._states[component].started:
                continue
            self.stop_order.append(component.full_name)
            try:
                component.stop()
            except Exception:
                trace = traceback.format_exc()
                log.error("component %s failed in stop():\n%s", component.full_name, trace)
                if self.failure is None:
                    self.failure = NodeFailure(component.full_name, "stop", trace)

    # -- internals ----------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._finished.is_set():
                        return
                    state = self._take_runnable()
                    if state is not None:
                        break
                    delay = self._timers[0][0] - self.clock() if self._timers else None
                    self._cond.wait(None if delay is None else max(delay, 0.0))
            self._run(state)

    def _take_runnable(self):
        """Move due timers to the ready list, then take the first state whose node is idle.
        Caller holds the condition."""
        if self._timers:
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, state = heapq.heappop(self._timers)
                if not state.done and not state.queued:
                    state.queued = True
                    self._ready.append(state)
        for state in self._ready:
            if state.node not in self._busy_nodes:
                return self._take(state)
        return None

    def _take(self, state: _State):
        """Mark a ready state as running, if its node is idle. Caller holds the condition."""
        if not state.queued or state.node in self._busy_nodes:
            return None
        self._ready.remove(state)
        state.queued = False
        state.running = True
        self._busy_nodes.add(state.node)
        return state

    def _run(self, state: _State) -> None:
        component = state.component
        nodes = getattr(self._local, "nodes", None)
        if nodes is None:
            nodes = self._local.nodes = []
        nodes.append(state.node)
        consumed_before = component.consumed
        if component._pending_params:
            component.apply_pending_params()
        failed = False
        start = self.clock()
        try:
            component.tick()
        except Exception:
            failed = True
            trace = traceback.format_exc()
            self.stats.error(component)
            if self.error_policy.get(state.node, "stop") == "continue":
                log.error("component %s failed in tick() (policy: continue):\n%s",
                          component.full_name, trace)
            else:
                self.failure = self.failure or NodeFailure(component.full_name, "tick", trace)
        duration = self.clock() - start
        nodes.pop()
        self.ledger.ticked(component, start, duration)
        consumed = component.consumed != consumed_before
        with self._cond:
            state.running = False
            self._busy_nodes.discard(state.node)
            state.ticks += 1
            if failed and self.failure is not None:
                self._stop_requested = True
                self._finished.set()
                self._cond.notify_all()
                return
            if component.exhausted or (state.source and self.max_ticks is not None
                                       and state.ticks >= self.max_ticks):
                state.done = True
            policy = state.policy
            if isinstance(policy, Periodic):
                if not state.done:
                    self._arm_timer(state)
            elif policy is not None and not state.done and (consumed or state.retrigger) \
                    and policy.ready():
                state.queued = True
                self._ready.append(state)
            state.retrigger = False
            if not self._draining and state.source and state.done:
                self._draining = all(s.done for s in self._states.values() if s.source)
            if self._draining and self._drained():
                self._finished.set()
                self._cond.notify_all()
            elif self._ready:
                self._cond.notify()

    def _arm_timer(self, state: _State) -> None:
        period = state.policy.period
        now = self.clock()
        due = state.due + period
        if due < now and period > 0:
            due += period * ((now - due) // period + 1)  # skip missed slots, keep the phase
        state.due = max(due, now) if period == 0 else due
        heapq.heappush(self._timers, (state.due, next(self._seq), state))

    def _drained(self) -> bool:
        if self._ready or any(s.running for s in self._states.values()):
            return False
        return not any(rx.available() for c in self.components for rx in c.inputs.values())
