"""Run a plan: hand the specs the store lacks to an executor and write each record as it arrives.

The driver (this module) alone writes the store: an executor yields records and each 'ok' or 'failed' one is
written atomically as it arrives, so an interrupted comparison (Ctrl-C) keeps every finished run and a re-run
does only the rest. 'error' records (the environment failed) are counted and reported, never stored. What the
plan is comes from `uqbench.spec.plan`; a suite or a config file only supplies its request.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from uqbench.errors import BadConfig
from uqbench.executors import Executor, InProcess
from uqbench.executors_slurm import SlurmOptions
from uqbench.results import ResultStore, RunRecord
from uqbench.runner import RunOptions, wanted
from uqbench.spec import Plan, RunSpec


def pending(plan: Plan, store: ResultStore, options: RunOptions) -> list[RunSpec]:
    """The planned specs to run now: missing from the store, failed (unless `retry` is off), lacking saved
    predictions when they are asked for, or all of them with `force`."""
    todo = []
    for spec in plan.specs:
        if wanted(store.get(spec.id), options, options.save_predictions):
            todo.append(spec)
    return todo


def plan_records(plan: Plan, store: ResultStore) -> list[RunRecord]:
    """The records of the planned runs that the store holds, in plan order (reading the whole store once, so
    that `store.problems` lists every file it cannot use)."""
    held = {record.id: record for record in store.records()}
    return [held[spec.id] for spec in plan.specs if spec.id in held]


def run_specs(specs: list[RunSpec], executor: Executor, store: ResultStore, display: PlanDisplay,
              on_stored: Callable[[RunRecord], None] | None = None) -> list[RunRecord]:
    """Hand `specs` to the executor and write each 'ok' or 'failed' record as it arrives (then hand it to
    `on_stored`, the trackers of `--log`); returns every record.

    A KeyboardInterrupt propagates after the display is closed; every record written before it stays.
    """
    done = []
    display.begin(len(specs))
    try:
        for record in executor.run(specs):
            if record.status != "error":
                store.write(record)
                display.stored += 1
                if on_stored is not None:
                    on_stored(record)
            done.append(record)
            display.finished(record)
    finally:
        display.end()
    return done


def check_device(needs_gpu: bool, device: str) -> None:
    """Refuse to start a GPU suite on a machine without CUDA unless the CPU was asked for explicitly."""
    import torch

    if needs_gpu and device == "auto" and not torch.cuda.is_available():
        raise BadConfig("this suite is meant for a CUDA GPU and none is available; pass --device cpu to run it anyway")


EXECUTORS = ("local", "ray", "slurm")


def check_parallel(jobs: int, executor: str = "local", address: str | None = None,
                   slurm: SlurmOptions | None = None) -> None:
    """BadConfig for `--jobs` / `--executor` / `--address` / `--slurm-*` values that cannot run (checked before
    planning)."""
    if jobs < 1:
        raise BadConfig(f"--jobs {jobs}: must be at least 1")
    if executor not in EXECUTORS:
        raise BadConfig(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise BadConfig("--address is only for --executor ray")
    if address is not None and address != "auto":
        from uqbench.executors import check_reachable

        check_reachable(address)
    given = slurm.given() if slurm is not None else []
    if given and executor != "slurm":
        raise BadConfig(f"{', '.join(given)}: only for --executor slurm")
    if executor == "slurm":
        from uqbench.executors_slurm import check_slurm

        if jobs != 1:
            raise BadConfig(f"--jobs {jobs}: not for --executor slurm (SLURM runs the array; "
                            "--slurm-array-parallelism caps how many runs at a time)")
        check_slurm(slurm or SlurmOptions())


MAX_THREADS = 4096


def check_threads(threads: int | None) -> None:
    """BadConfig for a `--threads` value that is not a count of threads."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise BadConfig(f"--threads {threads}: must be between 1 and {MAX_THREADS}")


