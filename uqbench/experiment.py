"""Experiment files (`--config exp.toml`) and how a suite, a file and the command line make one request.

An experiment file is TOML with two tables, both optional:

    [plan]                      # what to run (compare; `run` takes one method and one task from it)
    suite = "quick"             # start from a suite: its tasks, methods, seeds, splits and settings
    methods = ["map", "ensemble"]   # or "all", or a shell pattern such as "mc-*"
    exclude = ["sngp"]
    tasks = ["uci-boston", "uci-yacht"]
    seeds = 3
    splits = 2                  # the first N splits of every task, or "all"

    [set]                       # settings, as `--set` takes them; nested tables narrow the scope
    epochs = 400                # every run
    [set.mc-dropout]            # runs of one method
    p = 0.01
    [set.uci-yacht]             # runs on one task
    epochs = 4000
    [set.uci-yacht.mc-dropout]  # one method on one task
    p = 0.1

    [search]                    # optional: a per-run grid search (see `uqbench.search`)
    metric = "nll"
    validation = "tail"
    fraction = 0.2
    [search.grid]
    p = [0.01, 0.05]

A table inside `[set]` named `method`, `task`, `recipe` or `backbone` names the part a key belongs to (needed only
when a key is in two parts). The command line beats the file, and the file beats the suite: `--tasks` replaces
the file's tasks, `--set` settings beat the file's (see `uqbench.spec` for the whole order). Anything the reader
does not know — a key, a type, a table — ends with one line naming the file, the key and the reason.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uqbench.errors import BadConfig, UserError
from uqbench.files import MAX_TEXT_BYTES, read_bytes
from uqbench.search import Holdout
from uqbench.settings import CONFIG_FILE, FLAG, SET, SUITE, Setting, parse_setting, setting_at
from uqbench.spec import Request, SearchRequest
from uqbench.suites import Suite, suites

DEFAULT_SUITE = "quick"
DEFAULT_SEEDS = 3
PLAN_KEYS = ("suite", "methods", "exclude", "tasks", "seeds", "splits")


@dataclass(frozen=True)
class Experiment:
    """What an experiment file (or the command line) says; None: not said.

    Attributes:
        suite: a suite to start from.
        methods: names, 'all' or a shell pattern; exclude: names left out.
        tasks: task names.
        seeds: seeds per split; splits: the first N splits (0 = every split).
        settings: its settings, in the file's order.
        search: its `[search]` table, or None.
        source: the file, for messages.
    """

    suite: str | None = None
    methods: tuple[str, ...] | str | None = None
    exclude: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    seeds: int | None = None
    splits: int | None = None
    settings: tuple[Setting, ...] = ()
    search: SearchRequest | None = None
    source: str = ""


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; one-line UserError when it cannot be read or parsed."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        text = read_bytes(Path(path), MAX_TEXT_BYTES, follow=True).decode("utf-8").removeprefix("\ufeff")  # BOM
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None


def load_experiment(path: Path, extra_tables: tuple[str, ...] = ()) -> tuple[Experiment, dict[str, Any]]:
    """Read an experiment file; returns it and its `extra_tables` (for readers that extend the format)."""
    data = read_toml(path)
    tables = ["plan", "set", "search", *extra_tables]
    unknown = sorted(set(data) - set(tables))
    if unknown:
        raise BadConfig(f"{path}: unknown table or key {unknown[0]!r}; expected: {', '.join(tables)}")
    plan = _table(data, "plan", path)
    for key in plan:
        if key not in PLAN_KEYS:
            raise BadConfig(f"{path}: plan.{key}: unknown key; expected one of {', '.join(PLAN_KEYS)}")
    experiment = Experiment(
        suite=_opt(plan, "suite", str, path),
        methods=_methods(plan.get("methods"), path),
        exclude=_names(plan.get("exclude"), "plan.exclude", path),
        tasks=_names(plan.get("tasks"), "plan.tasks", path),
        seeds=_count(plan, "seeds", path),
        splits=_splits(plan.get("splits"), path),
        settings=tuple(settings_of(_table(data, "set", path), [], CONFIG_FILE, f"{path}: set")),
        search=search_of(data["search"], path) if "search" in data else None,
        source=str(path),
    )
    return experiment, {name: data[name] for name in extra_tables if name in data}


MAX_NESTING = 3  # the tables above a setting name at most a method, a task and a part


def settings_of(table: dict[str, Any], path: list[str], layer: int, source: str) -> list[Setting]:
    """The settings of a (nested) TOML table; `path` is the scope reached so far."""
    out = []
    for key, value in table.items():
        where = ".".join([*path, key])
        if isinstance(value, dict):
            _not_too_deep(path, f"{source}.{where}")
            out += settings_of(value, [*path, key], layer, source)
        elif isinstance(value, (list, tuple)) or value is None:
            raise BadConfig(f"{source}.{where}: expected a single value; got {value!r}")
        else:
            out.append(setting_at([*path, key], value, layer, f"{source}.{where}", text=False))
    return out


SEARCH_KEYS = ("metric", "validation", "fraction", "grid")


def search_of(table: Any, path: Path) -> SearchRequest:
    """A `[search]` table: metric, validation rule and fraction, and the grid axes (lists, scoped like [set])."""
    from uqbench.metrics import metric_spec

    if not isinstance(table, dict):
        raise BadConfig(f"{path}: search: expected a table; got {table!r}")
    for key in table:
        if key not in SEARCH_KEYS:
            raise BadConfig(f"{path}: search.{key}: unknown key; expected one of {', '.join(SEARCH_KEYS)}")
    metric = table.get("metric")
    if not isinstance(metric, str):
        raise BadConfig(f"{path}: search.metric: expected a metric key such as 'nll'; got {metric!r}")
    try:
        metric_spec(metric)
    except KeyError as exc:
        raise BadConfig(f"{path}: search.metric: {exc.args[0]}") from None
    try:
        holdout = Holdout(table.get("validation", "tail"), table.get("fraction", 0.2))
    except BadConfig as exc:
        raise BadConfig(f"{path}: search: {exc}") from None
    grid = _table(table, "grid", path, "search.grid")
    axes = _axes(grid, [], f"{path}: search.grid")
    if not axes:
        raise BadConfig(f"{path}: search.grid: expected at least one axis, e.g. p = [0.01, 0.05]")
    return SearchRequest(metric, holdout, tuple(axes), str(path))


def _axes(table: dict[str, Any], path: list[str], source: str) -> list[Setting]:
    """The grid axes of a (nested) table: a list of values per key; tables narrow the scope as in [set]."""
    out = []
    for key, value in table.items():
        where = ".".join([*path, key])
        if isinstance(value, dict):
            _not_too_deep(path, f"{source}.{where}")
            out += _axes(value, [*path, key], source)
        elif not isinstance(value, list) or not value or any(isinstance(v, (list, dict)) for v in value):
            raise BadConfig(f"{source}.{where}: expected a non-empty list of values; got {value!r}")
        else:
            out.append(setting_at([*path, key], tuple(value), CONFIG_FILE, f"{source}.{where}", text=False))
    return out


def _not_too_deep(path: list[str], where: str) -> None:
    if len(path) >= MAX_NESTING:
        raise BadConfig(f"{where}: tables nested too deeply; a setting's tables name at most a method, a task and "
                        "a part")


def _table(data: dict[str, Any], name: str, path: Path, where: str | None = None) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise BadConfig(f"{path}: {where or name}: expected a table; got {table!r}")
    return table


def _opt(table: dict[str, Any], key: str, tp: type, path: Path) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, tp):
        raise BadConfig(f"{path}: plan.{key}: expected a {tp.__name__}; got {value!r}")
    return value


def _count(table: dict[str, Any], key: str, path: Path) -> int | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise BadConfig(f"{path}: plan.{key}: expected a positive integer; got {value!r}")
    return value


def _splits(value: Any, path: Path) -> int | None:
    if value == "all":
        return 0
    return _count({"splits": value}, "splits", path)


def _names(value: Any, where: str, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadConfig(f"{path}: {where}: expected a non-empty list of names; got {value!r}")
    return tuple(value)


def _methods(value: Any, path: Path) -> tuple[str, ...] | str | None:
    if isinstance(value, str) and value:
        return value
    return _names(value, "plan.methods", path)


@dataclass(frozen=True)
class CommandLine:
    """What `compare` (or `run`) was given on the command line; None: not given.

    `splits` 0 means every split; `epochs` is flag sugar for the recipe's epochs.
    """

    suite: str | None = None
    tasks: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    seeds: int | None = None
    splits: int | None = None
    settings: tuple[str, ...] = ()
    epochs: int | None = None
    data_dir: Path | None = None


def compare_request(line: CommandLine, file: Experiment | None = None) -> tuple[Request, bool]:
    """The request of `compare` and whether its suite needs a GPU: the command line over the file over the suite.

    Without tasks (from `--tasks` or the file) the suite is `quick`; methods default to the suite's, or to every
    registered method when no suite is used.
    """
    file = file or Experiment()
    if line.suite is not None and line.tasks is not None:
        raise BadConfig("--suite and --tasks: give one of them (a suite names its own tasks)")
    if line.splits is not None and line.splits < 1:
        raise BadConfig(f"--splits {line.splits}: must be at least 1")
    tasks = line.tasks or file.tasks
    suite_name = line.suite or file.suite or (DEFAULT_SUITE if tasks is None else None)
    suite = _suite(suite_name) if suite_name is not None else None
    request = Request(
        methods=line.methods or file.methods or (suite.methods if suite else "all"),
        tasks=tuple(tasks or (suite.tasks if suite else ())),
        seeds=_given(line.seeds, file.seeds, suite.seeds if suite else DEFAULT_SEEDS),
        splits=_first(line.splits, file.splits, suite.splits if suite else 1),
        exclude=tuple(line.exclude or file.exclude or (suite.exclude if suite else ())),
        settings=(*_suite_settings(suite_name, suite), *file.settings, *_line_settings(line)),
        data_dir=line.data_dir,
        search=file.search,
    )
    return request, bool(suite is not None and suite.needs_gpu)


def run_request(method: str | None, task: str | None, seeds: int | None, split: int, line: CommandLine,
                file: Experiment | None = None) -> Request:
    """The request of `run`: one method and one task (from the arguments, else the file's plan)."""
    file = file or Experiment()
    method = method or _single(file.methods, "method", file.source)
    task = task or _single(file.tasks, "task", file.source)
    return Request(
        methods=(method,),
        tasks=(task,),
        seeds=_given(seeds, file.seeds, 1),
        split=split,
        settings=(*file.settings, *_line_settings(line)),
        data_dir=line.data_dir,
        strict=True,
        search=file.search,
    )


def _single(names: tuple[str, ...] | str | None, what: str, source: str) -> str:
    if isinstance(names, tuple) and len(names) == 1:
        return names[0]
    where = f"; {source} names {names!r}" if source and names else ""
    option = "--task" if what == "task" else "METHOD"
    raise BadConfig(f"run needs exactly one {what}: give {option}, or a config file whose plan names one{where}")


def _given(*values: Any) -> Any:
    """The first value that is not None (the command line, then the file, then the default)."""
    return next((v for v in values if v is not None), None)


def _first(line: int | None, file: int | None, suite: int | None) -> int | None:
    """The first of the splits values that is given; 0 ('every split', a file's "all") becomes None."""
    value = _given(line, file, suite)
    return None if value == 0 else value


def _suite(name: str) -> Suite:
    """The suite, its method names checked (an unknown one is named with the suite)."""
    from uqbench.spec import method_names

    suite = suites.get(name)
    try:
        method_names(suite.methods, suite.exclude)
    except UserError as exc:
        raise type(exc)(f"suite {name!r}: {exc}") from None
    return suite


def _suite_settings(name: str | None, suite: Suite | None) -> list[Setting]:
    if suite is None:
        return []
    return [parse_setting(text, SUITE, f"suite {name!r}: {text}") for text in suite.settings]


def _line_settings(line: CommandLine) -> list[Setting]:
    out = [parse_setting(text, SET) for text in line.settings]
    if line.epochs is not None:
        out.append(Setting("epochs", line.epochs, "recipe", layer=FLAG, source=f"--epochs {line.epochs}", text=False))
    return out


__all__ = ["CommandLine", "Experiment", "compare_request", "load_experiment", "read_toml", "run_request", "settings_of"]
