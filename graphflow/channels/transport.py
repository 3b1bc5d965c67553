"""One typed channel between processes or hosts: a :class:`Sender` (binds a ZeroMQ ROUTER) and
any number of :class:`Receiver` s (each a DEALER that connects).

The protocol, on top of ZeroMQ multipart messages (the sender's frames are preceded by the
receiver's routing id):

    receiver → sender   HELLO {type, schema, name, pid, host, credit}   on connect, and again
                        until welcomed (a late sender, a restarted one, a network drop)
                        CREDIT n          room for n more messages (the wire queue's size)
                        FREE [[segment, n], ...]   shared-memory segments it no longer uses
                        PING              heartbeat
    sender → receiver   WELCOME {name, type, schema, shm} or REFUSE text   (type and schema
                        version must match; a refusal names both ends)
                        MSG [[seq, refs, n], ...], then per message its n graphflow.wire frames
                        (arrays of 64 KB and more go through shared memory on one host: refs
                        name them)
                        PACK [[seq, [frame length, ...]], ...], blob: small messages (under
                        64 KB), their graphflow.wire frames back to back in one ZeroMQ frame,
                        each frame starting at a multiple of 16 bytes (one copy of a few bytes
                        costs less than a zero-copy frame per message)
                        END seq           the sender's graph has drained
                        PING, WHO         heartbeat; "who are you?" to an unknown receiver

Each side sends a heartbeat every 0.5 s and gives a silent peer up after 1.5 s, so a silent peer
is noticed within 2 s. Flow control is credit-based: a sender holds at most ``queue_size``
messages per receiver and applies the channel's queue policy (latest / block / reject) when
that queue is full, counting what it drops; the receiver counts the gaps in the sequence
(drops upstream) and every bad frame (corrupt, wrong type, beyond the size cap) it drops.

Only each side's I/O thread touches its socket; the graph's threads hand over through a lock
and wake it through a pipe.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

from .. import wire
from ..messages import Message
from . import security, shm

log = logging.getLogger("graphflow.channels")

HEARTBEAT_S = 0.5
HELLO_RETRY_S = 0.1
PEER_TIMEOUT_S = 1.5
WAITING_SAID_EVERY_S = 10.0  # how often a graph held by a publisher no subscriber reached says so
POLICIES = ("latest", "block", "reject")
SHM_THRESHOLD = 64 * 1024
BATCH_MESSAGES = 64  # small messages waiting for one receiver go out together, up to these
BATCH_BYTES = 256 * 1024
PACK_BYTES = 64 * 1024  # messages smaller than this go packed, several in one frame
PACK_ALIGN = 16         # where each packed frame starts (so the arrays' views are aligned)
_PADDING = [bytes(n) for n in range(PACK_ALIGN)]
MAX_MESSAGE_BYTES = 1 << 30

_HOST = f"{socket.gethostname()}:{open('/proc/sys/kernel/random/boot_id').read().strip() if os.path.exists('/proc/sys/kernel/random/boot_id') else ''}"
_CONTEXT: zmq.Context | None = None
_CONTEXT_LOCK = threading.Lock()


def context() -> zmq.Context:
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None or _CONTEXT.closed:
            _CONTEXT = zmq.Context()
        return _CONTEXT


class _Authenticator:
    """libzmq takes one ZAP handler per context: the publishers of a process share it, each with
    its own domain (its own folder of allowed client keys)."""
    _auth = None
    _users = 0
    _lock = threading.Lock()

    @classmethod
    def use(cls, ctx: zmq.Context):
        from zmq.auth.thread import ThreadAuthenticator
        with cls._lock:
            if cls._auth is None:
                cls._auth = ThreadAuthenticator(ctx)
                cls._auth.start()
            cls._users += 1
            return cls._auth

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._auth is not None:
                cls._auth.stop()
                cls._auth = None


class ChannelError(RuntimeError):
    """A channel that cannot work: refused at connect, or a bad setting."""


HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def bound_router(endpoint: str, curve_secret_key: str = "", curve_clients: str = "", *,
                 send_hwm: int | None = None) -> tuple[zmq.Socket, Any]:
    """A ROUTER bound to ``endpoint``: a CURVE server when given its secret key file, and with
    ``curve_clients`` (a folder of public keys) open to those clients only. Returns (socket, the
    authenticator it uses or None: ``_Authenticator.release()`` it after closing the socket).
    Raises security.ChannelConfigError (keys) or zmq.ZMQError (bind), with nothing left open."""
    ctx = context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, 0)
    if send_hwm is not None:
        sock.setsockopt(zmq.SNDHWM, send_hwm)
    auth = None
    try:
        if curve_secret_key:
            security.configure_server(sock, curve_secret_key)
            if curve_clients:
                curve_clients = security.check_clients(curve_clients)
                auth = _Authenticator.use(ctx)
                domain = f"graphflow-{secrets.token_hex(4)}"  # this socket's own list of clients
                auth.configure_curve(domain=domain, location=str(curve_clients))
                sock.zap_domain = domain.encode()
        _refuse_a_live_ipc_socket(endpoint)
        sock.bind(endpoint)
    except (security.ChannelConfigError, zmq.ZMQError):
        sock.close(0)
        if auth is not None:
            _Authenticator.release()
        raise
    return sock, auth


def _refuse_a_live_ipc_socket(endpoint: str) -> None:
    """ZeroMQ binds an ipc:// path over any socket file there, live or not: a second app bound to
    the same path took its subscribers, silently. A live one (it accepts a connection) is refused,
    as TCP refuses a port in use; a stale file (its process gone) is bound over."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        return  # nobody listens: a file left by a process that is gone
    finally:
        probe.close()
    raise zmq.ZMQError(errno.EADDRINUSE, f"{path} is in use by another running process")


