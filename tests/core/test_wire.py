"""graphflow.wire: every message type of the repo's packs round-trips, arrays come back as read-only
views of the frames, and bytes that are not a message raise WireError and nothing else."""
from __future__ import annotations

import dataclasses
import importlib
import struct
import typing
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphflow import MessageType, field, wire
from graphflow.messages import Header, Message
from graphflow.messages import is_record_type
from graphflow.wire import WireError

REPO = Path(__file__).resolve().parents[2]
PACK_MODULES = [importlib.import_module(f"graphflow.packs.{path.parent.name}.messages")
                for path in sorted(REPO.glob("nodes/*/messages.py"))]
PACK_TYPES = [value for module in PACK_MODULES for value in vars(module).values()
              if isinstance(value, type) and issubclass(value, MessageType) and value.__module__ == module.__name__]

_DTYPES = [np.uint8, np.int32, np.int64, np.float32, np.float64, np.bool_, np.uint16]


def example(hint: Any, rng: np.random.Generator, fill_optional: bool, depth: int = 0) -> Any:
    """A value of the declared type, built from the annotation alone (random arrays of several
    dtypes and shapes, nested payloads and records filled recursively)."""
    if hint is np.ndarray:
        dtype = _DTYPES[rng.integers(len(_DTYPES))]
        shape = tuple(int(n) for n in rng.integers(0, 5, size=rng.integers(0, 4)))
        return np.asarray(rng.random(shape) * 100).astype(dtype)
    if isinstance(hint, type) and issubclass(hint, MessageType):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: example(hints[f.name], rng, fill_optional, depth + 1) for f in dataclasses.fields(hint)})
    if is_record_type(hint):
        hints = typing.get_type_hints(hint)
        return hint(*(example(hints.get(name, Any), rng, fill_optional, depth + 1) for name in hint._fields))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        inner = [arg for arg in args if arg is not type(None)][0]
        return example(inner, rng, fill_optional, depth) if fill_optional else None
    if origin is list:
        return [example(args[0], rng, fill_optional, depth + 1) for _ in range(int(rng.integers(0, 3)) + 1)]
    if origin is dict:
        return {"k": example(args[1], rng, fill_optional, depth + 1)}
    simple = {float: lambda: float(rng.normal()), int: lambda: int(rng.integers(-1000, 1000)),
              str: lambda: "s" + str(rng.integers(100)) + "é", bool: lambda: bool(rng.integers(2))}
    if hint in simple:
        return simple[hint]()
    if hint is Any:
        return "any"
    raise AssertionError(f"test does not know how to build {hint!r}")


def assert_same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, MessageType):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, tuple) and hasattr(a, "_fields"):
        assert type(a) is type(b), path
        for name in a._fields:
            assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def arrays_in(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, MessageType):
        return [a for f in dataclasses.fields(value) for a in arrays_in(getattr(value, f.name))]
    if isinstance(value, (list, tuple)):
        return [a for item in value for a in arrays_in(item)]
    if isinstance(value, dict):
        return [a for item in value.values() for a in arrays_in(item)]
    return []


def test_the_packs_declare_the_types_this_test_covers():
    names = {t.wire_name for t in PACK_TYPES}
    assert {"demo/Number", "vision/Image", "vision/Tensors", "openpose/PoseMaps", "openpose/EdgeList",
            "openpose/SkeletonCandidates"} <= names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fill_optional", [True, False], ids=["optional-filled", "optional-none"])
