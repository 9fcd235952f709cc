"""The Python entry points: the same requests, resolver, runner and store as `uqbench run` and `uqbench compare`,
without the command line, plus `evaluate` for predictions made anywhere.

    import uqbench
    task = uqbench.tasks.from_arrays(X, y, ood={"far": X_far})
    board = uqbench.compare(task, methods="all", seeds=3)
    print(board)
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

from uqbench.errors import BadConfig, UserError
from uqbench.results import RunRecord
from uqbench.runner import RunOptions, check_runnable

if TYPE_CHECKING:
    from uqbench.leaderboard import Leaderboard
    from uqbench.models.custom import Factory
    from uqbench.prediction import Categorical, Gaussian, GaussianMixture
    from uqbench.settings import Setting
    from uqbench.spec import Plan, Request, RunSpec
    from uqbench.tasks.own_data import ArrayTask

    TaskArg = Union[str, ArrayTask]

Settings = Union[Iterable[str], Mapping[str, Any]]


class BadArgument(BadConfig, TypeError):
    """An argument of the Python API of the wrong type."""


def run(
    method: str,
    task: TaskArg,
    *,
    seeds: int = 1,
    split: int = 0,
    settings: Settings = (),
    backbone: Factory | None = None,
    config: str | Path | None = None,
    out: str | Path = "results",
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | Path | None = None,
    save_predictions: bool = False,
    force: bool = False,
    retry: bool = True,
) -> list[RunRecord]:
    """Run `method` on `task` for seeds 0 .. seeds-1 on one split, as `uqbench run` does; one record per seed.

    Args:
        task: a task name, or a task made by `uqbench.tasks.from_arrays`.
        settings: `[SCOPE.][PART.]KEY=VALUE` texts, as `--set` takes them (e.g. "epochs=50", "p=0.1"), or a
            mapping {"epochs": 50, "mc-dropout.p": 0.1} of typed values.
        backbone: your own backbone, a factory `(dropout: float, spectral_norm: float | None) -> nn.Module` with
            an `out_features` attribute (see `uqbench.models.custom`); every method builds its variant from it.
        config: an experiment or protocol file (its `[set]` settings apply, below `settings`).
        out: the results directory; runs it already holds are not repeated (unless `force`; failed ones are
            tried again unless `retry` is False).
        threads: torch's threads for each run (None: torch's default); recorded in each record's `env.threads`.
        data_dir: read dataset files from here, never download.

    Raises:
        UserError: bad input (an unknown name, a bad value, missing data); the message is the CLI's error line.
        BadArgument: an argument of the wrong type (also a TypeError).
    """
    from uqbench.driver import check_threads
    from uqbench.experiment import CommandLine, run_request
    from uqbench.files import ensure_writable

    _check_types("run", method=(method, str), seeds=(seeds, int), split=(split, int),
                 config=(config, (str, Path, type(None))), out=(out, (str, Path)), device=(device, str),
                 threads=(threads, (int, type(None))),
                 data_dir=(data_dir, (str, Path, type(None))), save_predictions=(save_predictions, bool),
                 force=(force, bool), retry=(retry, bool))
    name, task_settings = _task("run", task)
    data = Path(data_dir) if data_dir is not None else None
    request = run_request(method, name, seeds, split, CommandLine(data_dir=data), _file(config))
    the_plan = _plan(request, (*task_settings, *_settings("run", settings), *_backbone(backbone)))
    check_threads(threads)
    the_plan.prepare()
    check_runnable(the_plan.specs, device)
    ensure_writable(Path(out))
    options = _options(out, device, data, save_predictions, force, retry, threads)
    return [record for _, record, _ in run_in_process(the_plan, options)]


def compare(
    tasks: TaskArg | Iterable[TaskArg] | None = None,
    *,
    methods: str | Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    suite: str | None = None,
    seeds: int | None = None,
    splits: int | None = None,
    settings: Settings = (),
    backbone: Factory | None = None,
    config: str | Path | None = None,
    metrics: Iterable[str] | None = None,
    out: str | Path = "results",
    jobs: int = 1,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | Path | None = None,
    save_predictions: bool = False,
    force: bool = False,
    retry: bool = True,
) -> Leaderboard:
    """Run every (method, task, seed, split) of a comparison the store lacks, as `uqbench compare` does, and
    return its leaderboard (`print(board)` shows the tables; `board.to_json()` is the `--format json` document).

    Args:
        tasks: task names and/or one task from `from_arrays`; None: the suite's (default `quick`).
        methods: 'all', a name, a pattern ('mc-*') or several (default: the suite's, or all); exclude: names or
            patterns left out.
        seeds, splits: seeds 0 .. seeds-1 on the first `splits` splits (default: the suite's, or 3 seeds, 1 split).
        settings, backbone, config, out, device, data_dir, save_predictions, force, retry: as for `run` (a
            custom backbone lives in this process: jobs=1).
        metrics: metric keys or patterns to show, in order (the first ranks); None: the defaults.
        jobs: runs at a time (worker processes); threads: torch's threads per run (default: cores / jobs).

    Raises:
        UserError, BadArgument: as `run`.
    """
    from rich.console import Console

    from uqbench.driver import PlanDisplay, check_parallel, check_threads, make_executor, pending, plan_records, run_specs
    from uqbench.experiment import CommandLine, compare_request
    from uqbench.files import ensure_writable
    from uqbench.leaderboard import build, provenance
    from uqbench.results import ResultStore
    from uqbench.runner import Runner

    _check_types("compare", suite=(suite, (str, type(None))), seeds=(seeds, (int, type(None))),
                 splits=(splits, (int, type(None))), config=(config, (str, Path, type(None))), out=(out, (str, Path)),
                 jobs=(jobs, int), device=(device, str), threads=(threads, (int, type(None))),
                 data_dir=(data_dir, (str, Path, type(None))),
                 save_predictions=(save_predictions, bool), force=(force, bool), retry=(retry, bool))
    names, task_settings = _tasks(tasks)
    data = Path(data_dir) if data_dir is not None else None
    line = CommandLine(suite=suite, tasks=names, methods=_texts("compare", "methods", methods) if methods is not None else None,
                       exclude=tuple(exclude) if isinstance(exclude, (list, tuple)) and not exclude
                       else _texts("compare", "exclude", exclude), seeds=seeds, splits=splits,
                       data_dir=data)
    check_parallel(jobs)
    check_threads(threads)
    if backbone is not None and jobs > 1:
        raise BadConfig("uqbench.compare: a backbone factory lives in this process; worker processes cannot build "
                        "it, so give jobs=1")
    request, _ = compare_request(line, _file(config))
    the_plan = _plan(request, (*task_settings, *_settings("compare", settings), *_backbone(backbone)))
    the_plan.prepare()
    check_runnable(the_plan.specs, device)
    options = _options(out, device, data, save_predictions, force, retry, threads)
    store = ResultStore(options.out, quarantine=True)
    ensure_writable(store.root)
    executor = make_executor(Runner(options), jobs)
    done = run_specs(pending(the_plan, store, options), executor, store, PlanDisplay(Console(stderr=True), quiet=True))
    errors = [r for r in done if r.status == "error"]
    if errors:  # the environment, not the method: no result, as `run` says
        raise UserError(f"{len(errors)} of {len(done)} runs could not run: {errors[0].error['message']}")  # type: ignore[index]
    shown = _texts("compare", "metrics", metrics) if metrics is not None else None
    board = build(plan_records(the_plan, store), shown, the_plan.expected())
    board.provenance = provenance(options.out)
    return board


def evaluate(prediction: Categorical | Gaussian | GaussianMixture, targets: Any, *, score: Any = None,
             ood_scores: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Every metric uqbench reports, for a prediction made anywhere (the same `evaluate` every run uses).

    Args:
        prediction: `uqbench.Categorical(probs [N, C])`, `uqbench.Gaussian(mean [N, D], var [N, D])` or
            `uqbench.GaussianMixture(means [K, N, D], vars [K, N, D], weights [K])`, in the targets' units.
        targets: class indices [N], or regression targets [N, D] (numpy, torch or lists).
        score: the OOD score of the test inputs [N], higher = more out-of-distribution; default 1 - max
            probability (classification) or the total predictive variance (regression).
        ood_scores: OOD set name -> the scores of its inputs [M], by the same scoring as `score`.

    Returns:
        Metric key -> value: accuracy, nll, brier, ece, ... or rmse, nll, crps, coverage90, ...; per OOD set
        `ood.<name>.auroc`, `aupr_in`, `aupr_out`, `fpr95`. Units and directions: `uqbench list metrics`.

    Raises:
        TypeError: a prediction that is not one of the three distributions.
        ValueError: no targets, targets or scores of the wrong shape, class targets that are fractions or outside
            [0, C).
    """
    import torch

    from uqbench.metrics import default_ood_score
    from uqbench.metrics import evaluate as evaluate_all
    from uqbench.prediction import Categorical, Gaussian, GaussianMixture

    def tensor(a: Any) -> torch.Tensor:
        return a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(a)

    if not isinstance(prediction, (Categorical, Gaussian, GaussianMixture)):
        raise TypeError("uqbench.evaluate: prediction must be uqbench.Categorical, Gaussian or GaussianMixture; got "
                        f"{type(prediction).__name__}")
    targets = tensor(targets)
    if len(targets) == 0:
        raise ValueError("uqbench.evaluate: no targets (an empty test set has no metrics)")
    if isinstance(prediction, Categorical) and (targets.is_floating_point() and bool((targets != targets.round()).any())):
        raise ValueError("uqbench.evaluate: class targets must be whole numbers (class indices); got fractions")
    test_score = default_ood_score(prediction) if score is None else tensor(score)
    return evaluate_all(prediction, targets, test_score, {k: tensor(v) for k, v in (ood_scores or {}).items()})


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


# -- arguments -------------------------------------------------------------------------------------------------
def _check_types(function: str, **arguments: tuple[object, type | tuple[type, ...]]) -> None:
    """BadArgument for the first argument whose value is not of its type (a bool is not an int here)."""
    for name, (value, types) in arguments.items():
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in wanted)
            raise BadArgument(f"uqbench.{function}: {name} must be {names}; got {value!r}")


def _texts(function: str, name: str, value: str | Iterable[str]) -> tuple[str, ...]:
    """A name or an iterable of names as a tuple of texts; BadArgument otherwise (an empty one included: it
    would otherwise read as 'the default')."""
    if isinstance(value, str):
        if not value.strip():
            raise BadArgument(f"uqbench.{function}: {name} is empty; give a name, or leave it out for the default")
        return (value,)
    if not isinstance(value, Iterable) or isinstance(value, (bytes, Mapping)):
        raise BadArgument(f"uqbench.{function}: {name} must be a name or a list of names; got {value!r}")
    out = tuple(value)
    if not out:
        raise BadArgument(f"uqbench.{function}: {name} is empty; give a name, or leave it out for the default")
    for item in out:
        if not isinstance(item, str):
            raise BadArgument(f"uqbench.{function}: each of {name} must be a name; got {item!r}")
    return out


def _task(function: str, task: Any) -> tuple[str, tuple[Setting, ...]]:
    """(task name, the settings that select its data): a name, or an ArrayTask's `npz` file."""
    from uqbench.settings import Setting
    from uqbench.tasks.own_data import ArrayTask

    if isinstance(task, str):
        return task, ()
    if isinstance(task, ArrayTask):
        source = f"uqbench.tasks.from_arrays ({task.path})"
        return task.name, tuple(Setting(key, value, "task", task=task.name, source=source, text=False)
                                for key, value in task.settings().items())
    raise BadArgument(f"uqbench.{function}: task must be a task name or a task from uqbench.tasks.from_arrays; "
                      f"got {task!r}")


def _tasks(tasks: Any) -> tuple[tuple[str, ...] | None, tuple[Setting, ...]]:
    if tasks is None:
        return None, ()
    items = [tasks] if isinstance(tasks, str) or not isinstance(tasks, Iterable) else list(tasks)
    if not items:
        raise BadArgument("uqbench.compare: tasks is empty; give a task, or leave it out for the `quick` suite")
    resolved = [_task("compare", t) for t in items]
    if sum(bool(s) for _, s in resolved) > 1:
        raise BadConfig("uqbench.compare: one task from from_arrays per comparison (they are all the task 'npz'); "
                        "compare several with one call each")
    return tuple(name for name, _ in resolved), tuple(s for _, settings in resolved for s in settings)


def _settings(function: str, settings: Any) -> tuple[Setting, ...]:
    """`--set`-style texts, or a mapping of dotted keys to typed values, as settings of the `--set` layer."""
    from uqbench.settings import SET, parse_setting, setting_at

    if isinstance(settings, Mapping):
        out = []
        for key, value in settings.items():
            if not isinstance(key, str):
                raise BadArgument(f"uqbench.{function}: each settings key must be a text; got {key!r}")
            out.append(setting_at(key.split("."), value, SET, f"settings[{key!r}]", text=False))
        return tuple(out)
    if isinstance(settings, (str, bytes)) or not isinstance(settings, Iterable):
        raise BadArgument(f"uqbench.{function}: settings must be a list of 'KEY=VALUE' texts or a mapping; "
                          f"got {settings!r}")
    texts = tuple(settings)
    for text in texts:
        if not isinstance(text, str):
            raise BadArgument(f"uqbench.{function}: each setting must be a 'KEY=VALUE' text; got {text!r}")
    return tuple(parse_setting(text, SET) for text in texts)


def _backbone(factory: Factory | None) -> tuple[Setting, ...]:
    """The setting that makes a factory every run's backbone (registered under a name made from its own)."""
    from uqbench.models.custom import register_backbone
    from uqbench.settings import SET, Setting

    if factory is None:
        return ()
    if not callable(factory):
        raise BadArgument(f"backbone must be a factory (dropout, spectral_norm) -> nn.Module; got {factory!r}")
    slug = re.sub(r"[^a-z0-9]+", "-", getattr(factory, "__name__", "backbone").lower()).strip("-") or "backbone"
    name = register_backbone(f"custom-{slug}", factory)
    return (Setting("arch", name, "backbone", layer=SET, source=f"backbone={slug}", text=False),)


def _file(config: str | Path | None):
    from uqbench import protocols

    return protocols.experiment(config) if config is not None else None


def _plan(request: Request, settings: tuple[Setting, ...]) -> Plan:
    from uqbench.spec import plan

    return plan(dataclasses.replace(request, settings=(*request.settings, *settings)))


def _options(out: str | Path, device: str, data_dir: Path | None, save_predictions: bool, force: bool,
             retry: bool, threads: int | None) -> RunOptions:
    return RunOptions(out=Path(out), device=device, data_dir=data_dir, save_predictions=save_predictions,
                      force=force, retry=retry, refresh_since=time.time(), threads=threads)


__all__ = ["BadArgument", "compare", "evaluate", "run", "run_in_process"]
