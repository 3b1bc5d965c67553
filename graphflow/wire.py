"""The one serialized form of a message: a msgpack header with the arrays as separate buffers.

``encode(message)`` gives frames: ``frames[0]`` is a msgpack map ``{"v", "type", "schema", "uuid",
"acqtime", "pubtime", "fields"}``; every numpy (or CuPy, copied to the host here) array inside the
fields is written there as ``{"__nd__": i, "dtype": "<f4", "shape": [...]}`` and its bytes are
``frames[1 + i]``, a memoryview of the array itself (no copy). ``decode(frames)`` is the inverse;
its arrays are read-only numpy views of the given buffers (no copy either). Nested message types
are maps of their own fields (a message is flat: it never carries the headers of the messages it
was derived from); records (NamedTuples) are maps by field name. The mapping of fields to plain
values is :meth:`graphflow.messages.MessageType.to_wire` / ``from_wire``.

``pack``/``unpack`` put the frames in one contiguous blob (files, recordings):
``b"GFWB"``, a little-endian uint32 frame count, one uint64 length per frame, then the frames, each
starting at a multiple of 64 bytes (so the arrays' views are aligned).

Anything that is not such a message (truncated, foreign, corrupt, an unknown type, a different
format or schema version) raises :class:`WireError`, and nothing else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import threading
import typing
import warnings
from typing import Any, Sequence

import msgpack
import numpy as np


from .messages import Header, Message, MessageType, freeze, is_record_type, message_type_named

FORMAT_VERSION = 1
BLOB_MAGIC = b"GFWB"
_ALIGN = 64
_ARRAY_KEYS = frozenset(("__nd__", "dtype", "shape"))
_NUMBERS = (int, float)
_HEADER_KINDS = (("type", str), ("schema", str), ("uuid", str), ("acqtime", (int, float)),
                 ("pubtime", (int, float)), ("fields", dict))


class WireError(ValueError):
    """Bytes that are not a graphflow message; the text says what is wrong."""


# -- schema version ----------------------------------------------------------------------------
_SCHEMA_VERSIONS: dict[type, str] = {}


def schema_version(message_type: type[MessageType]) -> str:
    """12 hex characters of the sha256 of the type's wire schema: its wire name and, recursively,
    each field's name and type (docs and defaults do not count)."""
    version = _SCHEMA_VERSIONS.get(message_type)
    if version is None:
        text = json.dumps(_signature(message_type, ()), sort_keys=True, separators=(",", ":"))
        version = _SCHEMA_VERSIONS[message_type] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return version


def _signature(hint: Any, seen: tuple) -> Any:
    if hint is np.ndarray:
        return "ndarray"
    if isinstance(hint, type) and issubclass(hint, MessageType):
        if hint in seen:
            return hint.wire_name
        hints = typing.get_type_hints(hint)
        return {"message": hint.wire_name,
                "fields": [[f.name, _signature(hints[f.name], seen + (hint,))] for f in dataclasses.fields(hint)]}
    if is_record_type(hint):
        hints = typing.get_type_hints(hint)
        return {"record": [[name, _signature(hints.get(name, Any), seen)] for name in hint._fields]}
    args = typing.get_args(hint)
    if args:
        origin = typing.get_origin(hint)
        return [getattr(origin, "__name__", str(origin))] + [_signature(arg, seen) for arg in args]
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


# -- frames ------------------------------------------------------------------------------------
def encode(message: Message) -> list:
    """frames[0] the msgpack header, frames[1:] the arrays' bytes (memoryviews, no copy)."""
    payload = message.payload
    buffers: list = []

    def out_of_band(array: Any) -> dict:
        return _out_of_band(array, buffers, payload)

    header = message.header
    head = {"v": FORMAT_VERSION, "type": payload.wire_name, "schema": schema_version(type(payload)),
            "uuid": header.uuid, "acqtime": header.acqtime, "pubtime": header.pubtime,
            "fields": _flat_to_wire(payload, buffers)}
    if head["fields"] is None:  # not flat, or a value off the flat plan: the general walk
        buffers.clear()
        head["fields"] = payload.to_wire(out_of_band)
    try:
        packer = _PACKERS.packer
    except AttributeError:  # this thread's first message
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return [packer.pack(head)] + buffers


# One msgpack Packer per thread (a Packer is not thread-safe; making one per call, as
# msgpack.packb does, cost 0.4 µs of a small message's 3.4).
_PACKERS = threading.local()


