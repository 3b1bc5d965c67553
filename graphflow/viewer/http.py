"""The viewer's HTTP side on aiohttp: the page, the JSON routes and the WebSocket stream, on one
event loop in one thread of its own (no thread per connection; the only other viewer thread is
the stream's pump). The answers come from :mod:`graphflow.viewer.api`, the fan-out from
:mod:`graphflow.viewer.stream`; this module only maps requests to them and keeps out who
should not get in. Every refusal is a 4xx with a JSON ``{"error": ...}`` and is counted in
``ViewerServer.refused`` (shown under ``viewer`` in ``/api/stats``):

- ``host``: a Host header other than a loopback name while bound to loopback (DNS rebinding);
- ``origin``: a WebSocket handshake or a change (POST) from ``Origin: null`` or another site;
- ``token``: off loopback, a request without the token (printed once at start, as Jupyter does;
  accepted as ``?token=``, then kept in a cookie, or as ``Authorization: token ...``);
- ``body``: a Content-Length over 1 MiB, a body that is not strict JSON (NaN, Infinity, numbers
  beyond int64/double), or one that does not arrive within the idle timeout;
- ``clients``: a stream over the cap on clients (429);
- ``idle``: a stream on which the client sent nothing for the idle timeout (closed, 1001);
- ``malformed``: what the HTTP parser refused (a negative or non-numeric Content-Length, a bad
  request line or header), answered by aiohttp with a 400.

Connections idle (no request) for the idle timeout are closed (aiohttp's keep-alive timeout).
"""
from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import logging
import mimetypes
import re
import secrets
import socket
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from . import encode
from .api import MAX_BODY, Api, ApiError, parse_json, query_int
from .observer import ViewerObserver
from .stream import Client, Stream

