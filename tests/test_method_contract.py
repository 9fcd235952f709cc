"""Every built-in method passes the public conformance checks (uqbench.testing.check_method).

The list is the built-ins only: a plugin installed in the environment is its author's to check (with the same
public function), and must not change what this suite tests.
"""

from __future__ import annotations

import pytest

from uqbench.methods import methods
from uqbench.testing import check_method


@pytest.mark.parametrize("name", methods.builtins())
def test_method_conforms(name: str) -> None:
    check_method(methods.get(name))
