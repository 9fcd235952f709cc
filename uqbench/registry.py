"""Name → class registries for methods, tasks and suites, with entry-point plugins.

Built-ins register with a decorator (`@methods.register("map")`). Third-party packages declare entry points in
the groups `uqbench.methods` and `uqbench.tasks`; they are discovered once, kept as lazy placeholders, loaded
on first use and checked at load time. A plugin that fails to import or fails the checks becomes a
`PluginError` with its name, distribution and reason; every other name keeps working. Containment covers every
`BaseException`, `SystemExit` and `KeyboardInterrupt` included (see `_load_plugin`). A plugin can never shadow a
built-in name, and a name declared by two entry points of one group loads neither. `UQBENCH_NO_PLUGINS=1` turns
discovery off.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Generic, TypeVar

from uqbench.errors import BadConfig, PluginError, UnknownName

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

    @property
    def broken(self) -> bool:
        """True when the entry point failed to load, failed the checks or is unusable as declared."""
        return self.status.startswith("error: ")

    def failure(self, kind: str) -> PluginError:
        """The one-line error for using this broken plugin by name."""
        reason = self.status.removeprefix("error: ")
        return PluginError(f"{kind} {self.name!r} ({self.origin}) failed to load: {reason}")


def describe(exc: BaseException) -> str:
    """`Type: message` on one line (`Type` alone when the message is empty), for any exception a plugin raises."""
    try:
        message = " ".join(str(exc).split())
    except Exception:  # a plugin's exception whose __str__ itself fails
        message = "<unprintable message>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


OFF, ON = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")  # UQBENCH_NO_PLUGINS values, any case


def plugins_disabled() -> bool:
    """Whether `UQBENCH_NO_PLUGINS` turns plugin discovery off; BadConfig for a value that says neither."""
    value = os.environ.get("UQBENCH_NO_PLUGINS", "").strip().lower()
    if value not in OFF + ON:
        raise BadConfig(f"UQBENCH_NO_PLUGINS={os.environ['UQBENCH_NO_PLUGINS']!r}: expected 1, true, yes or on "
                        "(plugins off) or 0, false, no, off or empty (plugins on)")
    return value in OFF


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
        self._plugins: dict[str, list[PluginInfo]] | None = None  # name -> its entry points (one unless duplicated)
        self._entry_points: dict[str, metadata.EntryPoint] = {}

    # -- built-ins -------------------------------------------------------------------------------------------
    def register(self, name: str, origin: str = "builtin") -> Callable[[T], T]:
        """Class decorator registering a built-in under `name` (kebab-case); `origin` is what run keys name as its
        code ('builtin', or e.g. 'taskfile:<hash>' for a task defined by a file)."""

        def decorator(obj: T) -> T:
            if not _KEBAB.match(name):
                raise ValueError(f"{self.kind} name {name!r} must be kebab-case")
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.validate(obj)
            if hasattr(obj, "name"):
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            self._origin[name] = origin
            return obj

        return decorator

    def validate(self, obj: object) -> None:
        """The checks every entry passes, built-in or plugin: this registry's `check`, then that the class is
        concrete. Raises ValueError with the reason (`FooMethod leaves abstract fit unimplemented`)."""
        if self._check is not None:
            self._check(obj)  # type: ignore[arg-type]
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise ValueError(f"{getattr(obj, '__name__', obj)} leaves abstract {missing} unimplemented")

    # -- plugins ---------------------------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Every discovered entry point of this registry's group, loading each one to learn its status."""
        self._discover()
        for name in list(self._entry_points):
            try:
                self._load_plugin(name)
            except PluginError:
                pass
        return [info for infos in (self._plugins or {}).values() for info in infos]

    def _discover(self) -> None:
        if self._plugins is not None:
            return
        self._plugins = {}
        if self.group is None or plugins_disabled():
            return
        found: dict[str, dict[tuple[str, str], tuple[metadata.EntryPoint, PluginInfo]]] = {}
        for ep in metadata.entry_points(group=self.group):
            info = self._info(ep)  # the very same entry point seen twice counts once
            found.setdefault(ep.name, {}).setdefault((info.value, info.origin), (ep, info))
        for name, entries in found.items():
            infos = self._plugins[name] = [info for _, info in entries.values()]
            status = self._discovery_problem(name, infos)
            if status is None:
                self._entry_points[name] = next(iter(entries.values()))[0]
            for info in infos:
                info.status = status or info.status

    def _info(self, ep: metadata.EntryPoint) -> PluginInfo:
        dist = getattr(ep, "dist", None)
        return PluginInfo(
            name=ep.name,
            group=self.group or "",
            value=ep.value,
            distribution=str(dist.metadata["Name"]) if dist is not None else "?",
            version=str(dist.version) if dist is not None else "?",
        )

    def _discovery_problem(self, name: str, infos: list[PluginInfo]) -> str | None:
        """The status of entry points that must not be loaded at all, or None."""
        if name in self._items:
            return f"ignored: cannot shadow the built-in {self.kind} {name!r}"
        if not _KEBAB.match(name):
            return f"error: entry-point name {name!r} is not kebab-case"
        if len(infos) > 1:
            declared = ", ".join(f"{i.value} ({i.origin})" for i in infos)
            return f"error: the name is declared by {len(infos)} entry points: {declared}; none is loaded"
        return None

    def _load_plugin(self, name: str) -> T:
        assert self._plugins is not None
        info = self._plugins[name][0]
        ep = self._entry_points.pop(name, None)
        if ep is None:
            raise info.failure(self.kind)
        # Every BaseException is contained, not only Exception: a plugin's import must not end uqbench (a
        # `sys.exit()` at import time used to blank `uqbench plugins` and `uqbench list` with exit 0). That includes
        # KeyboardInterrupt: one raised by the plugin's code cannot be told from the user's Ctrl-C, so a Ctrl-C that
        # lands during a plugin's import is reported as that plugin failing ("KeyboardInterrupt"). `run` then still
        # stops (exit 2, the plugin named); `list` and `plugins` go on with the other plugins.
        try:
            obj = ep.load()
            self.validate(obj)
            if hasattr(obj, "name"):
                obj.name = name
        except BaseException as exc:  # every one, KeyboardInterrupt included: see above
            info.status = f"error: {describe(exc)}"
            raise info.failure(self.kind) from exc
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
