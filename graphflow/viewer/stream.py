"""The WebSocket stream: what each browser tab watches, and the fan-out of frames to it.

One *pump* thread looks at what each client's windows watch, encodes what changed (JPEG, PNG,
JSON; an image encoded once per size serves every client) and offers it to that client's
:class:`SendQueue`. Each client's writer is a coroutine on the viewer's event loop that sends
what its queue holds. A queue keeps at most one pending item per key (a window's frame, the
stats): a newer frame replaces an unsent older one, so a slow browser sees fewer frames and
nobody else notices, and the pump does not even encode for a window whose last frame still
waits. The graph's threads never meet the stream: they only feed the observer's histories.

Stream messages (binary ones are ``[uint32 header length][JSON header][bytes]``):
``hello``, ``stats`` (every second), ``frame`` (2-D windows), ``inspect`` and ``heatmap``
(inspector), ``samples`` (plots), ``pong``, ``error``. The client sends
``{"op": "subscribe", "windows": [...]}`` and ``{"op": "ping"}``.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import math
import struct
import threading
import time
from collections import OrderedDict
from typing import Callable

from . import encode
from .api import Api, ApiError, near, parse_json
from .observer import IMAGE_HISTORY, OTHER_HISTORY, ViewerObserver

log = logging.getLogger("graphflow.viewer")
RENDERERS = ("2d", "plot", "inspector")
DEFAULT_FPS = {"2d": 30.0, "inspector": 5.0, "plot": 10.0}
MAX_WINDOWS = 64            # windows one client may subscribe
MAX_WINDOW_CHANNELS = 32    # channels one window may show
PUMP_HZ = 60


class SendQueue:
    """A client's outgoing items: at most one pending per key (newer replaces older), at most
    ``limit`` in all (oldest dropped). ``put`` from any thread; ``pop`` on the client's writer.
    ``wake`` is called once when the queue turns non-empty (the writer then drains it)."""

    def __init__(self, limit: int = 32, wake: Callable[[], None] | None = None):
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit
        self._keys = itertools.count()
        self._wake = wake
        self._waking = False
        self.dropped = 0
        self.closed = False

    def put(self, key, item) -> None:
        with self._lock:
            if self.closed:
                return
            if key is None:
                key = ("once", next(self._keys))
            if key in self._items:
                del self._items[key]
                self.dropped += 1
            self._items[key] = item
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
                self.dropped += 1
            wake, self._waking = not self._waking, True
        if wake and self._wake is not None:
            self._wake()

    def pending(self, key) -> bool:
        return key in self._items

    def pop(self):
        """The oldest item, or None when empty (the next ``put`` wakes the writer again)."""
        with self._lock:
            if not self._items:
                self._waking = False
                return None
            return self._items.popitem(last=False)[1]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._items.clear()


class Window:
    """One window of one client, as it subscribed (validated), plus what was last sent to it."""

    def __init__(self, spec: dict, app_channels: dict):
        self.id = str(spec["id"])[:200]
        self.renderer = spec["renderer"]
        self.channels = list(spec["channels"])
        self.width = _number(spec, "width", 640, 16, 4096, integer=True)
        self.height = _number(spec, "height", 480, 16, 4096, integer=True)
        self.max_fps = _number(spec, "max_fps", DEFAULT_FPS[self.renderer], 0.1, 60)
        self.tolerance = _number(spec, "sync_tolerance", 1e-3, 0.0, 3600)
        heatmap = spec.get("heatmap")  # {"path": "tensors.0", "index": 3} for an inspector
        if heatmap is not None:
            if not isinstance(heatmap, dict) or not isinstance(heatmap.get("path", ""), str):
                raise ValueError("heatmap must be {\"path\": \"a.b.0\", \"index\": N}")
            heatmap = {"path": heatmap.get("path", "")[:500],
                       "index": _number(heatmap, "index", 0, 0, 1 << 20, integer=True)}
        self.heatmap = heatmap
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


def _number(spec: dict, name: str, default, low, high, integer: bool = False):
    """A finite number of a window spec, clamped to [low, high]."""
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}"[:200])
    value = min(max(value, low), high)
    return int(value) if integer else float(value)


class Client:
    """One connected tab: its windows and its send queue. The transport is given as two
    coroutine functions (``send_text``, ``send_bytes``) and a ``wake`` that is safe to call
    from any thread, so this class knows nothing of aiohttp."""

    _ids = itertools.count(1)

    def __init__(self, send_text, send_bytes, wake: Callable[[], None]):
        self.id = next(self._ids)
        self._send_text = send_text
        self._send_bytes = send_bytes
        self.queue = SendQueue(wake=wake)
        self.windows: dict[str, Window] = {}
        self.sent = 0

    async def drain(self) -> None:
        """Send everything queued now (on the event loop; waits while the socket is full)."""
        while True:
            item = self.queue.pop()
            if item is None:
                return
            if isinstance(item, str):
                await self._send_text(item)
            else:
                await self._send_bytes(item)
            self.sent += 1

    def send_json(self, key, value: dict) -> None:
        self.queue.put(key, encode.dumps(value))

    def send_binary(self, key, header: dict, data: bytes) -> None:
        head = encode.dumps(header).encode()
        self.queue.put(key, struct.pack(">I", len(head)) + head + data)


class Stream:
    """The fan-out: clients, their subscriptions, and the pump thread that feeds them."""

    def __init__(self, api: Api, observer: ViewerObserver):
        self.api = api
        self.observer = observer
        self.channels = api.app.channels()
        self.clients: dict[int, Client] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.end_of_round: Callable[[], None] = lambda: None  # set by the server: wake the writers at once
        self._resubscribed = True
        self._other_windows = False   # an inspector or a plot open somewhere (served every round)

    def start(self) -> None:
        self.api.live.sample()
        self._thread = threading.Thread(target=self._pump, name="graphflow-viewer-pump", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            clients = list(self.clients.values())
        for client in clients:
            client.queue.close()
        self.observer.close()

    # -- clients ---------------------------------------------------------------------------------
    def add(self, client: Client) -> Client:
        with self._lock:
            self.clients[client.id] = client
        client.send_json(None, {"type": "hello", "client": client.id})
        client.send_json(("stats",), {"type": "stats", **self.api.stats()})
        return client

    def remove(self, client: Client) -> None:
        with self._lock:
            self.clients.pop(client.id, None)
        client.queue.close()
        self._rewatch()

    def handle(self, client: Client, text: str) -> None:
        """One message from the client (JSON text); a bad one gets an ``error`` message back."""
        try:
            request = parse_json(text, "on the stream")
            if not isinstance(request, dict):
                raise ApiError(400, "stream requests are JSON objects with an 'op'")
            op = request.get("op")
            if op == "subscribe":
                self.subscribe(client, request)
            elif op == "ping":
                t = request.get("t")
                client.send_json(None, {"type": "pong", "t": t if isinstance(t, (int, float, str)) else None})
            else:
                raise ApiError(400, f"unknown op {str(op)[:80]!r} (use subscribe or ping)")
        except ApiError as exc:
            client.send_json(None, {"type": "error", "error": exc.message})

    def subscribe(self, client: Client, request: dict) -> None:
        windows, errors = {}, []
        channels = self.channels
        specs = request.get("windows")
        if not isinstance(specs, list):
            raise ApiError(400, "subscribe: 'windows' must be a list")
        if len(specs) > MAX_WINDOWS:
            raise ApiError(400, f"subscribe: at most {MAX_WINDOWS} windows, got {len(specs)}")
        for spec in specs:
            if not isinstance(spec, dict) or not isinstance(spec.get("id"), (str, int)) or \
                    isinstance(spec.get("id"), bool):
                errors.append("subscribe: every window needs an id (a string)")
                continue
            wid = str(spec["id"])[:200]
            if spec.get("renderer") not in RENDERERS:
                errors.append(f"window {wid!r}: unknown renderer {str(spec.get('renderer'))[:80]!r} "
                              f"(use one of {', '.join(RENDERERS)})")
                continue
            names = spec.get("channels") or []
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                errors.append(f"window {wid!r}: channels must be a list of channel names")
                continue
            if len(names) > MAX_WINDOW_CHANNELS:
                errors.append(f"window {wid!r}: at most {MAX_WINDOW_CHANNELS} channels")
                continue
            for name in (n for n in names if n not in channels):
                errors.append(f"window {wid!r}: unknown channel {name[:200]!r}{near(name[:200], channels)}")
            try:
                window = Window(dict(spec, channels=[n for n in names if n in channels]), channels)
            except (TypeError, ValueError) as exc:
                errors.append(f"window {wid!r}: {exc}")
                continue
            old = client.windows.get(window.id)
            if old is not None and old.renderer == "plot" == window.renderer:
                window.seen = {k: v for k, v in old.seen.items() if k in window.channels}
            windows[window.id] = window
        client.windows = windows
        self._resubscribed = True
        self._rewatch()
        if errors:
            client.send_json(None, {"type": "error", "error": "; ".join(errors)})

    def _rewatch(self) -> None:
        depths: dict[str, int] = {}
        with self._lock:
            clients = list(self.clients.values())
        self._other_windows = any(w.renderer != "2d" for c in clients for w in c.windows.values())
        for client in clients:
            for window in client.windows.values():
                if window.renderer == "inspector":
                    continue  # the inspector only needs a channel's latest message (tx.last)
                for name in window.channels:
                    image = self.channels[name].message_type.render == "image"
                    depths[name] = max(depths.get(name, 0), IMAGE_HISTORY if image else OTHER_HISTORY)
        self.observer.watch(depths)

    # -- the pump --------------------------------------------------------------------------------
    def _pump(self) -> None:
        next_stats = 0.0
        next_sample = 0.0
        cache: OrderedDict = OrderedDict()
        seen_version, again = -1, True
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                self.api.live.sample()
                next_sample = now + 0.5
            with self._lock:
                clients = list(self.clients.values())
            if clients and now >= next_stats:
                text = encode.dumps({"type": "stats", **self.api.stats()})
                for client in clients:
                    client.queue.put(("stats",), text)
                next_stats = now + 1.0
            synced_now: dict = {}
            # 2-D windows only change when a watched channel published, or when a frame had to
            # wait (its window's rate, or its client still busy): other rounds skip them all.
            version = self.observer.version
            serve_2d, seen_version, again = again or version != seen_version or self._resubscribed, version, False
            self._resubscribed = False
            for client in clients if serve_2d or self._other_windows else ():
                for window in list(client.windows.values()):
                    try:
                        if window.renderer == "2d":
                            if serve_2d:
                                again = self._serve_2d(client, window, now, cache, synced_now) or again
                        elif window.renderer == "inspector":
                            self._serve_inspector(client, window, now)
                        else:
                            self._serve_plot(client, window, now)
                    except Exception as exc:  # never let one window stop the pump
                        log.exception("viewer: window %s failed", window.id)
                        window.last_sent = now + 1.0
                        client.send_json(("error", window.id), {"type": "error", "window": window.id,
                                                                "error": f"window {window.id}: {exc}"})
            self.end_of_round()
            self._stop.wait(1 / PUMP_HZ)

    def _head(self, name: str):
        """The newest message of a channel, cheaply (no copy)."""
        return self.channels[name].last

    def _messages(self, name: str) -> list:
        held = list(self.observer.history(name))
        last = self.channels[name].last
        if last is not None and not any(m is last for m in held):
            held.append(last)
        return held

    def _serve_2d(self, client: Client, window: Window, now: float, cache: OrderedDict, synced_now: dict) -> bool:
        """Queue the window's newest frame if there is one; True when it has to look again soon
        (the window's rate or its client's queue held a frame back)."""
        key = ("2d", window.id)
        if now - window.last_sent < 1.0 / window.max_fps or client.queue.pending(key):
            return True
        heads = (self._head(window.image_channel) if window.image_channel else None,
                 tuple(self._head(name) for name in window.overlays), window.width, window.height)
        if window.last_heads is not None and len(heads[1]) == len(window.last_heads[1]) and \
                heads[0] is window.last_heads[0] and all(a is b for a, b in zip(heads[1], window.last_heads[1])) \
                and heads[2:] == window.last_heads[2:]:
            return False  # nothing new was published since we last looked
        window.last_heads = heads
        # What to show depends on the channels alone: worked out once per round for every client.
        sync_key = (window.image_channel, tuple(window.overlays), window.tolerance)
        if sync_key not in synced_now:
            images = self._messages(window.image_channel) if window.image_channel else []
            overlay_lists = [(name, self._messages(name)) for name in window.overlays]
            names = tuple(name for name, msgs in overlay_lists if msgs)
            synced_now[sync_key] = (names, synchronize(images, [msgs for _, msgs in overlay_lists if msgs],
                                                       window.tolerance))
        names, chosen = synced_now[sync_key]
        if chosen is None:
            return False
        image, overlays, synced = chosen
        if image is None and not overlays:
            return False
        ident = (image, *overlays, window.width, window.height)  # messages compare by identity
        if window.last_key is not None and len(ident) == len(window.last_key) and \
                all(a is b or (type(a) is int and a == b) for a, b in zip(ident, window.last_key)):
            return False
        # The same frame for every client showing the same window (tabs of one page share their
        # window ids): encoded once. Keyed by the messages' uuids, so the cache holds no message.
        frame_key = (window.id, window.image_channel, names, synced, window.width, window.height,
                     *(m.header.uuid for m in ident[:-2] if m is not None))
        data = cache.get(frame_key)
        if data is None:
            data = cache[frame_key] = self._frame(window, image, names, overlays, synced, cache)
            while len(cache) > 16:
                cache.popitem(last=False)
        client.queue.put(key, data)
        window.last_key = ident
        window.last_sent = now
        return False

    def _frame(self, window: Window, image, names, overlays, synced: bool, cache: OrderedDict) -> bytes:
        header = {"type": "frame", "window": window.id, "synced": synced, "image": None, "overlays": []}
        data = b""
        if image is not None:
            pixels = image.payload.pixels
            h, w = pixels.shape[:2]
            image_key = ("jpeg", image.header.uuid, window.width, window.height)
            encoded = cache.get(image_key)  # one JPEG per image and size, whatever the window
            if encoded is None:
                encoded = cache[image_key] = encode.encode_image(
                    pixels, getattr(image.payload, "color_order", "bgr"), window.width, window.height)
            data, mime, width, height = encoded
            header["image"] = {"channel": window.image_channel, "uuid": image.header.uuid,
                               "acqtime": image.acqtime, "pubtime": image.pubtime, "mime": mime,
                               "width": width, "height": height, "image_width": w, "image_height": h}
        for name, message in zip(names, overlays):
            header["overlays"].append({"channel": name, "uuid": message.header.uuid, "acqtime": message.acqtime,
                                       "render": type(message.payload).render, **_overlay(message)})
        head = encode.dumps(header).encode()
        return struct.pack(">I", len(head)) + head + data

    def _serve_inspector(self, client: Client, window: Window, now: float) -> None:
        key = ("inspect", window.id)
        if now - window.last_sent < 1.0 / window.max_fps or client.queue.pending(key) or not window.channels:
            return
        name = window.channels[0]
        message = self.channels[name].last
        heat_key = encode.dumps(window.heatmap) if window.heatmap else None
        if message is None or (message is window.last_key and heat_key == window.heatmap_key):
            return
        client.send_json(key, {"type": "inspect", "window": window.id, "channel": name,
                               "message": encode.inspect_message(message, self.api.now())})
        window.last_key = message
        window.heatmap_key = heat_key
        window.last_sent = now
        if window.heatmap:
            path = window.heatmap["path"]
            try:
                data, info = encode.heatmap(encode.resolve(message.payload, path), window.heatmap["index"])
            except (KeyError, ValueError, TypeError, IndexError) as exc:
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


def synchronize(images: list, overlay_lists: list[list], tolerance: float):
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
