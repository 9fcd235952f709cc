"""The README stays true: every command documented with an example, CI runs the README's own commands."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from plugin_fixtures import forget_fake_plugins, fresh_registries, install_fake_plugin
from uqbench.cli import app

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


def _code_blocks(heading: str, language: str = "python") -> list[str]:
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_python_api_examples_run_as_written(tmp_path, monkeypatch, capsys, torch_state, custom_backbones):
    """Every example of the README's Python API section, executed in order in a fresh folder."""
    blocks = _code_blocks("Python API")
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out
    board = namespace["board"]
    assert {r.method for r in board.rows} == {"map", "vbll", "mc-dropout", "ensemble", "sngp", "laplace", "ddu"}
    assert all(r.n_runs == 2 and r.n_failed == 0 for r in board.rows)
    assert "npz" in printed and "ood.far.auroc" in printed and len(list((tmp_path / "results").glob("*.json"))) == 14
    assert set(namespace["metrics"]) >= {"accuracy", "nll", "ece", "ood.far.auroc"}
    own = namespace["own"]  # the own-backbone example: every method on the factory's features
    assert len(own.rows) == 7 and all(r.backbone["arch"] == "custom-features" and r.n_failed == 0 for r in own.rows)


def test_the_plugin_guide_runs_as_written(tmp_path, monkeypatch, torch_state, cli):
    """The guide's example method and task pass the conformance checks as its last block calls them; installed
    through the guide's entry points, both load and run from the command line."""
    blocks = _code_blocks("Writing a plugin")
    (toml,) = _code_blocks("Writing a plugin", "toml")
    groups = tomllib.loads(toml)["project"]["entry-points"]
    assert set(groups) == {"uqbench.methods", "uqbench.tasks"} and len(blocks) == 3
    (module_name,) = {target.split(":")[0] for entry_points in groups.values() for target in entry_points.values()}
    module = types.ModuleType(module_name)  # a real module, so that check_method can pickle the predictor
    monkeypatch.setitem(sys.modules, module_name, module)
    for block in blocks:
        exec(compile(block, "README.md (Writing a plugin)", "exec"), module.__dict__)
    monkeypatch.delitem(sys.modules, module_name)

    install_fake_plugin(tmp_path, groups["uqbench.methods"], distribution="uqbench-example",
                        modules={module_name: "\n".join(blocks[:2])}, more_groups={"uqbench.tasks": groups["uqbench.tasks"]})
    try:
        fresh_registries(monkeypatch)
        shown = cli("plugins", "--format", "json")
        assert shown.exit_code == 0, shown.output
        assert {(r["name"], r["status"]) for r in json.loads(shown.stdout)} == {("smoothed", "loaded"), ("sine", "loaded")}
        for method, task in (("smoothed", "two-moons"), ("map", "sine")):
            ran = cli("run", method, "--task", task, "--set", "epochs=1", "--quiet", "--out", tmp_path / "results")
            assert ran.exit_code == 0, ran.output
        assert len(list((tmp_path / "results").glob("*.json"))) == 2
    finally:
        forget_fake_plugins(tmp_path)