@pytest.mark.parametrize("message_type", PACK_TYPES, ids=lambda t: t.wire_name)
def test_every_pack_type_round_trips_with_zero_copy_read_only_arrays(message_type, fill_optional):
    rng = np.random.default_rng(abs(hash(message_type.wire_name)) % 2**32)
    payload = example(message_type, rng, fill_optional)
    message = Message(Header(12.5, 13.25), payload)
    frames = wire.encode(message)
    decoded = wire.decode(frames)
    assert_same(payload, decoded.payload)
    assert (decoded.uuid, decoded.acqtime, decoded.pubtime) == (message.uuid, 12.5, 13.25)
    frame_arrays = [np.frombuffer(frame, np.uint8) for frame in frames[1:]]
    sent = [a for a in arrays_in(payload) if a.size]
    for array in arrays_in(decoded.payload):
        assert not array.flags.writeable
        if array.size:  # a view of one of the frames, which are views of the sent arrays
            assert any(np.shares_memory(array, frame) for frame in frame_arrays)
            assert any(np.shares_memory(array, original) for original in sent)
    # one contiguous blob: a copy of the arrays, then views into the blob
    blob = wire.pack(message)
    unpacked = wire.unpack(blob)
    assert_same(payload, unpacked.payload)
    blob_array = np.frombuffer(blob, np.uint8)
    for array in arrays_in(unpacked.payload):
        if array.size:
            assert np.shares_memory(array, blob_array) and not array.flags.writeable


class _Track(NamedTuple):
    ids: np.ndarray
    boxes: np.ndarray
    velocity: np.ndarray | None = None


class _Inner(MessageType, wire="test_wire/Inner"):
    values: np.ndarray = field(doc="")
    name: str = field("")


class _Outer(MessageType, wire="test_wire/Outer"):
    inner: _Inner = field(doc="")
    track: _Track = field(doc="")
    loose: list = field(default_factory=list)
    table: dict = field(default_factory=dict)
    maybe: _Inner | None = field(None)


def test_nested_payloads_records_and_loose_containers_on_the_wire():
    inner = _Inner(np.arange(5, dtype=np.int16), "in")
    payload = _Outer(inner, _Track(np.arange(3, dtype=np.int32), np.zeros((3, 4), np.float32)),
                     [np.ones(2), 3, "x", [np.eye(2)]], {"a": np.zeros(1, np.uint8), "n": 1.5})
    message = Message(Header(1.0, 2.0), payload)
    frames = wire.encode(message)
    head = msgpack.unpackb(frames[0])
    # flat: a nested payload is a map of its fields, with no header of its own; records by name
    assert head["fields"]["inner"] == {"values": {"__nd__": 0, "dtype": "<i2", "shape": [5]}, "name": "in"}
    assert set(head["fields"]["track"]) == {"ids", "boxes", "velocity"} and head["fields"]["track"]["velocity"] is None
    assert (head["v"], head["type"], head["acqtime"], head["pubtime"]) == (1, "test_wire/Outer", 1.0, 2.0)
    assert len(frames) == 1 + 6 and bytes(frames[1]) == inner.values.tobytes()
    back = wire.decode(frames).payload
    assert_same(payload, back)
    assert back.maybe is None and back.track.velocity is None
    name, header, fields = wire.decode_fields(frames)  # without the classes: plain maps, arrays
    assert name == "test_wire/Outer" and header["uuid"] == message.uuid
    assert fields["track"]["boxes"].shape == (3, 4) and not fields["track"]["boxes"].flags.writeable


def test_non_contiguous_and_cupy_like_arrays_are_sent_contiguous():
    class FakeDeviceArray:  # what encode sees of a CuPy array: __cuda_array_interface__ and .get()
        __cuda_array_interface__ = {}

        def get(self):
            return np.arange(6, dtype=np.float32).reshape(2, 3)

    payload = _Inner(np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2])
    back = wire.decode(wire.encode(Message(Header(0, 0), payload))).payload
    np.testing.assert_array_equal(back.values, [[0, 2], [4, 6], [8, 10]])
    device = _Inner(FakeDeviceArray())
    back = wire.decode(wire.encode(Message(Header(0, 0), device))).payload
    np.testing.assert_array_equal(back.values, np.arange(6).reshape(2, 3))
    # a device array after a host one: the flat fast path gives up half-way, the general walk
    # starts again (the host array's frame was left behind once: one frame too many)
    mixed = _TwoArrays(np.arange(3, dtype=np.int16), FakeDeviceArray())
    frames = wire.encode(Message(Header(0, 0), mixed))
    assert len(frames) == 3
    back = wire.decode(frames).payload
    np.testing.assert_array_equal(back.host, [0, 1, 2])
    np.testing.assert_array_equal(back.device, np.arange(6).reshape(2, 3))