def _out_of_band(array: Any, buffers: list, payload: Any) -> dict:
    """An array's place in the header; its bytes become the next array frame."""
    if type(array) is not np.ndarray:
        if not isinstance(array, np.ndarray):  # CuPy: the host copy is this boundary's one copy
            array = array.get()
    if array.dtype.hasobject:
        raise TypeError(f"{payload.wire_name}: an array of Python objects cannot be sent")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # (not for all: it makes a 0-d array 1-d)
    try:
        data = memoryview(array).cast("B")  # (a third of reshape(-1).view(uint8).data's time)
    except (TypeError, ValueError):  # datetimes, empty arrays: no buffer protocol cast
        data = array.reshape(-1).view(np.uint8).data
    buffers.append(data)
    return {"__nd__": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}


# A flat type (every field an array or a plain scalar: most small messages) maps its fields
# without MessageType.to_wire / from_wire's walk over the annotations: the same result, found
# once per type; any value off that plan takes the general path.
_SCALARS = (float, int, str, bool)
_FLAT: dict[type, Any] = {}


def _flat_plan(message_type: type) -> tuple | None:
    """((field name, is an array), ...) of a flat type; None for the others."""
    plan = _FLAT.get(message_type, False)
    if plan is False:
        hints = typing.get_type_hints(message_type)
        fields = [(f.name, hints[f.name]) for f in dataclasses.fields(message_type)]
        flat = all(hint is np.ndarray or hint in _SCALARS for _, hint in fields)
        plan = _FLAT[message_type] = tuple((name, hint is np.ndarray) for name, hint in fields) if flat else None
    return plan


def _flat_to_wire(payload: Any, buffers: list) -> dict | None:
    plan = _flat_plan(type(payload))
    if plan is None:
        return None
    fields = {}
    for name, is_array in plan:
        value = getattr(payload, name)
        kind = type(value)
        if kind is np.ndarray:
            fields[name] = _out_of_band(value, buffers, payload)
        elif (kind in _SCALARS or value is None) and not is_array:
            fields[name] = value
        else:  # a CuPy array, a numpy scalar, ...: the general path knows
            return None
    return fields


def _flat_from_wire(message_type: type, fields: dict):
    plan = _flat_plan(message_type)
    if plan is None:
        return None
    for name, is_array in plan:
        if name in fields and (type(fields[name]) is np.ndarray) is not is_array and fields[name] is not None:
            return None  # not what the plan expects (an inline array, ...): the general path
    return message_type(**fields)


def decode(frames: Sequence) -> Message:
    """The message that :func:`encode` made these frames from; arrays are read-only views."""
    head = _checked_head(frames)
    name, fields = head["type"], head["fields"]
    message_type = message_type_named(name)
    if message_type is None:
        raise WireError(f"unknown message type {name!r} (its pack is not imported here)")
    if head["schema"] != schema_version(message_type):
        raise WireError(f"{name}: sender's schema version {head['schema']} differs from this "
                        f"side's {schema_version(message_type)} (the declarations differ)")
    names = _field_names(message_type)
    if not fields.keys() <= names:
        raise WireError(f"{name}: fields do not match the declaration: no field {sorted(fields.keys() - names, key=str)[0]!r}")
    try:
        payload = _flat_from_wire(message_type, fields)
        if payload is None:
            payload = message_type.from_wire(fields)
            freeze(payload)
        else:
            payload._frozen = True  # a flat payload's arrays came read-only from decode_fields
    except Exception as error:  # fields that do not fit the declaration, whatever the mismatch
        raise WireError(f"{name}: fields do not match the declaration: {error}") from None
    return Message(Header(float(head["acqtime"]), float(head["pubtime"]), head["uuid"]), payload)


_FIELD_NAMES: dict[type, frozenset] = {}


def _field_names(message_type: type) -> frozenset:
    names = _FIELD_NAMES.get(message_type)
    if names is None:
        names = _FIELD_NAMES[message_type] = frozenset(f.name for f in dataclasses.fields(message_type))
    return names


_DTYPES: dict[str, np.dtype] = {}  # dtype text -> dtype, for the texts found valid (a few per app)


def _dtype(text: Any) -> np.dtype:
    dtype = _DTYPES.get(text) if type(text) is str else None
    if dtype is None:
        if not isinstance(text, str):
            raise WireError(f"bad array dtype {text!r}")
        try:
            with warnings.catch_warnings():  # a deprecated alias ('a') is foreign too, not a warning
                warnings.simplefilter("error")
                dtype = np.dtype(text)
        except Exception:
            raise WireError(f"bad array dtype {text!r}") from None
        if dtype.hasobject:
            raise WireError(f"array dtype {dtype} holds Python objects")
        if len(_DTYPES) < 1024:  # (bounded: a stream of foreign frames cannot grow it)
            _DTYPES[text] = dtype
    return dtype


