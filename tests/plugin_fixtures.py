"""Builds a fake installed distribution with uqbench entry points, for plugin tests (no pip needed)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_MODULE = '''
from dataclasses import dataclass

from uqbench.methods.base import Method
from uqbench.methods.map import MAP
from uqbench.tasks.base import Task


class Swag(MAP):
    """SWAG stand-in: a MAP network registered by a third-party package."""

    @dataclass(frozen=True)
    class Config:
        scale: float = 0.5


class NotAMethod:
    pass


class Abstract(Method):
    """A Method subclass that forgot `fit`."""

    kinds = frozenset({"regression"})


class NoLoad(Task):
    """A Task subclass that forgot `load`."""

    kind = "regression"
'''


def install_fake_plugin(
    root: Path,
    entry_points: dict[str, str],
    module_source: str = PLUGIN_MODULE,
    *,
    group: str = "uqbench.methods",
    distribution: str = "uqbench-fake",
    modules: dict[str, str] | None = None,
    more_groups: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write `uqbench_fake` (module) and `<distribution>-0.3.1.dist-info` under root and put root on sys.path.

    entry_points: name -> "module:attr" in `group`. modules: more module files to write, name -> source (a
    plugin that raises at import). more_groups: entry points of other groups, group -> {name: "module:attr"}.
    Call it again with another `distribution` for a second package; the caller removes root from sys.path and
    the modules from sys.modules (see `forget_fake_plugins`).
    """
    (root / "uqbench_fake.py").write_text(textwrap.dedent(module_source))
    for name, source in (modules or {}).items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{distribution.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.3.1\n")
    groups = {group: entry_points, **(more_groups or {})}
    (info / "entry_points.txt").write_text("".join(
        f"[{name}]\n" + "".join(f"{ep} = {target}\n" for ep, target in eps.items()) for name, eps in groups.items()))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def forget_fake_plugins(root: Path) -> None:
    """Undo `install_fake_plugin`: root off sys.path, and every module imported from it out of sys.modules."""
    if str(root) in sys.path:
        sys.path.remove(str(root))
    for path in root.glob("*.py"):
        sys.modules.pop(path.stem, None)


def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bring the global method and task registries back to their built-ins, to discover plugins again as a new
    process would; their state is restored after the test."""
    from uqbench.methods import methods
    from uqbench.tasks import tasks

    monkeypatch.delenv("UQBENCH_NO_PLUGINS", raising=False)
    for registry in (methods, tasks):
        builtin = {name for name, origin in registry._origin.items() if origin == "builtin"}
        monkeypatch.setattr(registry, "_items", {n: c for n, c in registry._items.items() if n in builtin})
        monkeypatch.setattr(registry, "_origin", dict.fromkeys(builtin, "builtin"))
        monkeypatch.setattr(registry, "_plugins", None)
        monkeypatch.setattr(registry, "_entry_points", {})
