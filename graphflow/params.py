"""Parameters declared on a codelet class: typed, documented, range- or choice-checked.

``Param`` is a descriptor: ``self.threshold`` reads the component's current value. Values come
from the app's ``config``; live edits (viewer, API) are validated here and take effect at the
start of the component's next tick.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

REQUIRED = object()  # sentinel default: the app must set this param


class Period(float):
    """A tick period in seconds, written ``"30Hz"``, ``"50ms"``, ``"2s"``, ``"100us"`` or a number."""

    _PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(hz|khz|s|ms|us|µs|ns)?\s*$",
                          re.IGNORECASE)

    def __new__(cls, value: Any) -> "Period":
        return super().__new__(cls, parse_period(value))


MAX_PERIOD = 365 * 24 * 3600.0  # a year: longer periods are mistakes (and overflow timers)


def parse_period(value: Any) -> float:
    """Seconds from ``"30Hz"``, ``"50ms"``, ``"2s"``, ``"100us"`` or a number of seconds; 0 means
    as fast as possible. Refuses what is not a finite period in [0, a year], including values that
    only become one through float rounding (``"1e-400s"`` is not 0, ``"1e309Hz"`` is not 0)."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    if isinstance(value, bool):
        raise ValueError(f"expected a period like '30Hz', '50ms' or '2s', got {shown}")
    if isinstance(value, (int, float)):
        number, unit = _finite(value, shown), "s"
    else:
        match = Period._PATTERN.match(str(value)[:200])
        if not match:
            raise ValueError(f"expected a period like '30Hz', '50ms' or '2s', got {shown}")
        number, unit = _finite(float(match.group(1)), shown), (match.group(2) or "s").lower()
        if number == 0 and any(c in "123456789" for c in match.group(1).lower().split("e")[0]):
            raise ValueError(f"{shown} is too small to be told from 0")
    if unit in ("hz", "khz"):
        if number <= 0:
            raise ValueError(f"a frequency must be positive, got {shown}")
        seconds = 1.0 / (number * (1000.0 if unit == "khz" else 1.0))
        if seconds == 0:
            raise ValueError(f"a frequency of {shown} is too high")
    else:
        seconds = number * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}[unit]
        if seconds == 0 and number != 0:
            raise ValueError(f"{shown} is too small to be told from 0")
    if seconds < 0:
        raise ValueError(f"a period cannot be negative, got {shown}")
    if seconds > MAX_PERIOD:
        raise ValueError(f"a period must be at most a year ({MAX_PERIOD:g} s), got {shown}")
    return seconds


def _finite(value: Any, shown: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"expected a finite number, got {shown}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {shown}")
    return number


_TYPE_NAMES = {float: "float", int: "int", bool: "bool", str: "str", list: "list", dict: "dict",
               Period: "period"}
_JSON_SCHEMA = {float: {"type": "number"}, int: {"type": "integer"}, bool: {"type": "boolean"},
                str: {"type": "string"}, list: {"type": "array"}, dict: {"type": "object"},
                Period: {"type": ["string", "number"], "pattern": Period._PATTERN.pattern}}


class Param:
    """A component parameter.

    Args:
        type: float, int, bool, str, list, dict or :class:`Period`.
        default: value used when the app does not set it; omit to make the param required.
        doc: one sentence shown by ``graphflow nodes`` and the viewer.
        range: inclusive (min, max) for numbers; either end may be None.
        choices: the allowed values.
        nullable: whether None (JSON null) is allowed.
        check: for what the type cannot say (the shape of a list's items): called with the
            converted value, raises ValueError saying what is wrong. It runs wherever a value is
            checked: ``graphflow validate``, ``--set``, a live change.
        live: False for a param the node reads only in ``start()`` (a path it opens, a model it
            loads): a change while the app runs is refused instead of being ignored.
    """

    def __init__(self, type: type, default: Any = REQUIRED, doc: str = "", *, range=None,
                 choices=None, nullable: bool = False, check: Callable[[Any], None] | None = None,
                 live: bool = True):
        if type not in _TYPE_NAMES:
            raise TypeError(f"unsupported param type {type!r}; use one of {list(_TYPE_NAMES.values())}")
        self.type = type
        self.doc = doc
        self.range = tuple(range) if range is not None else None
        self.choices = list(choices) if choices is not None else None
        self.nullable = nullable or default is None
        self.check = check
        self.live = live
        self.name = ""
        self.default = REQUIRED if default is REQUIRED else self.convert(default)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return instance._param_values[self.name]

    def __set__(self, instance, value):
        raise AttributeError(f"param {self.name!r} is read-only inside the node; "
                             f"change it through the app config or set_param()")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def convert(self, value: Any) -> Any:
        """Return ``value`` as this param's type, or raise ValueError saying what was expected."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"expected {self.type_name}, got null")
        t = self.type
        if t is Period:
            value = Period(value)
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected float, got {_describe(value)}")
            value = _finite(value, _describe(value))
        elif t is int:
            if isinstance(value, bool) or not (isinstance(value, int) or
                                               (isinstance(value, float) and value.is_integer())):
                raise ValueError(f"expected int, got {_describe(value)}")
            value = int(value)
        elif t is list:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected list, got {_describe(value)}")
            value = list(value)
        elif not isinstance(value, t) or (t is not bool and isinstance(value, bool)):
            raise ValueError(f"expected {self.type_name}, got {_describe(value)}")
        if self.range is not None:
            low, high = self.range
            if (low is not None and value < low) or (high is not None and value > high):
                wanted = f"in [{low}, {high}]" if low is not None and high is not None else \
                    f">= {low}" if low is not None else f"<= {high}"
                raise ValueError(f"expected a value {wanted}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {self.choices}, got {value!r}")
        if self.check is not None:
            self.check(value)
        return value

    def convert_live(self, value: Any) -> Any:
        """``convert`` for a change while the app runs: refused for a param read only at start."""
        if not self.live:
            raise ValueError("is read only when the app starts: set it in the app file, --config or --set")
        return self.convert(value)

    def parse_text(self, text: str) -> Any:
        """Parse a command-line value (``--set a/b/c=TEXT``) by this param's type."""
        if self.type in (str, Period):
            return self.convert(text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            if self.type is bool and text.lower() in ("true", "false", "yes", "no", "on", "off"):
                value = text.lower() in ("true", "yes", "on")
            else:
                raise ValueError(f"expected {self.type_name}, got {text!r}") from None
        return self.convert(value)

    def describe(self) -> dict:
        out = {"type": self.type_name, "doc": self.doc, "required": self.required,
               "default": None if self.required else self.default}
        if self.range is not None:
            out["range"] = list(self.range)
        if self.choices is not None:
            out["choices"] = self.choices
        if self.nullable:
            out["nullable"] = True
        if not self.live:
            out["live"] = False
        return out

    def json_schema(self) -> dict:
        schema = dict(_JSON_SCHEMA[self.type], description=self.doc)
        if self.range is not None:
            if self.range[0] is not None:
                schema["minimum"] = self.range[0]
            if self.range[1] is not None:
                schema["maximum"] = self.range[1]
        if self.choices is not None:
            schema["enum"] = self.choices
        return schema


def _describe(value: Any) -> str:
    kind = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # a circular or too deeply nested value
        text = "..."
    return f"{kind.get(type(value), type(value).__name__)} {text[:60]}"