def decode_fields(frames: Sequence) -> tuple[str, dict, dict]:
    """(type name, header {uuid, acqtime, pubtime, schema}, fields) without the type's pack:
    nested messages and records are plain dicts, arrays read-only numpy views."""
    head = _checked_head(frames)
    header = {"uuid": head["uuid"], "acqtime": float(head["acqtime"]), "pubtime": float(head["pubtime"]),
              "schema": head["schema"]}
    return head["type"], header, head["fields"]


def _checked_head(frames: Sequence) -> dict:
    """The header map, checked, with its arrays as read-only views of their frames."""
    if type(frames) is not list and (isinstance(frames, (bytes, bytearray, memoryview))
                                     or not isinstance(frames, Sequence)) or not frames:  # (list: the fast case)
        raise WireError("no frames: a message is a list of one header frame and its array frames")
    arrays_used: set[int] = set()
    array_frames = len(frames) - 1

    def array_from(entry: dict) -> Any:
        if entry.keys() != _ARRAY_KEYS:
            return entry
        index, shape = entry["__nd__"], entry["shape"]
        if type(index) is not int or not 0 <= index < array_frames:
            raise WireError(f"array refers to frame {index!r}; the message has {array_frames} array frames")
        dtype = _dtype(entry["dtype"])
        expected = dtype.itemsize
        if type(shape) is not list:
            raise WireError(f"bad array description: dtype {dtype!r}, shape {shape!r}")
        for n in shape:
            if type(n) is not int or n < 0:
                raise WireError(f"bad array description: dtype {dtype!r}, shape {shape!r}")
            expected *= n
        buffer = _bytes_view(frames[index + 1])
        if buffer.nbytes != expected:
            raise WireError(f"array frame {index + 1} has {buffer.nbytes} bytes; "
                            f"dtype {dtype} shape {shape} needs {expected}")
        arrays_used.add(index)
        if not expected:
            array = np.empty(shape, dtype)
        elif len(shape) == 1:
            array = np.frombuffer(buffer, dtype)
        else:
            array = np.frombuffer(buffer, dtype).reshape(shape)
        array.setflags(False)  # write=False (positional: a keyword costs more)
        return array

    try:  # (no hook without array frames: it costs a Python call per map)
        head = msgpack.unpackb(_bytes_view(frames[0]), object_hook=array_from) if array_frames \
            else msgpack.unpackb(_bytes_view(frames[0]))
    except WireError:
        raise
    except Exception as error:  # msgpack's own errors for truncated or corrupt bytes are many types
        raise WireError(f"header frame is not msgpack: {type(error).__name__}: {error}") from None
    if type(head) is not dict or "v" not in head:
        raise WireError("not a graphflow message (no format version in the header frame)")
    if head["v"] != FORMAT_VERSION:
        raise WireError(f"wire format version {head['v']!r}; this graphflow reads version {FORMAT_VERSION}")
    get = head.get
    if not (type(get("type")) is str and type(get("schema")) is str and type(get("uuid")) is str  # (fast path:
            and type(get("acqtime")) in _NUMBERS and type(get("pubtime")) in _NUMBERS  # msgpack's own types)
            and type(get("fields")) is dict):
        for key, kind in _HEADER_KINDS:
            if not isinstance(get(key), kind) or isinstance(get(key), bool):
                raise WireError(f"header field {key!r} is missing or of the wrong type")
    if len(arrays_used) != array_frames:
        raise WireError(f"{array_frames} array frames, but the header refers to {len(arrays_used)}")
    return head


def _bytes_view(frame: Any) -> memoryview:
    """A flat byte view of a frame (bytes, memoryview, zmq.Frame, numpy buffer)."""
    buffer = getattr(frame, "buffer", frame)  # zmq.Frame
    try:
        view = memoryview(buffer)
    except TypeError:
        raise WireError(f"a frame is a {type(frame).__name__}, not bytes") from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B") if view.c_contiguous else memoryview(bytes(view))
    return view


