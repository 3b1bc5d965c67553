"""The viewer of an app that runs elsewhere (another host, or the processes of a split app).

``graphflow run APP --serve-view [HOST:]PORT`` exposes the app's tap on a ZeroMQ endpoint (a
:class:`ViewServer`; loopback unless given CURVE keys or ``--insecure``, as for channels).
``graphflow view --connect HOST:PORT`` connects a :class:`RemoteApp` to it and serves the same web
viewer here: the remote app's composed file is built into a local :class:`~graphflow.app.App`
that never runs (its components and channels give the graph, channel tree, windows and params,
as for a recording), and the messages that arrive become its channels' latest messages and go to
its tap's observers, so every window, plot and the inspector work as they do on the device. The
job report's numbers (``/api/stats``) are the remote app's own; a param change is checked here
and applied there.

A split app's supervisor uses the same pieces: each of its processes serves its tap on an
``ipc://`` endpoint and one :class:`RemoteApp` over all of them feeds the viewer of the whole app,
with per-process stats and the process of every node (:meth:`RemoteApi.graph`).

The protocol (ZeroMQ multipart; the client is a DEALER, the server a ROUTER):

    client → server   HELLO                     → APP {app: composed app, config, name, pid, host}
                      WATCH [channel, ...]      send every message of these channels
                      CONFIG {path: value}      param changes (answered CONFIGURED or REFUSED text)
                      PING, BYE
    server → client   STATS (JSON, twice a second), MSG channel + graphflow.wire frames,
                      PARAMS {node: {component: {param: value}}} (after any change, by anyone),
                      END (the app finished; final STATS first), PING

Unwatched channels still get their newest message once a second when it is under 256 KB (the
latest route; a larger one crosses only while a window shows its channel). A client that falls behind loses messages for itself (the server's send queue is short
and never blocks the graph); one silent for 3 s is dropped, and reconnects by itself.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Callable

import msgpack
import zmq

from .. import wire
from ..channels import security, transport
from . import encode
from .api import Api, ApiError

log = logging.getLogger("graphflow.viewer.remote")

DEFAULT_PORT = 5570
PROTOCOL = 1
STATS_S = 0.5          # stats pushed this often
LATEST_S = 1.0         # unwatched channels: their newest message this often ...
LATEST_BYTES = 256 * 1024  # ... when it is smaller than this (a device's link is not a memory bus)
HEARTBEAT_S = 0.5
SILENT_S = 3.0         # a peer silent this long is gone
SEND_HWM = 64          # messages queued per client in ZeroMQ before that client drops
QUEUE = 256            # published messages of watched channels waiting for the server's thread


class ViewError(RuntimeError):
    """A remote view that cannot start or connect; the text says why in one line."""


def view_endpoint(text: str, default_host: str = "127.0.0.1") -> str:
    """A ZeroMQ endpoint from ``PORT``, ``HOST:PORT``, ``[v6]:PORT`` or a tcp:// / ipc:// endpoint."""
    text = str(text).strip()
    if text.startswith(("tcp://", "ipc://")):
        endpoint = text
    elif "://" in text or "/" in text:
        raise ViewError(f"{text!r} is not a view address: use tcp://HOST:PORT or ipc:///path (or HOST:PORT)")
    else:
        host, colon, port = text.rpartition(":")
        host = host.strip("[]") if colon else default_host
        if port == "0":
            port = "*"  # any free port (printed once bound)
        elif not port.isdigit() or not 0 < int(port) < 65536:
            raise ViewError(f"{text!r} is not a view address: give PORT, HOST:PORT or tcp://HOST:PORT")
        endpoint = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    try:
        security.endpoint_host(_checkable(endpoint))
    except ValueError as exc:  # ChannelConfigError, and urllib's for a malformed address
        raise ViewError(str(exc)) from None
    return endpoint


def _checkable(endpoint: str) -> str:
    """The endpoint as the security checks read it (``:*``, any free port, as port 0)."""
    return endpoint[:-1] + "0" if endpoint.endswith(":*") else endpoint


def _pack_json(value) -> bytes:
    return encode.dumps(value).encode()


