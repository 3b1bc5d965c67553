"""Replay: recorded channels feed an app in place of its sources.

``graphflow replay FILE.mcap APP`` builds the app as ``graphflow run`` would, then:

- picks what to feed: without ``--map``, every output of the app's source components (components
  no edge feeds) that the recording holds under the same channel name; with ``--map
  RECORDED=node/component/port`` (repeatable), exactly those: a recorded channel onto an output
  port (it replaces that channel: its receivers get the recording) or onto an input port (it feeds
  that input instead of what was wired to it). Message types must match.
- removes the components that now feed nothing: the source of a replaced channel, and upstream of
  it whatever fed only removed components (replaying the model's output into the decoder removes
  the loader, the encoder and the model).
- adds one source component, ``replay/player``, that publishes the recorded messages in log time
  order with their recorded acqtimes, at ``rate`` times the recorded pace (``None``: as fast as the
  graph takes them, the app's queue policies deciding), from ``start`` to ``end`` seconds into the
  recording, and over again with ``loop`` (acqtimes then move on by the recording's length per
  round, so they keep increasing). Its channels keep the replaced channels' names, so viewer
  windows and the job report read as for the live app.
"""
from __future__ import annotations

import dataclasses
import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..codelet import Codelet, NodeError
from ..loader import AppSpec, ComponentSpec, EdgeSpec
from ..ports import Tx
from .reader import Recording

REPLAY_NODE = "replay"
REPLAY_COMPONENT = "player"
MAX_SLEEP = 0.05  # seconds: a replay waiting for the next message's time checks for a stop this often


class ReplayError(Exception):
    """A replay option that does not fit the recording or the app (one line)."""


@dataclass
class ReplayOptions:
    rate: float | None = 1.0      # None: as fast as the graph takes them
    loop: bool = False
    start: float | None = None    # seconds from the recording's first message
    end: float | None = None
    maps: list[tuple[str, str]] = field(default_factory=list)  # (recorded channel, node/component/port)


def parse_rate(text: str) -> float | None:
    if str(text).strip().lower() == "max":
        return None
    try:
        rate = float(text)
    except ValueError:
        raise ReplayError(f"--rate {text!r}: expected a positive number (1 = as recorded) or 'max'") from None
    if not rate > 0:
        raise ReplayError(f"--rate {text!r}: expected a positive number (1 = as recorded) or 'max'")
    return rate


def parse_map(text: str) -> tuple[str, str]:
    recorded, sep, target = text.partition("=")
    if not sep or not recorded or target.count("/") != 2 or not all(target.split("/")):
        raise ReplayError(f"--map {text!r}: expected RECORDED_CHANNEL=node/component/port")
    return recorded, target


def _near(name: str, names) -> str:
    found = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(n) for n in found)}?" if found else ""