log = logging.getLogger("graphflow.viewer")
STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
IDLE_TIMEOUT = 120.0      # s without a request (HTTP) or a message (stream; the page pings every 20 s)
MAX_CLIENTS = 64          # open streams (browser tabs)
HEARTBEAT = 30.0          # s between WebSocket pings (a peer that stops answering is closed)
_MESSAGES = re.compile(r"^(?P<channel>.+?)/latest(?:/(?P<what>image|heatmap))?/?$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}
_ENDPOINTS = ("/api/graph, /api/stats, /api/channels, /api/config, "
              "/api/messages/<channel>/latest[/image|/heatmap], /api/stream")
# marks a response as answered by the routes (not by the HTTP parser); ResponseKey from aiohttp 3.12
_HANDLED = web.ResponseKey("graphflow_handled", bool) if hasattr(web, "ResponseKey") else "graphflow_handled"


class _QuietParseErrors(logging.Filter):
    """A request the HTTP parser refuses is the client's mistake, answered with a 400 and counted:
    a debug line, not a traceback on the app's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return log.isEnabledFor(logging.DEBUG)
        return True


_server_log = logging.getLogger("graphflow.viewer.http")
_server_log.addFilter(_QuietParseErrors())


class ViewerError(RuntimeError):
    """The viewer cannot start (e.g. its port is taken)."""


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name of a Host header, without its port, lower case (``[::1]:3000`` → ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=1024)
    except socket.gaierror as exc:
        raise ViewerError(f"cannot serve the viewer on {host!r}: {exc.strerror}; see --viewer-host") from None
    except OverflowError:
        raise ViewerError(f"viewer port {port} is not a port (0-65535); see --viewer-port") from None
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is already in use" if exc.errno == errno.EADDRINUSE else "needs privileges"
            raise ViewerError(f"viewer port {port} on {host} {why}; pick another with --viewer-port N") from None
        raise ViewerError(f"cannot serve the viewer on {host}:{port}: {exc.strerror or exc}; "
                          f"see --viewer-host and --viewer-port") from None


class ViewerServer:
    """Serves one app. Binds in the constructor (so a taken port fails before anything runs),
    then :meth:`attach` the app and :meth:`start`; :meth:`close` when done.

    Off loopback a token is required unless ``insecure``; ``token`` fixes it (else a random one).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 3000, *, insecure: bool = False,
                 token: str | None = None, max_clients: int = MAX_CLIENTS, idle_timeout: float = IDLE_TIMEOUT,
                 heartbeat: float = HEARTBEAT):
        self._sock = _bind(host, port)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self.loopback = is_loopback(host)
        self.token = None if self.loopback or insecure else (token or secrets.token_urlsafe(24))
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.heartbeat = heartbeat
        self.refused: Counter = Counter()
        self.app = None
        self.api: Api | None = None
        self.observer: ViewerObserver | None = None
        self.stream: Stream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set = set()   # open WebSocketResponses
        self._wakes: list = []       # writers the pump has work for (their asyncio.Events)
        self._loop_thread: int | None = None
        self._served: set = set()    # connections (aiohttp's handlers) that got a request through
        self._streams = 0            # streams counted against the cap (from the handshake on)
        self._allowed_hosts = {*LOOPBACK_NAMES, _host_name(host)}
        self._cookie = f"graphflow-viewer-{self.port}"
        self.extra_routes: list = []  # (method, path, answer): answer() for GET, answer(body) for POST → JSON

    @property
    def url(self) -> str:
        """Where this machine reaches the viewer (a wildcard bind is reached on 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The URL to open (with the token, if one is needed), for other machines too."""
        if self.token is None:
            return self.url
        host = socket.gethostname() if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def clients(self) -> dict:
        return self.stream.clients if self.stream is not None else {}

    # -- lifecycle ----------------------------------------------------------------------------
    def attach(self, app, api_class=Api) -> "ViewerServer":
        """Serve ``app``; ``api_class(app, observer)`` answers the routes (a remote app's answers
        come from :class:`graphflow.viewer.remote.RemoteApi`)."""
        self.app = app
        self.observer = ViewerObserver(app.tap)
        self.api = api_class(app, self.observer)
        self.stream = Stream(self.api, self.observer)
        self.stream.end_of_round = self._wake_writers
        return self

    def _wake_writers(self) -> None:
        """From the pump, once per round: wake every writer it queued something for."""
        if not self._wakes:
            return
        wakes, self._wakes = self._wakes, []
        try:
            self._loop.call_soon_threadsafe(_set_all, wakes)
        except RuntimeError:  # the loop closed
            pass

    def start(self) -> "ViewerServer":
        if self.app is None:
            raise RuntimeError("attach an app before starting the viewer")
        self.stream.start()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="graphflow-viewer",
                                        daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self.close()
            raise ViewerError(f"the viewer could not start: {failure[0]}")
        return self

    def _serve(self, ready: threading.Event, failure: list) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        self._loop_thread = threading.get_ident()
        try:
            loop.run_until_complete(self._setup())
        except Exception as exc:  # reported by start()
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._teardown())
            finally:
                loop.close()

    async def _setup(self) -> None:
        # aiohttp's own limit is one byte over ours (its comparison changed between releases);
        # _set_config holds a body to MAX_BODY exactly
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY + 1)
        routes = [("GET", "/", self._index), ("GET", "/index.html", self._index),
                  ("GET", "/static/{name}", self._static), ("GET", "/favicon.ico", self._favicon),
                  ("GET", "/api/graph", self._json_route(lambda: self.api.graph())),
                  ("GET", "/api/stats", self._json_route(self.stats)),
                  ("GET", "/api/channels", self._json_route(lambda: self.api.channels())),
                  ("GET", "/api/config", self._json_route(lambda: self.api.config())),
                  ("POST", "/api/config", self._set_config),
                  ("GET", "/api/messages/{tail:.+}", self._messages),
                  ("GET", "/api/stream", self._stream)]
        for method, path, answer in self.extra_routes:  # JSON routes of the caller's (a recording's timeline)
            routes.append((method, path, self._json_route(answer) if method == "GET" else self._json_post(answer)))
        if not any(path == "/api/recording" for _, path, _ in self.extra_routes):
            # A live app: the page asks, and shows no timeline (a 404 would be an error in the browser's console).
            routes.append(("GET", "/api/recording", self._json_route(lambda: {"recording": False})))
        for method, path, handler in routes:
            if method == "GET":
                app.router.add_get(path, handler, expect_handler=_expect)
            else:
                app.router.add_route(method, path, handler, expect_handler=_expect)
        app.router.add_route("*", "/{unrouted:.*}", _unrouted, expect_handler=_expect)  # last: what none took
        app.on_shutdown.append(self._close_streams)
        server = self

        class Counting(AbstractAccessLogger):
            """Counts what the HTTP parser refused (those never reach the middleware)."""

            def log(self, request, response, time):
                if 400 <= response.status < 500 and not response.get(_HANDLED):
                    server.refused["malformed"] += 1

        self._runner = web.AppRunner(app, access_log_class=Counting, access_log=log, logger=_server_log,
                                     keepalive_timeout=self.idle_timeout, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Close connections that never completed a first request within the idle timeout
        (slow or silent peers). aiohttp's keep-alive timeout covers the time between requests,
        and in its newest releases this case too; this keeps it true on every release."""
        loop = asyncio.get_running_loop()
        first_seen: dict = {}
        while True:
            await asyncio.sleep(min(max(self.idle_timeout / 4, 0.05), 5.0))
            now = loop.time()
            connections = self._runner.server.connections if self._runner.server is not None else []
            self._served.intersection_update(connections)
            waiting = {}
            for handler in connections:
                if handler in self._served:
                    continue
                waiting[handler] = first_seen.get(handler, now)
                if now - waiting[handler] >= self.idle_timeout:
                    self.refused["idle"] += 1
                    handler.force_close()
            first_seen = waiting

    async def _teardown(self) -> None:
        self._sweeper.cancel()
        await self._runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:  # connections still open at shutdown
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        loop, thread = self._loop, self._thread
        if thread is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # the loop already closed
                pass
            thread.join(timeout=10)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def _close_streams(self, _app) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"viewer closing")

    def stats(self) -> dict:
        return {**self.api.stats(), "viewer": {"clients": len(self.clients), "max_clients": self.max_clients,
                                               "refused": dict(self.refused)}}

    # -- the gate -------------------------------------------------------------------------------
    def _refuse(self, reason: str, status: int, message: str) -> ApiError:
        self.refused[reason] += 1
        return ApiError(status, message)

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        cookie = None
        self._served.add(request.protocol)
        try:
            self._check_host(request)
            cookie = self._check_token(request)
            response = await handler(request)
        except ApiError as exc:
            response = _json_error(exc.status, exc.message, **exc.extra)
        except web.HTTPException as exc:  # the router's 404 and 405, the body's 413
            response = self._http_error(request, exc)
        except Exception as exc:
            log.exception("viewer: %s %s failed", request.method, request.path)
            response = _json_error(500, f"internal error: {exc}")
        if cookie is not None and not response.prepared:
            response.set_cookie(self._cookie, cookie, httponly=True, samesite="Strict", path="/")
        response[_HANDLED] = True
        return response

    def _http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        path = request.path
        if exc.status == 404:
            where = f"no API endpoint {path} (have: {_ENDPOINTS})" if path.startswith("/api/") else f"nothing at {path}"
            return _json_error(404, where)
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            return _json_error(405, f"{request.method} is not allowed on {path} (allowed: {allowed})",
                               headers={"Allow": allowed})
        if exc.status == 413:
            self.refused["body"] += 1
            return _json_error(413, f"body too large (limit {MAX_BODY >> 20} MiB)")
        return _json_error(exc.status, exc.reason)

    def _check_host(self, request: web.Request) -> None:
        """Against DNS rebinding: bound to loopback, answer only to loopback names."""
        if not self.loopback:
            return
        header = request.headers.get("Host")
        if header is not None and _host_name(header) not in self._allowed_hosts:
            raise self._refuse("host", 403, f"unexpected Host {header[:100]!r}: this viewer serves localhost only")

    def _check_origin(self, request: web.Request) -> None:
        """Against cross-site requests (and WebSocket hijacking): only the viewer's own pages.
        Browsers always send Origin on these; other clients may leave it out."""
        origin = request.headers.get("Origin")
        if origin is None:
            return
        try:
            parts = urlsplit(origin)
            netloc = parts.netloc.lower() if parts.scheme in ("http", "https") else None
        except ValueError:
            netloc = None
        if netloc is None or netloc != (request.headers.get("Host") or "").lower():
            raise self._refuse("origin", 403, f"cross-origin request from {origin[:100]!r} refused: "
                                              f"open the viewer's own page instead")

    def _check_token(self, request: web.Request) -> str | None:
        """Off loopback: the token as ``?token=``, cookie or ``Authorization: token ...``.
        Returns the token to keep in a cookie when it came in the query."""
        if self.token is None:
            return None
        given = request.query.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return self.token
        cookie = request.cookies.get(self._cookie)
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        for candidate in (cookie, value.strip() if scheme.lower() in ("token", "bearer") else None):
            if candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode()):
                return None
        raise self._refuse("token", 401, "this viewer needs its token: open the URL it printed at start "
                                         "(…/?token=…), or send Authorization: token <token>")

    # -- routes ----------------------------------------------------------------------------------
    def _json_route(self, answer):
        async def route(request: web.Request) -> web.Response:
            return _json(answer())
        return route

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:  # logged in by _check_token: drop the token from the address bar
            return web.Response(status=302, headers={"Location": "/"})
        return _static_file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return _static_file(request.match_info["name"])

    async def _favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204, content_type="image/x-icon")

    async def _set_config(self, request: web.Request) -> web.Response:
        return _json(self.api.set_config(await self._json_body(request)))

    def _json_post(self, answer):
        async def route(request: web.Request) -> web.Response:
            return _json(answer(await self._json_body(request)))
        return route

    async def _json_body(self, request: web.Request):
        """The strict-JSON body of a change (POST), after the origin check."""
        self._check_origin(request)
        if request.content_type != "application/json":
            raise ApiError(415, "send the body as JSON with Content-Type: application/json")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise self._refuse("body", 413, f"body too large: Content-Length {request.content_length} "
                                            f"(limit {MAX_BODY >> 20} MiB)")
        try:
            raw = await asyncio.wait_for(request.read(), self.idle_timeout)
        except asyncio.TimeoutError:
            raise self._refuse("body", 408, f"the body did not arrive within {self.idle_timeout:g} s") from None
        if len(raw) > MAX_BODY:  # sent without a Content-Length (chunked)
            raise self._refuse("body", 413, f"body too large (limit {MAX_BODY >> 20} MiB)")
        try:
            return parse_json(raw)
        except ApiError as exc:
            self.refused["body"] += 1
            raise exc

    async def _messages(self, request: web.Request) -> web.Response:
        match = _MESSAGES.match(request.match_info["tail"])
        if match is None:
            raise ApiError(404, f"no API endpoint {request.path} (have: {_ENDPOINTS})")
        channel, what = match.group("channel"), match.group("what")
        query = request.query
        if what is None:
            return _json(self.api.message(channel))
        if what == "image":
            data, mime = self.api.image(channel, query_int(query, "width", 4096), query_int(query, "height", 4096))
            return _bytes(data, mime)
        data, info = self.api.heatmap(channel, query.get("path", ""), query_int(query, "index", 0))
        return _bytes(data, "image/png", {"X-Heatmap": encode.dumps(info)})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, max_msg_size=MAX_BODY, timeout=2.0)
        if not ws.can_prepare(request).ok:
            raise ApiError(426, "/api/stream is a WebSocket (Upgrade: websocket)", headers={"Upgrade": "websocket"})
        if self._streams >= self.max_clients:
            raise self._refuse("clients", 429, f"too many viewer clients (limit {self.max_clients}): "
                                               f"close another viewer tab")
        self._streams += 1
        try:
            await ws.prepare(request)
            self._sockets.add(ws)
            await self._converse(ws)
        finally:
            self._streams -= 1
            self._sockets.discard(ws)
        return ws

    async def _converse(self, ws: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def wake_writer() -> None:
            if threading.get_ident() == self._loop_thread:
                wake.set()
            else:  # the pump: woken all at once at the end of its round (one wake-up of the loop)
                self._wakes.append(wake)

        client = self.stream.add(Client(ws.send_str, ws.send_bytes, wake_writer))
        writer = asyncio.ensure_future(_write(client, wake))
        try:
            while True:
                try:
                    message = await ws.receive(timeout=self.idle_timeout)
                except asyncio.TimeoutError:
                    self.refused["idle"] += 1
                    await ws.close(code=1001, message=f"idle for {self.idle_timeout:g} s".encode())
                    break
                if message.type == WSMsgType.TEXT:
                    self.stream.handle(client, message.data)
                elif message.type == WSMsgType.BINARY:
                    client.send_json(None, {"type": "error", "error": "send stream requests as JSON text"})
                else:  # close, error
                    break
        finally:
            writer.cancel()
            self.stream.remove(client)


def _set_all(events: list) -> None:
    for event in events:
        event.set()


async def _unrouted(request: web.Request) -> web.Response:
    """A request no route takes gets the router's own 404 or 405 (the guard words them). Routed
    here, with the routes' Expect handler: aiohttp's, on its 404 and 405, fails (a 500) on a
    non-ASCII Expect header (found by tests/viewer/test_fuzz.py)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


async def _expect(request: web.Request) -> web.Response | None:
    """The Expect header (it is handled before the routes and the gate): 100-continue is
    answered, anything else refused with a 417 (aiohttp's own answer fails on a non-ASCII one)."""
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is not the response
        return None
    return _json_error(417, f"unsupported Expect header {expect[:40]!r} (only 100-continue)")


async def _write(client: Client, wake: asyncio.Event) -> None:
    try:
        while True:
            await wake.wait()
            wake.clear()
            await client.drain()
    except (ConnectionError, RuntimeError):  # the peer went away; the reader ends the stream
        pass


def _json(value, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=encode.dumps(value), content_type="application/json",
                        headers={"Cache-Control": "no-cache", **(headers or {})})


def _json_error(status: int, message: str, headers: dict | None = None, **extra) -> web.Response:
    return _json({"error": message, **extra}, status, headers)


def _bytes(data: bytes, ctype: str, headers: dict | None = None) -> web.Response:
    return web.Response(body=data, headers={"Content-Type": ctype, "Cache-Control": "no-cache", **(headers or {})})


def _static_file(name: str) -> web.Response:
    path = STATIC_DIR / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():  # only files of the folder
        raise ApiError(404, f"no static file {name[:100]!r}")
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _bytes(path.read_bytes(), ctype)
