"""Builds a fake installed distribution with uqbench entry points, for plugin tests (no pip needed)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

PLUGIN_MODULE = '''
from dataclasses import dataclass

from uqbench.methods.base import Method
from uqbench.methods.map import MAP


class Swag(MAP):
    """SWAG stand-in: a MAP network registered by a third-party package."""

    @dataclass(frozen=True)
    class Config:
        scale: float = 0.5


class NotAMethod:
    pass
'''


def install_fake_plugin(root: Path, entry_points: dict[str, str], module_source: str = PLUGIN_MODULE) -> None:
    """Write `uqbench_fake` (module) and `uqbench_fake-0.3.1.dist-info` under root and put root on sys.path.

    entry_points: name -> "module:attr" in the group uqbench.methods.
    """
    (root / "uqbench_fake.py").write_text(textwrap.dedent(module_source))
    info = root / "uqbench_fake-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: uqbench-fake\nVersion: 0.3.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[uqbench.methods]\n{lines}\n")
    sys.path.insert(0, str(root))
