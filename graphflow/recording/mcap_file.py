"""Writing one MCAP file: the records through the ``mcap`` library, the chunks without copying.

``mcap.writer.Writer`` takes each message as one ``bytes`` and copies it into a ``BytesIO`` chunk
buffer, copies the buffer out to compress and CRC it, then into a record buffer and out again: about
five copies of every 900 kB camera frame, each a pass over memory with the GIL held in between. Here
a chunk is a list of buffers: the small record headers gathered in a ``bytearray``, each array's
bytes as the ``memoryview`` that :func:`graphflow.wire.encode` gives (messages are immutable once
published, so they can be referenced until the chunk is written). Closing a chunk passes over every
buffer once, slice by slice, while the slice is in the CPU cache: CRC (zlib-ng's), compression
(an lz4 or zstd stream compressor) and the write; all three release the GIL. A chunk that does not
shrink enough stores the next few as they are (``PAYS``): MCAP names each chunk's compression, so
no CPU goes into compressing data that does not compress. Every other record
(header, schema, channel, metadata, attachment, message index, the summary and footer) is written
with the ``mcap`` library's own record classes, and the file is read by any MCAP reader.
"""
from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (Attachment, AttachmentIndex, Channel, ChunkIndex, DataEnd, Footer, Header, MessageIndex,
                          Metadata, MetadataIndex, Schema, Statistics, SummaryOffset)
from mcap.writer import MCAP0_MAGIC
from zlib_ng.zlib_ng import crc32  # zlib's CRC-32, ~8× faster (SIMD): a fifth of the recorder's CPU before

CHUNK_BYTES = 4 << 20
# Compression settings, from measurements (benchmarks/README.md, "Recording"): zstd at level -3 (one
# of its fast levels) with long-distance matching finds the arrays that several channels re-carry
# (OpenPose's heatmaps and pafs ride on every decoder step's message): every channel of the OpenPose
# app then takes 0.49 of its size for 7 ms of CPU per frame, against 0.87 without it and 0.96 with
# lz4. Natural camera images hardly compress (zstd -3 0.90, lz4 -4 0.92) for ~1 ms per frame.
ZSTD_LEVEL = -3
ZSTD_WINDOW_LOG = 22     # 4 MiB: a chunk; decoders accept windows up to 8 MiB by default
LZ4_LEVEL = -4           # lz4's acceleration 4: 1.4× its default speed, files 2% larger
# A chunk that compression shrinks by less than this is a sign that the data does not compress
# (camera images): the next 1, 2, 4, 8, 16 chunks are then stored as they are, and compression tried again
PAYS = 0.8
MAX_SKIP = 16
COMPRESSIONS = ("lz4", "zstd", "none")
_SLICE = 256 << 10       # bytes per pass (CRC, compress, write) while they are in the CPU cache
_SMALL = 16 << 10        # buffers up to this size are gathered (copied) into one bytearray
_MESSAGE = struct.Struct("<BQHIQQ")  # opcode, record length, channel id, sequence, log time, publish time
_MESSAGE_FIXED = 22      # the message record's fields before its data
_BIN8, _BIN16, _BIN32 = struct.Struct(">BB"), struct.Struct(">BH"), struct.Struct(">BI")


def msgpack_array_header(length: int) -> bytes:
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return _BIN16.pack(0xDC, length)
    return _BIN32.pack(0xDD, length)


def msgpack_bin_header(length: int) -> bytes:
    if length < 1 << 8:
        return _BIN8.pack(0xC4, length)
    if length < 1 << 16:
        return _BIN16.pack(0xC5, length)
    return _BIN32.pack(0xC6, length)


class _Compressor:
    """One chunk's compression stream: ``begin(size)``, ``compress(buffer)`` per slice, ``end()``."""

    def __init__(self, compression: str):
        self.name = "" if compression == "none" else compression
        self._lz4 = self._zstd = None
        if compression == "lz4":
            import lz4.frame

            self._lz4 = lz4.frame
        elif compression == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL, enable_ldm=True, window_log=ZSTD_WINDOW_LOG))

    def stream(self, size: int):
        if self._lz4 is not None:
            compressor = self._lz4.LZ4FrameCompressor(compression_level=LZ4_LEVEL)
            return compressor.begin(source_size=size), compressor.compress, compressor.flush
        if self._zstd is not None:
            compressor = self._zstd.compressobj(size=size)
            return b"", compressor.compress, compressor.flush
        return None


