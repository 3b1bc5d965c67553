"""Reading recordings: the index, messages in log-time order, recovery of a cut file.

A finished file is read through its summary (schemas, channels, statistics, chunk and message
indexes): opening it reads a few kilobytes at the end, and a message is found by seeking to the one
chunk that holds it. A file cut short (the recorder was killed, the disk filled) has no summary:
:class:`Recording` then scans it once, keeps every complete chunk (each one's CRC checked) and
builds the same index in memory; :attr:`Recording.recovery` says how much it kept.
"""
from __future__ import annotations

import heapq
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from mcap.data_stream import ReadDataStream
from mcap.reader import SeekingReader
from mcap.records import (Attachment, Channel, Chunk, DataEnd, Footer, Metadata, MessageIndex,
                          Schema)
from mcap.records import Message as McapMessage
from mcap.stream_reader import StreamReader, breakup_chunk

from .errors import RecordingInvalid

log = logging.getLogger("graphflow.recording")
from .writer import APP_ATTACHMENT, FORMAT, record_frames

MAGIC = b"\x89MCAP0\r\n"
CHUNK_CACHE = 8  # decompressed chunks kept (stepping back and forth in the viewer)


@dataclass
class ChannelInfo:
    id: int
    topic: str
    message_encoding: str
    schema_name: str
    schema_encoding: str
    metadata: dict
    count: int = 0
    first: int | None = None  # log times, ns
    last: int | None = None

    @property
    def rate(self) -> float:
        if self.count < 2 or not self.last or self.last <= (self.first or 0):
            return 0.0
        return (self.count - 1) / ((self.last - self.first) / 1e9)


@dataclass
class Recovery:
    """What a scan of a file without a summary kept."""
    file_bytes: int
    kept_bytes: int            # up to the end of the last complete record
    chunks: int
    messages: int
    reason: str                # why the scan stopped
    lost_chunks: int = 0       # complete records whose data was corrupt

    def __str__(self) -> str:
        lost = self.file_bytes - self.kept_bytes
        tail = (f"the last {lost:,} bytes were an incomplete record" if lost
                else "the file ends after a complete record")
        corrupt = f", {self.lost_chunks} corrupt chunks skipped" if self.lost_chunks else ""
        return (f"recovered {self.messages} messages in {self.chunks} complete chunks "
                f"({self.kept_bytes:,} of {self.file_bytes:,} bytes; {tail}{corrupt})")


@dataclass(order=True)
class _Chunk:
    start: int
    end: int
    offset: int
    length: int = field(compare=False)
    channels: frozenset = field(compare=False)
    message_index_offsets: dict = field(compare=False, default_factory=dict)


@dataclass
class RecordedMessage:
    """One message as stored: the channel's topic, log time (acqtime) and publish time (pubtime)
    in nanoseconds, and the recorded bytes (:func:`graphflow.recording.writer.message_record`)."""
    topic: str
    log_time: int
    publish_time: int
    sequence: int
    data: bytes
    channel: ChannelInfo

    @property
    def acqtime(self) -> float:
        return self.log_time / 1e9

    def decode(self):
        """The message (its node pack must be imported); raises graphflow.wire.WireError."""
        from .. import wire

        return wire.decode(record_frames(self.data))

    def fields(self) -> tuple[str, dict, dict]:
        """(type name, header, fields) without the node pack (graphflow.wire.decode_fields)."""
        from .. import wire

        return wire.decode_fields(record_frames(self.data))