# -- the app's side ----------------------------------------------------------------------------------
class _Client:
    __slots__ = ("identity", "watched", "last_seen", "last_sent", "sent_latest", "dropped")

    def __init__(self, identity: bytes, now: float):
        self.identity = identity
        self.watched: frozenset = frozenset()
        self.last_seen = now
        self.last_sent = now
        self.sent_latest: dict[str, str] = {}  # channel → uuid of the newest message sent
        self.dropped = 0


class ViewServer:
    """Serves one running app's tap to remote viewers. Binds in :meth:`start`; :meth:`close`
    after the app ended (sends the final stats and END)."""

    def __init__(self, app, endpoint: str, *, curve_secret_key: str = "", curve_clients: str = "",
                 insecure: bool = False, process: str | None = None):
        if not (security.is_loopback(_checkable(endpoint)) or curve_secret_key or security.insecure_allowed(insecure)):
            raise ViewError(f"--serve-view: binding {endpoint} shows the app to other hosts: give CURVE keys "
                            f"(graphflow keys NAME; --serve-view-key NAME.key_secret) or allow it with --insecure")
        self.app = app
        self.endpoint = endpoint
        self.process = process
        self.api = Api(app)
        self._curve = (curve_secret_key, curve_clients)
        self._clients: dict[bytes, _Client] = {}
        self._watched: frozenset = frozenset()  # every client's, together (read on graph threads)
        self._queue: deque = deque(maxlen=QUEUE)
        self._waker = transport._Waker()
        self._closing = False
        self._subscribed = False
        self._thread: threading.Thread | None = None
        self._auth = None
        self.bound_endpoint = endpoint
        self.sent = 0
        self.dropped = 0
        self.bad_requests = 0
        self._params_sent = b""  # the param values last pushed (JSON)

    # -- graph threads: must return at once --------------------------------------------------
    def published(self, channel, message) -> None:
        if channel.name in self._watched:
            self._queue.append((channel.name, message))
            self._waker.wake()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "ViewServer":
        try:
            sock, self._auth = transport.bound_router(self.endpoint, *self._curve, send_hwm=SEND_HWM)
        except security.ChannelConfigError as exc:
            raise ViewError(f"--serve-view: {exc}") from None
        except zmq.ZMQError as exc:
            raise ViewError(f"--serve-view: cannot bind {self.endpoint}: {exc}") from None
        self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._socket = sock
        self.api.live.sample()
        self._thread = threading.Thread(target=self._run, name="graphflow-view-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        self._closing = True
        self._waker.wake()
        self._thread.join(timeout=5)
        self._thread = None
        if self._subscribed:
            self.app.tap.unsubscribe(self)
        if self._auth is not None:
            transport._Authenticator.release()
        self._waker.close()

    # -- its thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        sock = self._socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.read_fd, zmq.POLLIN)
        next_stats = next_latest = 0.0
        self._params_sent = self._param_values()  # what a client's APP answer carries from now on
        try:
            while not self._closing:
                events = dict(poller.poll(100))
                if self._waker.read_fd in events:
                    self._waker.drain()
                now = time.monotonic()
                if sock in events:
                    self._receive_all(sock, now)
                self._send_watched(sock)
                if now >= next_stats:
                    self.api.live.sample()
                    if self._clients:
                        stats = _pack_json(self.api.stats())
                        for client in list(self._clients.values()):
                            self._send(sock, client, [b"STATS", stats])
                        self._send_params_if_changed(sock)
                    next_stats = now + STATS_S
                if now >= next_latest and self._clients:
                    self._send_latest(sock)
                    next_latest = now + LATEST_S
                for client in list(self._clients.values()):
                    if now - client.last_seen > SILENT_S:
                        self._forget(client.identity, "silent")
                    elif now - client.last_sent >= HEARTBEAT_S:
                        self._send(sock, client, [b"PING"])
            self._send_watched(sock)
            stats = _pack_json(self.api.stats())
            for client in list(self._clients.values()):
                self._send(sock, client, [b"STATS", stats])
                self._send(sock, client, [b"END"])
        finally:
            sock.close(linger=500)  # the final stats and END still go out

    def _param_values(self) -> bytes:
        values = {}
        for component in self.app.components.values():
            values.setdefault(component.node_name, {})[component.name] = component.param_values()
        return _pack_json(values)

    def _send_params_if_changed(self, sock) -> None:
        """Every client sees a param changed by any other (or by the app's own viewer)."""
        packed = self._param_values()
        if packed != self._params_sent:
            for client in list(self._clients.values()):
                self._send(sock, client, [b"PARAMS", packed])
            self._params_sent = packed

    def _receive_all(self, sock, now: float) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                self.bad_requests += 1
                continue
            identity, kind, rest = frames[0], frames[1], frames[2:]
            client = self._clients.get(identity)
            if client is not None:
                client.last_seen = now
            try:
                if kind == b"HELLO":
                    client = self._clients[identity] = _Client(identity, now)
                    self._send(sock, client, [b"APP", _pack_json(self._describe())])
                    self._send(sock, client, [b"STATS", _pack_json(self.api.stats())])
                    self._send_latest(sock, [client])
                elif client is None:
                    self._send_to(sock, identity, [b"WHO"])
                elif kind == b"WATCH":
                    names = msgpack.unpackb(rest[0])
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise ValueError("WATCH takes a list of channel names")
                    client.watched = frozenset(names)
                    self._rewatch()
                elif kind == b"CONFIG":
                    try:
                        answer = self.api.set_config(json.loads(rest[0]))
                        self._send(sock, client, [b"CONFIGURED", _pack_json(answer["applied"])])
                    except ApiError as exc:
                        self._send(sock, client, [b"REFUSED", exc.message.encode()])
                elif kind == b"BYE":
                    self._forget(identity, "said bye")
                elif kind != b"PING":
                    raise ValueError(f"unknown request {kind[:16]!r}")
            except Exception as exc:  # a malformed request: count it, keep serving
                self.bad_requests += 1
                log.debug("view server: bad request %r: %s", kind[:16], exc)

    def _describe(self) -> dict:
        from ..recording.writer import composed_app

        return {"protocol": PROTOCOL, "app": composed_app(self.app.spec), "config": self.api.config()["config"],
                "name": self.app.spec.name, "pid": os.getpid(), "host": socket.gethostname(),
                "process": self.process}

    def _rewatch(self) -> None:
        watched = frozenset().union(*(c.watched for c in self._clients.values()))
        self._watched = watched
        if watched and not self._subscribed:
            self.app.tap.subscribe(self)
            self._subscribed = True
        elif not watched and self._subscribed:
            self.app.tap.unsubscribe(self)
            self._subscribed = False
            self._queue.clear()

    def _forget(self, identity: bytes, why: str) -> None:
        if self._clients.pop(identity, None) is not None:
            log.info("view server: a viewer %s; %d left", why, len(self._clients))
            self._rewatch()

    def _send_watched(self, sock) -> None:
        queue = self._queue
        while queue:
            name, message = queue.popleft()
            clients = [c for c in self._clients.values() if name in c.watched]
            if clients:
                self._send_message(sock, clients, name, message)

    def _send_latest(self, sock, clients=None) -> None:
        """The newest message of every channel a client does not watch, if it has not had it and
        it is small (a large one goes only to a client that watches its channel)."""
        channels = self.app.channels()
        for client in clients or list(self._clients.values()):
            for name, tx in channels.items():
                message = tx.last
                if message is None or name in client.watched or client.sent_latest.get(name) == message.header.uuid:
                    continue
                self._send_message(sock, [client], name, message, LATEST_BYTES)

    def _send_message(self, sock, clients, name: str, message, limit: int | None = None) -> None:
        encoded = wire.encode(message)
        if limit is not None and sum(len(f) if type(f) is bytes else f.nbytes for f in encoded) >= limit:
            return
        frames = [b"MSG", name.encode(), *encoded]
        copy = sum(len(f) for f in frames) < 65536  # zero-copy costs more than it saves below ~64 KB
        for client in clients:
            if self._send(sock, client, frames, copy):
                client.sent_latest[name] = message.header.uuid
                self.sent += 1
            else:
                client.dropped += 1
                self.dropped += 1

    def _send(self, sock, client: _Client, frames: list, copy: bool = True) -> bool:
        if self._send_to(sock, client.identity, frames, copy):
            client.last_sent = time.monotonic()
            return True
        return False

    def _send_to(self, sock, identity: bytes, frames: list, copy: bool = True) -> bool:
        try:
            sock.send_multipart([identity, *frames], copy=copy, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # EAGAIN: that client is behind (it loses this one); EHOSTUNREACH: gone
            return False


def start_view_server(args, app, err=None) -> ViewServer | None:
    """``graphflow run --serve-view``: the server for ``app``, or None. One line and None when it
    cannot start (the app runs without it)."""
    given = getattr(args, "serve_view", None)
    if not given:
        return None
    try:
        server = ViewServer(app, view_endpoint(given), curve_secret_key=args.serve_view_key or "",
                            curve_clients=args.serve_view_clients or "", insecure=getattr(args, "insecure", False),
                            process=getattr(args, "view_process", None))
        server.start()
    except ViewError as exc:
        print(f"error: {exc}", file=err or sys.stderr, flush=True)
        raise SystemExit(2) from None
    # printed even with --quiet (that is about the job report): it says where to connect
    key = args.serve_view_key or ""
    keys = (f" --server-key {key[:-len('_secret')] if key.endswith('.key_secret') else key + ' (its .key)'}"
            f" --key YOUR.key_secret" if key else "")
    print(f"serving the view of {app.spec.name} on {server.bound_endpoint} "
          f"(graphflow view --connect {_connect_text(server.bound_endpoint)}{keys})", file=sys.stdout, flush=True)
    return server


def _connect_text(endpoint: str) -> str:
    """What a viewer on another machine connects to: a wildcard bind is reached by this host's name."""
    if not endpoint.startswith("tcp://"):
        return endpoint
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", "::"):
        import socket

        host = socket.gethostname()
    return f"{host}:{port}"


# -- the viewer's side -------------------------------------------------------------------------------
class _Connection:
    """One remote app (or one process of a split app)."""

    def __init__(self, name: str, endpoint: str, server_key: str = "", secret_key: str = ""):
        self.name = name
        self.endpoint = endpoint
        self.curve = (server_key, secret_key)
        self.identity = secrets.token_bytes(8)
        self.info: dict | None = None         # the APP answer
        self.stats: dict | None = None
        self.stats_at = 0.0                   # local monotonic time the stats came
        self.ended = False
        self.connected = False
        self.last_seen = 0.0
        self.last_sent = 0.0
        self.last_hello = 0.0
        self.watching: frozenset | None = None
        self.error: str | None = None
        self.received = 0
        self.bad = 0
        self.socket = None
        self.monitor = None

    def open(self) -> None:
        try:
            sock, self.monitor = transport.connected_dealer(self.endpoint, self.identity, *self.curve,
                                                            reconnect_max_ms=500, receive_hwm=SEND_HWM)
        except security.ChannelConfigError as exc:
            raise ViewError(str(exc).replace("curve_server_key", "--server-key")
                            .replace("curve_secret_key", "--key")) from None
        except zmq.ZMQError as exc:
            raise ViewError(f"cannot connect to {self.endpoint}: {exc}") from None
        self.socket = sock

    def send(self, frames: list) -> bool:
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
            self.last_sent = time.monotonic()
            return True
        except zmq.ZMQError:
            return False

    def close(self) -> None:
        if self.socket is not None:
            if self.connected:
                self.send([b"BYE"])
            self.socket.disable_monitor()
            self.monitor.close(0)
            self.socket.close(0)
            self.socket = None


def _check_resolvable(endpoint: str) -> None:
    host = security.endpoint_host(_checkable(endpoint))
    if host is None or host == "*":
        return
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ViewError(f"cannot connect to {endpoint}: host {host!r} is not known ({exc.strerror or exc})") from None


class RemoteApp:
    """Remote apps (one, or the processes of a split app) as one local, never-run :class:`App`.

    ``endpoints``: process name → endpoint. ``app``: the local app to show them in (a split app's
    whole app, built); None: built from the first remote's composed app once it answers."""

    def __init__(self, endpoints: dict[str, str], *, app=None, server_key: str = "", secret_key: str = "",
                 nodes: dict[str, list[str]] | None = None):
        for endpoint in endpoints.values():
            _check_resolvable(endpoint)
        self.connections = {name: _Connection(name, endpoint, server_key, secret_key)
                            for name, endpoint in endpoints.items()}
        self.app = app
        self.nodes = nodes or {}      # process → its nodes (split apps; one remote: every node)
        self.wanted: Callable[[], set] = lambda: set()  # channels the viewer shows (set by the server)
        self.on_change: Callable[[str], None] = lambda text: None  # connection news, one line each
        self._channels: dict = app.channels() if app is not None else {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._waker = transport._Waker()
        self._pending_config: deque = deque()
        self.sent_channels: set = set()  # channels whose messages have come

    # -- the clock the local app reads ---------------------------------------------------------------
    def clock(self) -> float:
        """The remote app's clock, as last heard plus the time since (the first process's)."""
        for connection in self.connections.values():
            if connection.stats is not None:
                elapsed = 0.0 if connection.ended else time.monotonic() - connection.stats_at
                return float(connection.stats.get("now", 0.0)) + elapsed
        return 0.0

    # -- lifecycle -------------------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> "RemoteApp":
        """Open every connection and wait until each remote answered; ViewError when one does not."""
        for connection in self.connections.values():
            connection.open()
        self._thread = threading.Thread(target=self._run, name="graphflow-view-client", daemon=True)
        self._thread.start()
        if self.app is not None:  # the app to show is known: the remotes come up in their own time
            self._ready.set()
            return self
        deadline = time.monotonic() + timeout
        while not all(c.info is not None for c in self.connections.values()):
            failed = next((c for c in self.connections.values() if c.error), None)
            if failed is not None:
                self.close()
                raise ViewError(failed.error)
            if time.monotonic() > deadline:
                silent = [c.endpoint for c in self.connections.values() if c.info is None]
                self.close()
                raise ViewError(f"no graphflow app answered at {', '.join(silent)} within {timeout:g} s "
                                f"(is it running with --serve-view? is the address right?)")
            time.sleep(0.02)
        if self.app is None:
            first = next(iter(self.connections.values()))
            self.app = _build(first.info, self.clock)
            self.nodes = {first.name: [n["name"] for n in first.info["app"]["graph"]["nodes"]]}
            self._channels = self.app.channels()
        self._ready.set()
        return self

    def close(self) -> None:
        self._closing = True
        self._waker.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for connection in self.connections.values():
            connection.close()
        self._waker.close()

    @property
    def finished(self) -> bool:
        return all(c.ended for c in self.connections.values())

    def send_config(self, changes: dict) -> None:
        """Param changes (``{"node/component/param": value}``) to the process that runs each."""
        self._pending_config.append(changes)
        self._waker.wake()

    # -- its thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        by_socket = {}
        for connection in self.connections.values():
            poller.register(connection.socket, zmq.POLLIN)
            poller.register(connection.monitor, zmq.POLLIN)
            by_socket[connection.socket] = by_socket[connection.monitor] = connection
        poller.register(self._waker.read_fd, zmq.POLLIN)
        while not self._closing:
            events = dict(poller.poll(50))
            if self._waker.read_fd in events:
                self._waker.drain()
            for sock in events:
                connection = by_socket.get(sock)
                if connection is None:
                    continue
                if sock is connection.monitor:
                    self._handshake_event(connection)
                else:
                    self._receive_all(connection)
            now = time.monotonic()
            wanted = frozenset(self.wanted()) if self._ready.is_set() else frozenset()
            while self._pending_config:
                self._route_config(self._pending_config.popleft())
            for connection in self.connections.values():
                self._keep_up(connection, now, wanted)

    def _keep_up(self, connection: _Connection, now: float, wanted: frozenset) -> None:
        if connection.connected and now - connection.last_seen > SILENT_S:
            connection.connected = False
            connection.watching = None
            self.on_change(f"lost {connection.name} at {connection.endpoint} (silent {SILENT_S:g} s); "
                           f"waiting for it to come back")
        if not connection.connected:
            if connection.error is None and now - connection.last_hello >= 0.2:
                connection.send([b"HELLO", msgpack.packb({"protocol": PROTOCOL})])
                connection.last_hello = now
            return
        if connection.watching != wanted:
            if connection.send([b"WATCH", msgpack.packb(sorted(wanted))]):
                connection.watching = wanted
        if now - connection.last_sent >= HEARTBEAT_S:
            connection.send([b"PING"])

    def _route_config(self, changes: dict) -> None:
        for path, value in changes.items():
            node = path.split("/", 1)[0]
            owner = next((c for c in self.connections.values()
                          if any(node == n or node.startswith(n + ".") for n in self.nodes.get(c.name, ()))),
                         next(iter(self.connections.values())))
            owner.send([b"CONFIG", _pack_json({path: value})])

    def _handshake_event(self, connection: _Connection) -> None:
        event = transport.handshake_failure(connection.monitor, uses_curve=bool(connection.curve[0]))
        if event is None:
            return
        what = transport.handshake_text(event, bool(connection.curve[0]), "--server-key", "this viewer's --key")
        connection.error = f"cannot connect to {connection.endpoint}: {what}"

    def _receive_all(self, connection: _Connection) -> None:
        sock = connection.socket
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            now = time.monotonic()
            connection.last_seen = now
            kind = frames[0].bytes if frames else b""
            try:
                if kind == b"MSG":
                    if self._ready.is_set():
                        self._inject(frames[1].bytes.decode(), [f.buffer for f in frames[2:]])
                        connection.received += 1
                elif kind == b"STATS":
                    connection.stats = json.loads(frames[1].bytes)
                    connection.stats_at = now
                elif kind == b"APP":
                    info = json.loads(frames[1].bytes)
                    if connection.info is not None and info.get("pid") != connection.info.get("pid"):
                        self.on_change(f"{connection.name}: the app at {connection.endpoint} restarted "
                                       f"(pid {info.get('pid')})")
                    connection.info = info
                    connection.ended = False
                    if not connection.connected:
                        connection.connected = True
                        connection.watching = None
                elif kind == b"END":
                    connection.ended = True
                    self.on_change(f"{connection.name}: the app at {connection.endpoint} finished")
                elif kind == b"WHO":
                    connection.connected = False
                elif kind == b"PARAMS":
                    if self._ready.is_set():
                        _apply_params(self.app, json.loads(frames[1].bytes))
                elif kind == b"CONFIGURED":
                    log.info("%s: params changed: %s", connection.name, frames[1].bytes.decode())
                elif kind == b"REFUSED":
                    self.on_change(f"{connection.name}: param change refused there: {frames[1].bytes.decode()}")
                elif kind != b"PING":
                    raise wire.WireError(f"unknown message {kind[:16]!r}")
            except (wire.WireError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
                connection.bad += 1
                log.debug("%s: dropped a bad message: %s", connection.name, exc)

    def _inject(self, name: str, frames: list) -> None:
        """As the app's channel published it: its latest message, and the tap's observers."""
        tx = self._channels.get(name)
        if tx is None:
            return  # a channel only the remote side has (a split app's bridges)
        message = wire.decode(frames)
        if type(message.payload) is not tx.message_type:
            raise wire.WireError(f"a {message.payload.wire_name} on {name} ({tx.message_type.wire_name})")
        if not tx.published:
            tx.first_time = message.pubtime
        tx.published += 1
        tx.last_time = message.pubtime
        tx.last = message
        self.sent_channels.add(name)
        for observe in self.app.tap.on_published:
            observe(tx, message)

    # -- what the viewer shows -----------------------------------------------------------------------
    def process_of(self) -> dict[str, str]:
        """Node name → the process that runs it."""
        return {node: process for process, nodes in self.nodes.items() for node in nodes}

    def stats(self) -> dict:
        """The remote job reports merged (components and channels of every process), with
        ``processes``: each one's connection, pid, host, nodes and own elapsed time."""
        merged = {"elapsed_s": 0.0, "components": {}, "channels": {},
                  "live": {"window_s": 0.0, "channels": {}, "receivers": {}, "components": {}}}
        processes = {}
        failures = []
        for connection in self.connections.values():
            stats = connection.stats or {}
            info = connection.info or {}
            merged["elapsed_s"] = max(merged["elapsed_s"], stats.get("elapsed_s", 0.0))
            merged["components"].update(stats.get("components", {}))
            merged["channels"].update(stats.get("channels", {}))
            live = stats.get("live", {})
            merged["live"]["window_s"] = max(merged["live"]["window_s"], live.get("window_s", 0.0))
            for key in ("channels", "receivers", "components"):
                merged["live"][key].update(live.get(key, {}))
            if stats.get("failure"):
                failures.append(f"{connection.name}: {stats['failure']}")
            processes[connection.name] = {
                "endpoint": connection.endpoint, "connected": connection.connected, "finished": connection.ended,
                "pid": info.get("pid"), "host": info.get("host"), "nodes": self.nodes.get(connection.name, []),
                "elapsed_s": stats.get("elapsed_s"), "components": sorted(stats.get("components", {})),
                "messages_received": connection.received, "failure": stats.get("failure")}
        merged["processes"] = processes
        merged["failure"] = "; ".join(failures) or None
        return merged


def _build(info: dict, clock):
    """The local App of a remote app's composed file (built, never run), with its current params."""
    from ..app import App
    from ..loader import AppInvalid, load_app_data

    try:  # (a pack beside the app's file is found where this host has the same tree)
        spec = load_app_data(info["app"], f"{info['app'].get('name', 'remote')}.app.json")
    except AppInvalid as exc:
        raise ViewError(f"the remote app cannot be built here (are its node packs installed?): "
                        f"{exc.errors[0]}") from None
    app = App(spec, clock=clock)
    _apply_params(app, info.get("config") or {})
    return app


def _apply_params(app, config: dict) -> None:
    """The remote app's current param values (``{node: {component: {param: value}}}``) in the
    local app, where they differ."""
    if not isinstance(config, dict):
        raise ValueError(f"param values must be an object, got {type(config).__name__}")
    for node, components in config.items():
        for component, values in (components.items() if isinstance(components, dict) else ()):
            local = app.components.get(f"{node}/{component}")
            if local is None or not isinstance(values, dict):
                continue  # another process's component, or one this side does not have
            current = local.param_values()
            for param, value in values.items():
                if param in current and current[param] != value:
                    try:
                        app.set_param(f"{node}/{component}", param, value)
                    except Exception:  # a value this side types differently: the one it has stays
                        pass


class RemoteApi(Api):
    """The viewer's answers for a :class:`RemoteApp`: the graph of the local app with the process of
    each node, the remote stats, and param changes checked here and applied there."""

    def __init__(self, remote: RemoteApp, observer=None):
        self.remote = remote
        super().__init__(remote.app, observer)

    @property
    def finished(self) -> bool:
        return self.remote.finished

    def now(self) -> float:
        return self.remote.clock()

    def graph(self) -> dict:
        graph = super().graph()
        where = self.remote.process_of()
        graph["processes"] = {name: {"nodes": nodes, "endpoint": self.remote.connections[name].endpoint}
                              for name, nodes in self.remote.nodes.items()}
        graph["nodes"] = [dict(node, process=_owner(node["name"], where)) for node in graph["nodes"]]
        graph["edges"] = [dict(edge, source_process=_owner(edge["source_node"], where),
                               target_process=_owner(edge["target_node"], where)) for edge in graph["edges"]]
        graph["remote"] = True
        return graph

    def stats(self) -> dict:
        report = self.remote.stats()
        report["now"] = self.now()
        report["finished"] = self.finished
        return report

    def latest(self, channel: str):
        tx, message = super().latest(channel)
        if message is None and channel not in self.remote.sent_channels:
            counts = self.remote.stats()["channels"].get(channel, {})
            if counts.get("messages"):  # it did publish there: its messages are large, sent only when watched
                raise ApiError(404, f"channel {channel!r}: its messages are over {LATEST_BYTES >> 10} KB; the remote "
                                    f"app sends them only while a window shows the channel (open one)")
        return tx, message

    def channels(self) -> list[dict]:
        remote = self.remote.stats()
        live, counts = remote["live"]["channels"], remote["channels"]
        out = super().channels()
        for entry in out:
            entry["rate"] = live.get(entry["name"], {}).get("rate", 0.0)
            entry["messages"] = counts.get(entry["name"], {}).get("messages", entry["messages"])
            entry["drops"] = counts.get(entry["name"], {}).get("drops", entry["drops"])
        return out

    def set_config(self, body) -> dict:
        answer = super().set_config(body)  # checked and applied here (the config the page shows) ...
        self.remote.send_config(answer["applied"])  # ... and there
        return answer


def _owner(node: str, where: dict) -> str | None:
    best = None
    for name, process in where.items():
        if (node == name or node.startswith(name + ".")) and (best is None or len(name) > len(best[0])):
            best = (name, process)
    return best[1] if best else None


def serve_remote(remote: RemoteApp, host: str = "127.0.0.1", port: int = 3000, *, insecure: bool = False,
                 out=None):
    """The viewer session on a connected RemoteApp (started); returns the session."""
    from .session import ViewerSession

    session = ViewerSession(host, port, out=out, insecure=insecure)
    server = session.server
    server.attach(remote.app, api_class=lambda app, observer: RemoteApi(remote, observer))

    def wanted() -> set:
        stream = server.stream
        if stream is None:
            return set()
        return {name for client in list(stream.clients.values()) for window in list(client.windows.values())
                for name in window.channels}

    remote.wanted = wanted
    server.start()
    return session


def cmd_view_connect(args) -> int:
    """``graphflow view --connect HOST:PORT``."""
    out = sys.stdout
    try:
        endpoint = view_endpoint(args.connect)
        remote = RemoteApp({"remote": endpoint}, server_key=args.server_key or "", secret_key=args.key or "")
        remote.on_change = lambda text: print(f"view: {text}", file=out, flush=True)
        remote.connect(timeout=args.timeout)
    except ViewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .http import ViewerError

    try:
        session = serve_remote(remote, args.viewer_host, args.viewer_port, out=out)
    except ViewerError as exc:
        remote.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = next(iter(remote.connections.values())).info
    print(f"viewer: {session.url} — {info['name']} (pid {info['pid']} on {info['host']}) at "
          f"{_connect_text(endpoint)}; Ctrl-C to quit", file=out, flush=True)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        session.close()
        remote.close()
    return 0


class SplitViewer:
    """The viewer of an app split into processes, run by its supervisor: the whole app built here
    (never run), fed by every process's view server."""

    def __init__(self, session, remote: RemoteApp):
        self.session = session
        self.remote = remote

    def linger(self) -> None:
        deadline = self.session._deadline
        if deadline is not None and time.monotonic() >= deadline - 0.05:
            return  # --duration is over
        self.session.linger()

    def close(self) -> None:
        self.session.close()
        self.remote.close()


def open_split_viewer(args, spec, nodes: dict[str, list[str]], endpoints: dict[str, str]) -> SplitViewer | None:
    """The supervisor's viewer (``graphflow run`` of a split app), or None with one line when it
    cannot start (the app runs without it, as for one process)."""
    from ..app import App
    from .http import ViewerError

    holder: dict = {}
    app = App(spec, clock=lambda: holder["remote"].clock() if "remote" in holder else 0.0)
    remote = holder["remote"] = RemoteApp(endpoints, app=app, nodes=nodes)
    remote.on_change = lambda text: log.info("viewer: %s", text)
    try:
        remote.connect()
        session = serve_remote(remote, args.viewer_host, args.viewer_port, insecure=args.viewer_insecure)
    except (ViewError, ViewerError) as exc:
        remote.close()
        print(f"warning: viewer off: {exc}", file=sys.stderr, flush=True)
        return None
    if args.duration is not None:
        session._deadline = time.monotonic() + args.duration
    print(f"viewer: {session.url} (the whole app: {len(endpoints)} processes)", flush=True)
    return SplitViewer(session, remote)