class McapFile:
    """One MCAP file: schemas and channels registered on first use, messages added as buffers
    (:meth:`add_message`), chunked; :meth:`flush` closes the chunk in progress and hands the file's
    bytes to the OS (a reader recovers every complete chunk of a file that ends without its summary)."""

    def __init__(self, path: Path, *, profile: str, library: str, metadata: dict[str, dict[str, str]] | None = None,
                 attachments: dict[str, tuple[str, bytes]] | None = None, compression: str = "lz4",
                 chunk_bytes: int = CHUNK_BYTES):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r}: expected one of {COMPRESSIONS}")
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        self._compressor = _Compressor(compression)
        self._skip = self._skipped = 0  # chunks to store uncompressed, and how many the last time
        self.stream = open(self.path, "wb", buffering=1 << 16)
        self._offset = 0  # bytes written (a tell() per chunk was a system call each)
        self.finished = False
        self.schemas: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        self._schemas: list[Schema] = []
        self._channels: list[Channel] = []
        self._chunk_indexes: list[ChunkIndex] = []
        self._metadata_indexes: list[MetadataIndex] = []
        self._attachment_indexes: list[AttachmentIndex] = []
        self._counts: dict[int, int] = defaultdict(int)
        self._messages = 0
        self._start = self._end = 0
        self._chunk_count = 0
        self._new_chunk()
        try:
            self._put(MCAP0_MAGIC)
            records = RecordBuilder()
            Header(profile, library).write(records)
            self._put(records.end())
            for name, values in (metadata or {}).items():
                offset = self._offset
                Metadata(name=name, metadata=values).write(records)
                data = records.end()
                self._metadata_indexes.append(MetadataIndex(offset=offset, length=len(data), name=name))
                self._put(data)
            for name, (media_type, content) in (attachments or {}).items():
                offset = self._offset
                Attachment(create_time=0, log_time=0, name=name, media_type=media_type, data=content).write(records)
                data = records.end()
                self._attachment_indexes.append(AttachmentIndex(
                    offset=offset, length=len(data), create_time=0, log_time=0, data_size=len(content), name=name,
                    media_type=media_type))
                self._put(data)
        except BaseException:
            self.stream.close()
            raise

    # -- schemas and channels: records in the chunk that holds their first message ------------------
    def schema_id(self, name: str, schema: bytes, encoding: str) -> int:
        found = self.schemas.get(name)
        if found is None:
            found = self.schemas[name] = len(self._schemas) + 1
            record = Schema(id=found, name=name, encoding=encoding, data=schema)
            self._schemas.append(record)
            self._add_record(record)
        return found

    def channel_id(self, topic: str, schema_name: str, schema: bytes, schema_encoding: str, message_encoding: str,
                   metadata: dict[str, str]) -> int:
        found = self.channels.get(topic)
        if found is None:
            schema_id = self.schema_id(schema_name, schema, schema_encoding)
            found = self.channels[topic] = len(self._channels) + 1
            record = Channel(id=found, topic=topic, message_encoding=message_encoding, schema_id=schema_id,
                             metadata=metadata)
            self._channels.append(record)
            self._add_record(record)
        return found

    def _add_record(self, record) -> None:
        builder = RecordBuilder()
        record.write(builder)
        self._gather(builder.end())

    # -- messages ------------------------------------------------------------------------------------
    def add_message(self, channel_id: int, log_time: int, publish_time: int, sequence: int, data: list,
                    size: int) -> None:
        """A message whose data is the concatenation of the buffers ``data`` (``size`` bytes); they
        are referenced, not copied, until the chunk is written: they must not change."""
        if self._chunk_messages == 0:
            self._chunk_start = self._chunk_end = log_time
        else:
            self._chunk_start = min(self._chunk_start, log_time)
            self._chunk_end = max(self._chunk_end, log_time)
        if self._messages == 0:
            self._start = self._end = log_time
        else:
            self._start = min(self._start, log_time)
            self._end = max(self._end, log_time)
        self._messages += 1
        self._counts[channel_id] += 1
        self._chunk_messages += 1
        index = self._index.get(channel_id)
        if index is None:
            index = self._index[channel_id] = []
        index.append((log_time, self._chunk_size))
        self._gather(_MESSAGE.pack(Opcode.MESSAGE, _MESSAGE_FIXED + size, channel_id, sequence, log_time,
                                   publish_time))
        for buffer in data:
            self._gather(buffer)
        if self._chunk_size >= self.chunk_bytes:
            self._write_chunk()

    def _gather(self, buffer) -> None:
        if isinstance(buffer, memoryview) and (buffer.ndim != 1 or buffer.itemsize != 1):
            buffer = buffer.cast("B")
        size = len(buffer)
        if size > _SMALL:
            if self._small:
                self._pieces.append(self._small)
                self._small = bytearray()
            self._pieces.append(buffer)
        else:
            self._small += buffer
        self._chunk_size += size

    def _new_chunk(self) -> None:
        self._pieces: list = []
        self._small = bytearray()
        self._chunk_size = 0
        self._chunk_messages = 0
        self._chunk_start = self._chunk_end = 0
        self._index: dict[int, list[tuple[int, int]]] = {}

    def _write_chunk(self) -> None:
        """The chunk in progress as one Chunk record and its message indexes (nothing when it has no
        message yet: its schema and channel records wait for the next)."""
        if self._chunk_messages == 0:
            return
        if self._small:
            self._pieces.append(self._small)
        slices = [piece[at:at + _SLICE] for piece in map(memoryview, self._pieces)
                  for at in range(0, len(piece), _SLICE)]
        size = self._chunk_size
        start = self._offset
        compressing = None
        if self._skip:
            self._skip -= 1
        else:
            compressing = self._compressor.stream(size)
        if compressing is None:  # uncompressed: the CRC first (it is in the record's head), then the write
            name = b""
            crc = 0
            for part in slices:
                crc = crc32(part, crc)
            out, out_size = slices, size
        else:
            name = self._compressor.name.encode()
            head, compress, end = compressing
            crc = 0
            out = [head] if head else []
            for part in slices:
                crc = crc32(part, crc)
                packed = compress(part)
                if packed:
                    out.append(packed)
            out.append(end())
            out_size = sum(len(part) for part in out)
            if out_size > PAYS * size:  # it does not pay: store the next chunks as they are, then try again
                self._skip = self._skipped = min(max(1, 2 * self._skipped), MAX_SKIP)
            else:
                self._skipped = 0
        self._put(struct.pack("<BQQQQI", Opcode.CHUNK, 8 + 8 + 8 + 4 + 4 + len(name) + 8 + out_size,
                                 self._chunk_start, self._chunk_end, size, crc)
                     + struct.pack("<I", len(name)) + name + struct.pack("<Q", out_size))
        for part in out:
            self._put(part)
        chunk_end = self._offset
        records = RecordBuilder()
        offsets = {}
        for channel_id, entries in self._index.items():
            offsets[channel_id] = chunk_end + records.count
            MessageIndex(channel_id=channel_id, records=entries).write(records)
        indexes = records.end()
        self._put(indexes)
        self._chunk_indexes.append(ChunkIndex(
            message_start_time=self._chunk_start, message_end_time=self._chunk_end, chunk_start_offset=start,
            chunk_length=chunk_end - start, message_index_offsets=offsets, message_index_length=len(indexes),
            compression=name.decode(), compressed_size=out_size, uncompressed_size=size))
        self._chunk_count += 1
        self._new_chunk()

    # -- the file ------------------------------------------------------------------------------------
    def _put(self, data) -> None:
        self.stream.write(data)
        self._offset += len(data)

    def size(self) -> int:
        return self._offset + self._chunk_size

    def flush(self) -> None:
        """Write the chunk in progress and hand everything to the OS (not fsync)."""
        self._write_chunk()
        self.stream.flush()

    def finish(self) -> None:
        """The last chunk, then the summary (schemas, channels, statistics, indexes) and the footer."""
        if self.finished:
            return
        self.finished = True
        try:
            self._write_chunk()
            records = RecordBuilder()
            DataEnd(0).write(records)
            self._put(records.end())
            self._write_summary()
        finally:
            self.stream.close()

    def _write_summary(self) -> None:
        summary_start = self._offset
        summary = RecordBuilder()
        offsets: list[SummaryOffset] = []

        def group(opcode: Opcode, records) -> None:
            begin = summary.count
            for record in records:
                record.write(summary)
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + begin,
                                         group_length=summary.count - begin))

        group(Opcode.SCHEMA, self._schemas)
        group(Opcode.CHANNEL, self._channels)
        group(Opcode.STATISTICS, [Statistics(
            message_count=self._messages, schema_count=len(self._schemas), channel_count=len(self._channels),
            attachment_count=len(self._attachment_indexes), metadata_count=len(self._metadata_indexes),
            chunk_count=self._chunk_count, message_start_time=self._start, message_end_time=self._end,
            channel_message_counts=dict(self._counts))])
        group(Opcode.CHUNK_INDEX, self._chunk_indexes)
        group(Opcode.ATTACHMENT_INDEX, self._attachment_indexes)
        group(Opcode.METADATA_INDEX, self._metadata_indexes)
        summary_offset_start = summary_start + summary.count
        for offset in offsets:
            offset.write(summary)
        data = summary.end()
        crc = crc32(data)
        crc = crc32(struct.pack("<BQQQ", Opcode.FOOTER, 8 + 8 + 4, summary_start, summary_offset_start), crc)
        self._put(data)
        records = RecordBuilder()
        Footer(summary_start=summary_start, summary_offset_start=summary_offset_start, summary_crc=crc).write(records)
        self._put(records.end())
        self._put(MCAP0_MAGIC)

    def abandon(self) -> None:
        """After a write error: close without the summary (a reader recovers what was written)."""
        self.finished = True
        try:
            self.stream.close()
        except OSError:
            pass
