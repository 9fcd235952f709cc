"""Plan a comparison (methods x tasks x seeds x splits), run the runs the store lacks, collect the records.

The driver (this module) alone writes the store: an executor yields records and each one is written atomically
as it arrives, so an interrupted comparison (Ctrl-C) keeps every finished run and a re-run does only the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from uqbench import config as cfgmod
from uqbench.errors import BadConfig, UnknownName
from uqbench.executors import Executor, InProcess, Job
from uqbench.results import ResultStore, RunRecord
from uqbench.suites import Suite, suites

DEFAULT_SUITE = "quick"
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Request:
    """What the user asked `compare` for (None: take it from the suite).

    Attributes:
        suite: suite name; used when `tasks` is None (default 'quick').
        tasks, methods: explicit names; `methods` None means the suite's (or, with `tasks`, every registered one).
        seeds: seeds per split.
        splits: the first N splits of every task (capped at the task's number of splits).
        settings: `--set key=value` assignments; each applies to every run whose method or task has the key.
        epochs: `--epochs` override for every task.
        data_dir: where tasks read their files.
    """

    suite: str | None = None
    tasks: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    seeds: int | None = None
    splits: int | None = None
    settings: tuple[str, ...] = ()
    epochs: int | None = None
    data_dir: Path | None = None


@dataclass
class Plan:
    """Every run of a comparison, in leaderboard order, and the pairs left out."""

    jobs: list[Job]
    skipped: list[str] = field(default_factory=list)  # "sngp on toy-regression: ..." for unsupported pairs
    needs_gpu: bool = False

    def expected(self) -> dict[tuple[str, str], int]:
        """(task, method) -> number of planned runs."""
        counts: dict[tuple[str, str], int] = {}
        for job in self.jobs:
            counts[job.key.task, job.key.method] = counts.get((job.key.task, job.key.method), 0) + 1
        return counts


def build_plan(request: Request) -> Plan:
    """Resolve names and configs into jobs; raises UnknownName / BadConfig (exit 2) on bad input."""
    from uqbench.methods import methods
    from uqbench.runner import resolve
    from uqbench.tasks import tasks

    suite = _suite(request)
    task_names = list(request.tasks or suite.tasks)
    method_names = list(request.methods or (suite.methods if request.tasks is None else methods.names()))
    seeds = request.seeds if request.seeds is not None else suite.seeds
    if seeds < 1:
        raise BadConfig(f"--seeds {seeds}: must be at least 1")
    splits = request.splits if request.splits is not None else suite.splits
    if splits is not None and splits < 1:
        raise BadConfig(f"--splits {splits}: must be at least 1")
    from_suite = "" if request.tasks is not None else f"suite {suite_name(request)!r}: "
    task_cls = {name: _lookup(tasks, name, from_suite) for name in task_names}
    method_cls = {name: _lookup(methods, name, "" if request.methods else from_suite) for name in method_names}
    _check_settings(request.settings, method_cls, task_cls)

    plan = Plan([], needs_gpu=suite.needs_gpu and request.tasks is None)
    for task in task_names:
        epochs = () if request.epochs is None else (f"task.epochs={request.epochs}",)  # beats a suite's epochs
        assignments = [*suite.settings.get(task, ()), *request.settings, *epochs]
        for method in method_names:
            if task_cls[task].kind not in method_cls[method].kinds:
                plan.skipped.append(f"{method} on {task}: {method} does not support {task_cls[task].kind}")
                continue
            own = [a for a in assignments if _applies(a, method_cls[method], task_cls[task])]
            spec = resolve(method, task, own, data_dir=request.data_dir)
            n_splits = spec.task.n_splits() if splits is None else min(splits, spec.task.n_splits())
            plan.jobs += [Job.from_spec(spec, seed, split) for split in range(n_splits) for seed in range(seeds)]
    return plan


def suite_name(request: Request) -> str:
    return request.suite or DEFAULT_SUITE


def _suite(request: Request) -> Suite:
    if request.suite is not None and request.tasks is not None:
        raise BadConfig("--suite and --tasks: give one of them (a suite names its own tasks)")
    if request.tasks is not None:
        return Suite(description="", tasks=tuple(request.tasks), seeds=DEFAULT_SEEDS)
    return suites.get(suite_name(request))


def _lookup(registry, name: str, origin: str):
    try:
        return registry.get(name)
    except UnknownName as exc:
        raise UnknownName(f"{origin}{exc}") from None


def _key_of(assignment: str) -> tuple[str, str]:
    key, _ = cfgmod.parse_assignment(assignment)
    where, _, name = key.rpartition(".")
    if where not in ("", "method", "task"):
        raise BadConfig(f"--set {assignment}: prefix must be 'method.' or 'task.'; got {where!r}")
    return where, name


def _applies(assignment: str, method_cls: type, task_cls: type) -> bool:
    where, name = _key_of(assignment)
    in_method = name in cfgmod.field_types(method_cls.Config)
    in_task = name in cfgmod.field_types(task_cls.Config)
    return {"method": in_method, "task": in_task, "": in_method or in_task}[where]


def _check_settings(settings: tuple[str, ...], method_cls: dict, task_cls: dict) -> None:
    """Every --set must name a key some planned method or task has (a typo must not be silently ignored)."""
    for text in settings:
        if not any(_applies(text, m, t) for m in method_cls.values() for t in task_cls.values()):
            _, name = _key_of(text)
            raise BadConfig(
                f"--set {text}: no method ({', '.join(method_cls)}) or task ({', '.join(task_cls)}) "
                f"in this comparison has a key {name!r}"
            )


def pending(plan: Plan, store: ResultStore, need_predictions: bool = False) -> list[Job]:
    """The planned jobs whose record is not in the store (or lacks saved predictions when they are needed)."""
    todo = []
    for job in plan.jobs:
        key = job.key
        if not store.has(key):
            todo.append(job)
        elif need_predictions:
            record = store.load(key.id)
            if record.status == "ok" and (record.predictions is None or not (store.root / record.predictions).exists()):
                todo.append(job)
    return todo


def plan_records(plan: Plan, store: ResultStore) -> list[RunRecord]:
    """The records of the planned runs that the store holds, in plan order."""
    return [store.load(job.key.id) for job in plan.jobs if store.has(job.key)]


def run_jobs(jobs: list[Job], executor: Executor, store: ResultStore, display: PlanDisplay) -> list[RunRecord]:
    """Hand `jobs` to the executor and write each record as it arrives.

    A KeyboardInterrupt propagates after the display is closed; every record written before it stays.
    """
    done = []
    display.begin(len(jobs))
    try:
        for record in executor.run(jobs):
            store.write(record)
            done.append(record)
            display.finished(record)
    finally:
        display.end()
    return done


def check_device(plan: Plan, device: str) -> None:
    """Refuse to start a GPU suite on a machine without CUDA unless the CPU was asked for explicitly."""
    import torch

    if plan.needs_gpu and device == "auto" and not torch.cuda.is_available():
        raise BadConfig("this suite is meant for a CUDA GPU and none is available; pass --device cpu to run it anyway")


def make_executor(runner, jobs: int, executor: str = "local", address: str | None = None) -> Executor:
    """The executor for `--jobs N [--executor local|ray] [--address ADDR]`.

    local: in this process for one job at a time, else a pool of N worker processes. ray: Ray tasks on a local
    instance (N CPUs, or all when N is 1) or, with an address, on an existing cluster.
    """
    from uqbench.executors import ProcessPool, RayExecutor, WorkerOptions

    if jobs < 1:
        raise BadConfig(f"--jobs {jobs}: must be at least 1")
    if executor not in ("local", "ray"):
        raise BadConfig(f"--executor {executor!r}: expected local or ray")
    if address is not None and executor != "ray":
        raise BadConfig("--address is only for --executor ray")
    options = WorkerOptions(str(runner.options.out), runner.options.device, runner.options.save_predictions)
    if executor == "ray":
        return RayExecutor(options, address=address, num_cpus=jobs if jobs > 1 and address is None else None)
    return InProcess(runner) if jobs == 1 else ProcessPool(jobs, options)


class PlanDisplay:
    """Progress of a whole plan on stderr: a live bar (done / running / failed / remaining, elapsed, time left)
    on a terminal, one line per finished run otherwise, nothing when quiet.

    `training` is the runner's training-progress sink: the current run's epochs show under the plan's bar.
    """

    def __init__(self, console: Console, quiet: bool = False, workers: int = 1):
        self.console, self.quiet, self.workers = console, quiet, workers
        self.total = self.done = self.failed = 0
        self._progress: Progress | None = None
        self._plan_task = self._train_task = None
        self._started = time.perf_counter()

    @property
    def live(self) -> bool:
        return not self.quiet and self.console.is_terminal

    def begin(self, total: int) -> None:
        self.total, self._started = total, time.perf_counter()
        if not self.live or total == 0:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._plan_task = self._progress.add_task("runs", total=total, status=self._status())

    def _status(self) -> str:
        remaining = self.total - self.done
        running = min(self.workers, remaining)
        return f"failed {self.failed}  running {running}  remaining {remaining - running}"

    def finished(self, record: RunRecord) -> None:
        self.done += 1
        self.failed += record.status != "ok"
        if self._progress is not None:
            self._progress.update(self._plan_task, advance=1, status=self._status())
        if self.quiet:
            return
        key = record.key
        what = f"[{self.done}/{self.total}] {key.method} on {key.task}, seed {key.seed} split {key.split}"
        if record.status == "ok":
            self.console.print(f"{what}: ok, fit {record.timings_s.get('fit', 0.0):.1f} s", highlight=False)
        else:
            err = record.error or {}
            self.console.print(f"[red]{what}: failed in {err.get('phase')}: {err.get('type')}: {err.get('message')}")

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- the training Progress protocol (uqbench.training.Progress) -----------------------------------------
    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._train_task = self._progress.add_task(f"  {description}", total=total, status="")

    def advance(self, loss: float) -> None:
        if self._progress is not None and self._train_task is not None:
            self._progress.update(self._train_task, advance=1, status=f"loss {loss:.4g}")

    def stop(self) -> None:
        if self._progress is not None and self._train_task is not None:
            self._progress.remove_task(self._train_task)
        self._train_task = None

    def summary(self) -> str:
        elapsed = time.perf_counter() - self._started
        return f"{self.done} run{'s' * (self.done != 1)} in {elapsed:.0f} s, {self.failed} failed"


__all__ = ["Plan", "PlanDisplay", "Request", "build_plan", "check_device", "make_executor", "pending", "plan_records", "run_jobs"]
