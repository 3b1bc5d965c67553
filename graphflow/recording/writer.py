"""The recorder: an observer of the tap that writes the app's messages to MCAP.

On the graph's threads it does one dict lookup (is this channel recorded?) and puts a *reference*
to the message on a bounded queue: messages are immutable once published, so nothing is copied
there. Its own thread serializes them through :mod:`graphflow.wire` and writes them, the arrays
straight from the messages' memory (:mod:`graphflow.recording.mcap_file`). When the disk
cannot keep up and the queue is full, the recorder drops the message for itself and counts it;
``lossless=True`` (``--record-lossless``) makes the publishing thread wait for room instead.

The file (one per ``split_bytes`` when given):

- per message type one Schema record: its JSON Schema (the fields of ``messages.wire_schema``
  inside the wire header, :func:`record_schema`), encoding ``jsonschema``, named by its wire name;
- per channel one Channel record: topic = the channel name, message encoding ``msgpack``: one
  msgpack array ``[wire header, array bytes...]`` (:func:`message_record`, the frames of
  ``wire.encode``), metadata: the type's schema version and render hint;
- messages: log time = acqtime, publish time = pubtime (nanoseconds on the app clock), sequence =
  the message's number on its channel;
- chunked (``CHUNK_BYTES``), compressed on request (zstd or lz4; a chunk that does not shrink
  enough makes the next ones be stored as they are, see :mod:`graphflow.recording.mcap_file`); a
  chunk is also closed and flushed to the OS every ``flush_interval`` seconds, so after a SIGKILL
  at most about that much is lost (:mod:`graphflow.recording.reader` recovers the rest);
- a metadata record ``graphflow`` (app name, the wall clock time at app clock 0, command line) and
  the composed app (every subgraph expanded, config overlays applied) as attachment ``app.json``;
- with ``foxglove=True``, images and skeletons once more on ``/foxglove/<channel>`` in Foxglove's
  well-known schemas (see :mod:`graphflow.recording.foxglove`).

A full disk (or any other write error) stops the recording with one line on stderr; the app runs on.
The writer thread runs at a lower CPU priority (``RECORDER_NICE``, Linux): when the CPU is short
the graph's threads win, and the queue absorbs what the recorder falls behind.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import msgpack

from .. import __version__
from . import foxglove
from .errors import RecordingError
from .mcap_file import CHUNK_BYTES, COMPRESSIONS, McapFile, msgpack_array_header, msgpack_bin_header

FORMAT = "graphflow"             # metadata record name and MCAP profile
APP_ATTACHMENT = "app.json"      # the composed app
MESSAGE_ENCODING = "msgpack"
SCHEMA_ENCODING = "jsonschema"
FLUSH_INTERVAL = 1.0             # seconds: at most about this much is lost on a crash
QUEUE_MESSAGES = 256             # messages waiting for the writer thread before it drops
RECORDER_NICE = 10               # the writer thread's nice value: it takes the CPU time the graph leaves
# lz4 by default, as the MCAP tools expect chunks to be compressed: it costs little where data
# compresses (numbers, skeletons, small messages) and, with a chunk that shrinks by less than 20%
# storing the next ones as they are, little where it does not (natural camera images: lz4 0.92 of
# their size). On the OpenPose app's every channel the recorder thread took 6.0 ms of CPU a frame
# with lz4 against 5.1 without (2.9% and 2.4% of the app's; benchmarks/README.md). zstd halves
# that recording (its decoder channels re-carry the same heatmaps and pafs) for twice the
# recorder's CPU: `--record-compression zstd` when disk space matters more; `none` for the least CPU.
DEFAULT_COMPRESSION = "lz4"
_STOP = object()


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"100k"``, ``"1000000"`` → bytes (powers of 1000; ``iB`` of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", str(text), re.IGNORECASE)
    if not match:
        raise RecordingError(f"--record-split {text!r}: expected a size like 500MB, 2GB or 100MiB")
    number, prefix, binary = match.groups()
    base = 1024 if binary else 1000
    size = int(float(number) * base ** " kmgt".index(prefix.lower() or " "))
    if size < 64_000:
        raise RecordingError(f"--record-split {text!r}: a file must be allowed at least 64kB")
    return size


class ChannelFilter:
    """Which channels to record: every one, or those matching a glob pattern (``--channels``,
    repeatable, e.g. ``'feeder/*'``, ``'*/skeletons*'``)."""

    def __init__(self, patterns: Iterable[str] = (), aliases: Mapping[str, str] | None = None):
        """``aliases``: other names of channels (a subgraph's interface ports, see
        ``AppSpec.channel_aliases``); a pattern that matches one selects the channel it names."""
        self.patterns = [p for p in patterns if p]
        aliases = aliases or {}
        self._aliased = {p: [channel for alias, channel in aliases.items() if fnmatch.fnmatchcase(alias, p)]
                         for p in self.patterns}

    def __call__(self, name: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(name, p) or name in self._aliased[p]
                                        for p in self.patterns)

    def check(self, names: Iterable[str]) -> None:
        """Every pattern must match some channel: a misspelt one is an error, not an empty file."""
        names = list(names)
        for pattern in self.patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) or name in self._aliased[pattern] for name in names):
                near = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                raise RecordingError(f"--channels {pattern!r} matches no channel of the app (it has: {near})")


def composed_app(spec) -> dict:
    """The app as it ran: subgraphs expanded, config overlays applied (an AppSpec as app JSON)."""
    nodes: dict[str, dict] = {}
    for component in spec.components:
        node = nodes.setdefault(component.node, {"name": component.node, "components": []})
        node["components"].append({"name": component.name, "type": component.type})
        if component.on_error != "stop":
            node["on_error"] = component.on_error
    config: dict[str, dict] = {}
    for full_name, values in spec.config.items():
        if values:
            node, name = full_name.split("/", 1)
            config.setdefault(node, {})[name] = dict(values)
    return {
        "name": spec.name,
        "description": f"{spec.file} as composed by graphflow for a recording",
        "modules": list(dict.fromkeys(module[0] for module in spec.modules)),
        "module_dirs": {module[0]: str(Path(module[1]).resolve()) for module in spec.modules},
        "graph": {"nodes": list(nodes.values()),
                  "edges": [{"source": e.source, "target": e.target, **({"queue": dict(e.queue)} if e.queue else {})}
                            for e in spec.edges]},
        "config": config,
        "io": {key: list(targets) for key, targets in spec.io.items()},
        "ui_config": spec.ui_config,
    }


def _json_default(value: Any):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Recorder:
    """Records the channels ``channels`` selects to ``path`` (see the module doc).

    Use: ``recorder.start(app)`` before ``app.run()``, ``recorder.stop()`` after; or as an
    observer of any tap (``attach(tap)``) in tests.
    """

    def __init__(self, path: str | Path, *, channels: ChannelFilter | Iterable[str] = (),
                 lossless: bool = False, split_bytes: int | None = None, app: dict | None = None,
                 compression: str = DEFAULT_COMPRESSION, queue_messages: int = QUEUE_MESSAGES,
                 flush_interval: float = FLUSH_INTERVAL, foxglove_channels: bool = False,
                 wall_clock_offset: float | None = None, chunk_bytes: int = CHUNK_BYTES,
                 nice: int = RECORDER_NICE, err=None):
        self.path = Path(path)
        if self.path.is_dir():
            raise RecordingError(f"--record {path}: is a folder; give a file name such as {Path(path) / 'run.mcap'}")
        try:  # made if need be, as --output makes its folder
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"--record {path}: cannot make its folder {self.path.parent}: "
                                 f"{exc.strerror or exc}") from None
        if compression not in COMPRESSIONS:
            raise RecordingError(f"compression {compression!r}: expected one of {sorted(COMPRESSIONS)}")
        self.filter = channels if isinstance(channels, ChannelFilter) else ChannelFilter(channels)
        self.lossless = lossless
        self.split_bytes = split_bytes
        self.app = app
        self.compression = compression
        self.chunk_bytes = chunk_bytes
        self.nice = nice
        self.flush_interval = flush_interval
        self.foxglove_channels = foxglove_channels
        self.err = err or sys.stderr
        # app clock (time.monotonic) → wall clock, so a reader can tell when it was recorded
        self.wall_clock_offset = time.time() - time.monotonic() if wall_clock_offset is None else wall_clock_offset
        self._queue: queue.Queue = queue.Queue(maxsize=queue_messages)
        self._chosen: dict[str, bool] = {}  # channel name → recorded? (one lookup per publish)
        self._sequence: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.recorded = 0
        self.bytes_written = 0
        self.files: list[Path] = []
        self.failed: str | None = None
        self.cpu_seconds = 0.0  # the writer thread's CPU time, once stopped
        self._closed = False
        self._tap = None
        self._thread: threading.Thread | None = None
        self._file: McapFile | None = None

    # -- the observer: called on graph threads, returns at once ------------------------------------
    def published(self, channel, message) -> None:
        chosen = self._chosen.get(channel.name)
        if chosen is None:
            chosen = self._chosen[channel.name] = self.filter(channel.name)
        if not chosen or self._closed:
            return
        if not self.lossless:
            try:
                self._queue.put_nowait((channel, message))
            except queue.Full:
                self.dropped[channel.name] = self.dropped.get(channel.name, 0) + 1
            return
        while not self._closed:  # lossless: the graph waits, unless the recording has ended
            try:
                self._queue.put((channel, message), timeout=0.1)
                return
            except queue.Full:
                continue

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, app) -> "Recorder":
        """Check the channel patterns against ``app``'s channels, open the file, subscribe."""
        self.filter.check(app.channels())
        return self.attach(app.tap)

    def attach(self, tap) -> "Recorder":
        try:
            self._file = self._open(self.path)
        except OSError as exc:  # the disk is full already: no recording, the app runs
            self._closed = True
            self.failed = f"{self.path}: {_reason(exc)}"
            print(f"recording stopped: {self.failed} before anything was recorded; the app runs on",
                  file=self.err, flush=True)
            return self
        self._thread = threading.Thread(target=self._run, name="graphflow-recorder", daemon=True)
        self._thread.start()
        self._tap = tap
        tap.subscribe(self)
        return self

    def stop(self) -> None:
        """Unsubscribe, write what is queued, and finish the file (its summary and index)."""
        if self._tap is not None:
            self._tap.unsubscribe(self)
            self._tap = None
        if self._thread is not None:
            while self._thread.is_alive():  # after everything queued before it
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
            self._thread = None
        self._closed = True

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        files = ", ".join(str(p) for p in self.files) or str(self.path)
        dropped = self.dropped_total
        state = f"; stopped early: {self.failed}" if self.failed else ""
        return (f"recorded {self.recorded} messages on {len(self._sequence)} channels to {files} "
                f"({self.bytes_written / 1e6:.1f} MB, {dropped} dropped by the recorder{state})")

    # -- the writer thread -------------------------------------------------------------------------
    def _open(self, path: Path) -> McapFile:
        metadata = {"graphflow_version": __version__, "wire_format": str(_wire().FORMAT_VERSION),
                    "clock": "app clock (time.monotonic) seconds; log time = acqtime, publish time = pubtime",
                    "wall_clock_offset": repr(self.wall_clock_offset),
                    "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": " ".join(sys.argv), "part": str(len(self.files))}
        attachments = {}
        if self.app is not None:
            metadata["app"] = str(self.app.get("name", ""))
            attachments[APP_ATTACHMENT] = ("application/json",
                                           json.dumps(self.app, indent=1, default=_json_default).encode())
        try:
            file = McapFile(path, profile=FORMAT, library=f"graphflow/{__version__}", metadata={FORMAT: metadata},
                            attachments=attachments, compression=self.compression, chunk_bytes=self.chunk_bytes)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise
            raise RecordingError(f"--record {path}: cannot write: {exc.strerror or exc}") from None
        self.files.append(path)
        return file

    def _run(self) -> None:
        if self.nice:
            _lower_priority(self.nice)
        try:
            self._write_until_stopped()
        finally:
            self.cpu_seconds = time.thread_time()  # this thread's CPU time: what recording cost

    def _write_until_stopped(self) -> None:
        wire = _wire()
        get = self._queue.get
        last_flush = time.monotonic()
        while True:
            try:
                item = get(timeout=max(0.0, last_flush + self.flush_interval - time.monotonic()))
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    self._file.finish()
                    self.bytes_written = _total_size(self.files)
                    return
                if item is not None:
                    self._write(wire, *item)
                if time.monotonic() - last_flush >= self.flush_interval:
                    self._file.flush()
                    last_flush = time.monotonic()
            except OSError as exc:
                self._fail(exc)
                return

    def _write(self, wire, channel, message) -> None:
        file = self._file
        name = channel.name
        message_type = channel.message_type
        cid = file.channels.get(name)
        if cid is None:
            cid = file.channel_id(name, message_type.wire_name, _schema_json(message_type), SCHEMA_ENCODING,
                                  MESSAGE_ENCODING, {"schema_version": wire.schema_version(message_type),
                                   "render": message_type.render or ""})
        sequence = self._sequence.get(name, 0)
        self._sequence[name] = sequence + 1
        log_time = _nanoseconds(message.acqtime)
        publish_time = _nanoseconds(message.pubtime)
        file.add_message(cid, log_time, publish_time, sequence & 0xFFFFFFFF, *record_buffers(message))
        self.recorded += 1
        if self.foxglove_channels:
            kind = foxglove.visual_kind(message_type)
            if kind is not None:
                topic = foxglove.topic(name)
                fid = file.channels.get(topic)
                if fid is None:
                    fid = file.channel_id(topic, foxglove.SCHEMAS[kind]["title"], foxglove.schema_bytes(kind),
                                          SCHEMA_ENCODING, "json", {"source": name})
                data = foxglove.convert(kind, message.payload, message.acqtime, name)
                file.add_message(fid, log_time, publish_time, sequence & 0xFFFFFFFF, [data], len(data))
        if self.split_bytes is not None and file.size() >= self.split_bytes:
            file.finish()
            self._file = self._open(_part_path(self.path, len(self.files)))

    def _fail(self, exc: OSError) -> None:
        """A write failed (disk full, quota, I/O error): stop recording, say so once, let the app run."""
        self._closed = True
        if self._tap is not None:
            try:
                self._tap.unsubscribe(self)
            except Exception:
                pass
        self._file.abandon()
        reason = _reason(exc)
        self.failed = f"{self._file.path}: {reason}"
        self.bytes_written = _total_size(self.files)
        print(f"recording stopped: {self._file.path}: {reason} after {self.recorded} messages "
              f"(the file is readable up to its last complete chunk: graphflow info {self._file.path}); "
              f"the app runs on", file=self.err, flush=True)
        while True:  # let lossless publishers go, and release the queued messages
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread has its own nice value); the graph's
    threads then win when the CPU is short, and the queue absorbs what the recorder falls behind."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if exc.errno == errno.EFBIG:
        return "file size limit reached"
    return exc.strerror or str(exc)


