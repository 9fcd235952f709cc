"""The README stays true: every command documented with an example, CI runs the README's own commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from uqbench.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def _block_after(heading: str) -> str:
    section = README.split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_a_readme_example(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"### `uqbench {command}" in README, f"README has no section for `uqbench {command}`"
    assert re.search(rf"^uqbench {command}\b", README, re.M), f"README has no example of `uqbench {command}`"


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _block_after("Install") in ci
    assert _block_after("Test") in ci
