"""The viewer's API as plain functions over a running app: what the JSON routes answer, and the
param edits. No sockets here (the routes are in :mod:`graphflow.viewer.http`), so every answer
and every refusal can be tested on an app object alone.

Refusals raise :class:`ApiError` with an HTTP status (4xx) and a one-line message.
"""
from __future__ import annotations

import difflib
import json
import logging
import math
import re
import threading
import time
from collections import deque

from . import encode

log = logging.getLogger("graphflow.viewer")

MAX_BODY = 1 << 20          # bytes of a JSON body (the page sends a few hundred)
MAX_INT_DIGITS = 19         # digits of an integer in a JSON body (int64 has 19)
INT64 = (-(1 << 63), (1 << 63) - 1)


class ApiError(Exception):
    """A refused request: ``status`` (4xx), a one-line ``message``, extra JSON fields."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# -- JSON bodies -------------------------------------------------------------------------------
class _Refused:
    """Stands in for a number the viewer refuses, so the error can name where it was."""

    def __init__(self, why: str):
        self.why = why


def _parse_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a finite number")


def _parse_int(text: str):
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        return _Refused(f"an integer of {len(digits)} digits is out of the 64-bit range")
    value = int(text)
    return value if INT64[0] <= value <= INT64[1] else _Refused(f"{text} is out of the 64-bit integer range")


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text[:40]} is out of the 64-bit float range")


def _json_path(parts) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f"[{json.dumps(p)}]" for p in parts)


def parse_json(raw: bytes | str, what: str = "body"):
    """JSON as the viewer accepts it: strict (no NaN or Infinity, integers within int64, floats
    that fit a double), so a number no param can hold never gets past here. The error names the
    JSON path of the first refused number."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        value = json.loads(text, parse_constant=_parse_constant, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise ApiError(400, f"malformed JSON {what}: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"malformed JSON {what}: {exc}") from None
    stack = [(value, ())]
    while stack:
        item, parts = stack.pop()
        if isinstance(item, _Refused):
            raise ApiError(400, f"JSON {what} at {_json_path(parts)}: {item.why}", path=_json_path(parts))
        if isinstance(item, dict):
            stack.extend((v, (*parts, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*parts, i)) for i, v in reversed(list(enumerate(item))))
    return value