class ReplaySource(Codelet):
    """Publishes recorded messages (see the module doc). Subclassed per replay with one Tx per
    recorded channel (:func:`replay_component`)."""

    recording: Recording
    feeds: dict[str, str] = {}          # port name → recorded channel
    channel_names: dict[str, str] = {}  # port name → the name of the channel it stands for
    options: ReplayOptions

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for port, name in self.channel_names.items():
            self.outputs[port].name = name  # before the scheduler reads them: the report uses these names

    def start(self):
        self.tick_periodically(0)
        rec = self.recording
        first = rec.start_time or 0
        self._start = None if self.options.start is None else first + round(self.options.start * 1e9)
        self._end = None if self.options.end is None else first + round(self.options.end * 1e9)
        self._ports: dict[str, list] = {}  # recorded channel → the ports it feeds (one, or more with --map)
        for port, recorded in self.feeds.items():
            self._ports.setdefault(recorded, []).append(self.outputs[port])
        self._round = 0
        self._offset = 0.0
        self._published = 0
        # how far through the recording (the progress line): known from the summary's counts when
        # the whole recording plays; a --start/--end cut gives only the count so far
        counts = {c.topic: c.count for c in rec.channels.values()}
        whole = self._start is None and self._end is None
        self._total = sum(counts.get(topic, 0) for topic in self._ports) if whole else 0
        self._begin_round()

    def _begin_round(self) -> None:
        self._messages = self.recording.messages(list(self._ports), self._start, self._end)
        self._in_round = 0
        self._clock_origin = None  # (wall, log time) of this round's first message

    def tick(self):
        item = next(self._messages, None)
        if item is None:
            if not self.options.loop or self._published == 0:
                self.report_exhausted()
                return
            span = ((self._end or self.recording.end_time) - (self._start or self.recording.start_time)) / 1e9
            self._round += 1
            self._offset = self._round * (span + 1e-3)
            self._begin_round()
            item = next(self._messages, None)
            if item is None:
                self.report_exhausted()
                return
        if self.options.rate is not None:
            self._wait_for(item.log_time)
        try:
            message = item.decode()
        except ValueError as exc:  # wire.WireError: another program's msgpack under a graphflow name
            raise NodeError(f"{self.recording.path}: a message on {item.topic} cannot be read (written by "
                            f"another program?): {exc}") from None
        for port in self._ports[item.topic]:
            port.publish(message.payload, acqtime=message.acqtime + self._offset)
        self._published += 1
        self._in_round += 1
        self.report_progress(self._in_round, self._total or None, Path(self.recording.path).name)

    def _wait_for(self, log_time: int) -> None:
        now = time.monotonic()
        if self._clock_origin is None:
            self._clock_origin = (now, log_time)
            return
        wall, origin = self._clock_origin
        due = wall + (log_time - origin) / 1e9 / self.options.rate
        while now < due and not getattr(self.runtime, "finished", False):
            time.sleep(min(MAX_SLEEP, due - now))
            now = time.monotonic()


def replay_component(recording: Recording, feeds: dict[str, tuple[str, type, str]], options: ReplayOptions) -> type:
    """A ReplaySource subclass with one Tx per fed port: ``feeds`` maps port → (recorded channel,
    message type, channel name in the app)."""
    attributes = {port: Tx(message_type, f"Replayed from {recorded}") for port, (recorded, message_type, _) in feeds.items()}
    cls = type("Replay", (ReplaySource,), attributes)
    for port, tx in attributes.items():
        tx.__set_name__(cls, port)
    cls.recording = recording
    cls.feeds = {port: recorded for port, (recorded, _, _) in feeds.items()}
    cls.channel_names = {port: name for port, (_, _, name) in feeds.items()}
    cls.options = options
    return cls


def _port_name(channel: str) -> str:
    return channel.replace("/", ":")


