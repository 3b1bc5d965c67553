"""A running app: components built from a validated :class:`AppSpec`, wired, and scheduled."""
from __future__ import annotations

import time
from pathlib import Path

from .codelet import Codelet
from .loader import AppSpec, load_app
from .ports import OutputChannel
from .registry import Registry
from .scheduler import Scheduler
from .tap import Tap


class App:
    """Build with :meth:`App.load` (file → validated → wired) or from an :class:`AppSpec`."""

    def __init__(self, spec: AppSpec, *, clock=time.monotonic, workers: int | None = None,
                 max_ticks: int | None = None):
        self.spec = spec
        self.tap = Tap()
        components = {c.full_name: spec.types[c.full_name](c.node, c.name, spec.params_of(c.full_name))
                      for c in spec.components}
        for edge in spec.edges:
            source_component, source_port = edge.source.rsplit("/", 1)
            target_component, target_port = edge.target.rsplit("/", 1)
            rx = components[target_component].inputs[target_port]
            if edge.queue:
                rx.configure(edge.queue.get("size"), edge.queue.get("policy"))
            components[source_component].outputs[source_port].connect(rx)
        self.components = components
        on_error = {c.node: c.on_error for c in spec.components}
        self.scheduler = Scheduler(_topological(list(components.values())), clock=clock, workers=workers,
                                   tap=self.tap, on_error=on_error, max_ticks=max_ticks)

    @classmethod
    def load(cls, path: str | Path, overlays=(), sets=(), registry: Registry | None = None,
             io: dict[str, str] | None = None, **kwargs) -> "App":
        """Read, compose and validate the app file (see :mod:`graphflow.loader`), then build it.
        ``io``: values for the params the app's ``io`` section names (``{"input": ...}``)."""
        return cls(load_app(path, overlays, sets, registry, io), **kwargs)

    # -- running ------------------------------------------------------------------------------
    def run(self, duration: float | None = None) -> None:
        self.scheduler.run(duration)

    def request_stop(self, why: str = "") -> None:
        self.scheduler.request_stop(why)

    @property
    def failure(self):
        return self.scheduler.failure

    def report(self) -> dict:
        return self.scheduler.stats.report()

    # -- introspection --------------------------------------------------------------------------
    def component(self, full_name: str) -> Codelet:
        return self.components[full_name]

    def channels(self) -> dict[str, OutputChannel]:
        return {tx.name: tx for c in self.components.values() for tx in c.outputs.values()}

    def set_param(self, component: str, name: str, value):
        """Validate and apply a live param change (from the next tick on); returns the typed value."""
        return self.components[component].set_param(name, value)


def _topological(components: list[Codelet]) -> list[Codelet]:
    """Sources first; stable in declaration order; components on a cycle keep their order."""
    indegree = {c: 0 for c in components}
    downstream: dict[Codelet, list[Codelet]] = {c: [] for c in components}
    for c in components:
        for tx in c.outputs.values():
            for rx in tx.receivers:
                if rx.component is not c:
                    downstream[c].append(rx.component)
                    indegree[rx.component] += 1
    order, ready = [], [c for c in components if indegree[c] == 0]
    while ready:
        c = ready.pop(0)
        order.append(c)
        for d in downstream[c]:
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
    order += [c for c in components if c not in order]
    return order