def _check_finite(value, path: str) -> None:
    """Refuse NaN, infinities and integers beyond int64 anywhere in a param value (for callers
    that did not parse with :func:`parse_json`)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where}: {str(item)!r} is not a finite number")
        if isinstance(item, int) and not isinstance(item, bool) and not INT64[0] <= item <= INT64[1]:
            raise ValueError(f"{where}: integer out of the 64-bit range")
        if isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, dict):
            stack.extend((v, f"{where}[{json.dumps(k)}]") for k, v in item.items())


def near(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- live rates ------------------------------------------------------------------------------
class LiveRates:
    """Message, drop and tick rates over the last ~2 s (the job report's are whole-run averages)."""

    def __init__(self, app):
        self.app = app
        self._samples: deque = deque(maxlen=16)
        self._lock = threading.Lock()

    def _snapshot(self):
        stats = self.app.scheduler.stats
        channels = self.app.channels()
        return (time.monotonic(),
                {name: tx.published for name, tx in channels.items()},
                {rx.name: rx.dropped for tx in channels.values() for rx in tx.receivers},
                {name: s.count for name, s in list(stats.ticks.items())})

    def sample(self) -> None:
        with self._lock:
            self._samples.append(self._snapshot())

    def rates(self) -> dict:
        with self._lock:
            now = self._snapshot()
            old = next((s for s in self._samples if now[0] - s[0] <= 2.5), None) if self._samples else None
        if old is None or now[0] - old[0] < 0.2:
            return {"window_s": 0.0, "channels": {}, "receivers": {}, "components": {}}
        dt = now[0] - old[0]
        return {"window_s": dt,
                "channels": {k: {"rate": (v - old[1].get(k, 0)) / dt} for k, v in now[1].items()},
                "receivers": {k: {"drop_rate": (v - old[2].get(k, 0)) / dt, "dropped": v} for k, v in now[2].items()},
                "components": {k: {"tick_rate": (v - old[3].get(k, 0)) / dt} for k, v in now[3].items()}}


# -- the API ---------------------------------------------------------------------------------
class Api:
    """The JSON answers about one app. Safe to call from any thread while the app runs."""

    def __init__(self, app, observer=None):
        self.app = app
        self.observer = observer
        self.params_editable = True  # False where nothing runs to take a change (a recording)
        self.live = LiveRates(app)
        self._graph = self._describe_graph()

    @property
    def finished(self) -> bool:
        return bool(self.app.scheduler.finished)

    def now(self) -> float:
        return self.app.scheduler.clock()

    def _describe_graph(self) -> dict:
        app = self.app
        spec = app.spec
        types = {c.full_name: c.type for c in spec.components}
        nodes: dict[str, list] = {}
        for full_name, component in app.components.items():
            described = type(component).describe(types.get(full_name))
            nodes.setdefault(component.node_name, []).append({
                "name": component.name, "full_name": full_name, "type": described["type"],
                "doc": described["doc"],
                "inputs": [{"name": rx.decl.name, "channel": rx.name, "message": rx.message_type.wire_name,
                            "queue_size": rx.queue_size, "policy": rx.policy,
                            "sources": [tx.name for tx in rx.sources]} for rx in component.inputs.values()],
                "outputs": [{"name": tx.decl.name, "channel": tx.name, "message": tx.message_type.wire_name,
                             "render": tx.message_type.render} for tx in component.outputs.values()],
            })
        edges = [{"source": tx.name, "target": rx.name, "message": tx.message_type.wire_name,
                  "source_node": tx.component.node_name, "target_node": rx.component.node_name}
                 for tx in app.channels().values() for rx in tx.receivers]
        return {"name": spec.name, "file": str(spec.file),
                "nodes": [{"name": name, "components": comps} for name, comps in nodes.items()],
                "edges": edges, "ui_config": spec.ui_config}

    def graph(self) -> dict:
        graph = dict(self._graph)
        policies = {}
        for name, component in self.app.components.items():
            policy = component.tick_policy
            policies[name] = policy.describe() if policy is not None else None
        graph["tick_policies"] = policies
        return graph

    def stats(self) -> dict:
        for _ in range(3):
            try:
                report = self.app.report()
                break
            except RuntimeError:  # a dict grew while the report read it
                continue
        else:
            report = {}
        report["live"] = self.live.rates()
        report["now"] = self.now()
        report["finished"] = self.finished
        failure = self.app.failure
        report["failure"] = str(failure) if failure is not None else None
        return report

    def channels(self) -> list[dict]:
        live = self.live.rates()["channels"]
        watched = self.observer.watched if self.observer is not None else frozenset()
        out = []
        for name, tx in sorted(self.app.channels().items()):
            described = tx.message_type.describe()
            out.append({"name": name, "message": tx.message_type.wire_name, "render": tx.message_type.render,
                        "rate": live.get(name, {}).get("rate", 0.0), "messages": tx.published,
                        "drops": sum(rx.dropped for rx in tx.receivers),
                        "receivers": [rx.name for rx in tx.receivers], "watched": name in watched,
                        "fields": described["fields"], "doc": tx.decl.doc})
        return out

    def config(self) -> dict:
        components, nested = {}, {}
        types = {c.full_name: c.type for c in self.app.spec.components}
        for full_name, component in self.app.components.items():
            values = component.param_values()
            params = {}
            for name, param in type(component).params().items():
                params[name] = dict(param.describe(), value=values.get(name))
            components[full_name] = {"type": types.get(full_name, type(component).__name__), "params": params}
            nested.setdefault(component.node_name, {})[component.name] = values
        return {"config": nested, "components": components, "editable": self.params_editable}

    def set_config(self, body) -> dict:
        """Param edits, ``{node: {component: {param: value}}}`` or ``{"node/component/param": value}``.
        Every change is validated first (unknown component or param, type, range, NaN); all or none
        are applied."""
        if not self.params_editable:
            raise ApiError(400, "params cannot change here: nothing runs (a recording shows the params it was made with)")
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "expected a JSON object: {node: {component: {param: value}}} "
                                "or {\"node/component/param\": value}")
        changes, errors = [], []
        for key, value in body.items():
            if "/" in key:
                parts = key.split("/")
                if len(parts) != 3 or not all(parts):
                    errors.append({"path": key, "error": f"{key!r} is not node/component/param"})
                    continue
                changes.append((f"{parts[0]}/{parts[1]}", parts[2], value, key))
            elif not isinstance(value, dict):
                errors.append({"path": key, "error": f"node {key!r}: expected an object of components"})
            else:
                for comp, params in value.items():
                    if not isinstance(params, dict):
                        errors.append({"path": f"{key}/{comp}",
                                       "error": f"component {key + '/' + comp!r}: expected an object of params"})
                        continue
                    for param, v in params.items():
                        changes.append((f"{key}/{comp}", param, v, f"{key}/{comp}/{param}"))
        converted = []
        for component_name, param, value, path in changes:
            component = self.app.components.get(component_name)
            if component is None:
                errors.append({"path": path, "error": f"unknown component {component_name!r}"
                                                       f"{near(component_name, self.app.components)}"})
                continue
            declared = type(component).params()
            if param not in declared:
                errors.append({"path": path, "error": f"component {component_name!r} has no param {param!r}"
                                                       f" (it has: {', '.join(sorted(declared)) or 'none'})"})
                continue
            try:
                _check_finite(value, path)
                typed = declared[param].convert_live(value)
                _check_finite(typed, path)  # e.g. a period "NaNHz" or "1e-400s": a string that converts to no number
                converted.append((component_name, param, typed, path))
            except (ValueError, TypeError, OverflowError) as exc:
                message = str(exc)
                errors.append({"path": path, "error": message if message.startswith(path) else f"{path}: {message}"})
        if errors:
            raise ApiError(400, "; ".join(e["error"] for e in errors), errors=errors)
        applied = {}
        for component_name, param, value, path in converted:
            applied[path] = self.app.set_param(component_name, param, value)
        log.info("viewer: params changed: %s", applied)
        return {"applied": applied, **self.config()}

    # -- messages --------------------------------------------------------------------------------
    def latest(self, channel: str):
        """(channel, its newest message or None); 404 for an unknown channel."""
        channel = self.app.spec.channel_name(channel)
        tx = self.app.channels().get(channel)
        if tx is None:
            raise ApiError(404, f"unknown channel {channel!r}{near(channel, self.app.channels())}")
        return tx, tx.last

    def _published(self, channel: str):
        tx, message = self.latest(channel)
        if message is None:
            raise ApiError(404, f"channel {channel!r} has not published yet")
        return tx, message

    def message(self, channel: str) -> dict:
        """The newest message of a channel, summarized for JSON."""
        tx, message = self._published(channel)
        return {"channel": tx.name, **encode.inspect_message(message, self.now())}

    def image(self, channel: str, width: int = 4096, height: int = 4096) -> tuple[bytes, str]:
        """The newest image of a channel, encoded (JPEG, PNG without OpenCV) within width×height."""
        tx, message = self._published(channel)
        if tx.message_type.render != "image":
            raise ApiError(400, f"channel {channel!r} carries {tx.message_type.wire_name}, not an image")
        width, height = _size(width, "width"), _size(height, "height")
        data, mime, _, _ = encode.encode_image(message.payload.pixels, getattr(message.payload, "color_order", "bgr"),
                                               width, height)
        return data, mime

    def heatmap(self, channel: str, path: str = "", index: int = 0) -> tuple[bytes, dict]:
        """A PNG of channel ``index`` of the float tensor at ``path`` in the newest message."""
        _, message = self._published(channel)
        try:
            return encode.heatmap(encode.resolve(message.payload, path), index)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            said = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # a KeyError's str() is quoted
            raise ApiError(400, f"{channel}: {said}") from None


def _size(value, name: str) -> int:
    """A requested image side, clamped to 16…4096 pixels."""
    try:
        return min(max(int(value), 16), 4096)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(400, f"{name} must be an integer number of pixels, got {value!r}") from None


def query_int(query, name: str, default: int) -> int:
    """An integer query parameter (``?index=3``), 400 when it is not one."""
    text = query.get(name)
    if text is None:
        return default
    if len(text) > MAX_INT_DIGITS or not re.fullmatch(r"-?[0-9]+", text):
        raise ApiError(400, f"query parameter {name} must be an integer, got {text[:40]!r}")
    return int(text)
