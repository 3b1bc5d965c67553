"""The viewer's HTTP server: static page, JSON API, and one WebSocket stream per browser tab.

Threads: the HTTP server's (one per connection), one *pump* thread that looks at what each
client watches, encodes what changed (JPEG, PNG, JSON) and puts it in that client's send
queue, and one writer thread per client that drains its queue onto the socket. The graph's
threads only meet the viewer in :class:`ViewerObserver` (a dict lookup, a deque append).

Each client's send queue keeps at most one pending item per key (a window's frame, the stats):
a newer frame replaces an unsent older one, so a slow browser sees fewer frames and nobody
else notices; the pump does not even encode a window whose previous frame is still waiting.
"""
from __future__ import annotations

import bisect
import errno
import itertools
import json
import logging
import mimetypes
import re
import struct
import threading
import time
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from . import encode
from .observer import IMAGE_HISTORY, OTHER_HISTORY, ViewerObserver
from .websocket import WebSocket, WebSocketClosed, accept_key

log = logging.getLogger("graphflow.viewer")
STATIC_DIR = Path(__file__).resolve().parent / "static"
RENDERERS = ("2d", "plot", "inspector")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ViewerError(RuntimeError):
    """The viewer cannot start (e.g. its port is taken)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# -- per-client state ------------------------------------------------------------------------
class SendQueue:
    """A client's outgoing items: at most one pending per key (newer replaces older), at most
    ``limit`` in all (oldest dropped)."""

    def __init__(self, limit: int = 32):
        self._items: OrderedDict = OrderedDict()
        self._cond = threading.Condition()
        self._limit = limit
        self._keys = itertools.count()
        self.dropped = 0
        self.closed = False

    def put(self, key, item) -> None:
        with self._cond:
            if key is None:
                key = ("once", next(self._keys))
            if key in self._items:
                del self._items[key]
                self.dropped += 1
            self._items[key] = item
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
                self.dropped += 1
            self._cond.notify()

    def pending(self, key) -> bool:
        return key in self._items

    def get(self, timeout: float | None = None):
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return self._items.popitem(last=False)[1]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Window:
    """One window of one client, as it subscribed, plus what was last sent to it."""

    def __init__(self, spec: dict, app_channels: dict):
        self.id = str(spec["id"])
        self.renderer = spec["renderer"]
        self.channels = list(spec["channels"])
        self.width = int(spec.get("width", 640))
        self.height = int(spec.get("height", 480))
        self.max_fps = float(spec.get("max_fps", {"2d": 30, "inspector": 5, "plot": 10}[self.renderer]))
        self.tolerance = float(spec.get("sync_tolerance", 1e-3))
        self.heatmap = spec.get("heatmap")  # {"path": "tensors.0", "index": 3} for an inspector
        self.image_channel = None
        self.overlays = []
        if self.renderer == "2d":
            for name in self.channels:
                render = app_channels[name].message_type.render
                if render == "image" and self.image_channel is None:
                    self.image_channel = name
                elif render != "image":
                    self.overlays.append(name)
        self.last_sent = 0.0
        self.last_key = None
        self.last_heads = None
        self.seen: dict[str, object] = {}   # plot: channel → last message sent
        self.heatmap_key = None


class Client:
    _ids = itertools.count(1)

    def __init__(self, ws: WebSocket):
        self.id = next(self._ids)
        self.ws = ws
        self.queue = SendQueue()
        self.windows: dict[str, Window] = {}
        self.sent = 0
        self.writer = threading.Thread(target=self._write, name=f"graphflow-viewer-client-{self.id}", daemon=True)

    def _write(self) -> None:
        while not self.ws.closed:
            item = self.queue.get(timeout=0.5)
            if item is None:
                if self.queue.closed:
                    return
                continue
            try:
                if isinstance(item, str):
                    self.ws.send_text(item)
                else:
                    self.ws.send_binary(item)
                self.sent += 1
            except WebSocketClosed:
                return

    def send_json(self, key, value: dict) -> None:
        self.queue.put(key, encode.dumps(value))

    def send_binary(self, key, header: dict, data: bytes) -> None:
        head = encode.dumps(header).encode()
        self.queue.put(key, struct.pack(">I", len(head)) + head + data)


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


# -- the server ------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    viewer: "ViewerServer"


class ViewerServer:
    """Serves one app. Bind in the constructor (so a taken port fails before anything runs),
    then :meth:`attach` the app and :meth:`start`; :meth:`close` when done."""

    def __init__(self, host: str = "127.0.0.1", port: int = 3000):
        try:
            self._httpd = _HTTPServer((host, port), _Handler, bind_and_activate=True)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "is already in use" if exc.errno == errno.EADDRINUSE else "needs privileges"
                raise ViewerError(f"viewer port {port} on {host} {why}; choose another with "
                                  f"--viewer-port N (or run with --no-viewer)") from None
            raise ViewerError(f"cannot serve the viewer on {host}:{port}: {exc.strerror or exc}; "
                              f"see --viewer-host and --viewer-port") from None
        self._httpd.viewer = self
        self.host = host
        self.port = self._httpd.server_address[1]
        self.app = None
        self.observer: ViewerObserver | None = None
        self.live: LiveRates | None = None
        self.clients: dict[int, Client] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._graph = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    # -- lifecycle ----------------------------------------------------------------------------
    def attach(self, app) -> "ViewerServer":
        self.app = app
        self._channels = app.channels()
        self.observer = ViewerObserver(app.tap)
        self.live = LiveRates(app)
        self._graph = self._describe_graph()
        return self

    def start(self) -> "ViewerServer":
        if self.app is None:
            raise RuntimeError("attach an app before starting the viewer")
        self.live.sample()
        self._threads = [threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="graphflow-viewer-http", daemon=True),
                         threading.Thread(target=self._pump, name="graphflow-viewer-pump", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            clients = list(self.clients.values())
        for client in clients:
            client.queue.close()
            client.ws.close(1001, "viewer closing")
        if self._threads:
            self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        if self.observer is not None:
            self.observer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- API data ------------------------------------------------------------------------------
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
        watched = self.observer.watched
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
        return {"config": nested, "components": components}

    def set_config(self, body) -> dict:
        """Validate every change first (unknown component/param, type, range); apply all or none."""
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
                        errors.append({"path": f"{key}/{comp}", "error": f"component {key}/{comp}: expected an object of params"})
                        continue
                    for param, v in params.items():
                        changes.append((f"{key}/{comp}", param, v, f"{key}/{comp}/{param}"))
        converted = []
        for component_name, param, value, path in changes:
            component = self.app.components.get(component_name)
            if component is None:
                errors.append({"path": path, "error": f"unknown component {component_name!r}"
                                                       f"{_near(component_name, self.app.components)}"})
                continue
            declared = type(component).params()
            if param not in declared:
                errors.append({"path": path, "error": f"component {component_name!r} has no param {param!r}"
                                                       f" (it has: {', '.join(sorted(declared)) or 'none'})"})
                continue
            try:
                converted.append((component_name, param, declared[param].convert(value), path))
            except (ValueError, TypeError) as exc:
                errors.append({"path": path, "error": f"{path}: {exc}"})
        if errors:
            raise ApiError(400, "; ".join(e["error"] for e in errors), errors=errors)
        applied = {}
        for component_name, param, value, path in converted:
            applied[path] = self.app.set_param(component_name, param, value)
        log.info("viewer: params changed: %s", applied)
        return {"applied": applied, **self.config()}

    def latest(self, channel: str):
        tx = self.app.channels().get(channel)
        if tx is None:
            raise ApiError(404, f"unknown channel {channel!r}{_near(channel, self.app.channels())}")
        return tx, tx.last

    # -- clients ------------------------------------------------------------------------------
    def add_client(self, ws: WebSocket) -> Client:
        client = Client(ws)
        with self._lock:
            self.clients[client.id] = client
        client.writer.start()
        client.send_json(None, {"type": "hello", "client": client.id})
        client.send_json(("stats",), {"type": "stats", **self.stats()})
        return client

    def remove_client(self, client: Client) -> None:
        with self._lock:
            self.clients.pop(client.id, None)
        client.queue.close()
        client.ws.close()
        self._rewatch()

    def subscribe(self, client: Client, request: dict) -> None:
        windows, errors = {}, []
        channels = self._channels
        specs = request.get("windows")
        if not isinstance(specs, list):
            raise ApiError(400, "subscribe: 'windows' must be a list")
        for spec in specs:
            if not isinstance(spec, dict) or "id" not in spec:
                errors.append("subscribe: every window needs an id")
                continue
            if spec.get("renderer") not in RENDERERS:
                errors.append(f"window {spec.get('id')!r}: unknown renderer {spec.get('renderer')!r} "
                              f"(use one of {', '.join(RENDERERS)})")
                continue
            names = spec.get("channels") or []
            unknown = [n for n in names if n not in channels]
            for name in unknown:
                errors.append(f"window {spec['id']!r}: unknown channel {name!r}{_near(name, channels)}")
            spec = dict(spec, channels=[n for n in names if n in channels])
            try:
                spec["width"] = min(max(int(spec.get("width", 640)), 16), 4096)
                spec["height"] = min(max(int(spec.get("height", 480)), 16), 4096)
                window = Window(spec, channels)
            except (TypeError, ValueError) as exc:
                errors.append(f"window {spec['id']!r}: {exc}")
                continue
            old = client.windows.get(window.id)
            if old is not None and old.renderer == "plot" == window.renderer:
                window.seen = {k: v for k, v in old.seen.items() if k in window.channels}
            windows[window.id] = window
        client.windows = windows
        self._rewatch()
        if errors:
            client.send_json(None, {"type": "error", "error": "; ".join(errors)})

    def _rewatch(self) -> None:
        depths: dict[str, int] = {}
        channels = self.app.channels()
        with self._lock:
            clients = list(self.clients.values())
        for client in clients:
            for window in client.windows.values():
                if window.renderer == "inspector":
                    continue  # the inspector only needs a channel's latest message (tx.last)
                for name in window.channels:
                    image = channels[name].message_type.render == "image"
                    depths[name] = max(depths.get(name, 0), IMAGE_HISTORY if image else OTHER_HISTORY)
        self.observer.watch(depths)

    # -- the pump ------------------------------------------------------------------------------
    def _pump(self) -> None:
        next_stats = 0.0
        next_sample = 0.0
        cache: OrderedDict = OrderedDict()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                self.live.sample()
                next_sample = now + 0.5
            with self._lock:
                clients = list(self.clients.values())
            if clients and now >= next_stats:
                stats = {"type": "stats", **self.stats()}
                text = encode.dumps(stats)
                for client in clients:
                    client.queue.put(("stats",), text)
                next_stats = now + 1.0
            for client in clients:
                for window in list(client.windows.values()):
                    try:
                        if window.renderer == "2d":
                            self._serve_2d(client, window, now, cache)
                        elif window.renderer == "inspector":
                            self._serve_inspector(client, window, now)
                        else:
                            self._serve_plot(client, window, now)
                    except Exception as exc:  # never let one window stop the pump
                        log.exception("viewer: window %s failed", window.id)
                        window.last_sent = now + 1.0
                        client.send_json(("error", window.id), {"type": "error", "window": window.id,
                                                                "error": f"window {window.id}: {exc}"})
            self._stop.wait(1 / 60)

    def _head(self, name: str):
        """The newest message of a channel, cheaply (no copy)."""
        return self._channels[name].last

    def _messages(self, name: str) -> list:
        held = list(self.observer.history(name))
        last = self._channels[name].last
        if last is not None and (not held or held[-1] is not last):
            if not any(m is last for m in held):
                held.append(last)
        return held

    def _serve_2d(self, client: Client, window: Window, now: float, cache: OrderedDict) -> None:
        key = ("2d", window.id)
        if now - window.last_sent < 1.0 / window.max_fps or client.queue.pending(key):
            return
        heads = (self._head(window.image_channel) if window.image_channel else None,
                 tuple(self._head(name) for name in window.overlays), window.width, window.height)
        if heads == window.last_heads:
            return  # nothing new was published since we last looked
        window.last_heads = heads
        images = self._messages(window.image_channel) if window.image_channel else []
        overlay_lists = [(name, self._messages(name)) for name in window.overlays]
        chosen = _synchronize(images, [msgs for _, msgs in overlay_lists if msgs], window.tolerance)
        if chosen is None:
            return
        image, overlays, synced = chosen
        if image is None and not overlays:
            return
        ident = (image, *overlays, window.width, window.height)  # messages compare by identity
        if window.last_key is not None and len(ident) == len(window.last_key) and \
                all(a is b or (type(a) is int and a == b) for a, b in zip(ident, window.last_key)):
            return
        header = {"type": "frame", "window": window.id, "synced": synced, "image": None, "overlays": []}
        data = b""
        if image is not None:
            pixels = image.payload.pixels
            h, w = pixels.shape[:2]
            cache_key = (id(image), window.width, window.height)
            held = cache.get(cache_key)
            encoded = held[1] if held is not None and held[0] is image else None  # the entry holds the
            if encoded is None:                                                   # message: ids stay unique
                encoded = encode.encode_image(pixels, getattr(image.payload, "color_order", "bgr"),
                                              window.width, window.height)
                cache[cache_key] = (image, encoded)
                while len(cache) > 8:
                    cache.popitem(last=False)
            data, mime, width, height = encoded
            header["image"] = {"channel": window.image_channel, "uuid": image.header.uuid,
                               "acqtime": image.acqtime, "pubtime": image.pubtime, "mime": mime,
                               "width": width, "height": height, "image_width": w, "image_height": h}
        names = [name for name, msgs in overlay_lists if msgs]
        for name, message in zip(names, overlays):
            header["overlays"].append({"channel": name, "uuid": message.header.uuid, "acqtime": message.acqtime,
                                       "render": type(message.payload).render, **_overlay(message)})
        client.send_binary(key, header, data)
        window.last_key = ident
        window.last_sent = now

    def _serve_inspector(self, client: Client, window: Window, now: float) -> None:
        key = ("inspect", window.id)
        if now - window.last_sent < 1.0 / window.max_fps or client.queue.pending(key) or not window.channels:
            return
        name = window.channels[0]
        message = self._channels[name].last
        heat_key = encode.dumps(window.heatmap) if window.heatmap else None
        if message is None or (message is window.last_key and heat_key == window.heatmap_key):
            return
        client.send_json(key, {"type": "inspect", "window": window.id, "channel": name,
                               "message": encode.inspect_message(message, self.now())})
        window.last_key = message
        window.heatmap_key = heat_key
        window.last_sent = now
        if window.heatmap:
            path = str(window.heatmap.get("path", ""))
            try:
                index = int(window.heatmap.get("index", 0))
                data, info = encode.heatmap(encode.resolve(message.payload, path), index)
            except (KeyError, ValueError, TypeError) as exc:
                client.send_json(("heatmap-error", window.id), {"type": "error", "window": window.id,
                                                                "error": f"heatmap of {name} {path}: {exc}"})
                return
            client.send_binary(("heatmap", window.id), {"type": "heatmap", "window": window.id, "channel": name,
                                                        "uuid": message.header.uuid, "path": path,
                                                        "mime": "image/png", **info}, data)

    def _serve_plot(self, client: Client, window: Window, now: float) -> None:
        if now - window.last_sent < 1.0 / window.max_fps:
            return
        window.last_sent = now
        for name in window.channels:
            messages = self._messages(name)
            last_seen = window.seen.get(name)
            start = 0
            for index in range(len(messages) - 1, -1, -1):
                if messages[index] is last_seen:
                    start = index + 1
                    break
            fresh = messages[start:]
            if not fresh:
                continue
            window.seen[name] = fresh[-1]
            points = [[m.acqtime, encode.scalars(m.payload)] for m in fresh]
            client.send_json(None, {"type": "samples", "window": window.id, "channel": name, "points": points})


def _overlay(message) -> dict:
    if type(message.payload).render == "skeleton2":
        return encode.skeletons(message)
    return {}


def _nearest(messages: list, times: list, t: float):
    """The message whose acqtime is nearest ``t``; ``times`` are their acqtimes, ascending."""
    i = bisect.bisect_left(times, t)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(messages) and (best is None or abs(times[j] - t) < abs(times[best] - t)):
            best = j
    return messages[best] if best is not None else None


def _synchronize(images: list, overlay_lists: list[list], tolerance: float):
    """Pick the newest image for which every overlay channel holds a message of the same
    acqtime (± tolerance). Returns (image, overlays, synced) or None to wait. When an overlay
    cannot match anything held (it lags more than the image history, or there are no images)
    the newest image goes out with the nearest overlays, marked unsynced."""
    if not images:
        return None, [m[-1] for m in overlay_lists], True
    if not overlay_lists:
        return images[-1], [], True
    lists = []
    for msgs in overlay_lists:
        if any(msgs[k].acqtime > msgs[k + 1].acqtime for k in range(len(msgs) - 1)):
            msgs = sorted(msgs, key=lambda m: m.acqtime)
        lists.append((msgs, [m.acqtime for m in msgs]))
    for image in reversed(images):
        matched = [_nearest(msgs, times, image.acqtime) for msgs, times in lists]
        if all(abs(m.acqtime - image.acqtime) <= tolerance for m in matched):
            return image, matched, True
    oldest = images[0].acqtime
    newest_overlay = min(times[-1] for _, times in lists)
    if newest_overlay < oldest - tolerance:
        latest = images[-1]
        return latest, [_nearest(msgs, times, latest.acqtime) for msgs, times in lists], False
    return None


def _near(name: str, candidates) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- HTTP ------------------------------------------------------------------------------------
_MESSAGES = re.compile(r"^/api/messages/(?P<channel>.+?)/latest(?:/(?P<what>image|heatmap))?/?$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graphflow-viewer"
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("viewer %s: " + format, self.address_string(), *args)

    @property
    def viewer(self) -> ViewerServer:
        return self.server.viewer

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            self._check_host()
            if path.startswith("/api/"):
                self._api(method, path, parse_qs(url.query))
            elif method != "GET":
                raise ApiError(405, f"{method} is not allowed on {path}")
            elif path in ("/", "/index.html"):
                self._static("index.html")
            elif path.startswith("/static/"):
                self._static(unquote(path[len("/static/"):]))
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                raise ApiError(404, f"nothing at {path}")
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message, **exc.extra})
        except (BrokenPipeError, ConnectionResetError, WebSocketClosed):
            self.close_connection = True
        except Exception as exc:
            log.exception("viewer: %s %s failed", method, path)
            try:
                self._json(500, {"error": f"internal error: {exc}"})
            except OSError:
                self.close_connection = True

    def _check_host(self) -> None:
        """Against DNS rebinding: a viewer bound to loopback answers only to loopback names."""
        if self.viewer.host in LOOPBACK:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0] if "]" not in (self.headers.get("Host") or "") \
                else (self.headers.get("Host") or "").rsplit("]", 1)[0] + "]"
            if host and host not in LOOPBACK:
                raise ApiError(403, f"unexpected Host {self.headers.get('Host')!r}; this viewer serves localhost only")

    def _check_origin(self) -> None:
        """Against cross-site requests: changes and streams only from the viewer's own pages."""
        origin = self.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != self.headers.get("Host"):
            raise ApiError(403, f"cross-origin request from {origin} refused")

    def _api(self, method: str, path: str, query: dict) -> None:
        viewer = self.viewer
        if path == "/api/stream":
            self._check_origin()
            return self._websocket()
        match = _MESSAGES.match(path)
        routes = {"/api/graph": viewer.graph, "/api/stats": viewer.stats, "/api/channels": viewer.channels,
                  "/api/config": viewer.config}
        if path.rstrip("/") in routes or match:
            if method == "POST" and path.rstrip("/") == "/api/config":
                self._check_origin()
                return self._json(200, viewer.set_config(self._read_json()))
            if method != "GET":
                allowed = "GET, POST" if path.rstrip("/") == "/api/config" else "GET"
                raise ApiError(405, f"{method} is not allowed on {path} (allowed: {allowed})")
            if match is None:
                return self._json(200, routes[path.rstrip("/")]())
            return self._latest(unquote(match.group("channel")), match.group("what"), query)
        raise ApiError(404, f"no API endpoint {path} (have: /api/graph, /api/stats, /api/channels, "
                            f"/api/config, /api/messages/<channel>/latest[/image|/heatmap], /api/stream)")

    def _latest(self, channel: str, what: str | None, query: dict) -> None:
        tx, message = self.viewer.latest(channel)
        if message is None:
            raise ApiError(404, f"channel {channel!r} has not published yet")
        if what is None:
            return self._json(200, {"channel": channel, **encode.inspect_message(message, self.viewer.now())})
        try:
            if what == "image":
                if tx.message_type.render != "image":
                    raise ApiError(400, f"channel {channel!r} carries {tx.message_type.wire_name}, not an image")
                width = int(query.get("width", ["4096"])[0])
                height = int(query.get("height", ["4096"])[0])
                data, mime, _, _ = encode.encode_image(message.payload.pixels,
                                                       getattr(message.payload, "color_order", "bgr"),
                                                       max(16, width), max(16, height))
                return self._send(200, data, mime)
            path = query.get("path", [""])[0]
            index = int(query.get("index", ["0"])[0])
            data, info = encode.heatmap(encode.resolve(message.payload, path), index)
            return self._send(200, data, "image/png", {"X-Heatmap": encode.dumps(info)})
        except (KeyError, ValueError) as exc:
            raise ApiError(400, f"{channel}: {exc}") from None

    # -- bodies --------------------------------------------------------------------------------
    def _read_json(self):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "send the body as JSON with Content-Type: application/json")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "bad Content-Length") from None
        if length > 1 << 20:
            raise ApiError(413, "body too large (limit 1 MiB)")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, encode.dumps(value).encode(), "application/json")

    def _static(self, name: str) -> None:
        files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}
        if name not in files:  # only files in the folder: no traversal
            raise ApiError(404, f"no static file {name!r}")
        ctype = _TYPES.get(files[name].suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(200, files[name].read_bytes(), ctype)

    # -- WebSocket -----------------------------------------------------------------------------
    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in (self.headers.get("Upgrade") or "").lower() or not key:
            raise ApiError(426, "/api/stream is a WebSocket (Upgrade: websocket)")
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = WebSocket(self.connection, self.rfile)
        viewer = self.viewer
        client = viewer.add_client(ws)
        try:
            while not ws.closed:
                text = ws.recv()
                try:
                    request = json.loads(text) if isinstance(text, str) else None
                    if not isinstance(request, dict):
                        raise ApiError(400, "stream requests are JSON objects with an 'op'")
                    if request.get("op") == "subscribe":
                        viewer.subscribe(client, request)
                    elif request.get("op") == "ping":
                        client.send_json(None, {"type": "pong", "t": request.get("t")})
                    else:
                        raise ApiError(400, f"unknown op {request.get('op')!r} (use subscribe or ping)")
                except json.JSONDecodeError as exc:
                    client.send_json(None, {"type": "error", "error": f"malformed JSON on the stream: {exc}"})
                except ApiError as exc:
                    client.send_json(None, {"type": "error", "error": exc.message})
        except WebSocketClosed:
            pass
        finally:
            viewer.remove_client(client)