def replay_spec(spec: AppSpec, recording: Recording, options: ReplayOptions) -> AppSpec:
    """A copy of a validated app in which recorded channels feed it (see the module doc)."""
    from ..messages import message_types

    types = message_types()
    recorded = {c.topic: c for c in recording.channels.values() if c.message_encoding == "msgpack"}
    components = {c.full_name: c for c in spec.components}

    def port_of(target: str):
        component, port = target.rsplit("/", 1)
        cls = spec.types.get(component)
        if cls is None:
            raise ReplayError(f"--map target {target!r}: the app has no component {component!r}"
                              f"{_near(component, components)}")
        ports = cls.ports()
        if port not in ports:
            raise ReplayError(f"--map target {target!r}: {components[component].type} has no port {port!r} "
                              f"(it has: {sorted(ports)})")
        return ports[port]

    # what feeds what: (recorded channel, target, 'tx' or 'rx') --------------------------------------
    plan: list[tuple[str, str, str]] = []
    if options.maps:
        for source, target in options.maps:
            target = spec.channel_name(target)  # a subgraph's interface port: the channel it forwards
            if source not in recorded:
                other = recording.by_topic.get(source)
                if other is not None:  # another program's channel (JSON, protobuf ...): nothing graphflow decodes
                    raise ReplayError(f"--map {source}={target}: {source!r} holds {other.message_encoding or 'raw'} "
                                      f"messages of another program, not graphflow's (graphflow's channels "
                                      f"there: {sorted(recorded)})")
                raise ReplayError(f"--map {source}={target}: the recording has no channel {source!r}"
                                  f"{_near(source, recorded) or f' (it has: {sorted(recorded)})'}")
            plan.append((source, target, port_of(target).direction))
    else:
        fed = {edge.target.rsplit("/", 1)[0] for edge in spec.edges}
        sources = [c for c in spec.components if c.full_name not in fed]
        for component in sources:
            for name, port in spec.types[component.full_name].ports().items():
                channel = f"{component.full_name}/{name}"
                if port.direction == "tx" and channel in recorded:
                    plan.append((channel, channel, "tx"))
        if not plan:
            source_channels = sorted(f"{c.full_name}/{n}" for c in sources
                                     for n, p in spec.types[c.full_name].ports().items() if p.direction == "tx")
            raise ReplayError(f"{recording.path} holds none of the app's source channels ({', '.join(source_channels)}); "
                              f"it has {', '.join(sorted(recorded)) or 'no graphflow channels'}: "
                              f"choose with --map RECORDED=node/component/port")
    feeds: dict[str, tuple[str, type, str]] = {}
    for source, target, direction in plan:
        declared = port_of(target).message_type
        type_name = recorded[source].schema_name
        message_type = types.get(type_name)
        if message_type is None:
            raise ReplayError(f"{source}: message type {type_name!r} is not known here (is its node pack among "
                              f"the app's modules?)")
        if not issubclass(message_type, declared):
            raise ReplayError(f"--map {source}={target}: the recording holds {type_name} there, but {target} "
                              f"{'publishes' if direction == 'tx' else 'takes'} {declared.wire_name}")
        port = _port_name(target)  # one port per target: one recorded channel may feed several
        feeds[port] = (source, message_type, target if direction == "tx" else source)

    # rewire ----------------------------------------------------------------------------------------
    replaced = {target for _, target, direction in plan if direction == "tx"}
    fed_inputs = {target for _, target, direction in plan if direction == "rx"}
    removed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in components:
            if name in removed:
                continue
            outgoing = [e for e in spec.edges if e.source.rsplit("/", 1)[0] == name]
            touched = any(channel.rsplit("/", 1)[0] == name for channel in replaced)
            alive = False
            for edge in outgoing:
                if edge.source in replaced or edge.target.rsplit("/", 1)[0] in removed or edge.target in fed_inputs:
                    touched = True
                else:
                    alive = True
            if touched and not alive:
                removed.add(name)
                changed = True
    node = REPLAY_NODE
    while any(c.node == node for c in spec.components):
        node += "_"
    player = f"{node}/{REPLAY_COMPONENT}"
    edges = []
    for edge in spec.edges:
        source_component = edge.source.rsplit("/", 1)[0]
        target_component = edge.target.rsplit("/", 1)[0]
        if target_component in removed or edge.target in fed_inputs:
            continue
        if edge.source in replaced:
            edges.append(EdgeSpec(f"{player}/{_port_name(edge.source)}", edge.target, edge.file, edge.path, edge.queue,
                                  edge.written))
        elif source_component not in removed:
            edges.append(edge)
    for source, target, direction in plan:
        if direction == "rx":
            edges.append(EdgeSpec(f"{player}/{_port_name(target)}", target, str(recording.path), "--map", None))
    components = [ComponentSpec(node, REPLAY_COMPONENT, "recording.Replay", str(recording.path), "$")]
    components += [c for c in spec.components if c.full_name not in removed]
    types = {name: cls for name, cls in spec.types.items() if name not in removed}
    types[player] = replay_component(recording, feeds, options)
    return dataclasses.replace(spec, edges=tuple(edges), components=tuple(components),
                               types=MappingProxyType(types))


def build_replay_app(spec: AppSpec, recording: Recording, options: ReplayOptions, **app_kwargs):
    """The App that replays ``recording`` into ``spec`` (rewired by :func:`replay_spec`), and the
    names of the components the recording replaced."""
    from ..app import App

    before = {c.full_name for c in spec.components}
    spec = replay_spec(spec, recording, options)
    removed = sorted(before - {c.full_name for c in spec.components})
    return App(spec, **app_kwargs), removed
