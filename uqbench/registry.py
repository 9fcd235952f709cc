"""Name → class registries for methods, tasks and suites, with entry-point plugins.

Built-ins register with a decorator (`@methods.register("map")`). Third-party packages declare entry points in
the groups `uqbench.methods` and `uqbench.tasks`; they are discovered once, kept as lazy placeholders, loaded
on first use and checked at load time. A plugin that fails to import or fails the checks becomes a
`PluginError` with its name, distribution and reason; every other name keeps working. A plugin can never
shadow a built-in name. `UQBENCH_NO_PLUGINS=1` turns discovery off.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Generic, TypeVar

from uqbench.errors import PluginError, UnknownName

T = TypeVar("T")

_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass
class PluginInfo:
    """What `uqbench plugins` shows for one entry point."""

    name: str
    group: str
    value: str
    distribution: str
    version: str
    status: str = "not loaded"  # "loaded", "not loaded", "error: ...", "ignored: ..."

    @property
    def origin(self) -> str:
        return f"{self.distribution}=={self.version}"


def plugins_disabled() -> bool:
    return os.environ.get("UQBENCH_NO_PLUGINS", "") not in ("", "0")


class Registry(Generic[T]):
    """A typed name → class table.

    Args:
        kind: singular noun used in messages ("method", "task", "suite").
        group: entry-point group read for plugins, or None for no plugins.
        check: called on every class at registration or plugin load; raises ValueError with the reason.
    """

    def __init__(self, kind: str, group: str | None = None, check: Callable[[type], None] | None = None):
        self.kind = kind
        self.group = group
        self._check = check
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._plugins: dict[str, PluginInfo] | None = None
        self._entry_points: dict[str, metadata.EntryPoint] = {}

    # -- built-ins -------------------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering a built-in under `name` (kebab-case)."""

        def decorator(obj: T) -> T:
            if not _KEBAB.match(name):
                raise ValueError(f"{self.kind} name {name!r} must be kebab-case")
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if self._check is not None:
                self._check(obj)  # type: ignore[arg-type]
            if hasattr(obj, "name"):
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            self._origin[name] = "builtin"
            return obj

        return decorator

    # -- plugins ---------------------------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Every discovered entry point of this registry's group, loading each one to learn its status."""
        self._discover()
        for name in list(self._entry_points):
            try:
                self._load_plugin(name)
            except PluginError:
                pass
        return list((self._plugins or {}).values())

    def _discover(self) -> None:
        if self._plugins is not None:
            return
        self._plugins = {}
        if self.group is None or plugins_disabled():
            return
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                group=self.group,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            )
            self._plugins[ep.name] = info
            if ep.name in self._items:
                info.status = f"ignored: cannot shadow the built-in {self.kind} {ep.name!r}"
            elif not _KEBAB.match(ep.name):
                info.status = f"error: entry-point name {ep.name!r} is not kebab-case"
            else:
                self._entry_points[ep.name] = ep

    def _load_plugin(self, name: str) -> T:
        assert self._plugins is not None
        info = self._plugins[name]
        ep = self._entry_points.get(name)
        if ep is None:
            raise PluginError(f"{self.kind} {name!r} ({info.origin}) failed to load: {info.status}")
        try:
            obj = ep.load()
            if self._check is not None:
                self._check(obj)
        except Exception as exc:  # a plugin's failure must never break uqbench itself
            info.status = f"error: {type(exc).__name__}: {exc}"
            del self._entry_points[name]
            raise PluginError(f"{self.kind} {name!r} ({info.origin}) failed to load: {type(exc).__name__}: {exc}")
        if hasattr(obj, "name"):
            obj.name = name
        del self._entry_points[name]
        self._items[name] = obj
        self._origin[name] = info.origin
        info.status = "loaded"
        return obj

    # -- lookup ----------------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The class registered as `name`; raises UnknownName (listing valid names) or PluginError."""
        if name in self._items:
            return self._items[name]
        self._discover()
        if self._plugins and name in self._plugins:
            return self._load_plugin(name)
        valid = self.names()
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownName(f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(valid)}")

    def origin(self, name: str) -> str:
        """'builtin' or 'dist==version' for a loaded name."""
        self.get(name)
        return self._origin[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style pattern, built-ins and discovered plugins (not loaded)."""
        self._discover()
        every = set(self._items) | set(self._entry_points)
        return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))

    def builtins(self) -> list[str]:
        """Sorted names registered by uqbench itself (never a plugin's)."""
        return sorted(n for n, origin in self._origin.items() if origin == "builtin")

    def loaded(self) -> dict[str, T]:
        """Every usable entry, loading plugins; broken plugins are left out (see `plugins()`)."""
        self.plugins()
        return dict(sorted(self._items.items()))

    def __contains__(self, name: str) -> bool:
        return name in self.names()
