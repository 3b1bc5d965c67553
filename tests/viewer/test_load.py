"""Many clients cost no threads: the viewer is one event loop (plus its pump), whatever the
number of connections."""
from __future__ import annotations

import base64
import os
import resource
import socket
import time
import urllib.request

import pytest

from graphflow.viewer import ViewerServer

from .conftest import wait_for

IDLE_CLIENTS = 500


def os_threads() -> int:
    """Threads of this process as the kernel counts them (Python's and native ones)."""
    return len(os.listdir("/proc/self/task"))


def open_stream(port: int) -> socket.socket:
    """A WebSocket handshake on a raw socket; the connection then stays open and silent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return sock


@pytest.mark.timeout(120)
def test_500_idle_streams_add_no_threads(running):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * IDLE_CLIENTS:  # both ends of each connection live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * IDLE_CLIENTS), hard))
    server = ViewerServer("127.0.0.1", 0, max_clients=IDLE_CLIENTS + 10).attach(running.app).start()
    sockets = []
    try:
        before = os_threads()
        for _ in range(IDLE_CLIENTS):
            sockets.append(open_stream(server.port))
        wait_for(lambda: len(server.clients) == IDLE_CLIENTS, timeout=30, message=f"{IDLE_CLIENTS} clients")
        time.sleep(1.5)  # a stats round to every client
        during = os_threads()
        t0 = time.monotonic()
        with urllib.request.urlopen(server.url + "api/stats", timeout=10) as response:
            assert response.status == 200
        answer_s = time.monotonic() - t0
        print(f"\nthreads: {before} before, {during} with {IDLE_CLIENTS} idle streams; "
              f"/api/stats answered in {answer_s * 1000:.0f} ms")
        assert during - before <= 4, (before, during)
        assert answer_s < 2.0
    finally:
        for sock in sockets:
            sock.close()
        server.close()