def _part_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.stem}_{index:03d}{path.suffix or '.mcap'}")


def _total_size(paths) -> int:
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def _nanoseconds(seconds: float) -> int:
    return max(0, int(round(seconds * 1e9)))


# -- the record of one message ---------------------------------------------------------------------
def message_record(message) -> bytes:
    """A message as one msgpack value: ``[header, array bytes 0, array bytes 1, ...]``, where the
    header is the map of :func:`graphflow.wire.encode` (``v, type, schema, uuid, acqtime, pubtime,
    fields``; an array in the fields is ``{"__nd__": i, "dtype", "shape"}`` and its bytes are item
    ``1 + i``). Any msgpack reader can read it; the wire form is reused as it is, not re-invented."""
    return b"".join(record_buffers(message)[0])


def record_buffers(message) -> tuple[list, int]:
    """:func:`message_record` as buffers, and its size: the msgpack heads, and the arrays' own
    memory (no copy; the recorder writes them straight from the message)."""
    frames = _wire().encode(message)
    buffers = [msgpack_array_header(len(frames)), frames[0]]
    size = len(buffers[0]) + len(frames[0])
    for array in frames[1:]:
        head = msgpack_bin_header(array.nbytes)
        buffers += (head, array)
        size += len(head) + array.nbytes
    return buffers, size