def connected_dealer(endpoint: str, identity: bytes, curve_server_key: str = "", curve_secret_key: str = "", *,
                     reconnect_max_ms: int, receive_hwm: int | None = None) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER connecting to ``endpoint`` (again and again while it is away), a CURVE client when
    given the server's public key file; and a monitor socket that reports a failed security
    handshake (read it with :func:`handshake_failure`). Raises security.ChannelConfigError (keys)
    or zmq.ZMQError (connect), with nothing left open."""
    sock = context().socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queued for a connection not yet made
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, reconnect_max_ms)
    if receive_hwm is not None:
        sock.setsockopt(zmq.RCVHWM, receive_hwm)
    monitor = None
    try:
        if curve_server_key:
            security.configure_client(sock, curve_server_key, curve_secret_key)
        monitor = sock.get_monitor_socket(HANDSHAKE_FAILURES)
        sock.connect(endpoint)
    except (security.ChannelConfigError, zmq.ZMQError):
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(0)
        sock.close(0)
        raise
    return sock, monitor


def handshake_failure(monitor: zmq.Socket, uses_curve: bool) -> int | None:
    """The security failure (zmq.EVENT_HANDSHAKE_FAILED_*) that ``monitor`` reported; None when
    none waits, or for a handshake without CURVE that failed with no detail: a peer that went away
    in the middle of it (a CURVE client with the wrong server key fails that way too, measured;
    CURVE on one end only fails with PROTOCOL), after which the socket connects again."""
    from zmq.utils.monitor import recv_monitor_message
    try:
        event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
    except zmq.Again:
        return None
    return None if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and not uses_curve else event


def handshake_text(event: int, uses_curve: bool, server_key: str = "server key",
                   own_key: str = "this end's key") -> str:
    """What a failed security handshake means, from this end's view (measured with pyzmq: CURVE on
    one end only fails with PROTOCOL, a CURVE client with the wrong server key with NO_DETAIL)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"authentication refused ({own_key} is not accepted)"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        # (a server that is no ZeroMQ at all, a web server say, fails the same way)
        return (f"security handshake failed: the other end uses no CURVE keys (drop the {server_key}), or is no "
                f"graphflow app" if uses_curve else
                f"security handshake failed: the other end uses CURVE keys (give its {server_key}), or is no "
                f"graphflow app")
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and uses_curve:
        return f"security handshake failed: wrong {server_key} (not the other end's public key)"
    return "security handshake failed"


