"""Same-host shared memory for large arrays: a publisher's pool of reusable segments.

A segment is a file in ``/dev/shm`` named ``graphflow-<owner pid>-<token>-<n>``. The publisher
copies an array into a free segment (the one copy of the hop) and sends only its name and size;
the subscriber maps it once and hands out read-only views, and says when the last view is gone,
so the publisher can reuse it. Segments are unlinked when the publisher closes; ones left by a
process that was killed (kill -9) are removed by :func:`sweep_stale` at the next start of any
publisher on this host, or by the supervisor as soon as it sees the process die.
"""
from __future__ import annotations

import logging
import mmap
import os
import secrets
import threading
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "graphflow-"
log = logging.getLogger("graphflow.channels")


def available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def segments_of(pid: int) -> list[Path]:
    if not SHM_DIR.is_dir():
        return []
    return sorted(SHM_DIR.glob(f"{PREFIX}{pid}-*"))


def sweep(pid: int) -> int:
    """Unlink every segment owned by ``pid`` (a process known to be dead); returns how many."""
    removed = 0
    for path in segments_of(pid):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def sweep_stale() -> int:
    """Unlink the segments of owners that are no longer running."""
    removed = 0
    if not SHM_DIR.is_dir():
        return 0
    owners = set()
    for path in SHM_DIR.glob(f"{PREFIX}*"):
        parts = path.name[len(PREFIX):].split("-", 1)
        if parts[0].isdigit():
            owners.add(int(parts[0]))
    for pid in owners:
        if pid != os.getpid() and not _alive(pid):
            count = sweep(pid)
            if count:
                log.info("removed %d shared-memory segments left by process %d", count, pid)
            removed += count
    return removed


class Segment:
    __slots__ = ("name", "size", "map", "users")

    def __init__(self, name: str, size: int):
        fd = os.open(SHM_DIR / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.name = name
        self.size = size
        self.users = 0  # subscribers that have not yet released it


class SegmentPool:
    """The publisher's segments. ``take`` returns a free one of at least ``size`` bytes (or
    None when the pool is at its byte cap: the array then goes inline over ZeroMQ)."""

    def __init__(self, cap_bytes: int = 512 << 20):
        self.cap_bytes = cap_bytes
        self._token = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        self._count = 0
        self._segments: dict[str, Segment] = {}
        self._free: list[Segment] = []
        self._lock = threading.Lock()
        self.total = 0

    def take(self, size: int) -> Segment | None:
        with self._lock:
            fitting = [s for s in self._free if s.size >= size]
            if fitting:
                segment = min(fitting, key=lambda s: s.size)
                self._free.remove(segment)
                return segment
            rounded = max(1 << 16, 1 << (size - 1).bit_length())
            while self._free and self.total + rounded > self.cap_bytes:  # make room: drop small free ones
                self._drop(self._free.pop(0))
            if self.total + rounded > self.cap_bytes:
                return None
            self._count += 1
            segment = Segment(f"{self._token}{self._count}", rounded)
            self._segments[segment.name] = segment
            self.total += rounded
            return segment

    def release(self, name: str, count: int = 1) -> None:
        with self._lock:
            segment = self._segments.get(name)
            if segment is None:
                return
            segment.users -= count
            if segment.users <= 0:
                segment.users = 0
                self._free.append(segment)

    def give_back(self, segment: Segment) -> None:
        """A segment taken but not sent to anyone."""
        with self._lock:
            if segment.users <= 0:
                self._free.append(segment)

    def _drop(self, segment: Segment) -> None:
        self._segments.pop(segment.name, None)
        self.total -= segment.size
        try:
            os.unlink(SHM_DIR / segment.name)
        except FileNotFoundError:
            pass
        try:
            segment.map.close()
        except BufferError:  # a view of it is still alive here: the mapping goes with it
            pass

    def close(self) -> None:
        with self._lock:
            for segment in list(self._segments.values()):
                self._drop(segment)
            self._free.clear()


class SegmentMaps:
    """The subscriber's mappings of a publisher's segments, by name (mapped once, reused)."""

    def __init__(self):
        self._maps: dict[str, mmap.mmap] = {}

    def view(self, name: str, size: int, nbytes: int) -> memoryview:
        if not name.startswith(PREFIX) or "/" in name or nbytes > size:
            raise ValueError(f"bad shared-memory reference {name!r} ({nbytes} of {size} bytes)")
        mapped = self._maps.get(name)
        if mapped is None or len(mapped) != size:
            fd = os.open(SHM_DIR / name, os.O_RDONLY)
            try:
                if os.fstat(fd).st_size < size:
                    raise ValueError(f"shared-memory segment {name} is smaller than announced")
                mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self._maps[name] = mapped
        return memoryview(mapped)[:nbytes]

    def close(self) -> None:
        self._maps.clear()  # a mapping still viewed by an array is closed when that array goes