# -- JSON Schemas of the header frame (schemas/messages, `graphflow schemas`) ---------------------
SCHEMA_BASE = "https://graphflow.dev/schemas/messages/"
_ARRAY_SCHEMA = {"type": "object", "description": "A numpy array; its C-order bytes are frame 1 + __nd__.",
                 "properties": {"__nd__": {"type": "integer", "minimum": 0,
                                           "description": "index of its bytes among the array frames"},
                                "dtype": {"type": "string", "description": "numpy dtype string, e.g. '<f4'"},
                                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
                 "required": ["__nd__", "dtype", "shape"], "additionalProperties": False}
_HEADER_PROPERTIES = {
    "v": {"const": FORMAT_VERSION, "description": "wire format version"},
    "type": {"type": "string", "description": "the message type's wire name, e.g. 'vision/Image'"},
    "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$",
               "description": "schema version: 12 hex digits of the sha256 of the type's fields (wire.schema_version)"},
    "uuid": {"type": "string", "description": "random UUID of this message"},
    "acqtime": {"type": "number", "description": "acquisition time, seconds on the app clock"},
    "pubtime": {"type": "number", "description": "publication time, seconds on the app clock"},
    "fields": {"type": "object", "description": "the payload's fields; arrays as {__nd__, dtype, shape}"},
}


def header_schema() -> dict:
    """JSON Schema (draft 2020-12) of any message's header frame (``frames[0]``, msgpack)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_BASE + "header.schema.json",
            "title": "graphflow message header frame",
            "description": "frames[0] of graphflow.wire.encode: a msgpack map; frames[1:] are the arrays' bytes. "
                           "A blob (wire.pack) is b'GFWB', uint32 frame count, uint64 length per frame, then the "
                           "frames, each at a multiple of 64 bytes.",
            "type": "object", "properties": _HEADER_PROPERTIES, "required": list(_HEADER_PROPERTIES),
            "additionalProperties": False, "$defs": {"array": _ARRAY_SCHEMA}}


def frame_schema(message_type: type[MessageType]) -> dict:
    """JSON Schema of the header frame of one type's messages: the header with its type name and
    schema version fixed, and the type's fields (arrays as their ``__nd__`` references)."""
    from .messages import wire_schema

    declared = wire_schema(message_type)
    name = message_type.wire_name
    properties = dict(_HEADER_PROPERTIES, type={"const": name}, schema={"const": schema_version(message_type)},
                      fields=_array_references(declared["properties"]["payload"]))
    return {"$schema": declared["$schema"], "$id": SCHEMA_BASE + f"{name.replace('/', '.')}.schema.json",
            "title": name, "description": declared["description"], "type": "object", "properties": properties,
            "required": list(properties), "additionalProperties": False}


def _array_references(schema: Any) -> Any:
    """A payload schema with each inline array (dtype, shape, data) as the frame reference it is."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict) and {"dtype", "shape", "data"} <= properties.keys():
            return dict(_ARRAY_SCHEMA, description=schema.get("description", _ARRAY_SCHEMA["description"]))
        return {key: _array_references(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_array_references(value) for value in schema]
    return schema


# -- one blob ----------------------------------------------------------------------------------
def pack(message: Message) -> bytes:
    """The frames of :func:`encode` in one contiguous blob (one copy of the arrays)."""
    return pack_frames(encode(message))


def pack_frames(frames: Sequence) -> bytes:
    views = [memoryview(frame).cast("B") if not isinstance(frame, bytes) else frame for frame in frames]
    prefix = BLOB_MAGIC + struct.pack(f"<I{len(views)}Q", len(views), *(len(v) for v in views))
    parts, end = [prefix], len(prefix)
    for view in views:
        padding = -end % _ALIGN
        parts += [bytes(padding), view]
        end += padding + len(view)
    return b"".join(parts)  # the one copy


def unpack(data: Any) -> Message:
    """The message in a :func:`pack` blob; arrays are read-only views into ``data``."""
    return decode(unpack_frames(data))


def unpack_frames(data: Any) -> list[memoryview]:
    view = _bytes_view(data)
    if view.nbytes < 8 or bytes(view[:4]) != BLOB_MAGIC:
        raise WireError("not a graphflow message blob (no GFWB magic)")
    (count,) = struct.unpack_from("<I", view, 4)
    if count < 1 or 8 + 8 * count > view.nbytes:
        raise WireError(f"blob of {view.nbytes} bytes is truncated or corrupt ({count} frames announced)")
    lengths = struct.unpack_from(f"<{count}Q", view, 8)
    frames, end = [], 8 + 8 * count
    for length in lengths:
        start = -(-end // _ALIGN) * _ALIGN
        end = start + length
        if end > view.nbytes:
            raise WireError(f"blob of {view.nbytes} bytes is truncated: a frame ends at byte {end}")
        frames.append(view[start:end])
    if end != view.nbytes:
        raise WireError(f"blob has {view.nbytes - end} bytes after its last frame")
    return frames
