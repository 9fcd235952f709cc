"""CLI test helpers: invoke the Typer app in-process and split stdout from stderr."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from uqbench.cli import app


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke
