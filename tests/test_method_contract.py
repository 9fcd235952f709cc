"""Every registered method passes the public conformance checks (uqbench.testing.check_method)."""

from __future__ import annotations

import pytest

from uqbench.methods import methods
from uqbench.testing import check_method


@pytest.mark.parametrize("name", methods.names())
def test_method_conforms(name: str) -> None:
    check_method(methods.get(name))
