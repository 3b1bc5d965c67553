"""A minimal RFC 6455 WebSocket: the server side of an upgraded HTTP connection, and a small
client (tests, benchmarks). Text and binary messages, fragmentation, ping/pong, close. No
extensions (no compression: frames are JPEG/PNG or small JSON already)."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20  # what we accept from a peer (the browser sends small JSON)


class WebSocketClosed(ConnectionError):
    pass


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class WebSocket:
    """One connection. ``recv()`` from one thread; ``send_*`` from any (serialized)."""

    def __init__(self, sock: socket.socket, rfile=None, *, mask: bool = False,
                 max_message: int = MAX_MESSAGE):
        self.sock = sock
        self.rfile = rfile or sock.makefile("rb")
        self.mask = mask  # clients mask their frames, servers do not
        self.max_message = max_message
        self.closed = False
        self._send_lock = threading.Lock()

    # -- sending ------------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytearray([0x80 | opcode])
        mask_bit = 0x80 if self.mask else 0
        if n < 126:
            head.append(mask_bit | n)
        elif n < 1 << 16:
            head.append(mask_bit | 126)
            head += struct.pack(">H", n)
        else:
            head.append(mask_bit | 127)
            head += struct.pack(">Q", n)
        if self.mask:
            key = os.urandom(4)
            head += key
            payload = _unmask(payload, key)
        with self._send_lock:
            if self.closed and opcode != OP_CLOSE:
                raise WebSocketClosed("connection closed")
            try:
                self.sock.sendall(bytes(head) + payload if n < 65536 else bytes(head))
                if n >= 65536:
                    self.sock.sendall(payload)
            except OSError as exc:
                self.closed = True
                raise WebSocketClosed(str(exc)) from exc

    def send_text(self, text: str) -> None:
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send_frame(OP_BINARY, bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        try:
            self._send_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120])
        except WebSocketClosed:
            pass
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- receiving ----------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            self.closed = True
            raise WebSocketClosed("connection closed by peer")
        return data

    def recv(self) -> str | bytes:
        """The next text (str) or binary (bytes) message; raises WebSocketClosed at the end."""
        parts: list[bytes] = []
        first_opcode = None
        while True:
            b0, b1 = self._read(2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            masked, n = b1 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            if n > self.max_message or sum(map(len, parts)) + n > self.max_message:
                self.close(1009, "message too big")
                raise WebSocketClosed("message too big")
            key = self._read(4) if masked else None
            payload = self._read(n) if n else b""
            if key:
                payload = _unmask(payload, key)
            if opcode == OP_CLOSE:
                self.close()
                raise WebSocketClosed("closed by peer")
            if opcode == OP_PING:
                self._send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode in (OP_TEXT, OP_BINARY):
                first_opcode = opcode
                parts = [payload]
            elif opcode == OP_CONT and first_opcode is not None:
                parts.append(payload)
            else:
                self.close(1002, "protocol error")
                raise WebSocketClosed("protocol error")
            if fin:
                data = b"".join(parts)
                return data.decode("utf-8") if first_opcode == OP_TEXT else data


def connect(url: str, *, origin: str | None = None, timeout: float | None = 10.0) -> WebSocket:
    """Open a client connection to ``ws://host:port/path``."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    sock = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
             f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    rfile = sock.makefile("rb")
    status = rfile.readline().decode("latin-1")
    headers = {}
    while True:
        line = rfile.readline().decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if " 101 " not in status or headers.get("sec-websocket-accept") != accept_key(key):
        sock.close()
        raise ConnectionError(f"websocket handshake with {url} failed: {status.strip()}")
    sock.settimeout(None)
    return WebSocket(sock, rfile, mask=True, max_message=1 << 28)