class _Waker:
    """A pipe the I/O thread polls: any thread (or a finalizer) may wake it. One byte per wake-up
    at most: a wake while one is pending costs no system call."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._pending = False

    def wake(self) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            os.write(self.write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the I/O thread is about to wake anyway

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # Reset after reading: reset before, a wake between the two left its byte read and the
        # flag set, and every later wake was skipped until the poll timed out (lost wake-ups,
        # 100 ms stalls, measured). A wake skipped here is safe: its caller changed the state
        # first, and the I/O thread looks at the state after draining.
        self._pending = False

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _describe_end(info: dict) -> str:
    return f"{info.get('name', '?')} (pid {info.get('pid', '?')})"


# -- sender ------------------------------------------------------------------------------------
class _Outgoing:
    __slots__ = ("head", "arrays", "refs", "segments", "inline", "packed")

    def __init__(self, head, arrays, refs, segments, inline, packed=None):
        self.head = head          # msgpack header frame
        self.arrays = arrays      # array frames for a receiver on another host
        self.refs = refs          # [[array index, segment, size, nbytes], ...] for one on this host
        self.segments = segments  # the segments refs name
        self.inline = inline      # array frames with the shared-memory ones left empty
        self.packed = packed      # a small message: (frame lengths, its frames in one padded blob)


class _Peer:
    __slots__ = ("identity", "info", "credit", "pending", "seq", "last_seen", "last_sent", "local",
                 "segments", "sent", "dropped")

    def __init__(self, identity: bytes, info: dict, local: bool, now: float):
        self.identity = identity
        self.info = info
        self.credit = int(info.get("credit", 1))
        self.pending: deque[tuple[int, _Outgoing]] = deque()  # (sequence number, message)
        self.seq = 0
        self.last_seen = now
        self.last_sent = now
        self.local = local
        self.segments: dict[str, int] = {}  # segment name -> uses not yet freed by this peer
        self.sent = 0
        self.dropped = 0


class Sender:
    """The publishing end. ``send`` is called from the graph (a component's tick)."""

    def __init__(self, endpoint: str, message_type: type, *, name: str = "publisher", queue_size: int = 8,
                 policy: str = "block", curve_secret_key: str = "", curve_clients: str = "",
                 insecure: bool = False, shm_threshold: int = SHM_THRESHOLD, use_shm: bool = True,
                 stopping: Callable[[], bool] = lambda: False, draining: Callable[[], bool] = lambda: False):
        if policy not in POLICIES:
            raise ChannelError(f"{name}: queue policy must be one of {POLICIES}, got {policy!r}")
        if queue_size < 1:
            raise ChannelError(f"{name}: queue size must be at least 1")
        security.check_bind(endpoint, bool(curve_secret_key), insecure)
        self.endpoint = endpoint
        self.message_type = message_type
        self.type_name = message_type.wire_name
        self.schema = wire.schema_version(message_type)
        self.name = name
        self.queue_size = queue_size
        self.policy = policy
        self.shm_threshold = shm_threshold
        self.stopping = stopping  # the app ends now: a 'block' wait gives up
        self.draining = draining  # the app was asked to stop: no wait for a receiver that is not there
        self._curve = (curve_secret_key, curve_clients)
        self._use_shm = use_shm and shm.available()
        self.pool = shm.SegmentPool() if self._use_shm else None
        self._peers: dict[bytes, _Peer] = {}
        self._backlog: deque[tuple[int, _Outgoing]] = deque()  # before any receiver has connected
        self._waiting_since: float | None = None  # a block publish waiting for a first receiver since
        self._waiting_said = 0.0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._waker = _Waker()
        self._closing = False
        self._end_seq: int | None = None
        self._thread: threading.Thread | None = None
        self._auth = None
        self.bound_endpoint = endpoint
        self.sent = 0
        self.dropped = 0
        self.refused: list[str] = []
        self.bad_frames = 0

    # graph side -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._use_shm:
            shm.sweep_stale()
        try:
            sock, self._auth = bound_router(self.endpoint, *self._curve)
        except zmq.ZMQError as exc:
            raise ChannelError(f"{self.name}: cannot bind {self.endpoint}: {exc}") from None
        self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name=f"graphflow-net-{self.name}", daemon=True)
        self._thread.start()

    def wait_for_receiver(self, timeout: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Wait until a receiver has connected (or ``timeout`` s, or ``give_up()``); True when one has."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._peers and not self._closing and not give_up():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._room.wait(min(remaining, 0.05))
            return bool(self._peers)

    def send(self, message: Message) -> bool:
        """Queue ``message`` for every receiver by the queue policy; False when it was dropped."""
        return self.send_many((message,)) == 1

    def send_many(self, messages) -> int:
        """Queue each message as :meth:`send` does, under one lock and one wake-up; how many
        were queued (not dropped)."""
        prepared = [self._prepare(message) for message in messages]
        delivered = 0
        with self._lock:
            for outgoing in prepared:
                queued = False
                targets = list(self._peers.values()) or [None]
                while targets:
                    result = self._enqueue(targets.pop(), outgoing)
                    if result is None:  # the first receiver came while this waited for the backlog
                        targets = list(self._peers.values())
                        continue
                    queued |= result
                delivered += queued
        for outgoing in prepared:
            if outgoing.segments and not any(s.users for s in outgoing.segments):
                for segment in outgoing.segments:
                    self.pool.give_back(segment)
        self._waker.wake()
        return delivered

    def _prepare(self, message: Message) -> _Outgoing:
        frames = wire.encode(message)
        head, arrays = frames[0], frames[1:]
        if len(head) + sum(a.nbytes for a in arrays) < PACK_BYTES:
            return _Outgoing(head, arrays, None, (), arrays, _pack(frames))
        refs, segments, inline = None, [], arrays
        if self.pool is not None and any(a.nbytes >= self.shm_threshold for a in arrays):
            with self._lock:
                wants_shm = any(p.local for p in self._peers.values()) or not self._peers
            if wants_shm:
                refs, inline = [], list(arrays)
                for index, array in enumerate(arrays):
                    if array.nbytes < self.shm_threshold:
                        continue
                    segment = self.pool.take(array.nbytes)
                    if segment is None:
                        continue  # the pool is at its cap: this one goes inline
                    segment.map[:array.nbytes] = array  # the one copy of this hop
                    refs.append([index, segment.name, segment.size, array.nbytes])
                    segments.append(segment)
                    inline[index] = b""
                refs = refs or None
        return _Outgoing(head, arrays, refs, segments, inline)

    def _enqueue(self, peer: _Peer | None, outgoing: _Outgoing) -> bool | None:
        """Caller holds the lock. ``peer`` None: the backlog kept until a receiver connects (None
        returned: one did, queue for it instead)."""
        queue = self._backlog if peer is None else peer.pending
        while len(queue) >= self.queue_size:
            if self.policy == "latest":
                _, old = queue.popleft()
                self._release(peer, old)
                self._count_drop(peer)
            elif self.policy == "reject":
                self._count_drop(peer)
                if peer is not None:
                    peer.seq += 1  # a gap the receiver sees
                return False
            else:  # block: wait for room, a change of receivers, or the app stopping
                # (During a requested stop a receiver that is gone, a crashed process, will not come
                # back: waiting for one would keep the drain from ending.)
                if self._closing or self.stopping() or (peer is None and self.draining()):
                    self._count_drop(peer)
                    return False
                if peer is None:
                    self._say_waiting_for_a_receiver()
                self._room.wait(0.05)
                if peer is not None and self._peers.get(peer.identity) is not peer:
                    return False  # that receiver went away while we waited
                if peer is None and self._peers:
                    return None
                queue = self._backlog if peer is None else peer.pending
        if peer is None:
            queue.append((0, outgoing))
        else:
            peer.seq += 1  # numbered here: a message dropped from the queue leaves a gap
            queue.append((peer.seq, outgoing))
        if outgoing.refs and (peer is None or peer.local):
            for segment in outgoing.segments:
                segment.users += 1
        return True

    def _say_waiting_for_a_receiver(self) -> None:
        """A graph held by a publisher that no subscriber has reached says so, every
        WAITING_SAID_EVERY_S while it lasts (it waited in silence). Caller holds the lock."""
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = self._waiting_said = now
        elif now - self._waiting_said >= WAITING_SAID_EVERY_S:
            self._waiting_said = now
            log.warning("%s: no subscriber has connected to %s for %.0f s; %d message%s wait (policy block: the "
                        "graph waits for one). Start the subscribing app, or check its endpoint and keys",
                        self.name, self.bound_endpoint or self.endpoint, now - self._waiting_since,
                        len(self._backlog), "" if len(self._backlog) == 1 else "s")

    def _count_drop(self, peer: _Peer | None) -> None:
        self.dropped += 1
        if peer is not None:
            peer.dropped += 1

    def _release(self, peer: _Peer | None, outgoing: _Outgoing) -> None:
        """A queued message that will not be sent: its segments lose a user."""
        if outgoing.refs and (peer is None or peer.local):
            for segment in outgoing.segments:
                self.pool.release(segment.name)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued message went out (or ``timeout``); True when all did."""
        deadline = time.monotonic() + timeout
        with self._lock:
            # (the backlog waits for a receiver to come, unless the app was asked to stop)
            while any(p.pending for p in self._peers.values()) or (self._backlog and not self.draining()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._room.wait(min(remaining, 0.05))
        return True

    def close(self, flush_timeout: float = 5.0) -> None:
        """Flush, tell the receivers the stream ended, and release the socket and segments."""
        if self._thread is None:
            return
        flushed = self.flush(flush_timeout)
        with self._lock:
            self._closing = True  # a publish still waiting for room gives up (and counts its drop)
            self._room.notify_all()
            undelivered = sum(len(p.pending) for p in self._peers.values()) + len(self._backlog)
            self._end_seq = 1  # the I/O thread sends END to every receiver, then stops
        if undelivered:  # lost: the report counts them with the drops
            self.dropped += undelivered
            them = "it" if undelivered == 1 else "them"
            why = f"no receiver took {them} within {flush_timeout:.1f} s" if not flushed else \
                f"the app was stopped with no receiver to take {them}"
            log.warning("%s: %d message%s not delivered (%s)", self.name, undelivered,
                        "" if undelivered == 1 else "s", why)
        self._waker.wake()
        self._thread.join(timeout=5)
        self._thread = None
        if self._auth is not None:
            _Authenticator.release()
        if self.pool is not None:
            self.pool.close()
        self._waker.close()

    def peers(self) -> list[dict]:
        with self._lock:
            return [{**p.info, "sent": p.sent, "dropped": p.dropped} for p in self._peers.values()]

    # I/O thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        sock = self._socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.read_fd, zmq.POLLIN)
        ending_since = None
        try:
            while True:
                events = dict(poller.poll(HEARTBEAT_S * 1000 / 5))
                if self._waker.read_fd in events:
                    self._waker.drain()
                if sock in events:
                    self._receive_all(sock)
                now = time.monotonic()
                with self._lock:
                    self._send_pending(sock, now)
                    self._heartbeats(sock, now)
                    if self._end_seq is not None:
                        if ending_since is None:  # END to all; each answers BYE once it has mapped
                            ending_since = now    # every segment sent to it (then they can go)
                            for peer in list(self._peers.values()):
                                self._send(sock, peer, [b"END", msgpack.packb(peer.seq)])
                        if not self._peers or now - ending_since > 3.0:
                            return
        finally:
            sock.close(linger=1000)  # what is still queued in ZeroMQ goes out

    def _receive_all(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                self.bad_frames += 1
                continue
            identity, kind, rest = frames[0], frames[1], frames[2:]
            now = time.monotonic()
            with self._lock:
                peer = self._peers.get(identity)
                if peer is not None:
                    peer.last_seen = now
                try:
                    if kind == b"HELLO":
                        self._hello(sock, identity, msgpack.unpackb(rest[0]), now)
                    elif peer is None:
                        self._send_raw(sock, identity, [b"WHO"])
                    elif kind == b"CREDIT":
                        peer.credit += int(msgpack.unpackb(rest[0]))
                    elif kind == b"FREE":
                        for name, count in msgpack.unpackb(rest[0]):
                            if peer.segments.get(name, 0) >= count:
                                peer.segments[name] -= count
                                self.pool.release(name, count)
                    elif kind == b"BYE":
                        del self._peers[identity]
                        self._forget(peer)
                        self._room.notify_all()
                    elif kind != b"PING":
                        self.bad_frames += 1
                except Exception as exc:  # a malformed control frame: count it, keep serving
                    self.bad_frames += 1
                    log.debug("%s: bad control frame %r: %s", self.name, kind[:16], exc)

    def _hello(self, sock, identity: bytes, info: dict, now: float) -> None:
        if not isinstance(info, dict):
            raise ValueError("HELLO without a map")
        mine = {"name": self.name, "pid": os.getpid(), "type": self.type_name, "schema": self.schema,
                "endpoint": self.bound_endpoint}
        if info.get("type") != self.type_name or info.get("schema") != self.schema:
            text = (f"type mismatch on {self.bound_endpoint}: publisher {_describe_end(mine)} "
                    f"sends {self.type_name} (schema {self.schema}); subscriber {_describe_end(info)} "
                    f"expects {info.get('type')} (schema {info.get('schema')})")
            if text not in self.refused:
                self.refused.append(text)
                log.error("%s: refused a subscriber: %s", self.name, text)
            self._send_raw(sock, identity, [b"REFUSE", text.encode()])
            return
        old = self._peers.pop(identity, None)
        if old is not None:
            self._forget(old)
        local = self._use_shm and info.get("host") == _HOST
        peer = _Peer(identity, info, local, now)
        self._peers[identity] = peer
        self._waiting_since = None  # (a block publish waiting for a first receiver has one now)
        if not self._send_raw(sock, identity, [b"WELCOME", msgpack.packb({**mine, "shm": local})]):
            self._peers.pop(identity, None)
            return
        if self._backlog:  # the first receiver takes what was published before it came
            while self._backlog:
                _, outgoing = self._backlog.popleft()
                if outgoing.refs and not local:
                    for segment in outgoing.segments:
                        self.pool.release(segment.name)
                peer.seq += 1
                peer.pending.append((peer.seq, outgoing))
        log.debug("%s: subscriber %s connected (%s)", self.name, info.get("name"),
                 "shared memory" if local else "frames")
        self._room.notify_all()

    def _send_pending(self, sock, now: float) -> None:
        """Send what each receiver has credit for, several small messages per ZeroMQ message."""
        for peer in list(self._peers.values()):
            while peer.credit > 0 and peer.pending:
                if peer.pending[0][1].packed is not None:
                    if not self._send_packed(sock, peer, now):
                        break
                    continue
                meta, frames, size = [], [b"MSG", b""], 0
                while peer.credit > 0 and peer.pending and len(meta) < BATCH_MESSAGES and size < BATCH_BYTES \
                        and peer.pending[0][1].packed is None:
                    seq, outgoing = peer.pending.popleft()
                    if peer.local and outgoing.refs:
                        body, refs = [outgoing.head, *outgoing.inline], outgoing.refs
                        for segment in outgoing.segments:
                            peer.segments[segment.name] = peer.segments.get(segment.name, 0) + 1
                    else:
                        body, refs = [outgoing.head, *outgoing.arrays], None
                    meta.append([seq, refs, len(body)])
                    frames += body
                    size += sum(len(frame) for frame in body)
                    peer.credit -= 1
                    peer.sent += 1
                    self.sent += 1
                frames[1] = msgpack.packb(meta)
                if not self._send(sock, peer, frames):
                    break
                peer.last_sent = now
                self._room.notify_all()

    def _send_packed(self, sock, peer: _Peer, now: float) -> bool:
        """One PACK of the small messages at the head of the peer's queue (as many as it has
        credit for, up to a batch)."""
        meta, blobs, size = [], [], 0
        pending = peer.pending
        while peer.credit > 0 and pending and len(meta) < BATCH_MESSAGES and size < BATCH_BYTES \
                and pending[0][1].packed is not None:
            seq, outgoing = pending.popleft()
            lengths, blob = outgoing.packed
            meta.append((seq, lengths))
            blobs.append(blob)
            size += len(blob)
            peer.credit -= 1
        peer.sent += len(meta)
        self.sent += len(meta)
        if not self._send(sock, peer, [b"PACK", msgpack.packb(meta), b"".join(blobs)], copy=True):
            return False
        peer.last_sent = now
        self._room.notify_all()
        return True

    def _heartbeats(self, sock, now: float) -> None:
        for peer in list(self._peers.values()):
            if now - peer.last_seen > PEER_TIMEOUT_S:
                self._drop_peer(peer, f"silent for {now - peer.last_seen:.1f} s")
            elif now - peer.last_sent >= HEARTBEAT_S:
                if self._send(sock, peer, [b"PING"]):
                    peer.last_sent = now

    def _send(self, sock, peer: _Peer, frames: list, copy: bool = False) -> bool:
        if self._send_raw(sock, peer.identity, frames, copy):
            return True
        self._drop_peer(peer, "unreachable")
        return False

    def _send_raw(self, sock, identity: bytes, frames: list, copy: bool = False) -> bool:
        try:
            sock.send_multipart([identity, *frames], copy=copy, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH (gone), EAGAIN (its pipe is full)
            return False

    def _drop_peer(self, peer: _Peer, why: str) -> None:
        if self._peers.get(peer.identity) is peer:
            del self._peers[peer.identity]
            log.warning("%s: subscriber %s %s; dropped it (%d messages queued for it)",
                        self.name, peer.info.get("name"), why, len(peer.pending))
            self.dropped += len(peer.pending)  # lost with it: counted with the drops
            peer.dropped += len(peer.pending)
        self._forget(peer)
        self._room.notify_all()

    def _forget(self, peer: _Peer) -> None:
        """Release every segment the peer held or was to get."""
        while peer.pending:
            self._release(peer, peer.pending.popleft()[1])
        for name, count in peer.segments.items():
            if count:
                self.pool.release(name, count)
        peer.segments.clear()


# -- receiver ----------------------------------------------------------------------------------
def _is_address(host: str) -> bool:
    """An IPv4 or IPv6 literal (nothing to resolve)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def _say_if_unknown(name: str, host: str, endpoint: str) -> None:
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("%s: host %r of %s is not known (%s); retrying until it is", name, host, endpoint,
                    exc.strerror or exc)


