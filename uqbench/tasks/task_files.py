"""Task files: a group's own tasks as TOML files in a folder, shared without a package, like dataset cards.

    # tasks/houses.toml
    [task]
    name = "houses"                    # the task's name (kebab-case, not a built-in's)
    base = "csv"                       # the file task it presets: csv or npz
    description = "House prices from the 2024 survey"
    [set]                              # its data settings (paths relative to this file) and default recipe and
    path = "houses.csv"                #   backbone, as `--set` would give them
    target = "price"
    epochs = 200

`uqbench --include-path tasks/ compare --tasks houses` (or `UQBENCH_TASKS=tasks/`, folders separated by the
path separator) registers every `*.toml` of the folders as a task. `--include-path` adds its folders to
`UQBENCH_TASKS`, so the worker processes of `--jobs N` find them too. The task's code origin in every run key is
`taskfile:<sha256 of the file>`, so an edited file gives new runs; the data files are in the key as for any `csv`
or `npz` task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from uqbench import config as cfgmod
from uqbench.errors import BadConfig
from uqbench.models import BackboneConfig
from uqbench.tasks.base import tasks
from uqbench.tasks.own_data import CsvTask, NpzTask, OwnDataTask
from uqbench.training import TrainConfig

ENV = "UQBENCH_TASKS"
BASES: dict[str, type[OwnDataTask]] = {"csv": CsvTask, "npz": NpzTask}
TASK_KEYS = ("name", "base", "description")
PATH_KEYS = ("path", "train_index", "test_index")  # settings that name files, read relative to the task file

loaded: dict[str, str] = {}  # task file (resolved) -> the task name it registered


def folders() -> list[Path]:
    """The folders `UQBENCH_TASKS` names, in order."""
    return [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def include(folder: Path) -> None:
    """Add `folder` to `UQBENCH_TASKS` (for this process and the workers it starts) and register its task files;
    BadConfig naming the file and the key for a bad one."""
    if not folder.is_dir():
        raise BadConfig(f"--include-path {str(folder)!r}: no such directory")
    os.environ[ENV] = os.pathsep.join(dict.fromkeys([str(folder), *map(str, folders())]))
    register_folder(folder)


def register_env() -> None:
    """Register the task files of every `UQBENCH_TASKS` folder (BadConfig for a bad one)."""
    for folder in folders():
        if not folder.is_dir():
            raise BadConfig(f"{ENV}: {str(folder)!r} is not a directory")
        register_folder(folder)


def register_folder(folder: Path) -> None:
    for path in sorted(folder.glob("*.toml")):
        if str(path.resolve()) not in loaded:
            loaded[str(path.resolve())] = register_file(path)


def register_file(path: Path) -> str:
    """Register the task a task file defines; returns its name."""
    from uqbench.experiment import read_toml

    data = read_toml(path)
    unknown = sorted(set(data) - {"task", "set"})
    if unknown:
        raise BadConfig(f"{path}: {unknown[0]}: unknown table; a task file has [task] and [set]")
    table, settings = data.get("task"), data.get("set", {})
    if not isinstance(table, dict) or not isinstance(settings, dict):
        raise BadConfig(f"{path}: expected a [task] table (name, base, description) and a [set] table")
    for key in table:
        if key not in TASK_KEYS:
            raise BadConfig(f"{path}: task.{key}: unknown key; expected one of {', '.join(TASK_KEYS)}")
    name, base = table.get("name"), table.get("base")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise BadConfig(f"{path}: task.name: expected a kebab-case name such as 'houses'; got {name!r}")
    if name in tasks:
        raise BadConfig(f"{path}: task.name: {name!r} is already a task ({tasks.origin(name)}); choose another name")
    if base not in BASES:
        raise BadConfig(f"{path}: task.base: expected one of {', '.join(BASES)}; got {base!r}")
    description = table.get("description", f"{name}: a task file")
    if not isinstance(description, str) or not description.strip():
        raise BadConfig(f"{path}: task.description: expected a non-empty string; got {description!r}")
    parent = BASES[base]
    ident = name.replace("-", "_")
    config_cls, recipe, backbone = _parts(path, parent, settings, f"Config_{ident}")
    cls = type(f"Task_{ident}", (parent,), {
        "__doc__": description.strip(), "__module__": __name__, "Config": config_cls, "recipe": recipe,
        "backbone": backbone, "source": f"task file {path}",
    })
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    try:
        tasks.register(name, origin=f"taskfile:{digest}")(cls)
    except ValueError as exc:
        raise BadConfig(f"{path}: {exc}") from None
    globals()[cls.__name__], globals()[config_cls.__name__] = cls, config_cls  # pickle finds them by name
    return name


def __getattr__(name: str) -> Any:
    """A task file's class, by the name pickle stored (a worker unpickling a spec before it registered the
    driver's task files registers them now)."""
    if name.startswith(("Task_", "Config_")):
        register_env()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parts(path: Path, parent: type[OwnDataTask], settings: dict[str, Any],
           config_name: str) -> tuple[type, TrainConfig, BackboneConfig]:
    """The task's Config class (the base's, with the file's values as defaults), default recipe and backbone."""
    parts: dict[type, dict[str, Any]] = {parent.Config: {}, TrainConfig: {}, BackboneConfig: {}}
    for key, value in settings.items():
        owner = next((c for c in parts if key in cfgmod.field_types(c)), None)
        if owner is None:
            keys = [k for c in parts for k in cfgmod.field_types(c)]
            raise BadConfig(f"{path}: set.{key}: unknown key; expected one of {', '.join(keys)}")
        if key in PATH_KEYS and isinstance(value, str) and value:
            value = str((path.parent / value).resolve())
        try:
            parts[owner][key] = cfgmod.convert(cfgmod.field_types(owner)[key], value)
        except ValueError:
            tp = cfgmod.describe_type(cfgmod.field_types(owner)[key])
            raise BadConfig(f"{path}: set.{key}: must be {tp}; got {value!r}") from None
    try:
        data = cfgmod.build(parent.Config, parts[parent.Config], "the task")
        recipe = cfgmod.build(TrainConfig, {**cfgmod.to_dict(parent.recipe), **parts[TrainConfig]}, "the recipe")
        backbone = cfgmod.build(BackboneConfig, {**cfgmod.to_dict(parent.backbone), **parts[BackboneConfig]},
                                "the backbone")
    except cfgmod.ConstraintError as exc:
        raise BadConfig(f"{path}: set.{exc.key}: {exc}") from None
    fields = [(f.name, f.type, dataclasses.field(default=getattr(data, f.name)))
              for f in dataclasses.fields(parent.Config) if f.name in parts[parent.Config]]
    config_cls = dataclasses.make_dataclass(config_name, fields, bases=(parent.Config,), frozen=True,
                                            namespace={"__module__": __name__})
    return config_cls, recipe, backbone


__all__ = ["ENV", "folders", "include", "register_env", "register_file", "register_folder"]