class _TwoArrays(MessageType, wire="test_wire/TwoArrays"):
    host: np.ndarray = field(doc="on the host")
    device: np.ndarray = field(doc="on a GPU")


def test_schema_version_follows_names_and_types_not_docs():
    def declare(annotation: str, doc: str, wire_name: str):
        namespace: dict = {}
        source = f"class T(MessageType, wire={wire_name!r}):\n    value: {annotation} = field(doc={doc!r})\n"
        exec(compile(source, "<declaration>", "exec", dont_inherit=True), {"MessageType": MessageType, "field": field, "np": np}, namespace)
        return namespace["T"]

    first = wire.schema_version(declare("float", "one", "test_wire/S1"))
    assert len(first) == 12 and int(first, 16) >= 0
    assert wire.schema_version(declare("float", "other doc", "test_wire/S1")) == first
    assert wire.schema_version(declare("int", "one", "test_wire/S1")) != first
    assert wire.schema_version(declare("np.ndarray", "one", "test_wire/S1")) != first
    assert wire.schema_version(declare("float", "one", "test_wire/S2")) != first


def _frames_with(changes: dict) -> list:
    frames = wire.encode(Message(Header(1.0, 1.0), _Inner(np.arange(4, dtype=np.float32), "n")))
    head = msgpack.unpackb(frames[0])
    head.update(changes)
    return [msgpack.packb(head)] + frames[1:]


