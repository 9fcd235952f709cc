"""Hyperparameter dataclasses: declared constraints, `--set key=value` coercion, canonical JSON and content hashes.

Every method, task, training recipe and backbone keeps its settings in a frozen dataclass whose fields all have
defaults and that extends `Checked`. The field types (bool, int, float, str, Literal[...], and `X | None` of
those) drive the coercion of command-line text and the type check of config-file values; ranges are declared on
the field with `Annotated`, e.g. `p: Annotated[float, Interval(0, 1, "neither")] = 0.05`. One function,
`validate`, checks both when a config is built, with one message template:
`'p' of method 'mc-dropout' must be in (0, 1); got 2.0`. Config text is never evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from uqbench.errors import BadConfig


@dataclass(frozen=True)
class Interval:
    """A declared range of a numeric field; the value must also be finite.

    Attributes:
        low, high: bounds (None: unbounded on that side).
        closed: which bounds belong to the range: 'both', 'left', 'right' or 'neither'.
    """

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def admits(self, value: float) -> bool:
        if not finite(value):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and not right)))

    def describe(self) -> str:
        """'in (0, 1)', 'at least 1', 'positive', ... (completes "must be ...")."""
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"in {'[' if left else '('}{self.low:g}, {self.high:g}{']' if right else ')'}"
        if self.low is not None:
            if self.low == 0:
                return "non-negative" if left else "positive"
            return f"{'at least' if left else 'greater than'} {self.low:g}"
        if self.high is not None:
            return f"{'at most' if right else 'less than'} {self.high:g}"
        return "finite"


def finite(value: float) -> bool:
    """Whether a number is finite; an int beyond the float range (10**400) is not (no float, no tensor holds it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


POSITIVE = Interval(0, None, "right")  # > 0
NON_NEGATIVE = Interval(0, None)  # >= 0
AT_LEAST_ONE = Interval(1, None)  # >= 1 (counts)
PROBABILITY = Interval(0, 1, "neither")  # in (0, 1)


class ConstraintError(BadConfig):
    """A config field whose value breaks its type or declared range: "'p' [of OWNER] must be EXPECTED; got VALUE"."""

    def __init__(self, key: str, expected: str, value: Any, owner: str | None = None):
        self.key, self.expected, self.value, self.owner = key, expected, value, owner
        of = f" of {owner}" if owner else ""
        super().__init__(f"{key!r}{of} must be {expected}; got {value!r}")


class Checked:
    """Base of every config dataclass: building an instance validates every field (`validate`).

    A subclass with rules that tie fields together defines `__post_init__`, calls `super().__post_init__()` first
    and raises BadConfig for a broken rule.
    """

    def __post_init__(self) -> None:
        validate(self)


def field_types(config_cls: type) -> dict[str, Any]:
    """Resolved type of every field of a config dataclass (constraints stripped)."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def field_constraints(config_cls: type) -> dict[str, tuple[Interval, ...]]:
    """Field name -> the Intervals declared on it with `Annotated` (fields without any are left out)."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(config_cls):
        declared = tuple(m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Interval))
        if declared:
            out[f.name] = declared
    return out


def validate(config: Any) -> None:
    """Check every field of a config instance against its type and declared ranges; raises ConstraintError."""
    for name in field_types(type(config)):
        check_field(type(config), name, getattr(config, name))


def check_field(config_cls: type, name: str, value: Any, owner: str | None = None) -> None:
    """Check one field's value against its type and declared ranges (rules tying fields together aside);
    raises ConstraintError."""
    tp = field_types(config_cls)[name]
    if not conforms(tp, value):
        raise ConstraintError(name, describe_type(tp), value, owner)
    if value is not None and not isinstance(value, (str, bool)):
        for interval in field_constraints(config_cls).get(name, ()):
            if not interval.admits(value):
                within = " and within the float range" if isinstance(value, int) and not finite(value) else ""
                raise ConstraintError(name, interval.describe() + within, value, owner)


def conforms(tp: Any, value: Any) -> bool:
    """Whether `value` is of config type `tp` (an int is a float; a bool is neither)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(conforms(arg, value) for arg in typing.get_args(tp))
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if tp is str:
        return isinstance(value, str)
    return isinstance(value, tp) if isinstance(tp, type) else False


def describe_type(tp: Any) -> str:
    """Human-readable type name used in error messages and `list -v`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(describe_type(a) for a in args) + " or none"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}.get(tp, str(tp))


def coerce(tp: Any, text: str) -> Any:
    """Convert command-line text to type `tp`; raises ValueError when it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, text)
            except Underflow:
                raise
            except ValueError:
                continue
        raise ValueError(text)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        value = float(text)
        if value != value:  # NaN is never a valid hyperparameter
            raise ValueError(text)
        if value == 0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
            raise Underflow(text)
        return value
    if tp is str:
        return text
    raise ValueError(f"unsupported config field type {tp!r}")


class Underflow(ValueError):
    """A nonzero number written too small for a float (1e-400): it would silently become 0."""


def convert(tp: Any, value: Any) -> Any:
    """A typed value from a config file (TOML) as type `tp`: text goes through `coerce` only for string,
    choice and 'none' values; numbers and booleans must already have the field's type. Raises ValueError."""
    if isinstance(value, str):
        optional = typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)
        if optional and value.lower() in ("none", "null"):
            return None
        if _textual(tp):
            return coerce(tp, value)
        raise ValueError(value)
    if conforms(tp, value) and value is not None:
        return float(value) if _wants_float(tp, value) else value
    raise ValueError(value)


def _textual(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_textual(a) for a in typing.get_args(tp))
    return tp is str or origin is Literal


def _wants_float(tp: Any, value: Any) -> bool:
    """An int given for a float field (and not also admitted as an int) becomes a float."""
    if not isinstance(value, int):
        return False
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return float in args and int not in args


def build(config_cls: type, overrides: dict[str, Any], owner: str) -> Any:
    """Instantiate `config_cls` with already-typed overrides; unknown keys and bad values raise BadConfig.

    `owner` names what the config belongs to in messages, e.g. "method 'vbll'".
    """
    known = field_types(config_cls)
    for key in overrides:
        if key not in known:
            raise BadConfig(f"unknown key {key!r} for {owner}; valid keys: {', '.join(known)}")
    try:
        config = config_cls(**{k: v for k, v in overrides.items() if v is not None or _optional(known[k])})
        validate(config)  # again for a config class that is not `Checked` (a plugin's plain dataclass)
        return config
    except ConstraintError as exc:
        raise ConstraintError(exc.key, exc.expected, exc.value, owner) from None
    except (BadConfig, ValueError, TypeError) as exc:
        raise BadConfig(f"{owner}: {exc}") from None


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass (resolved values)."""
    return dataclasses.asdict(config)


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: the same data always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(obj: Any, length: int = 16) -> str:
    """First `length` hex digits of the sha256 of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