def record_frames(data) -> list:
    """The wire frames of a :func:`message_record` (for ``wire.decode`` / ``wire.decode_fields``)."""
    try:
        items = msgpack.unpackb(data)
    except Exception as exc:
        raise _wire().WireError(f"recorded message is not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise _wire().WireError("recorded message is not a graphflow record ([header, arrays...])")
    return [msgpack.packb(items[0]), *items[1:]]


_SCHEMAS: dict[type, bytes] = {}


def record_schema(message_type) -> dict:
    """JSON Schema of :func:`message_record` for one type: the payload's fields from
    ``messages.wire_schema``, arrays as their ``__nd__`` references."""
    from ..messages import wire_schema

    schema = wire_schema(message_type)
    fields = _array_references(schema["properties"]["payload"])
    header = {"type": "object", "description": "graphflow wire header (graphflow/wire.py)",
              "properties": {"v": {"const": _wire().FORMAT_VERSION}, "type": {"const": message_type.wire_name},
                             "schema": {"const": _wire().schema_version(message_type)},
                             "uuid": {"type": "string"}, "acqtime": {"type": "number"},
                             "pubtime": {"type": "number"}, "fields": fields},
              "required": ["v", "type", "schema", "uuid", "acqtime", "pubtime", "fields"]}
    return {"$schema": schema["$schema"], "title": message_type.wire_name, "description": schema["description"],
            "type": "array", "prefixItems": [header],
            "items": {"description": "msgpack bin: the C-order bytes of the array whose __nd__ is this index - 1"}}


def _array_references(schema):
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict) and {"dtype", "shape", "data"} <= properties.keys():
            return {"type": "object", "description": schema.get("description", "A numpy array."),
                    "properties": {"__nd__": {"type": "integer", "description": "index of its bytes after the header"},
                                   "dtype": {"type": "string"},
                                   "shape": {"type": "array", "items": {"type": "integer"}}},
                    "required": ["__nd__", "dtype", "shape"]}
        return {key: _array_references(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_array_references(value) for value in schema]
    return schema


def _schema_json(message_type) -> bytes:
    found = _SCHEMAS.get(message_type)
    if found is None:
        found = _SCHEMAS[message_type] = json.dumps(record_schema(message_type)).encode()
    return found


def _wire():
    from .. import wire

    return wire
