"""The conformance checks' own logic: invalid values generated from declared constraints."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import pytest

from uqbench.config import AT_LEAST_ONE, NON_NEGATIVE, PROBABILITY, Checked, Interval
from uqbench.errors import BadConfig
from uqbench.methods.base import Method
from uqbench.testing import check_method, invalid_values


@dataclass(frozen=True)
class Cfg(Checked):
    p: Annotated[float, PROBABILITY] = 0.5
    rank: Annotated[int | None, AT_LEAST_ONE] = None
    scale: Annotated[float, Interval(0.5, 2.0)] = 1.0
    decay: Annotated[float, NON_NEGATIVE] = 0.0
    mode: Literal["a", "b"] | None = None
    flag: bool = False


def test_invalid_values_lie_just_outside_every_bound_and_among_no_choice() -> None:
    assert invalid_values(Cfg) == [
        ("p", math.inf), ("p", 0.0), ("p", 1.0),
        ("rank", math.inf), ("rank", 0),
        ("scale", math.inf), ("scale", math.nextafter(0.5, 0)), ("scale", math.nextafter(2.0, 3)),
        ("decay", math.inf), ("decay", -5e-324),
        ("mode", "not-a-choice"),
    ]
    for name, value in invalid_values(Cfg):
        with pytest.raises(BadConfig, match=f"'{name}'"):
            Cfg(**{name: value})


class Unnamed(Method):
    """A method whose config refuses a value without naming the field."""

    kinds = frozenset({"classification"})

    @dataclass(frozen=True)
    class Config:
        p: Annotated[float, PROBABILITY] = 0.5

        def __post_init__(self) -> None:
            if self.p <= 0:
                raise BadConfig("that will not do")

    def fit(self, data, ctx):  # pragma: no cover - never reached
        raise NotImplementedError


def test_check_method_requires_errors_that_name_the_field() -> None:
    with pytest.raises(AssertionError, match="the error for p=0.0 does not name 'p'"):
        check_method(Unnamed)
