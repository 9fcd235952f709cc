"""Rows for `uqbench list methods|tasks` and `uqbench plugins`."""

from __future__ import annotations

import dataclasses
from typing import Any

from uqbench.errors import BadConfig


def list_rows(what: str, verbose: bool) -> tuple[list[str], list[list[Any]], list[str]]:
    """(columns, rows, broken plugins) for `list methods`, `list tasks` or `list protocols`."""
    if what == "protocols":
        return (*protocol_rows(verbose), [])
    if what == "methods":
        from uqbench.methods import methods as registry
    elif what == "tasks":
        from uqbench.tasks import tasks as registry
    else:
        raise BadConfig(f"list {what!r}: expected 'methods', 'tasks' or 'protocols'")
    items = registry.loaded()
    broken = [f"{p.name} ({p.origin}): {p.status}" for p in registry.plugins() if p.broken]
    rows = []
    for name, cls in items.items():
        try:
            rows.append(_row(what, name, cls, registry.origin(name), verbose))
        except Exception as exc:  # a plugin whose class loads but cannot describe itself
            if registry.origin(name) == "builtin":
                raise
            broken.append(f"{name} ({registry.origin(name)}): error: describing it failed: {type(exc).__name__}: {exc}")
    columns = (
        ["method", "kinds", "description", "source"]
        if what == "methods"
        else ["task", "kind", "train / test", "splits", "OOD sets", "data", "description"]
    )
    if verbose:
        columns.append("hyperparameters (default)")
    return columns, rows, broken


def _row(what: str, name: str, cls: type, origin: str, verbose: bool) -> list[Any]:
    if what == "methods":
        row = [name, ", ".join(sorted(cls.kinds)), cls.summary(), origin]
    else:
        task, by_data = cls(), isinstance(cls.kind, property)  # a user's file decides kind and OOD sets
        row = [name, "from the file" if by_data else cls.kind, task.size(), str(task.n_splits()),
               "from the file" if by_data else ", ".join(cls.ood_sets) or "-", cls.source, cls.summary()]
    if verbose:
        row.append(_config_text(cls.Config) if what == "methods" else _task_text(cls))
    return row


def _config_text(config_cls: type, default: Any = None) -> str:
    default = config_cls() if default is None else default
    return ", ".join(f"{f.name}={getattr(default, f.name)!r}" for f in dataclasses.fields(config_cls))


def _task_text(cls: type) -> str:
    """The task's data settings, default recipe and default backbone."""
    parts = [_config_text(cls.Config), f"recipe: {_config_text(type(cls.recipe), cls.recipe)}",
             f"backbone: {_config_text(type(cls.backbone), cls.backbone)}"]
    return "; ".join(p for p in parts if p)


def protocol_rows(verbose: bool) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the shipped paper protocols."""
    from uqbench import protocols

    rows = []
    for name in protocols.names():
        p = protocols.load(name)
        reference = p.reference.runner or f"published ({'standard errors' if p.reference.spread == 'se' else 'standard deviations'})"
        methods = p.experiment.methods
        row = [name, p.version, ", ".join(methods) if isinstance(methods, tuple) else methods,
               str(len(p.experiment.tasks or ())), "yes" if p.experiment.search else "no", reference, p.title]
        if verbose:
            row.append(p.citation)
        rows.append(row)
    columns = ["protocol", "version", "methods", "tasks", "search", "reference", "title"]
    return columns + (["citation"] if verbose else []), rows


def plugin_rows() -> tuple[list[str], list[list[Any]], list[str]]:
    """(columns, rows, broken plugins' names) of every entry point found in the uqbench groups."""
    from uqbench.methods import methods
    from uqbench.tasks import tasks

    found = [p for registry in (methods, tasks) for p in registry.plugins()]
    rows = [[p.name, p.group, p.distribution, p.version, p.value, p.status] for p in found]
    broken = list(dict.fromkeys(p.name for p in found if p.broken))
    return ["name", "group", "distribution", "version", "target", "status"], rows, broken
