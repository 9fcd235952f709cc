"""Paper protocols: named, versioned experiment files that say how a paper ran its experiments and what it printed.

A protocol is an experiment file (`[plan]`, `[set]`, optionally `[search]`; see `uqbench.experiment`) with two
more tables:

    [protocol]
    name = "gal2016"                     # the file's name without .toml
    version = 1                          # bumped whenever the protocol changes
    title = "MC dropout on UCI: the original runs of Gal & Ghahramani (ICML 2016)"
    citation = "..."                     # the paper
    code = "..."                         # the code it was read from
    notes = "..."                        # what was chosen where the paper and code are silent

    [reference]
    source = "..."                       # where the numbers below were printed
    spread = "se"                        # what the printed ± is: "se" (standard error) or "sd" (standard
                                         #   deviation over the splits: divided by sqrt(splits) to compare)
    method = "mc-dropout"                # the planned method the table describes
    also = ["nll"]                       # metrics shown beside the compared ones, without a verdict
    [reference.uci-boston]
    splits = 20                          # how many splits the printed numbers average over
    rmse = "2.97 ± 0.19"                 # as printed (the digits say how it was rounded); NLL = minus the
    nll = "2.46 ± 0.06"                  #   printed log-likelihood

A protocol whose reference is a package run under the same protocol instead of printed numbers names it:
`[reference] runner = "vbll-package"` (a method whose runs are the reference column).

The shipped protocols are the `*.toml` files beside this module; `uqbench list protocols` lists them, and
`uqbench reproduce FILE.toml` runs a user's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from uqbench.errors import BadConfig, UnknownName
from uqbench.experiment import Experiment, load_experiment

NUMBER = re.compile(r"^\s*(-?\d+(?:\.(\d+))?)\s*(?:±|\+-)\s*(\d+(?:\.(\d+))?)\s*$")
PROTOCOL_KEYS = ("name", "version", "title", "citation", "code", "notes")
REFERENCE_KEYS = ("source", "spread", "method", "runner", "also")


@dataclass(frozen=True)
class Printed:
    """A number as a paper printed it: mean ± spread, each with its number of decimals.

    Attributes:
        mean, spread: the printed values.
        decimals: digits after the point of each (they bound the rounding error).
    """

    mean: float
    spread: float
    decimals: tuple[int, int]

    @classmethod
    def parse(cls, text: str) -> Printed:
        match = NUMBER.match(text)
        if match is None:
            raise ValueError(text)
        return cls(float(match[1]), float(match[3]), (len(match[2] or ""), len(match[4] or "")))

    def __str__(self) -> str:
        return f"{self.mean:.{self.decimals[0]}f} ± {self.spread:.{self.decimals[1]}f}"


@dataclass(frozen=True)
class Reference:
    """What a protocol compares against.

    Attributes:
        source: where the numbers were printed (or what the runner is).
        spread: 'se' or 'sd' (what the printed ± is).
        method: the planned method whose runs are compared.
        runner: a method whose runs under the same protocol are the reference column (instead of `values`).
        also: metrics shown beside the compared ones.
        values: task -> metric -> printed number; splits: task -> number of splits behind the printed numbers.
    """

    source: str
    spread: Literal["se", "sd"]
    method: str
    runner: str | None = None
    also: tuple[str, ...] = ()
    values: dict[str, dict[str, Printed]] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """A paper's protocol: its experiment and its reference."""

    name: str
    version: int
    title: str
    citation: str
    code: str
    notes: str
    experiment: Experiment
    reference: Reference
    path: str


def names() -> list[str]:
    """The shipped protocols, sorted."""
    here = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in here.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path) -> Protocol:
    """A shipped protocol by name, or a protocol file by path; one-line UserError when it is not valid."""
    text = str(name_or_path)
    if text in names():
        with resources.as_file(resources.files(__name__) / f"{text}.toml") as path:
            return _read(Path(path))
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        return _read(path)
    raise UnknownName(f"unknown protocol {text!r}; shipped: {', '.join(names())} (or give a path to a .toml file)")


def experiment(path: str | Path) -> Experiment:
    """What `--config FILE` runs: an experiment file, or a protocol file (checked as one, its plan and settings)."""
    from uqbench.experiment import read_toml

    return _read(Path(path)).experiment if "protocol" in read_toml(Path(path)) else load_experiment(Path(path))[0]