class Recording:
    """An MCAP recording opened for reading (``with Recording(path) as rec: ...``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            raise RecordingInvalid(f"{path}: no such file") from None
        except OSError as exc:
            raise RecordingInvalid(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.size = os.fstat(self._file.fileno()).st_size
        if self._file.read(len(MAGIC)) != MAGIC:
            self._file.close()
            raise RecordingInvalid(f"{path}: not an MCAP file (it does not start with the MCAP magic bytes)")
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, ChannelInfo] = {}
        self.metadata: dict[str, dict] = {}
        self.attachments: dict[str, tuple[int, str]] = {}  # name → (offset, media type)
        self.recovery: Recovery | None = None
        self.profile = ""
        self._chunks: list[_Chunk] = []
        self._times: dict[int, list[tuple]] = {}  # channel id → sorted (log time, chunk, position) (recovered files)
        self._cache: OrderedDict[int, list] = OrderedDict()
        # chunks found unreadable while reading (bad CRC, bad compression): offset → why. Their
        # messages are skipped, each chunk said once (a warning), the rest read on.
        self.damaged: dict[int, str] = {}
        try:
            if not self._read_summary():
                self._recover()
        except RecordingInvalid:
            self._file.close()
            raise
        self._chunks.sort()
        self.by_topic = {c.topic: c for c in self.channels.values()}

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    # -- opening ------------------------------------------------------------------------------
    def _read_summary(self) -> bool:
        """Read the summary section; False when the file has none (cut short)."""
        try:
            self._file.seek(0)
            reader = SeekingReader(self._file)
            self.profile = reader.get_header().profile
            summary = reader.get_summary()
        except Exception:  # no footer, a cut summary, damaged bytes: the scan decides what is left
            return False
        if summary is None:
            return False
        self.schemas = dict(summary.schemas)
        counts = summary.statistics.channel_message_counts if summary.statistics else {}
        for cid, channel in summary.channels.items():
            self.channels[cid] = self._channel_info(channel, counts.get(cid, 0))
        for index in summary.chunk_indexes:
            self._chunks.append(_Chunk(index.message_start_time, index.message_end_time, index.chunk_start_offset,
                                       index.chunk_length, frozenset(index.message_index_offsets),
                                       dict(index.message_index_offsets)))
        for index in summary.attachment_indexes:
            self.attachments[index.name] = (index.offset, index.media_type)
        for index in summary.metadata_indexes:
            try:
                record = self._record_at(index.offset)
            except RecordingInvalid:  # a damaged metadata record: the messages may still be fine
                continue
            if isinstance(record, Metadata):
                self.metadata[record.name] = dict(record.metadata)
        self._channel_times_from_chunks()
        return True

    def _channel_info(self, channel: Channel, count: int = 0) -> ChannelInfo:
        schema = self.schemas.get(channel.schema_id)
        return ChannelInfo(channel.id, channel.topic, channel.message_encoding, schema.name if schema else "",
                           schema.encoding if schema else "", dict(channel.metadata), count)

    def _channel_times_from_chunks(self) -> None:
        """First and last log time per channel from the chunk indexes (no chunk is read)."""
        for chunk in self._chunks:
            for cid in chunk.channels:
                info = self.channels.get(cid)
                if info is not None:
                    info.first = chunk.start if info.first is None else min(info.first, chunk.start)
                    info.last = chunk.end if info.last is None else max(info.last, chunk.end)

    def _record_at(self, offset: int):
        try:
            self._file.seek(offset)
            return next(StreamReader(self._file, skip_magic=True, emit_chunks=True).records)
        except Exception as exc:
            raise RecordingInvalid(f"{self.path}: the record at byte {offset} is unreadable "
                                   f"({type(exc).__name__}: {exc})") from None

    def _recover(self) -> None:
        """Scan a file without a summary; keep every complete, intact chunk."""
        self._file.seek(0)
        records = StreamReader(self._file, emit_chunks=True).records
        kept = len(MAGIC)
        chunks = messages = corrupt = 0
        reason = "end of file"
        times: dict[int, list[tuple[int, int, int]]] = {}
        while True:
            start = max(self._file.tell(), len(MAGIC))
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception as exc:  # the cut: a record that ends past the end of the file
                reason = "stopped at an incomplete record" if self._file.tell() >= self.size or \
                    "EndOfFile" in type(exc).__name__ else f"stopped at an unreadable record ({type(exc).__name__})"
                break
            end = self._file.tell()
            if end > self.size:
                break
            if isinstance(record, Chunk):
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except Exception:  # a complete record with bad data: skip it, go on
                    corrupt += 1
                    kept = end
                    continue
                present = set()
                position = 0
                for item in inner:
                    if isinstance(item, Schema):
                        self.schemas[item.id] = item
                    elif isinstance(item, Channel):
                        if item.id not in self.channels:
                            self.channels[item.id] = self._channel_info(item)
                    elif isinstance(item, McapMessage):
                        present.add(item.channel_id)
                        times.setdefault(item.channel_id, []).append((item.log_time, start, position))
                        messages += 1
                    position += 1
                self._chunks.append(_Chunk(record.message_start_time, record.message_end_time, start,
                                           end - start, frozenset(present)))
                self._cache_put(start, inner)
                chunks += 1
            elif isinstance(record, Schema):
                self.schemas[record.id] = record
            elif isinstance(record, Channel):
                self.channels.setdefault(record.id, self._channel_info(record))
            elif isinstance(record, Attachment):
                self.attachments[record.name] = (start, record.media_type)
            elif isinstance(record, Metadata):
                self.metadata[record.name] = dict(record.metadata)
            elif isinstance(record, (DataEnd, Footer)):
                reason = "the file ends properly but its summary is unreadable"
            kept = end
        for cid, values in times.items():
            values.sort()
            info = self.channels.get(cid)
            if info is not None:
                info.count, info.first, info.last = len(values), values[0][0], values[-1][0]
        self._times = times
        self.recovery = Recovery(self.size, kept, chunks, messages, reason, corrupt)
        try:
            self._file.seek(0)
            self.profile = SeekingReader(self._file).get_header().profile
        except Exception:
            pass

    # -- what it holds ------------------------------------------------------------------------
    @property
    def is_graphflow(self) -> bool:
        return self.profile == FORMAT or FORMAT in self.metadata

    @property
    def message_count(self) -> int:
        return sum(c.count for c in self.channels.values())

    @property
    def start_time(self) -> int | None:
        return min((c.start for c in self._chunks), default=None)

    @property
    def end_time(self) -> int | None:
        return max((c.end for c in self._chunks), default=None)

    @property
    def duration(self) -> float:
        if self.start_time is None:
            return 0.0
        return (self.end_time - self.start_time) / 1e9

    def attachment(self, name: str) -> bytes | None:
        found = self.attachments.get(name)
        if found is None:
            return None
        record = self._record_at(found[0])
        return bytes(record.data) if isinstance(record, Attachment) else None

    def app(self) -> dict | None:
        """The composed app the recording came from (attachment ``app.json``)."""
        data = self.attachment(APP_ATTACHMENT)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise RecordingInvalid(f"{self.path}: attachment {APP_ATTACHMENT} is not valid JSON") from None

    def topics(self, pattern_filter=None) -> list[str]:
        return [c.topic for c in self.channels.values() if pattern_filter is None or pattern_filter(c.topic)]

    # -- messages -----------------------------------------------------------------------------
    def _chunk_records(self, chunk: _Chunk) -> list:
        """The chunk's records; [] for a damaged chunk (said once, kept in ``damaged``)."""
        cached = self._cache.get(chunk.offset)
        if cached is not None:
            self._cache.move_to_end(chunk.offset)
            return cached
        if chunk.offset in self.damaged:
            return []
        self._file.seek(chunk.offset + 1 + 8)
        try:
            records = breakup_chunk(Chunk.read(ReadDataStream(self._file)), validate_crc=True)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.damaged[chunk.offset] = why
            log.warning("%s: the chunk at byte %d is damaged (%s); its messages are skipped", self.path,
                        chunk.offset, why)
            return []
        self._cache_put(chunk.offset, records)
        return records

    def _cache_put(self, offset: int, records: list) -> None:
        self._cache[offset] = records
        while len(self._cache) > CHUNK_CACHE:
            self._cache.popitem(last=False)

    def messages(self, topics=None, start: int | None = None, end: int | None = None) -> Iterator[RecordedMessage]:
        """Messages of ``topics`` (all when None) with start <= log time <= end (ns), in log time
        order; equal log times keep the order they were written in (publish order)."""
        wanted = None if topics is None else {c.id for c in self.channels.values() if c.topic in set(topics)}
        chunks = [c for c in self._chunks if (wanted is None or c.channels & wanted)
                  and (start is None or c.end >= start) and (end is None or c.start <= end)]
        heap: list = []
        position = 0
        while position < len(chunks) or heap:
            # load every chunk that may hold a message earlier than the earliest one waiting
            while position < len(chunks) and (not heap or chunks[position].start <= heap[0][0]):
                chunk = chunks[position]
                for index, record in enumerate(self._chunk_records(chunk)):
                    if isinstance(record, McapMessage) and (wanted is None or record.channel_id in wanted) \
                            and (start is None or record.log_time >= start) and (end is None or record.log_time <= end):
                        heapq.heappush(heap, (record.log_time, chunk.offset, index, record))
                position += 1
            if not heap:
                continue
            _, _, _, record = heapq.heappop(heap)
            channel = self.channels.get(record.channel_id)
            if channel is None:  # its channel record was lost (a damaged file): nothing says how to read it
                continue
            yield RecordedMessage(channel.topic, record.log_time, record.publish_time, record.sequence,
                                  record.data, channel)

    def times(self, topic: str) -> list[int]:
        """Sorted log times of every message on ``topic``, from the message indexes (no chunk is
        decompressed for a finished file)."""
        return [entry[0] for entry in self.index(topic)]

    def index(self, topic: str) -> list[tuple[int, int, int]]:
        """(log time, chunk offset, position in the chunk) of every message on ``topic``, sorted:
        across topics, this order is the order the messages were written in (publish order)."""
        channel = self.by_topic[topic]
        if self._times:
            return list(self._times.get(channel.id, []))
        entries: list[tuple[int, int, int]] = []
        for chunk in self._chunks:
            offset = chunk.message_index_offsets.get(channel.id)
            if offset is None:
                continue
            record = self._record_at(offset)
            if isinstance(record, MessageIndex):
                entries.extend((time, chunk.offset, position) for time, position in record.records)
        entries.sort()
        return entries

    def message_at(self, topic: str, log_time: int) -> RecordedMessage | None:
        """The last message on ``topic`` with log time <= ``log_time`` (reads one or two chunks)."""
        channel = self.by_topic[topic]
        candidates = [c for c in self._chunks if channel.id in c.channels and c.start <= log_time]
        best = None
        for chunk in sorted(candidates, key=lambda c: c.end, reverse=True):
            if best is not None and chunk.end < best.log_time:
                break
            for record in self._chunk_records(chunk):
                if isinstance(record, McapMessage) and record.channel_id == channel.id \
                        and record.log_time <= log_time and (best is None or record.log_time >= best.log_time):
                    best = record
        if best is None:
            return None
        return RecordedMessage(topic, best.log_time, best.publish_time, best.sequence, best.data, channel)


__all__ = ["ChannelInfo", "RecordedMessage", "Recording", "RecordingInvalid", "Recovery"]
