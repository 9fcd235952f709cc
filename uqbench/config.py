"""Hyperparameter dataclasses: introspection, `--set key=value` coercion, canonical JSON and content hashes.

Every method and task keeps its hyperparameters in a frozen dataclass `Config` whose fields all have defaults.
The field types (bool, int, float, str, Literal[...], and `X | None` of those) drive the coercion of command-line
text, so a wrong value is rejected with the key and the expected type. Config text is never evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, Literal, Union

from uqbench.errors import BadConfig


def field_types(config_cls: type) -> dict[str, Any]:
    """Resolved type of every field of a config dataclass."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


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
        return value
    if tp is str:
        return text
    raise ValueError(f"unsupported config field type {tp!r}")


def build(config_cls: type, overrides: dict[str, Any], owner: str) -> Any:
    """Instantiate `config_cls` with already-typed overrides; unknown keys and bad values raise BadConfig.

    `owner` names what the config belongs to in messages, e.g. "method 'vbll'".
    """
    known = field_types(config_cls)
    for key in overrides:
        if key not in known:
            raise BadConfig(f"unknown key {key!r} for {owner}; valid keys: {', '.join(known)}")
    try:
        return config_cls(**{k: v for k, v in overrides.items() if v is not None or _optional(known[k])})
    except (BadConfig, ValueError, TypeError) as exc:
        raise BadConfig(f"{owner}: {exc}") from None


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def parse_assignment(text: str) -> tuple[str, str]:
    """Split 'key=value' (the key may be qualified, e.g. 'method.lr')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BadConfig(f"--set {text!r}: expected key=value")
    return key.strip(), value.strip()


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass (resolved values)."""
    return dataclasses.asdict(config)


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: the same data always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(obj: Any, length: int = 16) -> str:
    """First `length` hex digits of the sha256 of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
