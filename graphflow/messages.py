"""Messages: a header (uuid, acqtime, pubtime) plus a typed payload.

A message type is declared once, as a subclass of :class:`MessageType` with annotated fields.
A field may be an array, a number or string, a list or dict, another message type, or a record
(a ``typing.NamedTuple``, e.g. the result of a plain function the node wraps: the node then
publishes that result as it is, with no copy into fields of its own).
The class is turned into a dataclass, registered under its wire name, and its wire form
(:mod:`graphflow.wire`, the viewer, other processes) is derived from the annotations; the JSON
Schemas in ``schemas/messages/`` are generated from the same declarations (``graphflow schemas``).

Inside one process a message is passed by reference: publishing freezes the payload (every numpy
array read-only) before receivers see it.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import types
import typing
from typing import Any, ClassVar

import numpy as np

_PROCESS_ID = int.from_bytes(os.urandom(8), "big")  # random per process; a counter below it
_SEQUENCE = itertools.count()
# The uuid's first 64 bits never change in a process: formatted once, with the version-4 nibble.
_HIGH = f"{(_PROCESS_ID & ~0xF000) | 0x4000:016x}"
_HIGH_TEXT = f"{_HIGH[:8]}-{_HIGH[8:12]}-{_HIGH[12:]}-"
_VARIANT_MASK = (1 << 62) - 1  # the low word's top two bits are the RFC 4122 variant, 0b10
_VARIANT = 1 << 63


def _uuid_text(sequence: int) -> str:
    """str(uuid.UUID(int=(_PROCESS_ID << 64) | sequence, version=4)), in a fifth of its time."""
    low = f"{(sequence & _VARIANT_MASK) | _VARIANT:016x}"
    return f"{_HIGH_TEXT}{low[:4]}-{low[4:]}"


class Header:
    """uuid (a version-4 UUID: 64 random bits per process + a 64-bit message counter, formatted
    on demand, or the sender's when the message came over the wire), acqtime (when the data was
    acquired, seconds on the app clock) and pubtime (when it was published)."""

    __slots__ = ("_sequence", "_uuid", "acqtime", "pubtime")

    def __init__(self, acqtime: float, pubtime: float, uuid: str | None = None):
        self._sequence: int = next(_SEQUENCE)
        self._uuid = uuid
        self.acqtime: float = acqtime
        self.pubtime: float = pubtime

    @property
    def uuid(self) -> str:
        if self._uuid is None:
            self._uuid = _uuid_text(self._sequence)
        return self._uuid



class Message:
    """What a receiver reads: ``msg.payload`` (a MessageType) and ``msg.header``."""

    __slots__ = ("header", "payload")

    def __init__(self, header: Header, payload: Any):
        self.header: Header = header
        self.payload: Any = payload

    @property
    def acqtime(self) -> float:
        return self.header.acqtime

    @property
    def pubtime(self) -> float:
        return self.header.pubtime

    @property
    def uuid(self) -> str:
        return self.header.uuid

    def __repr__(self) -> str:
        return f"Message({type(self.payload).__name__}, acqtime={self.acqtime:.6f})"


_REGISTRY: dict[str, type["MessageType"]] = {}


class MessageType:
    """Base class of every payload type.

    Subclasses declare fields with annotations; ``wire`` names the type on the wire
    (``"pack/Name"``), ``render`` tells viewers how to draw it (``"image"``, ``"skeleton2"``,
    or None for the generic inspector)::

        class Peaks(MessageType, wire="openpose/Peaks"):
            score: np.ndarray = field(doc="Peak confidence, shape [K].")
    """

    wire_name: ClassVar[str]
    render: ClassVar[str | None] = None
    _frozen: ClassVar[bool] = False  # set on the instance by its first publish (freeze)

    def __init_subclass__(cls, wire: str | None = None, render: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        cls.wire_name = wire or f"{cls.__module__}.{cls.__qualname__}"
        if render is not None:
            cls.render = render
        previous = _REGISTRY.get(cls.wire_name)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise TypeError(f"message wire name {cls.wire_name!r} is used by {previous} and {cls}")
        _REGISTRY[cls.wire_name] = cls

    def freeze(self) -> None:
        """Make the payload's arrays read-only: receivers share them by reference.

        A payload is frozen once: a later step that nests it (by reference) skips it."""
        freeze(self)

    # -- wire form ---------------------------------------------------------------------------
    def to_wire(self, array: Any = None) -> dict:
        """The fields as plain values (maps, lists, numbers, strings). ``array`` maps each array
        to its wire form (:mod:`graphflow.wire` passes one that sends it out of band); without
        it an array becomes ``{"dtype", "shape", "data"}`` with its bytes inline."""
        return {f.name: _to_wire(getattr(self, f.name), array) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, data: dict) -> "MessageType":
        """Inverse of :meth:`to_wire`; arrays may come inline or already decoded (numpy)."""
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _from_wire(data[f.name], hints[f.name])
        return cls(**kwargs)

    @classmethod
    def describe(cls) -> dict:
        """Fields with their wire type and doc, for ``graphflow nodes`` and the viewer."""
        hints = typing.get_type_hints(cls)
        return {
            "wire": cls.wire_name,
            "doc": (cls.__doc__ or "").strip(),
            "render": cls.render,
            "fields": {f.name: {"type": _type_name(hints[f.name]), "doc": f.metadata.get("doc", "")}
                       for f in dataclasses.fields(cls)},
        }


def field(default: Any = dataclasses.MISSING, *, doc: str = "", default_factory: Any = dataclasses.MISSING):
    """A documented payload field."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"doc": doc})


