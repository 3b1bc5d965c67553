"""Property-based fuzzing (hypothesis) of the viewer's API, HTTP routes and WebSocket stream,
on loopback: random param edits, random requests (paths, headers, bodies, Content-Lengths),
random WebSocket frames and stream requests. Whatever comes in: never a 500, never an error
logged by the server, never a hang (every answer within a few seconds, and the server answers
the next request), and each run is bounded (max_examples, socket timeouts)."""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphflow.viewer import ViewerServer
from graphflow.viewer.api import Api, ApiError, parse_json

SCALE = float(os.environ.get("GRAPHFLOW_FUZZ_SCALE", "1"))  # more examples: GRAPHFLOW_FUZZ_SCALE=10
COUNTS: dict[str, int] = {}


def fuzz(examples: int) -> settings:
    """Bounded runs: ``examples`` cases (times GRAPHFLOW_FUZZ_SCALE), no deadline per case (the
    machine is shared), nothing kept between runs."""
    return settings(max_examples=max(10, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


class Errors(logging.Handler):
    """Collects ERROR records of the server's loggers (a 500 is logged with its traceback)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def errors():
    handler = Errors()
    loggers = [logging.getLogger(name) for name in ("graphflow.viewer", "aiohttp")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)
    print("\nfuzz cases: " + ", ".join(f"{k} {v}" for k, v in COUNTS.items()))


@pytest.fixture(scope="module")
def server(running, errors):
    """A viewer with a short idle timeout (a request that promises more body than it sends is
    answered 408 after it, so the fuzzing client waits at most that long)."""
    server = ViewerServer("127.0.0.1", 0, idle_timeout=1.5, max_clients=1000).attach(running.app).start()
    yield server
    server.close()


def healthy(server) -> None:
    with urllib.request.urlopen(server.url + "api/graph", timeout=5) as response:
        assert response.status == 200


def no_errors(errors) -> None:
    assert not errors.records, [r.getMessage() + (f": {r.exc_info[1]!r}" if r.exc_info else "")
                                for r in errors.records[:3]]


# -- values ---------------------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)


def param_paths(app) -> list[str]:
    return [f"{name}/{p}" for name, c in app.components.items() for p in type(c).params()]


@pytest.mark.timeout(300)
def test_param_edits_are_applied_validated_or_refused_with_a_4xx(viewer_target, errors):
    """At the API (no sockets, an app loaded but not running): any body is either applied, every
    value as its param declares it (finite, in range), or refused whole with a 4xx and a
    message; nothing else escapes."""
    from graphflow.app import App

    app = App.load(viewer_target.app, sets=viewer_target.sets)
    api = Api(app)
    paths = param_paths(app)
    keys = st.one_of(st.sampled_from(paths), st.text(max_size=30),
                     st.builds(lambda p: p.rsplit("/", 1)[0] + "/" + "x", st.sampled_from(paths)))
    values = st.one_of(json_values, st.sampled_from(["NaNHz", "1e-400s", "1e309Hz", "10Hz", "-1s", "0"]))
    bodies = st.one_of(st.dictionaries(keys, values, max_size=4), json_values)

    @fuzz(1500)
    @given(bodies)
    def check(body):
        COUNTS["param edits"] = COUNTS.get("param edits", 0) + 1
        try:
            answer = api.set_config(body)
        except ApiError as exc:
            assert 400 <= exc.status < 500 and exc.message and "\n" not in exc.message
            return
        for path, value in answer["applied"].items():
            component, name = path.rsplit("/", 1)
            declared = type(app.components[component]).params()[name]
            assert declared.convert(value) == value
            json.dumps(value, allow_nan=False)  # finite

    check()
    no_errors(errors)


@pytest.mark.timeout(120)
def test_strict_json_parses_like_json_or_names_what_it_refuses():
    """Text JSON accepts, with only finite, int64-sized numbers, parses to the same value;
    anything else is a 400."""
    finite = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
                                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=10)

    @fuzz(500)
    @given(finite)
    def same(value):
        COUNTS["strict JSON"] = COUNTS.get("strict JSON", 0) + 1
        assert parse_json(json.dumps(value)) == json.loads(json.dumps(value))

    @fuzz(500)
    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def refused_or_parsed(raw):
        COUNTS["strict JSON"] += 1
        try:
            parse_json(raw)
        except ApiError as exc:
            assert exc.status == 400

    same()
    refused_or_parsed()


# -- HTTP --------------------------------------------------------------------------------------------
_ROUTES = ["/", "/index.html", "/static/main.js", "/static/../http.py", "/favicon.ico", "/api/graph", "/api/stats",
           "/api/channels", "/api/config", "/api/stream", "/api/messages/camera/source/image/latest",
           "/api/messages/camera/source/image/latest/image", "/api/messages/features/heatmaps/tensors/latest/heatmap",
           "/api/nothing", "/api/messages/", "/api/messages/x/latest/heatmap"]
_HEADERS = ["Host", "Origin", "Content-Type", "Content-Length", "Upgrade", "Connection", "Sec-WebSocket-Key",
            "Sec-WebSocket-Version", "Authorization", "Cookie", "Transfer-Encoding", "Expect", "Range"]
token = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"), min_size=1, max_size=12)
header_value = st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
                         st.integers(-(1 << 70), 1 << 70).map(str),
                         st.sampled_from(["application/json", "websocket", "Upgrade", "chunked", "13", "null",
                                          "http://evil.example", "dGhlIHNhbXBsZSBub25jZQ==", "100-continue"]))
query = st.dictionaries(st.sampled_from(["width", "height", "index", "path", "token", "x"]),
                        st.one_of(st.integers(-(1 << 70), 1 << 70).map(str), st.text(max_size=10)), max_size=3)
paths = st.one_of(
    st.sampled_from(_ROUTES),
    st.builds(lambda r, tail: r + tail, st.sampled_from(_ROUTES),
              st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)),
    st.builds(lambda b: "/" + b.hex(), st.binary(max_size=20)),
    st.builds(lambda r, q: r + "?" + "&".join(f"{k}={v}" for k, v in q.items()), st.sampled_from(_ROUTES), query),
)
bodies = st.one_of(st.just(b""), st.binary(max_size=300),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.sampled_from([b'{"a/b/c": NaN}', b'{"pose/detector/threshold": 1e999}',
                                    b'{"x": ' + b"9" * 5000 + b"}", b"[" * 5000, b'{"pose": {"detector": {}}}']))


@st.composite
def requests(draw, port: int) -> bytes:
    """A third well-formed reads (routes with random queries), a third param edits (random JSON
    bodies), a third anything (methods, paths, headers, bodies, Content-Lengths)."""
    kind = draw(st.sampled_from(["read", "edit", "any"]))
    headers = draw(st.lists(st.tuples(st.one_of(st.sampled_from(_HEADERS), token), header_value), max_size=6))
    if kind == "read":
        method, body, length = "GET", b"", "none"
        route = draw(st.sampled_from(_ROUTES[5:] + ["/api/messages/camera/source/image/latest/image"] * 3 +
                                     ["/api/messages/features/heatmaps/tensors/latest/heatmap"] * 3))
        path = route + "?" + "&".join(f"{k}={v}" for k, v in draw(query).items())
        headers = headers[:draw(st.integers(0, 2))]
    elif kind == "edit":
        method, path, length = "POST", "/api/config", draw(st.sampled_from(["exact", "exact", "given"]))
        body = draw(bodies)
        headers = [("Content-Type", "application/json")] + headers[:draw(st.integers(0, 2))]
    else:
        method = draw(st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]), token))
        path, body = draw(paths), draw(bodies)
        length = draw(st.sampled_from(["exact", "none", "given"]))
    path = "".join(c if 32 < ord(c) < 127 else "%%%02X" % (ord(c) & 0xFF) for c in path)
    lines = [f"{method} {path} HTTP/1.1"]
    if kind != "any" or draw(st.booleans()) or not any(n.lower() == "host" for n, _ in headers):
        lines.append(f"Host: 127.0.0.1:{port}")
    if length == "exact":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers
              if not (length == "exact" and name.lower() == "content-length") and not
              (kind != "any" and name.lower() in ("host", "transfer-encoding", "upgrade", "expect"))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def exchange(port: int, data: bytes, timeout: float = 6.0) -> bytes:
    """Send one request; what came back before the server closed or timeout passed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        except ConnectionResetError:
            pass
        return head


@pytest.mark.timeout(600)
def test_random_requests_never_get_a_500_nor_hang(server, errors):
    @fuzz(400)
    @given(st.data())
    def check(data):
        COUNTS["HTTP requests"] = COUNTS.get("HTTP requests", 0) + 1
        raw = data.draw(requests(server.port))
        try:
            answer = exchange(server.port, raw)
        except socket.timeout:
            pytest.fail(f"no answer within 6 s to {raw[:300]!r}")
        if answer:
            status = answer.split(b" ", 2)[1]
            assert answer.startswith(b"HTTP/1.") and status.isdigit(), answer[:200]
            assert int(status) < 500, (raw[:300], answer[:300])
        no_errors(errors)

    check()
    healthy(server)
    no_errors(errors)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("request_line", ["POST / HTTP/1.1", "GET /nowhere HTTP/1.1", "GET /api/stats HTTP/1.1"])
def test_a_non_ascii_expect_header_is_refused_not_a_500(server, errors, request_line):
    """Found by the fuzzing above: aiohttp's own answer to an Expect header it does not know fails
    on a non-ASCII one; a request no route takes must get the viewer's answer too."""
    raw = f"{request_line}\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 0\r\nExpect: \x80\r\n\r\n"
    answer = exchange(server.port, raw.encode("latin-1"))
    assert answer.split(b" ", 2)[1] == b"417", answer[:300]  # Expectation Failed, wherever it was sent
    no_errors(errors)


# -- the stream -----------------------------------------------------------------------------------------
def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = b"\x01\x02\x03\x04",
             length: int | None = None) -> bytes:
    """A frame as a client would send it (masked), with every field open to tampering."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0x0F])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", min(n, (1 << 64) - 1))
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def open_raw_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall((f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


frames = st.lists(st.builds(
    ws_frame, st.integers(0, 15), st.binary(max_size=200), fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4, 7]), mask=st.one_of(st.binary(min_size=4, max_size=4), st.none()),
    length=st.one_of(st.none(), st.none(), st.integers(0, 1 << 17), st.integers(1 << 20, (1 << 64) - 1))),
    min_size=1, max_size=4)


@pytest.mark.timeout(600)
def test_random_websocket_frames_never_break_the_server(server, errors):
    @fuzz(200)
    @given(frames)
    def check(sent):
        COUNTS["WebSocket frame sequences"] = COUNTS.get("WebSocket frame sequences", 0) + 1
        with open_raw_stream(server.port) as sock:
            try:
                sock.sendall(b"".join(sent))
                sock.sendall(ws_frame(0x8, struct.pack(">H", 1000)))  # then a clean close
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server already closed the connection on a protocol error
        healthy(server)
        no_errors(errors)

    check()


windows = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans()),
    "renderer": st.sampled_from(["2d", "plot", "inspector", "3d", None]),
    "channels": st.one_of(st.lists(st.sampled_from(["camera/source/image", "pose/detector/skeletons",
                                                    "features/heatmaps/tensors", "math/scale/scaled", "no/such"]),
                                   max_size=4), json_values),
    "width": scalars, "height": scalars, "max_fps": scalars, "sync_tolerance": scalars,
    "heatmap": st.one_of(st.fixed_dictionaries({}, optional={"path": st.one_of(st.sampled_from(
        ["tensors.0", "tensors", "tensors.9", "names.0", "", "a.b.c"]), json_values), "index": scalars}), json_values),
})
stream_requests = st.one_of(
    st.fixed_dictionaries({"op": st.just("subscribe"), "windows": st.lists(windows, max_size=4)}),
    st.fixed_dictionaries({"op": st.sampled_from(["subscribe", "ping", "nope", None])},
                          optional={"windows": json_values, "t": json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=100),
)


@pytest.mark.timeout(600)
def test_random_stream_requests_get_answers_or_errors_never_a_broken_pump(server, errors):
    """Subscriptions with any window specs: refused with an error message, or served; the pump
    (which encodes for them a moment later) never fails on one."""
    import time

    from .conftest import StreamClient

    with StreamClient(server.url) as ws:
        @fuzz(300)
        @given(stream_requests)
        def check(request):
            COUNTS["stream requests"] = COUNTS.get("stream requests", 0) + 1
            ws.send(request if isinstance(request, str) else json.dumps(request))
            ws.send({"op": "ping", "t": "mark"})
            while True:  # everything up to the answer to this ping
                header, _ = ws.recv(5)
                assert header.get("type") in {"hello", "stats", "frame", "inspect", "heatmap", "samples", "pong",
                                              "error"}, header
                if header["type"] == "pong" and header["t"] == "mark":
                    break
            time.sleep(1 / 30)  # the pump serves the windows
            no_errors(errors)

        check()
    healthy(server)
    no_errors(errors)
