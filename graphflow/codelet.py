"""Codelet: the unit of work. Ports and params are declared on the class; work happens in ``tick``.

    class Doubler(Codelet):
        \"\"\"Doubles every number it receives.\"\"\"
        value = Rx(Number, "Numbers in.")
        doubled = Tx(Number, "Numbers out, times two.")
        gain = Param(float, 2.0, "Multiplier.")

        def start(self):
            self.tick_on_message(self.value)

        def tick(self):
            msg = self.value.read()
            self.doubled.publish(Number(msg.payload.value * self.gain), acqtime=msg.acqtime)

Tick policies (chosen in ``start``, defined in :mod:`graphflow.tick`): periodic, on message,
synchronized (several inputs matched by acquisition time within a tolerance). Components of one
node never tick at the same time.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from .params import Param, parse_period
from .tick import OnMessage, Periodic, Synchronized, TickPolicy
from .ports import InputChannel, OutputChannel, Rx, Tx
from .runtime import Runtime


class NodeError(Exception):
    """What a node raises to stop the app over a problem the user must fix (a missing input, a
    bad file with ``on_bad_input: stop``): the message is shown as one line, without a traceback,
    and what is already in flight is processed before the app stops (exit status 1)."""


class Codelet:
    """Base class of every node component. Override ``start``, ``tick`` and ``stop``."""

    def __init__(self, node: str = "node", name: str = "component", config: dict | None = None,
                 runtime: Runtime | None = None):
        self.node_name = node
        self.name = name
        self.full_name = f"{node}/{name}"
        self._runtime = runtime or Runtime()
        self.log = logging.getLogger(f"graphflow.node.{self.full_name}")
        self.tick_policy: TickPolicy | None = None
        self.exhausted = False
        self.progress: tuple[int, int | None, str] | None = None  # see report_progress
        self.inputs: dict[str, InputChannel] = {}
        self.outputs: dict[str, OutputChannel] = {}
        for port in self.ports().values():
            channel = InputChannel(port, self) if isinstance(port, Rx) else OutputChannel(port, self)
            (self.inputs if isinstance(port, Rx) else self.outputs)[port.name] = channel
            self.__dict__[port.name] = channel  # shadows the class-level declaration
        self._param_values: dict[str, Any] = {}
        self._pending_params: dict[str, Any] = {}
        self._params_lock = threading.Lock()  # set_param (viewer/API thread) vs the worker's apply
        config = dict(config or {})
        for name_, param in self.params().items():
            if name_ in config:
                try:
                    self._param_values[name_] = param.convert(config.pop(name_))
                except ValueError as exc:
                    raise ValueError(f"{self.full_name}: param {name_!r}: {exc}") from None
            elif param.required:
                raise ValueError(f"{self.full_name}: required param {name_!r} is not set")
            else:
                self._param_values[name_] = param.default
        if config:
            raise ValueError(f"{self.full_name}: unknown params {sorted(config)}")

    @property
    def runtime(self) -> Runtime:
        """What runs this component: the scheduler, or a test harness's runtime."""
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: Runtime) -> None:
        self._runtime = runtime
        for channel in (*self.inputs.values(), *self.outputs.values()):
            channel.runtime = runtime  # the channels' own reference: the hot path reads it natively

    # -- declarations --------------------------------------------------------------------------
    @classmethod
    def ports(cls) -> dict[str, Rx | Tx]:
        found: dict[str, Rx | Tx] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, (Rx, Tx)):
                    found[key] = value
        return found

    @classmethod
    def params(cls) -> dict[str, Param]:
        found: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Param):
                    found[key] = value
        return found

    # -- lifecycle (override) ------------------------------------------------------------------
    def start(self) -> None:
        """Choose a tick policy and open resources."""

    def wait_ready(self) -> None:
        """Called once after every component of the process has started, before the first tick:
        wait (bounded) for what this component needs from outside the process, e.g. a channel's
        peer in another process, so that no early message is lost to a peer still starting."""

    def tick(self) -> None:
        """Do one unit of work."""

    def stop(self) -> None:
        """Flush and release resources. Runs once, after the graph has drained."""

    # -- tick policies -------------------------------------------------------------------------
    def tick_periodically(self, period: float | str) -> None:
        """Tick every ``period`` (seconds, or ``"30Hz"``, ``"50ms"``, ``"2s"``)."""
        self.tick_policy = Periodic(parse_period(period))

    def tick_on_message(self, *inputs: InputChannel) -> None:
        """Tick whenever one of ``inputs`` receives a message."""
        self._check_inputs(inputs)
        self.tick_policy = OnMessage(tuple(inputs))

    def tick_on_sync(self, *inputs: InputChannel, tolerance: float | str = 0.0) -> None:
        """Tick when all ``inputs`` hold messages with acqtimes within ``tolerance`` of each other."""
        self._check_inputs(inputs)
        if len(inputs) < 2:
            raise ValueError(f"{self.full_name}: synchronized ticking needs at least two inputs")
        self.tick_policy = Synchronized(tuple(inputs), parse_period(tolerance))

    def _check_inputs(self, inputs) -> None:
        if not inputs:
            raise ValueError(f"{self.full_name}: name at least one input to tick on")
        for rx in inputs:
            if not isinstance(rx, InputChannel) or rx.component is not self:
                raise ValueError(f"{self.full_name}: {rx!r} is not an input of this component")
        for rx in self.inputs.values():
            rx.is_trigger = rx in inputs

    # -- helpers for node authors --------------------------------------------------------------
    def now(self) -> float:
        """The app clock, in seconds."""
        return self.runtime.now()

    def report_exhausted(self) -> None:
        """A source says it has nothing more to produce; when all have, the app drains and stops."""
        self.exhausted = True

    def report_progress(self, done: int, total: int | None = None, item: str = "") -> None:
        """How far a long job is (``done`` of ``total``, None: unknown), and what it is at now (a
        file name): ``graphflow run`` shows it on a terminal."""
        self.progress = (done, total, item)

    # -- live parameters -----------------------------------------------------------------------
    def set_param(self, name: str, value: Any) -> Any:
        """Validate and queue a new value; the component sees it at its next tick. A param the
        node reads only at start (``live=False``) is refused with a ValueError."""
        params = self.params()
        if name not in params:
            raise KeyError(name)
        converted = params[name].convert_live(value)
        with self._params_lock:
            self._pending_params[name] = converted
        return converted

    def apply_pending_params(self) -> None:
        if self._pending_params:
            with self._params_lock:
                pending, self._pending_params = self._pending_params, {}
            self._param_values.update(pending)

    def param_values(self) -> dict[str, Any]:
        return {**self._param_values, **self._pending_params}

    # -- introspection -------------------------------------------------------------------------
    @classmethod
    def describe(cls, type_name: str | None = None) -> dict:
        return {
            "type": type_name or cls.__name__,
            "doc": (cls.__doc__ or "").strip(),
            "ports": [p.describe() for p in cls.ports().values()],
            "params": {name: p.describe() for name, p in cls.params().items()},
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.full_name}>"