def message_types() -> dict[str, type[MessageType]]:
    return dict(_REGISTRY)


def message_type_named(wire_name: str) -> type[MessageType] | None:
    """The type registered under ``wire_name`` (None if no imported pack declares it)."""
    return _REGISTRY.get(wire_name)


def is_record_type(hint: Any) -> bool:
    """A ``typing.NamedTuple`` class: a field kind whose wire form is a map by field name."""
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def is_record(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


# -- freeze ----------------------------------------------------------------------------------
# How freeze treats a field (messages.freeze_plan picks one per field from its annotation).
ARRAY_OR_ANY = 0  # an array, or a loosely typed value: looked at when frozen
PAYLOAD = 1       # a nested payload: frozen by its own plan, once
RECORD = 2        # a NamedTuple (or other tuple) of arrays

# Per payload class: (field name, kind) for each field that may hold arrays. Worked out once per
# class from its annotations, on its first freeze.
_PLANS: dict[type, list[tuple[str, int]]] = {}
_NDARRAY = np.ndarray


def freeze(payload: Any) -> None:
    """Make a payload's arrays read-only (nested payloads, records, lists and dicts included).

    A payload is frozen once: a later payload that nests it by reference skips it. (The mark is
    an attribute, not a key put in ``__dict__``: reading ``__dict__`` would build the dict that
    Python otherwise keeps inline, on every publish.)"""
    if payload._frozen:
        return
    payload._frozen = True
    cls = type(payload)
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = freeze_plan(cls)
    for name, kind in plan:
        value = getattr(payload, name)
        if value is None:
            continue
        if kind == PAYLOAD:
            freeze(value)
        elif type(value) is _NDARRAY:
            value.setflags(False)  # write=False; a keyword costs 2.5× (measured)
        elif kind == RECORD:
            for item in value:
                if type(item) is _NDARRAY:
                    item.setflags(False)
                elif item is not None:
                    _freeze_value(item)
        else:
            _freeze_value(value)


def _freeze_value(value: Any) -> None:
    """A field typed loosely (list, dict, Any): look at what it holds."""
    if isinstance(value, np.ndarray):
        value.setflags(False)
    elif isinstance(value, MessageType):
        freeze(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _freeze_value(item)
    elif isinstance(value, dict):
        for item in value.values():
            _freeze_value(item)


# -- helpers ---------------------------------------------------------------------------------
def freeze_plan(cls: type[MessageType]) -> list[tuple[str, int]]:
    """For :func:`freeze`: the fields of ``cls`` that may hold arrays, each
    with how to freeze it (PAYLOAD, RECORD or ARRAY_OR_ANY)."""
    hints = typing.get_type_hints(cls)

    def kind(hint: Any) -> int:
        if _is_message_type(hint):
            return PAYLOAD
        if is_record_type(_optional_of(hint)):
            return RECORD
        return ARRAY_OR_ANY

    return [(f.name, kind(hints[f.name])) for f in dataclasses.fields(cls) if _may_hold_arrays(hints[f.name])]


def _is_message_type(hint: Any) -> bool:
    """``SomeMessage`` or ``SomeMessage | None``."""
    hint = _optional_of(hint)
    return isinstance(hint, type) and issubclass(hint, MessageType)


def _optional_of(hint: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); any other hint as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _may_hold_arrays(hint: Any) -> bool:
    if hint is np.ndarray or hint is Any or hint is object:
        return True
    if isinstance(hint, type):
        return issubclass(hint, (MessageType, list, tuple, dict))  # tuple: records too
    return any(_may_hold_arrays(arg) for arg in typing.get_args(hint) if arg is not type(None))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints``, once per class (it costs microseconds per call)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _to_wire(value: Any, array: Any = None) -> Any:
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        if array is not None:
            return array(value)
        value = np.ascontiguousarray(value.get() if hasattr(value, "get") else value)
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.tobytes()}
    if isinstance(value, MessageType):
        return value.to_wire(array)
    if is_record(value):
        return {name: _to_wire(item, array) for name, item in zip(value._fields, value)}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v, array) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_wire(v, array) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_wire(value: Any, hint: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value
    origin = typing.get_origin(hint)
    if hint is np.ndarray:
        return np.frombuffer(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if isinstance(hint, type) and issubclass(hint, MessageType):
        return hint.from_wire(value)
    if is_record_type(hint):
        hints = _hints(hint)
        return hint(**{name: _from_wire(value[name], hints[name]) for name in hint._fields if name in value})
    if origin in (list, tuple) and typing.get_args(hint):
        item = typing.get_args(hint)[0]
        return [_from_wire(v, item) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _from_wire(value, args[0])
    return value


def _type_name(hint: Any) -> str:
    if hint is np.ndarray:
        return "ndarray"
    if isinstance(hint, type) and issubclass(hint, MessageType):
        return hint.wire_name
    if is_record_type(hint):
        return f"{hint.__name__}({', '.join(hint._fields)})"
    origin = typing.get_origin(hint)
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint))


def wire_schema(cls: type[MessageType]) -> dict:
    """JSON Schema (draft 2020-12) of a message type's wire form (msgpack map)."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        schema = _hint_schema(hints[f.name])
        if f.metadata.get("doc"):
            schema["description"] = f.metadata["doc"]
        props[f.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://graphflow.dev/schemas/messages/{cls.wire_name.replace('/', '.')}.schema.json",
        "title": cls.wire_name,
        "description": (cls.__doc__ or "").strip(),
        "type": "object",
        "properties": {
            "type": {"const": cls.wire_name},
            "header": {"$ref": "header.schema.json"},
            "payload": {"type": "object", "properties": props, "required": list(props),
                        "additionalProperties": False},
        },
        "required": ["type", "header", "payload"],
    }


HEADER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://graphflow.dev/schemas/messages/header.schema.json",
    "title": "graphflow message header",
    "type": "object",
    "properties": {
        "uuid": {"type": "string", "description": "Random UUID of this message."},
        "acqtime": {"type": "number", "description": "Acquisition time, seconds on the app clock."},
        "pubtime": {"type": "number", "description": "Publication time, seconds on the app clock."},
    },
    "required": ["uuid", "acqtime", "pubtime"],
}

NDARRAY_SCHEMA = {
    "type": "object",
    "description": "A numpy array: dtype string (numpy .str, e.g. '<f4'), shape, raw C-order bytes.",
    "properties": {"dtype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                   "data": {"description": "msgpack bin"}},
    "required": ["dtype", "shape", "data"],
}


def _hint_schema(hint: Any) -> dict:
    if hint is np.ndarray:
        return dict(NDARRAY_SCHEMA)
    if isinstance(hint, type) and issubclass(hint, MessageType):
        return {"type": "object", "description": f"A {hint.wire_name} payload."}
    if is_record_type(hint):
        hints = typing.get_type_hints(hint)
        return {"type": "object", "description": (hint.__doc__ or "").strip(),
                "properties": {name: _hint_schema(hints[name]) for name in hint._fields},
                "required": [name for name in hint._fields if name not in hint._field_defaults],
                "additionalProperties": False}
    simple = {float: "number", int: "integer", str: "string", bool: "boolean", dict: "object"}
    if hint in simple:
        return {"type": simple[hint]}
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return {"type": "array", "items": _hint_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_hint_schema(a) if a is not type(None) else {"type": "null"}
                          for a in typing.get_args(hint)]}
    return {}