class Receiver:
    """The subscribing end. ``take`` is called from the graph; ``wake`` is called (from the I/O
    thread) whenever messages, the end of the stream or an error arrive."""

    def __init__(self, endpoint: str, message_type: type, *, name: str = "subscriber", queue_size: int = 8,
                 wake: Callable[[], None] = lambda: None, curve_server_key: str = "",
                 curve_secret_key: str = "", max_message_bytes: int = MAX_MESSAGE_BYTES):
        if queue_size < 1:
            raise ChannelError(f"{name}: queue size must be at least 1")
        security.endpoint_host(endpoint)
        self.endpoint = endpoint
        self.message_type = message_type
        self.type_name = message_type.wire_name
        self.schema = wire.schema_version(message_type)
        self.name = name
        self.queue_size = queue_size
        self.max_message_bytes = max_message_bytes
        self._notify = wake
        self._curve = (curve_server_key, curve_secret_key)
        self._identity = secrets.token_bytes(8)
        self._inbox: deque[Message] = deque()
        self._lock = threading.Lock()
        self._returned = 0  # credit to give back
        self._freed: deque[str] = deque()  # segments whose last view died (appended by finalizers)
        self._maps = shm.SegmentMaps()
        self._waker = _Waker()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.welcomed = threading.Event()
        self.publisher: dict = {}
        self.ended = False
        self.error: str | None = None
        self.received = 0
        self.bad_frames = 0
        self.upstream_dropped = 0
        self.silences = 0
        self._seq = 0

    def start(self) -> None:
        try:
            sock, self._monitor = connected_dealer(self.endpoint, self._identity, *self._curve, reconnect_max_ms=250)
        except zmq.ZMQError as exc:
            raise ChannelError(f"{self.name}: cannot connect to {self.endpoint}: {exc}") from None
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name=f"graphflow-net-{self.name}", daemon=True)
        self._thread.start()
        host = security.endpoint_host(self.endpoint)
        if host and not _is_address(host):
            # libzmq retries a name that does not resolve in silence; say so once. On its own thread:
            # a lookup can take seconds on a robot's network, and the graph must not wait for it.
            threading.Thread(target=_say_if_unknown, args=(self.name, host, self.endpoint),
                             name=f"graphflow-dns-{self.name}", daemon=True).start()

    def take(self) -> list[Message]:
        """Every message received so far (oldest first); gives their room back to the sender."""
        with self._lock:
            messages = list(self._inbox)
            self._inbox.clear()
            self._returned += len(messages)
        if messages:
            self._waker.wake()
        return messages

    def pending(self) -> int:
        return len(self._inbox)

    def close(self) -> None:
        if self._thread is None:
            return
        self._closing = True
        self._waker.wake()
        self._thread.join(timeout=5)
        self._thread = None
        self._waker.close()
        self._maps.close()

    # I/O thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        sock, monitor = self._socket, self._monitor
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._waker.read_fd, zmq.POLLIN)
        last_hello = last_sent = 0.0
        last_seen = time.monotonic()
        bye_sent = False
        try:
            while not self._closing:
                events = dict(poller.poll(HELLO_RETRY_S * 1000))
                if self._waker.read_fd in events:
                    self._waker.drain()
                now = time.monotonic()
                if monitor in events:
                    self._handshake_event(monitor)
                if sock in events:
                    seen = self._receive_all(sock)
                    if seen:
                        last_seen = now = time.monotonic()
                if self.error is not None:
                    return
                if self.ended:
                    if not bye_sent:
                        bye_sent = self._send(sock, [b"BYE"])
                    continue
                welcomed = self.welcomed.is_set()
                if welcomed and now - last_seen > PEER_TIMEOUT_S:
                    self.silences += 1
                    self.welcomed.clear()
                    welcomed = False
                    log.warning("%s: publisher at %s silent for %.1f s; waiting for it to come back",
                                self.name, self.endpoint, now - last_seen)
                if not welcomed and now - last_hello >= HELLO_RETRY_S:
                    with self._lock:
                        credit = self.queue_size - len(self._inbox)
                        self._returned = 0
                    if self._send(sock, [b"HELLO", msgpack.packb(
                            {"name": self.name, "pid": os.getpid(), "host": _HOST, "type": self.type_name,
                             "schema": self.schema, "credit": credit})]):
                        last_sent = now
                    last_hello = now
                if welcomed:
                    with self._lock:
                        returned, self._returned = self._returned, 0
                    if returned and self._send(sock, [b"CREDIT", msgpack.packb(returned)]):
                        last_sent = now
                    freed = self._take_freed()
                    if freed and self._send(sock, [b"FREE", msgpack.packb(freed)]):
                        last_sent = now
                    if now - last_sent >= HEARTBEAT_S and self._send(sock, [b"PING"]):
                        last_sent = now
        finally:
            if self.welcomed.is_set() and not bye_sent:
                self._send(sock, [b"BYE"])
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _send(self, sock, frames) -> bool:
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    def _take_freed(self) -> list:
        counts: dict[str, int] = {}
        while self._freed:
            name = self._freed.popleft()
            counts[name] = counts.get(name, 0) + 1
        return [[name, count] for name, count in counts.items()]

    def _handshake_event(self, monitor) -> None:
        event = handshake_failure(monitor, uses_curve=bool(self._curve[0]))
        if event is None:
            return
        what = handshake_text(event, bool(self._curve[0]), "server key (curve_server_key)",
                              "this end's key (curve_secret_key)")
        self.error = f"{self.name}: cannot connect to {self.endpoint}: {what}"
        self._notify()

    def _receive_all(self, sock) -> bool:
        seen = False
        woke = False
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            seen = True
            kind = frames[0].bytes if frames else b""
            if kind == b"PACK":
                if self._packed(frames):
                    woke = True
            elif kind == b"MSG":
                if self._messages(frames):
                    woke = True
            elif kind == b"WELCOME":
                try:
                    self.publisher = msgpack.unpackb(frames[1].bytes)
                except Exception:
                    self.bad_frames += 1
                    continue
                self._seq = 0
                if not self.welcomed.is_set():  # (said when it comes back after a silence it warned of)
                    log.log(logging.INFO if self.silences else logging.DEBUG, "%s: connected to %s at %s",
                            self.name, self.publisher.get("name"), self.endpoint)
                self.welcomed.set()
            elif kind == b"REFUSE":
                self.error = (frames[1].bytes.decode("utf-8", "replace") if len(frames) > 1
                              else f"{self.name}: refused by the publisher at {self.endpoint}")
                woke = True
            elif kind == b"END":
                self.ended = True
                woke = True
            elif kind == b"WHO":
                self.welcomed.clear()
            elif kind != b"PING":
                self.bad_frames += 1
        if woke:
            self._notify()
        return seen

    def _messages(self, frames) -> bool:
        """Decode one MSG (one or more messages); a bad one is counted and its credit given back."""
        try:
            meta = msgpack.unpackb(frames[1].bytes) if len(frames) > 2 else None
            if not isinstance(meta, list) or not meta or not all(
                    isinstance(entry, list) and len(entry) == 3 and type(entry[2]) is int and entry[2] >= 1
                    for entry in meta) or 2 + sum(entry[2] for entry in meta) != len(frames):
                raise wire.WireError("bad message index frame")
        except Exception as exc:
            self._bad(exc)
            return False
        position, any_good = 2, False
        for seq, refs, count in meta:
            any_good |= self._message(seq, refs, frames[position:position + count])
            position += count
        return any_good

    def _packed(self, frames) -> bool:
        """Decode one PACK: small messages, their frames back to back (aligned) in one frame."""
        try:  # the index first, whole: one that does not describe the pack exactly drops it all
            if len(frames) != 3:
                raise wire.WireError(f"a pack of {len(frames)} frames")
            meta = msgpack.unpackb(frames[1].bytes)
            blob = frames[2].buffer
            if type(meta) is not list or not meta:
                raise wire.WireError("bad pack index frame")
            bodies, position = [], 0
            for entry in meta:
                if type(entry) is not list or len(entry) != 2 or type(entry[1]) is not list or not entry[1]:
                    raise wire.WireError("bad pack index frame")
                body, size = [], 0
                for length in entry[1]:
                    if type(length) is not int or length < 0:
                        raise wire.WireError("bad pack index frame")
                    position += -position % PACK_ALIGN
                    body.append(blob[position:position + length])
                    position += length
                    size += length
                bodies.append((entry[0], body, size))
            position += -position % PACK_ALIGN  # (the last frame is padded too)
            if position != len(blob):
                raise wire.WireError(f"pack index describes {position} bytes; the pack has {len(blob)}")
        except Exception as exc:
            self._bad(exc)
            return False
        good, expected, cap, decode = [], self.message_type, self.max_message_bytes, wire.decode
        for seq, body, size in bodies:
            try:
                if size > cap:
                    raise wire.WireError(f"{size} bytes is beyond the size cap of {cap}")
                message = decode(body)
                if type(message.payload) is not expected:
                    raise wire.WireError(f"a {message.payload.wire_name} on a {self.type_name} channel")
            except (wire.WireError, ValueError, TypeError, IndexError) as exc:
                self._bad(exc)
            else:
                self._count_seq(seq)
                good.append(message)
        if good:
            self.received += len(good)  # counted before a taker can see them
            with self._lock:
                self._inbox.extend(good)
        return bool(good)

    def _count_seq(self, seq) -> None:
        if type(seq) is int:
            if seq > self._seq + 1 and self._seq:
                self.upstream_dropped += seq - self._seq - 1
            self._seq = seq

    def _bad(self, error: Exception) -> None:
        self.bad_frames += 1
        log.debug("%s: dropped a bad frame: %s", self.name, error)
        with self._lock:
            self._returned += 1

    def _message(self, seq, refs, frames) -> bool:
        try:
            size = sum(len(f) for f in frames)
            if size > self.max_message_bytes:
                raise wire.WireError(f"{size} bytes is beyond the size cap of {self.max_message_bytes}")
            body = [f.buffer for f in frames]
            if refs:
                for index, name, segment_size, nbytes in refs:
                    if not (type(index) is int and 0 <= index < len(body) - 1 and len(body[1 + index]) == 0):
                        raise wire.WireError(f"shared-memory reference to array {index!r}")
                    body[1 + index] = self._mapped(name, segment_size, nbytes)
            message = wire.decode(body)
            if type(message.payload) is not self.message_type:
                raise wire.WireError(f"a {message.payload.wire_name} on a {self.type_name} channel")
        except (wire.WireError, ValueError, TypeError, IndexError, OSError) as exc:
            self._bad(exc)
            return False
        self._count_seq(seq)
        self.received += 1  # counted before a taker can see it
        with self._lock:
            self._inbox.append(message)
        return True

    def _mapped(self, name: str, size: int, nbytes: int) -> np.ndarray:
        """A read-only view of a shared-memory segment; when the last view of it dies, the sender
        is told it may reuse the segment."""
        view = np.frombuffer(self._maps.view(name, size, nbytes), np.uint8)
        freed, waker = self._freed, self._waker
        weakref.finalize(view, _segment_freed, freed, waker, name)
        return view


def _pack(frames: list) -> tuple[list, bytes]:
    """A small message for a PACK: (its frames' lengths, the frames in one blob, each padded to
    start at a multiple of PACK_ALIGN within the pack; every blob's length is such a multiple)."""
    lengths, parts = [], []
    for frame in frames:
        length = len(frame) if type(frame) is bytes else frame.nbytes
        lengths.append(length)
        parts.append(frame)
        parts.append(_PADDING[-length % PACK_ALIGN])
    return lengths, b"".join(parts)


def _segment_freed(freed: deque, waker: _Waker, name: str) -> None:
    freed.append(name)
    waker.wake()
