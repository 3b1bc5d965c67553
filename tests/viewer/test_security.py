"""Who the viewer lets in, and what it refuses: every refusal is a 4xx with a JSON error (or a
clear close of the stream) and is counted. Real servers on free loopback ports, raw sockets
where a well-behaved client could not send the request at all."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp
import numpy as np
import pytest

from graphflow.viewer import ViewerServer
from graphflow.viewer.api import MAX_BODY

from .conftest import StreamClient, wait_for

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def serve(running, host="127.0.0.1", **options):
    """A second viewer on the app ``running`` already runs, with other options."""
    server = ViewerServer(host, 0, **options).attach(running.app).start()
    try:
        yield server
    finally:
        server.close()


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> tuple[int | None, dict, bytes]:
    """Send bytes, read one response: (status or None if closed without one, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None, {}, buf
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def handshake(url: str, headers: dict | None = None) -> int:
    """Open /api/stream with these headers: 101 (then closed again) or the refusal's status."""
    async def attempt():
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url.replace("http://", "ws://") + "api/stream", headers=headers or {}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
    return asyncio.run(attempt())


def post_raw(running, body: bytes, ctype: str = "application/json"):
    request = urllib.request.Request(running.url + "api/config", data=body, method="POST",
                                     headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- cross-site WebSocket hijacking, DNS rebinding ------------------------------------------------
def test_stream_handshake_from_null_or_foreign_origin_is_refused_and_counted(running):
    server, port = running.server, running.server.port
    before = server.refused["origin"]
    assert handshake(running.url, {"Origin": "null"}) == 403
    assert handshake(running.url, {"Origin": "http://evil.example"}) == 403
    assert handshake(running.url, {"Origin": f"http://127.0.0.1:{port + 1}"}) == 403  # another port: another site
    assert handshake(running.url, {"Origin": f"http://localhost.evil.example:{port}"}) == 403
    assert server.refused["origin"] == before + 4
    assert handshake(running.url, {"Origin": f"http://127.0.0.1:{port}"}) == 101  # the viewer's own page
    assert handshake(running.url) == 101  # no Origin: not a browser, so no hijacking
    assert server.refused["origin"] == before + 4


def test_a_foreign_host_header_is_refused_on_loopback_and_counted(running):
    """DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends Host: evil.example."""
    port = running.server.port
    before = running.server.refused["host"]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "[::2]"):
        status, _, body = raw_request(port, f"GET /api/graph HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status == 403 and "localhost only" in json.loads(body)["error"], host
    assert running.server.refused["host"] == before + 4
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "localhost"):
        status, _, _ = raw_request(port, f"GET /api/graph HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status == 200, host
    assert handshake(running.url, {"Host": "evil.example"}) == 403


# -- bodies ------------------------------------------------------------------------------------------
def test_negative_and_oversized_content_length_are_refused_and_counted(running):
    port, refused = running.server.port, running.server.refused
    head = f"POST /api/config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    malformed = refused["malformed"]
    status, _, body = raw_request(port, (head + "Content-Length: -5\r\n\r\n{}").encode())
    assert status == 400 and b"Content-Length" in body
    wait_for(lambda: refused["malformed"] == malformed + 1, message="the count (logged after the answer)")
    before = refused["body"]
    t0 = time.monotonic()
    status, _, body = raw_request(port, (head + f"Content-Length: {1 << 40}\r\n\r\n").encode())  # no body sent
    assert status == 413 and "limit 1 MiB" in json.loads(body)["error"]
    assert time.monotonic() - t0 < 2  # refused from the header, without waiting for a TiB
    assert refused["body"] == before + 1


def test_the_body_limit_is_1_mib_inclusive(running):
    """A body of exactly the limit is read (and refused for its content: 400); one byte more is 413."""
    def body_of(size: int) -> bytes:
        body = b'{"x": "' + b"a" * (size - 9) + b'"}'
        assert len(body) == size
        return body
    status, answer = post_raw(running, body_of(MAX_BODY))
    assert status == 400 and "expected an object of components" in answer["error"]
    status, answer = post_raw(running, body_of(MAX_BODY + 1))
    assert status == 413
    for size, expected in ((MAX_BODY, 400), (MAX_BODY + 1, 413)):  # no Content-Length: chunked
        body = body_of(size)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
        status, _, _ = raw_request(running.server.port, (
            f"POST /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunked)
        assert status == expected, size


@pytest.mark.parametrize("literal, words", [
    ("NaN", "NaN is not a finite number"),
    ("-Infinity", "-Infinity is not a finite number"),
    ("1e999", "out of the 64-bit float range"),
    ("1" + "0" * 5000, "out of the 64-bit range"),           # was a 500: int() of > 4300 digits
    (str(1 << 63), "out of the 64-bit integer range"),
])
def test_nan_and_huge_numbers_in_param_edits_are_refused_with_their_path(running, viewer_target, literal, words):
    before = running.get("/api/config")["config"]
    count = running.server.refused["body"]
    path = viewer_target.param
    status, answer = post_raw(running, f'{{"{path}": {literal}}}'.encode())
    assert status == 400, answer
    assert words in answer["error"] and f'$["{path}"]' in answer["error"], answer
    node, comp, name = path.split("/")
    status, answer = post_raw(running, f'{{"{node}": {{"{comp}": {{"{name}": [1, {literal}]}}}}}}'.encode())
    assert status == 400 and f'$["{node}"]["{comp}"]["{name}"][1]' in answer["error"], answer
    assert running.server.refused["body"] == count + 2
    assert running.get("/api/config")["config"] == before


def test_a_params_upper_and_lower_bounds_are_inclusive(running, viewer_target):
    """threshold has range [0, 1]: 1.0 and 0.0 are taken, the next doubles beyond are not; an int
    param's bound likewise (channels in [1, 64])."""
    path = viewer_target.param
    low, _ = viewer_target.param_values
    try:
        for value, ok in ((1.0, True), (float(np.nextafter(1.0, 2.0)), False),
                          (0.0, True), (float(np.nextafter(0.0, -1.0)), False)):
            status, answer = post_raw(running, json.dumps({path: value}).encode())
            assert (status == 200) is ok, (value, answer)
            if ok:
                assert answer["applied"] == {path: value}
            else:
                assert "expected a value in [0.0, 1.0]" in answer["error"]
        for value, ok in ((64, True), (65, False), (1, True), (0, False)):
            status, answer = post_raw(running, json.dumps({"features/heatmaps/channels": value}).encode())
            assert (status == 200) is ok, (value, answer)
    finally:
        post_raw(running, json.dumps({path: low, "features/heatmaps/channels": 19}).encode())


# -- idle connections, the client cap --------------------------------------------------------------
def test_idle_connections_and_silent_streams_are_closed(running):
    with serve(running, idle_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent, \
                socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
            slow.sendall(b"GET /api/graph HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its headers
            t0 = time.monotonic()
            assert silent.recv(100) == b"" and slow.recv(100) == b""
            assert time.monotonic() - t0 < 3
        with StreamClient(server.url) as quiet, StreamClient(server.url) as talking:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:  # one that pings stays; one that says nothing goes
                talking.send({"op": "ping"})
                time.sleep(0.1)
            with pytest.raises(EOFError):
                while True:
                    quiet.recv(3)
            assert quiet.ws.close_code == 1001
            talking.send({"op": "ping", "t": 1})
            while talking.frames({"pong"}, 1)[0][0]["t"] != 1:  # the answers to the earlier pings first
                pass
        assert server.refused["idle"] >= 1


def test_streams_beyond_the_cap_are_refused_with_429(running):
    with serve(running, max_clients=2) as server:
        with StreamClient(server.url), StreamClient(server.url) as second:
            assert handshake(server.url) == 429
            assert server.refused["clients"] == 1
            status, _, body = raw_request(server.port, (
                f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            assert status == 429 and "too many viewer clients (limit 2)" in json.loads(body)["error"]
            second.close()
            deadline = time.monotonic() + 5
            while len(server.clients) > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            with StreamClient(server.url) as third:  # a place became free
                assert third.frames({"hello"}, 1)


# -- off loopback: the token ---------------------------------------------------------------------------
def test_off_loopback_a_token_is_needed_then_kept_in_a_cookie(running):
    with serve(running, "0.0.0.0") as server:
        assert server.token and len(server.token) >= 24 and f"?token={server.token}" in server.login_url
        url = server.url  # reached here on 127.0.0.1
        status, _, body = get(url + "api/graph")
        assert status == 401 and "needs its token" in json.loads(body)["error"]
        assert get(url + "api/graph?token=wrong")[0] == 401
        assert get(url + "static/main.js")[0] == 401
        assert handshake(url) == 401
        assert server.refused["token"] == 4
        status, headers, _ = get(url + f"api/graph?token={server.token}", {"Host": "any.name.example"})
        assert status == 200  # no Host check off loopback: the token is the check
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"graphflow-viewer-{server.port}={server.token}" and "HttpOnly" in headers["Set-Cookie"]
        assert get(url + "api/graph", {"Cookie": cookie})[0] == 200
        assert get(url + "api/graph", {"Authorization": f"token {server.token}"})[0] == 200
        assert handshake(url, {"Cookie": cookie}) == 101
        status, headers, _ = raw_request(server.port, f"GET /?token={server.token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == 302 and headers["location"] == "/" and server.token in headers["set-cookie"]
        assert server.refused["token"] == 4
    with serve(running, "0.0.0.0", insecure=True) as server:
        assert server.token is None and get(server.url + "api/graph")[0] == 200


def _cli_first_lines(*args):
    process = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "run", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_cli_off_loopback_prints_the_token_once(viewer_target):
    sets = sum((["--set", s] for s in viewer_target.sets), [])
    code, out, err = _cli_first_lines(str(viewer_target.app), *sets, "--max-ticks", "2", "--quiet",
                                      "--viewer-host", "0.0.0.0", "--viewer-port", "0")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("viewer: http://") and "?token=" in first and "listening on 0.0.0.0" in first
    token = first.split("?token=")[1].split()[0]
    assert len(token) >= 24 and (out + err).count(token) == 1
    code, out, err = _cli_first_lines(str(viewer_target.app), *sets, "--max-ticks", "2", "--quiet",
                                      "--viewer-host", "0.0.0.0", "--viewer-port", "0", "--viewer-insecure")
    assert code == 0 and "WITHOUT a token" in out.splitlines()[0] and "token=" not in out


def test_a_refusal_shows_in_the_stats(running):
    stats = running.get("/api/stats")["viewer"]
    assert stats["max_clients"] == running.server.max_clients
    assert stats["refused"] == dict(running.server.refused)