def _read(path: Path) -> Protocol:
    experiment, extra = load_experiment(path, extra_tables=("protocol", "reference"))
    for table in ("protocol", "reference"):
        if not isinstance(extra.get(table), dict):
            raise BadConfig(f"{path}: {table}: a protocol needs a [{table}] table")
    meta = extra["protocol"]
    _only(meta, PROTOCOL_KEYS, "protocol", path)
    name = _text(meta, "name", path, "protocol")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadConfig(f"{path}: protocol.version: expected a positive integer; got {version!r}")
    if experiment.methods is None or experiment.tasks is None:
        raise BadConfig(f"{path}: plan: a protocol names its methods and tasks")
    reference = _reference(extra["reference"], path, experiment)
    return Protocol(name, version, _text(meta, "title", path, "protocol"), _text(meta, "citation", path, "protocol"),
                    str(meta.get("code", "")), str(meta.get("notes", "")), experiment, reference, str(path))


def _reference(table: dict[str, Any], path: Path, experiment: Experiment) -> Reference:
    tasks = set(experiment.tasks or ())
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    _only(scalars, REFERENCE_KEYS, "reference", path)
    spread = table.get("spread")
    if spread not in ("se", "sd"):
        raise BadConfig(f"{path}: reference.spread: expected 'se' or 'sd'; got {spread!r}")
    method = _text(table, "method", path, "reference")
    planned = experiment.methods if isinstance(experiment.methods, tuple) else ()
    for role, name in (("method", method), ("runner", table.get("runner"))):
        if name is not None and name not in planned:
            raise BadConfig(f"{path}: reference.{role}: {name!r} is not one of the plan's methods ({', '.join(planned)})")
    also = table.get("also", [])
    if not isinstance(also, list) or not all(isinstance(a, str) for a in also):
        raise BadConfig(f"{path}: reference.also: expected a list of metric keys; got {also!r}")
    values: dict[str, dict[str, Printed]] = {}
    splits: dict[str, int] = {}
    for task, cells in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        if task not in tasks:
            raise BadConfig(f"{path}: reference.{task}: not one of the plan's tasks")
        n = cells.get("splits")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise BadConfig(f"{path}: reference.{task}.splits: expected a positive integer; got {n!r}")
        splits[task] = n
        values[task] = {}
        for metric, text in ((k, v) for k, v in cells.items() if k != "splits"):
            _metric(metric, f"{path}: reference.{task}.{metric}", [task])
            try:
                values[task][metric] = Printed.parse(text if isinstance(text, str) else "")
            except ValueError:
                raise BadConfig(f"{path}: reference.{task}.{metric}: expected 'MEAN ± SPREAD' as printed; got "
                                f"{text!r}") from None
    for metric in also:
        _metric(metric, f"{path}: reference.also", sorted(tasks))
    runner = table.get("runner")
    if runner is None and not values:
        raise BadConfig(f"{path}: reference: expected printed numbers ([reference.TASK] tables) or a runner")
    return Reference(str(table.get("source", "")), spread, method, runner, tuple(also), values, splits)


def _metric(key: str, where: str, task_names: list[str]) -> None:
    """BadConfig unless `key` is a metric every one of these tasks reports (its kind's, or an OOD set's it has)."""
    from uqbench.metrics import metric_spec, reported
    from uqbench.tasks import tasks

    try:
        metric_spec(key)
    except KeyError as exc:
        raise BadConfig(f"{where}: {exc.args[0]}") from None
    for name in task_names:
        task_cls = tasks.get(name)
        if isinstance(task_cls.kind, property):
            continue  # a user's file decides its kind and OOD sets: a metric it lacks shows as a missing cell
        keys = reported(task_cls.kind, task_cls.ood_sets)
        if key not in keys:
            raise BadConfig(f"{where}: task {name!r} ({task_cls.kind}) does not report {key!r}; it reports: "
                            f"{', '.join(keys)}")


def _only(table: dict[str, Any], keys: tuple[str, ...], name: str, path: Path) -> None:
    for key in table:
        if key not in keys:
            raise BadConfig(f"{path}: {name}.{key}: unknown key; expected one of {', '.join(keys)}")


def _text(table: dict[str, Any], key: str, path: Path, name: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise BadConfig(f"{path}: {name}.{key}: expected a non-empty string; got {value!r}")
    return value


__all__ = ["Printed", "Protocol", "Reference", "experiment", "load", "names"]
