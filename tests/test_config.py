"""Config coercion and hashing: typed --set values, never evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from uqbench.config import build, canonical_json, coerce, content_hash, describe_type
from uqbench.errors import BadConfig


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    n: int = 3
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    rank: int | None = None


@pytest.mark.parametrize(
    "tp,text,value",
    [(float, "1e-3", 1e-3), (int, "7", 7), (bool, "true", True), (bool, "0", False), (Literal["a", "b"], "b", "b"),
     (int | None, "none", None), (int | None, "4", 4), (str, "x=1", "x=1")],
)
def test_coerce(tp, text, value):
    assert coerce(tp, text) == value


@pytest.mark.parametrize("tp,text", [(float, "abc"), (float, "nan"), (int, "1.5"), (bool, "maybe"), (Literal["a"], "c"),
                                     (float, "__import__('os')")])
def test_coerce_rejects(tp, text):
    with pytest.raises(ValueError):
        coerce(tp, text)


def test_build_rejects_unknown_keys_and_drops_unset_values():
    assert build(Cfg, {"lr": 0.5, "n": None}, "method 'x'") == Cfg(lr=0.5)
    with pytest.raises(BadConfig, match=r"unknown key 'lrr' for method 'x'; valid keys: lr, n, flag, mode, rank"):
        build(Cfg, {"lrr": 1.0}, "method 'x'")


def test_describe_type():
    assert describe_type(float) == "a float"
    assert describe_type(Literal["a", "b"]) == "one of 'a', 'b'"
    assert describe_type(int | None) == "an integer or none"


def test_canonical_json_and_hash_ignore_key_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