@pytest.mark.parametrize("frames, says", [
    ([], "no frames"),
    (b"raw bytes", "no frames"),
    ([b""], "not msgpack"),
    ([b"\x92\x01\x02"], "not a graphflow message"),
    ([msgpack.packb({"hello": 1})], "not a graphflow message"),
    (_frames_with({"v": 2}), "version 2"),
    (_frames_with({"type": "nowhere/Nothing"}), "unknown message type 'nowhere/Nothing'"),
    (_frames_with({"schema": "000000000000"}), "schema version 000000000000"),
    (_frames_with({"acqtime": "soon"}), "'acqtime'"),
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "<f4", "shape": [4]}, "surplus": 1}}),
     "do not match the declaration"),
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "<f4", "shape": [4]}, b"raw": 1, "text": 2}}),
     "no field b'raw'"),  # (keys of two kinds: named without sorting bytes against str)
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "<f4", "shape": [5]}}}), "needs 20"),
    (_frames_with({"fields": {"values": {"__nd__": 3, "dtype": "<f4", "shape": [4]}}}), "frame 3"),
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "|O", "shape": [2]}}}), "Python objects"),
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "<q9", "shape": [2]}}}), "bad array dtype"),
    (_frames_with({"fields": {"values": {"__nd__": 0, "dtype": "a", "shape": [16]}}}), "bad array dtype"),
    (_frames_with({}) + [b"extra"], "2 array frames"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_is_not_a_message_says_what_is_wrong(frames, says):
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(WireError, match=says.replace("(", r"\(")):
            wire.decode(frames)
    assert not warned  # one error, no warning on the way ('a' is a deprecated dtype alias)


def test_a_blob_that_is_not_one_says_so():
    blob = wire.pack(Message(Header(1.0, 1.0), _Inner(np.arange(4, dtype=np.float32))))
    assert wire.unpack(blob).payload.values.tolist() == [0, 1, 2, 3]
    for bad, says in [(b"", "no GFWB"), (b"PK\x03\x04" + blob[4:], "no GFWB"), (blob[:-1], "truncated"),
                      (blob + b"\0", "after its last frame"), (blob[:4] + struct.pack("<I", 10**6) + blob[8:], "truncated")]:
        with pytest.raises(WireError, match=says):
            wire.unpack(bad)


# -- fuzz: random bytes and damaged real frames raise WireError, never anything else -----------------
_REAL = [wire.encode(Message(Header(1.0, 2.0), p)) for p in (
    _Outer(_Inner(np.arange(5, dtype=np.int16), "in"), _Track(np.arange(3, dtype=np.int32), np.zeros((3, 4), np.float32)),
           [np.ones(2), 3, "x"], {"a": np.zeros(1, np.uint8)}, _Inner(np.ones((2, 2)))),
    example(PACK_TYPES[[t.wire_name for t in PACK_TYPES].index("openpose/SkeletonCandidates")],
            np.random.default_rng(1), True),
    example(PACK_TYPES[[t.wire_name for t in PACK_TYPES].index("vision/Tensors")], np.random.default_rng(2), True),
)]
_REAL = [[bytes(f) for f in frames] for frames in _REAL]


def _decodes_or_wire_error(frames) -> None:
    try:
        message = wire.decode(frames)
    except WireError:
        return
    assert isinstance(message, Message) and isinstance(message.payload, MessageType)


@pytest.mark.timeout(300)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_random_frames_raise_only_wire_error(frames):
    _decodes_or_wire_error(frames)


@pytest.mark.timeout(300)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_real_frames_raise_only_wire_error(data):
    frames = list(data.draw(st.sampled_from(_REAL)))
    which = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[which])
    damage = data.draw(st.sampled_from(["flip", "flips", "truncate", "drop", "append", "splice"]))
    if damage == "flip" and frame:
        bit = data.draw(st.integers(0, len(frame) * 8 - 1))
        frame[bit // 8] ^= 1 << (bit % 8)
    elif damage == "flips" and frame:
        for bit in data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=2, max_size=16)):
            frame[bit // 8] ^= 1 << (bit % 8)
    elif damage == "truncate":
        del frame[data.draw(st.integers(0, max(len(frame) - 1, 0))):]
    elif damage == "splice":
        at = data.draw(st.integers(0, len(frame)))
        frame[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    frames[which] = bytes(frame)
    if damage == "drop":
        del frames[which]
    elif damage == "append":
        frames.append(data.draw(st.binary(max_size=40)))
    _decodes_or_wire_error(frames)


@pytest.mark.timeout(300)
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_blobs_raise_only_wire_error(data):
    blob = bytearray(wire.pack_frames(data.draw(st.sampled_from(_REAL))))
    for bit in data.draw(st.lists(st.integers(0, len(blob) * 8 - 1), min_size=1, max_size=4)):
        blob[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(1, len(blob)))
    try:
        message = wire.unpack(bytes(blob[:cut]))
    except WireError:
        return
    assert isinstance(message, Message)


# -- the JSON Schemas of the header frame (schemas/messages) ------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fill_optional", [True, False], ids=["optional-filled", "optional-none"])
@pytest.mark.parametrize("message_type", PACK_TYPES, ids=lambda t: t.wire_name)
def test_every_pack_types_header_frame_matches_its_schema_and_the_common_one(message_type, fill_optional):
    import jsonschema

    rng = np.random.default_rng(abs(hash(message_type.wire_name)) % 2**32)
    head = msgpack.unpackb(wire.encode(Message(Header(1.5, 2.5), example(message_type, rng, fill_optional)))[0])
    jsonschema.Draft202012Validator(wire.frame_schema(message_type)).validate(head)
    jsonschema.Draft202012Validator(wire.header_schema()).validate(head)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("change", ["no schema", "other type", "array without __nd__", "unknown field", "old form"])
def test_a_header_frame_that_is_not_the_wire_form_does_not_match_the_schema(change):
    import jsonschema
    from graphflow.packs.vision.messages import Image

    head = msgpack.unpackb(wire.encode(Message(Header(0, 0), Image(np.zeros((2, 3, 3), np.uint8))))[0])
    if change == "no schema":
        del head["schema"]
    elif change == "other type":
        head["type"] = "demo/Number"
    elif change == "array without __nd__":
        del head["fields"]["pixels"]["__nd__"]
    elif change == "unknown field":
        head["fields"]["colour"] = "bgr"
    else:  # what the schemas described before: {type, header, payload} with arrays inline
        head = {"type": "vision/Image", "header": {"uuid": "u", "acqtime": 0, "pubtime": 0},
                "payload": {"pixels": {"dtype": "|u1", "shape": [2, 3, 3], "data": bytes(18)}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(wire.frame_schema(Image)).validate(head)
