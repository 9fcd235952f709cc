"""The Python entry point: the same request, resolver and runner as `uqbench run`, without the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from uqbench.errors import BadConfig, UserError
from uqbench.results import RunRecord
from uqbench.runner import RunOptions

if TYPE_CHECKING:
    from uqbench.spec import Plan, RunSpec


def run(
    method: str,
    task: str,
    *,
    seeds: int = 1,
    split: int = 0,
    settings: Iterable[str] = (),
    config: str | Path | None = None,
    out: str | Path = "results",
    device: str = "auto",
    data_dir: str | Path | None = None,
    save_predictions: bool = False,
    force: bool = False,
    retry: bool = True,
) -> list[RunRecord]:
    """Run `method` on `task` for seeds 0 .. seeds-1 on one split, as `uqbench run` does; one record per seed.

    Args:
        settings: `[SCOPE.][PART.]KEY=VALUE` texts, as `--set` takes them (e.g. "epochs=50", "p=0.1").
        config: an experiment or protocol file (its `[set]` settings apply, below `settings`).
        out: the results directory; runs it already holds are not repeated (unless `force`; failed ones are
            tried again unless `retry` is False).
        data_dir: read dataset files from here, never download.

    Raises:
        UserError: bad input (an unknown name, a bad value, missing data); the message is the CLI's error line.
        BadArgument: an argument of the wrong type (also a TypeError).
    """
    _check_types(method=(method, str), task=(task, str), seeds=(seeds, int), split=(split, int),
                 config=(config, (str, Path, type(None))), out=(out, (str, Path)), device=(device, str),
                 data_dir=(data_dir, (str, Path, type(None))), save_predictions=(save_predictions, bool),
                 force=(force, bool), retry=(retry, bool))
    if isinstance(settings, (str, bytes)) or not isinstance(settings, Iterable):
        raise BadArgument(f"uqbench.run: settings must be a list of 'KEY=VALUE' texts; got {settings!r}")
    settings = tuple(settings)
    for text in settings:
        if not isinstance(text, str):
            raise BadArgument(f"uqbench.run: each setting must be a 'KEY=VALUE' text; got {text!r}")
    from uqbench import protocols
    from uqbench.experiment import CommandLine, run_request
    from uqbench.spec import plan

    data = Path(data_dir) if data_dir is not None else None
    file = protocols.experiment(config) if config is not None else None
    line = CommandLine(settings=settings, data_dir=data)
    the_plan = plan(run_request(method, task, seeds, split, line, file))
    options = RunOptions(out=Path(out), device=device, data_dir=data, save_predictions=save_predictions,
                         force=force, retry=retry, refresh_since=time.time())
    return [record for _, record, _ in run_in_process(the_plan, options)]


class BadArgument(BadConfig, TypeError):
    """An argument of the Python API of the wrong type."""


def _check_types(**arguments: tuple[object, type | tuple[type, ...]]) -> None:
    """BadArgument for the first argument whose value is not of its type (a bool is not an int here)."""
    for name, (value, types) in arguments.items():
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in wanted)
            raise BadArgument(f"uqbench.run: {name} must be {names}; got {value!r}")


def run_in_process(the_plan: Plan, options: RunOptions) -> Iterator[tuple[RunSpec, RunRecord, bool]]:
    """Run a plan's specs one by one in this process: yields (spec, record, computed now?) for each.

    The plan's files are made available first; an 'error' record (the environment failed) stops it with a
    UserError, as bad input does.
    """
    from uqbench.runner import Runner

    the_plan.prepare()
    runner = Runner(options)
    for spec in the_plan.specs:
        record, fresh = runner.run(spec)
        if record.status == "error":
            raise UserError(record.error["message"])  # type: ignore[index]
        yield spec, record, fresh


__all__ = ["BadArgument", "run", "run_in_process"]