def make_executor(runner, jobs: int, executor: str = "local", address: str | None = None,
                  slurm: SlurmOptions | None = None) -> Executor:
    """The executor for `--jobs N [--executor local|ray|slurm] [--address ADDR] [--slurm-* ...]`.

    local: in this process for one job at a time, else a pool of N worker processes. ray: Ray tasks on a local
    instance (N CPUs, or all when N is 1) or, with an address, on an existing cluster. slurm: one SLURM job array
    for the whole plan (`uqbench.executors_slurm`).
    """
    from uqbench.executors import ProcessPool, RayExecutor, WorkerOptions

    check_parallel(jobs, executor, address, slurm)
    opts = runner.options
    options = WorkerOptions(str(opts.out), opts.device, str(opts.data_dir) if opts.data_dir else None,
                            opts.save_predictions, threads=opts.threads,
                            refresh_since=opts.refresh_since if opts.force else None,
                            checkpoint_every=opts.checkpoint_every)
    if executor == "ray":
        return RayExecutor(options, address=address, num_cpus=jobs if jobs > 1 and address is None else None,
                           cpus_per_job=opts.threads or 1)
    if executor == "slurm":
        from uqbench.executors_slurm import SlurmExecutor

        return SlurmExecutor(options, slurm or SlurmOptions())
    return InProcess(runner) if jobs == 1 else ProcessPool(jobs, options)


class PlanDisplay:
    """Progress of a whole plan on stderr: a live bar (done / running / failed / remaining, elapsed, time left)
    on a terminal, one line per finished run otherwise, nothing when quiet.

    `training` is the runner's training-progress sink: the current run's epochs show under the plan's bar.
    """

    def __init__(self, console: Console, quiet: bool = False, workers: int = 1):
        self.console, self.quiet, self.workers = console, quiet, workers
        self.label = ""  # the run whose epochs the training bar shows (set by the runner)
        self.total = self.done = self.failed = self.errors = 0
        self.stored = 0  # records written to the store (by `run_specs`)
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
        return f"failed {self.failed + self.errors}  running {running}  remaining {remaining - running}"

    def finished(self, record: RunRecord) -> None:
        self.done += 1
        self.failed += record.status == "failed"
        self.errors += record.status == "error"
        if self._progress is not None:
            self._progress.update(self._plan_task, advance=1, status=self._status())
        if self.quiet and record.status == "ok":  # quiet hides progress, never a run that did not succeed
            return
        key = record.key
        what = f"[{self.done}/{self.total}] {key.method} on {key.task}, seed {key.seed} split {key.split}"
        if record.status == "ok":
            self.console.print(f"{what}: ok, fit {record.timings_s.get('fit', 0.0):.1f} s", highlight=False, markup=False)
        else:
            err = record.error or {}
            state = "failed" if record.status == "failed" else "error (not stored; tried again next time)"
            self.console.print(f"{what}: {state} in {err.get('phase')}: {err.get('type')}: {err.get('message')}",
                               style="red", highlight=False, markup=False)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- the training Progress protocol (uqbench.training.Progress) -----------------------------------------
    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._train_task = self._progress.add_task(f"  {self.label} {description}", total=total, status="")

    def advance(self, loss: float) -> None:
        if self._progress is not None and self._train_task is not None:
            self._progress.update(self._train_task, advance=1, status=f"loss {loss:.4g}")

    def stop(self) -> None:
        if self._progress is not None and self._train_task is not None:
            self._progress.remove_task(self._train_task)
        self._train_task = None

    def summary(self) -> str:
        elapsed = time.perf_counter() - self._started
        errors = f", {self.errors} not run (environment errors, tried again next time)" if self.errors else ""
        return f"{self.done} run{'s' * (self.done != 1)} in {elapsed:.0f} s, {self.failed} failed{errors}"


__all__ = ["PlanDisplay", "check_device", "check_parallel", "make_executor", "pending", "plan_records", "run_specs"]
