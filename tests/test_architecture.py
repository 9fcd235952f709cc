"""Structural rules: imports flow one way, and the CLI stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "uqbench"

# (importing package, forbidden prefix): methods never see metrics or results; metrics never see methods.
FORBIDDEN = [
    ("uqbench/methods", "uqbench.metrics"),
    ("uqbench/methods", "uqbench.results"),
    ("uqbench/methods", "uqbench.runner"),
    ("uqbench/methods", "uqbench.cli"),
    ("uqbench/metrics", "uqbench.methods"),
    ("uqbench/metrics", "uqbench.tasks"),
    ("uqbench/tasks", "uqbench.methods"),
    ("uqbench/tasks", "uqbench.metrics"),
    ("uqbench/models", "uqbench.methods"),
    ("uqbench/models", "uqbench.tasks"),
]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder,prefix", FORBIDDEN)
def test_imports_flow_one_way(folder, prefix):
    root = PACKAGE.parent
    offenders = [
        str(p.relative_to(root))
        for p in (root / folder).rglob("*.py")
        if any(name == prefix or name.startswith(prefix + ".") for name in _imports(p))
    ]
    assert offenders == [], f"{offenders} import {prefix}"


def test_help_and_list_do_not_import_heavy_packages():
    code = (
        "import sys; from typer.testing import CliRunner; from uqbench.cli import app;"
        "CliRunner().invoke(app, ['--help']); CliRunner().invoke(app, ['list', 'methods']);"
        "print(sorted(m for m in ('netcal', 'vbll', 'laplace', 'matplotlib', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
