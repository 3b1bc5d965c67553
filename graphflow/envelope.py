"""What publishing wraps around a payload, and the freeze that makes it safe to share.

A :class:`Message` is a :class:`Header` (uuid, acqtime, pubtime) plus the payload. Inside one
process receivers share the payload by reference, so :func:`freeze` makes its numpy arrays
read-only first. All of this runs on every publish: setup.py compiles it with the core.
"""
from __future__ import annotations

import itertools
import os
import uuid as _uuid
from typing import Any, Final

import numpy as np

_PROCESS_ID = int.from_bytes(os.urandom(8), "big")  # random per process; a counter below it
_SEQUENCE = itertools.count()


class Header:
    """uuid (a version-4 UUID: 64 random bits per process + a 64-bit message counter, formatted
    on demand), acqtime (when the data was acquired, seconds on the app clock) and pubtime
    (when it was published)."""

    __slots__ = ("_sequence", "_uuid", "acqtime", "pubtime")

    def __init__(self, acqtime: float, pubtime: float, uuid: str | None = None):
        self._sequence: int = next(_SEQUENCE)
        self._uuid: str | None = uuid  # given when decoded: the sender's uuid
        self.acqtime: float = acqtime
        self.pubtime: float = pubtime

    @property
    def uuid(self) -> str:
        if self._uuid is not None:
            return self._uuid
        value = (_PROCESS_ID << 64) | self._sequence
        return str(_uuid.UUID(int=value, version=4))


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


# How freeze treats a field (messages.freeze_plan picks one per field from its annotation).
ARRAY_OR_ANY = 0  # an array, or a loosely typed value: looked at when frozen
PAYLOAD = 1       # a nested payload: frozen by its own plan, once
RECORD = 2        # a NamedTuple (or other tuple) of arrays

# Per payload class: (field name, kind) for each field that may hold arrays. Worked out once per
# class from its annotations, on its first freeze.
_PLANS: dict[type, list[tuple[str, int]]] = {}
_MESSAGE_TYPE: Any = None  # messages.MessageType (messages imports this module)
_NDARRAY: Final = np.ndarray  # compiled, a Final is a C static: `np.ndarray` looked up the module each time


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
        from .messages import freeze_plan

        plan = _PLANS[cls] = freeze_plan(cls)
    for name, kind in plan:
        value = getattr(payload, name)
        if value is None:
            continue
        if kind == PAYLOAD:
            freeze(value)
        elif type(value) is _NDARRAY:
            value.setflags(False)  # type: ignore[misc]  # write=False; a keyword costs 2.5× (measured)
        elif kind == RECORD:
            for item in value:
                if type(item) is _NDARRAY:
                    item.setflags(False)  # type: ignore[misc]
                elif item is not None:
                    _freeze_value(item)
        else:
            _freeze_value(value)


def _freeze_value(value: Any) -> None:
    """A field typed loosely (list, dict, Any): look at what it holds."""
    global _MESSAGE_TYPE
    if _MESSAGE_TYPE is None:
        from .messages import MessageType

        _MESSAGE_TYPE = MessageType
    if isinstance(value, np.ndarray):
        value.setflags(False)  # type: ignore[misc]
    elif isinstance(value, _MESSAGE_TYPE):
        freeze(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _freeze_value(item)
    elif isinstance(value, dict):
        for item in value.values():
            _freeze_value(item)
