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


def masked_text(text: str) -> bytes:
    """One client text frame (clients mask theirs)."""
    data, mask = text.encode(), os.urandom(4)
    head = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + len(data).to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.timeout(90)
def test_a_client_that_stops_reading_slows_neither_the_graph_nor_the_others(running, viewer_target):
    """A tab that reads nothing (a frozen browser) fills its socket; its newer frames replace its
    unsent ones, while another client keeps getting frames and the graph keeps its rate."""
    import json

    from .conftest import StreamClient

    window = {"id": "w", "renderer": "2d", "channels": [viewer_target.image, viewer_target.skeleton],
              "width": 4096, "height": 4096}  # full-size frames: the frozen tab's buffers fill fast
    frozen = open_stream(running.server.port)
    frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        frozen.sendall(masked_text(json.dumps({"op": "subscribe", "windows": [window]})))
        with StreamClient(running.url) as live:
            live.send({"op": "subscribe", "windows": [window]})
            tx = running.app.channels()[viewer_target.image]
            live.frames({"frame"}, 2)
            c0, t0 = tx.published, time.monotonic()
            got = len(live.frames({"frame"}, 15, timeout=10))
            rate = (tx.published - c0) / (time.monotonic() - t0)
            assert got == 15 and rate > 7, rate  # the camera runs at 10 Hz
            frozen_client = min(running.server.clients.values(), key=lambda c: c.id)  # it came first
            # the socket's buffers take a few MB first; then its newer frames replace the unsent ones
            wait_for(lambda: frozen_client.queue.dropped > 3, timeout=30,
                     message="the frozen client's frames replaced unsent")
            assert len(frozen_client.queue._items) <= 2  # at most one frame per window, and the stats
            assert len(live.frames({"frame"}, 5, timeout=5)) == 5  # the other one still gets its frames
    finally:
        frozen.close()
