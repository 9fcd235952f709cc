"""The `uqbench` command line: parse, call the runner or the report, print.

stdout carries only results (tables, markdown, csv, json, LaTeX); progress and errors go to stderr. Bad input ends
with one line `error: ...` on stderr and exit code 2; `run` exits 1 when a run failed (its record is kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from uqbench.errors import BadConfig, UserError
from uqbench.files import ensure_writable

# click's exception classes, wherever this typer takes click from (its own copy, or the click package)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class OneLineErrors(TyperGroup):
    """The command group, with click's usage errors (a missing argument, `--seeds abc`, an unknown option) as
    one line `error: ...` and exit code 2, like every other bad input, instead of a usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _CLICK_ERROR as exc:
            usage = isinstance(exc, _USAGE_ERROR)
            command = exc.ctx.command_path if usage and exc.ctx else "uqbench"
            message = one_line(" ".join(exc.format_message().split()).rstrip("."))
            typer.echo(f"error: {message} (see `{command} --help`)", err=True)
            sys.exit(2 if usage else exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="uqbench",
    help="Benchmark predictive-uncertainty methods on regression and classification tasks.",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print uqbench's version and exit.")] = False,
    include_path: Annotated[
        Optional[list[Path]],
        typer.Option("--include-path", help="A folder of task files (TOML) to register; repeatable. Also UQBENCH_TASKS."),
    ] = None,
) -> None:
    """Benchmark predictive-uncertainty methods on regression and classification tasks."""
    if include_path or os.environ.get("UQBENCH_TASKS"):
        from uqbench.tasks import task_files

        try:
            for folder in include_path or ():
                task_files.include(folder)
            task_files.register_env()
        except UserError as exc:
            typer.echo(f"error: {one_line(str(exc))}", err=True)
            raise typer.Exit(2) from None
    if version:
        import uqbench

        typer.echo(f"uqbench {uqbench.__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _stdout() -> Console:
    return Console(file=sys.stdout, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)  # log lines are never broken, whatever the width


def one_line(text: str) -> str:
    """`text` with every character that is not printable (a newline, a terminal escape) written as its escape
    sequence, so that a message quoting a value or a path stays one line and cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit code 2."""
    try:
        yield
    except UserError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(2) from None


# Options shared by several commands (defined once).
OutOpt = Annotated[Path, typer.Option("--out", help="Results directory (one JSON record per run).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format: table, markdown, csv, json or latex.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
DataDirOpt = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Read dataset files from this directory (no download).")
]


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, tasks or protocols")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show every hyperparameter.")] = False,
    fmt: FormatOpt = "table",
) -> None:
    """List the registered methods or tasks, or the shipped paper protocols."""
    from uqbench.listing import list_rows

    with user_errors():
        columns, rows, broken = list_rows(what, verbose)
        _check_format(fmt)
        from uqbench.report import emit, long_layout

        console = _stdout()
        if verbose and fmt == "table":  # every hyperparameter: blocks, readable at 80 columns and in a pipe
            console.file.write(long_layout(columns, rows, console.width))
        else:
            emit(console, columns, rows, fmt)  # type: ignore[arg-type]
        for line in broken:
            typer.echo(f"unavailable plugin: {line}", err=True)


@app.command()
def plugins(fmt: FormatOpt = "table") -> None:
    """List third-party plugins found through entry points, with their status; exit 1 when one is broken."""
    from uqbench.listing import plugin_rows
    from uqbench.registry import plugins_disabled
    from uqbench.report import emit

    with user_errors():
        _check_format(fmt)
        columns, rows, broken = plugin_rows()
        if not rows and fmt == "table":
            typer.echo("no plugins found" + (" (UQBENCH_NO_PLUGINS turns them off)" if plugins_disabled() else ""),
                       err=True)
            return
        emit(_stdout(), columns, rows, fmt)  # type: ignore[arg-type]
    if broken:
        typer.echo(f"broken plugins: {', '.join(broken)} (see the status column)", err=True)
        raise typer.Exit(1)


JobsOpt = Annotated[int, typer.Option("--jobs", help="Runs at a time (worker processes, or Ray CPUs).")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="local (this machine), ray or slurm.")]
AddressOpt = Annotated[
    Optional[str], typer.Option("--address", help="Ray cluster to join ('auto' or HOST:PORT); none starts a local Ray.")
]
# --executor slurm (uqbench.executors_slurm.SlurmOptions; None: not given)
SlurmPartitionOpt = Annotated[Optional[str], typer.Option("--slurm-partition", help="SLURM partition (default: SLURM's).")]
SlurmTimeOpt = Annotated[Optional[int], typer.Option("--slurm-time", help="Time limit of each run in minutes (default 60).")]
SlurmGpusOpt = Annotated[
    Optional[int], typer.Option("--slurm-gpus", help="GPUs of each run (default: 1 with --device cuda, else 0).")
]
SlurmCpusOpt = Annotated[
    Optional[int], typer.Option("--slurm-cpus", help="CPUs of each run, also its torch threads (default: --threads, or 1).")
]
SlurmParallelOpt = Annotated[
    Optional[int], typer.Option("--slurm-array-parallelism", help="Runs of the array SLURM may run at once (default 256).")
]
SlurmClusterOpt = Annotated[
    Optional[str], typer.Option("--slurm-cluster", help="slurm (sbatch; default) or local (each run a process here).")
]

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
LogOpt = Annotated[
    Optional[list[str]],
    typer.Option("--log", help="Also log each run stored now to mlflow or tensorboard (repeatable; extras)."),
]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("--threads", help="Torch threads per run (default: torch's, or cores / jobs); recorded.")
]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="Experiment file (TOML: \\[plan], \\[set], \\[search]); see the README.")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved runs and their ids; run nothing.")]
NoRetryOpt = Annotated[bool, typer.Option("--no-retry", help="Keep stored failed runs instead of running them again.")]
# --checkpoint-every (mid-run checkpoints, uqbench.checkpoints): run, compare, reproduce
CheckpointEveryOpt = Annotated[
    Optional[int],
    typer.Option("--checkpoint-every", help="Save training state every N epochs so a killed run resumes (default "
                 "10; 0: off). Not part of a run's key."),
]


def _checkpoint_every(every: int | None) -> int:
    """The epochs between checkpoints for `--checkpoint-every` (None: the default); BadConfig when negative."""
    from uqbench.checkpoints import DEFAULT_EVERY

    if every is not None and every < 0:
        raise BadConfig(f"--checkpoint-every {every}: must be 0 (no checkpoints) or a number of epochs")
    return DEFAULT_EVERY if every is None else every


SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="[SCOPE.][PART.]KEY=VALUE for the runs that have KEY (repeatable; see the README)."),
]


@app.command()
def run(
    method: Annotated[Optional[str], typer.Argument(help="Method name (see `uqbench list methods`).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Task name (see `uqbench list tasks`).")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Number of seeds: runs seeds 0 .. N-1 (default 1).")] = None,
    split: Annotated[int, typer.Option("--split", help="Which split of the task (for tasks with several).")] = 0,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Set the recipe's number of epochs.")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    log: LogOpt = None,
    out: OutOpt = Path("results"),
    data_dir: DataDirOpt = None,
    save_predictions: Annotated[
        bool, typer.Option("--save-predictions", help="Write <record-id>.npz with the predictions.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run even when a record exists, retraining the cached networks it uses.")
    ] = False,
    no_retry: NoRetryOpt = False,
    dry_run: DryRunOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as a JSON list, nothing else.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train METHOD on a task for one or more seeds, evaluate, store one record per seed, print the metrics."""
    from uqbench import protocols
    from uqbench.api import run_in_process
    from uqbench.driver import check_threads
    from uqbench.tracking import log_all, trackers
    from uqbench.experiment import CommandLine, run_request
    from uqbench.progress import make_progress
    from uqbench.report import emit, metric_rows
    from uqbench.results import ResultStore
    from uqbench.runner import RunOptions, check_runnable
    from uqbench.spec import plan

    err = _stderr()
    with user_errors():
        check_threads(threads)
        every = _checkpoint_every(checkpoint_every)
        if dry_run:
            _nothing_to_do("--dry-run", force=force, save_predictions=save_predictions, no_retry=no_retry,
                           threads=threads is not None, log=bool(log), checkpoint_every=checkpoint_every is not None)
        file = protocols.experiment(config) if config is not None else None
        line = CommandLine(settings=tuple(set_ or ()), epochs=epochs, data_dir=data_dir)
        the_plan = plan(run_request(method, task, seeds, split, line, file))
        if dry_run:
            _print_dry_run(the_plan, "json" if as_json else "table")
            return
        the_plan.prepare()  # data first: missing data must not leave an empty results folder behind
        check_runnable(the_plan.specs, device)  # so must a device or precision this machine lacks
        made = trackers(log or [], out)
        ensure_writable(out)
        _note_problems(err, ResultStore(out, quarantine=True), the_plan)
        progress = make_progress(err, quiet or as_json)
        options = RunOptions(out=out, device=device, data_dir=data_dir, save_predictions=save_predictions,
                             force=force, retry=not no_retry, refresh_since=time.time(), progress=progress,
                             threads=threads, checkpoint_every=every)
        records = []
        for spec, record, fresh in run_in_process(the_plan, options):
            records.append(record)
            if fresh:
                log_all(made, record)
            if not as_json and not quiet:
                state = "done" if fresh else "already in the store (use --force to re-run)"
                err.print(f"{spec.method} on {spec.task}, seed {spec.seed}: {record.status}, {state} -> "
                          f"{out / (record.id + '.json')}", highlight=False, markup=False)
            if record.status == "failed":
                err.print(f"seed {spec.seed} failed in {record.error['phase']}: {record.error['type']}: "
                          f"{record.error['message']}", style="red", highlight=False, markup=False)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
    else:
        columns, rows = metric_rows(records)
        first = the_plan.specs[0]
        emit(_stdout(), columns, rows, "table",
             title=f"{first.method} on {first.task} ({len(records)} seed{'s' * (len(records) > 1)})")
    if any(r.status == "failed" for r in records):
        raise typer.Exit(1)


@app.command()
def compare(
    suite: Annotated[Optional[str], typer.Option("--suite", help="Named suite: quick (default), uci, cifar.")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (instead of a suite).")] = None,
    methods: Annotated[
        Optional[str],
        typer.Option("--methods", help="Comma-separated methods, 'all' or patterns like 'mc-*' (default: the suite's)."),
    ] = None,
    exclude: Annotated[Optional[str], typer.Option("--exclude", help="Comma-separated methods to leave out.")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Seeds per split (default: the suite's, 3).")] = None,
    splits: Annotated[
        Optional[int], typer.Option("--splits", help="First N splits of every task (default: the suite's; uci: all).")
    ] = None,
    config: ConfigOpt = None,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_gpus: SlurmGpusOpt = None,
    slurm_cpus: SlurmCpusOpt = None,
    slurm_array_parallelism: SlurmParallelOpt = None,
    slurm_cluster: SlurmClusterOpt = None,
    out: OutOpt = Path("results"),
    fmt: FormatOpt = "table",
    metric: Annotated[
        Optional[list[str]], typer.Option("--metric", help="Metric key or pattern to show, e.g. nll, 'ood.*.auroc' (repeatable).")
    ] = None,
    columns: Annotated[
        Optional[str],
        typer.Option("--columns", help="Comma-separated metric keys or patterns to show as columns, in this order."),
    ] = None,
    no_cost: Annotated[bool, typer.Option("--no-cost", help="Leave out the fit s, predict s and params columns.")] = False,
    layout: Annotated[
        str, typer.Option("--layout", help="wide (a column per metric), long (a row per method and metric) or auto "
                          "(wide where it fits the width).")
    ] = "auto",
    no_run: Annotated[bool, typer.Option("--no-run", help="Run nothing; report what the store holds.")] = False,
    dry_run: DryRunOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run every planned run, retraining the cached networks they use.")
    ] = False,
    no_retry: NoRetryOpt = False,
    set_: SetOpt = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Set every run's number of epochs.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    log: LogOpt = None,
    data_dir: DataDirOpt = None,
    save_predictions: Annotated[
        bool, typer.Option("--save-predictions", help="Save predictions of every run (for `uqbench plot`).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every (method, task, seed, split) of a comparison the store lacks, then print one leaderboard per task."""
    from uqbench.driver import check_device, check_parallel, check_threads, plan_records
    from uqbench.executors_slurm import SlurmOptions
    from uqbench.tracking import log_all, trackers
    from uqbench.errors import DataError
    from uqbench import protocols
    from uqbench.experiment import CommandLine, compare_request
    from uqbench.leaderboard import build, provenance
    from uqbench.leaderboard_output import View, print_board
    from uqbench.results import ResultStore
    from uqbench.runner import RunOptions, check_runnable
    from uqbench.spec import plan

    err = _stderr()
    with user_errors():
        _check_format(fmt)
        view = View.parse(fmt, columns, no_cost, layout)
        slurm = SlurmOptions(slurm_partition, slurm_time, slurm_gpus, slurm_cpus, slurm_array_parallelism, slurm_cluster)
        check_parallel(jobs, executor, address, slurm)
        check_threads(threads)
        every = _checkpoint_every(checkpoint_every)
        running = dict(force=force, save_predictions=save_predictions, no_retry=no_retry, jobs=jobs != 1,
                       executor=executor != "local", threads=threads is not None, log=bool(log),
                       checkpoint_every=checkpoint_every is not None)
        if no_run or dry_run:
            _nothing_to_do("--dry-run" if dry_run else "--no-run", **running, no_run=dry_run and no_run)
        file = protocols.experiment(config) if config is not None else None
        line = CommandLine(suite, _names(tasks, "--tasks"), _names(methods, "--methods"), _names(exclude, "--exclude"),
                           seeds, splits, tuple(set_ or ()), epochs, data_dir)
        request, needs_gpu = compare_request(line, file)
        the_plan = plan(request)
        for text in the_plan.skipped if not quiet else ():
            err.print(f"skipped {one_line(text)}", highlight=False, markup=False)
        if dry_run:
            _print_dry_run(the_plan, fmt)
            return
        store = ResultStore(out, quarantine=not no_run)
        outcome: list = []
        if not no_run:
            check_device(needs_gpu, device)
            the_plan.prepare()
            if executor == "local":
                check_runnable(the_plan.specs, device)
            options = RunOptions(out=out, device=device, data_dir=data_dir, save_predictions=save_predictions,
                                 force=force, retry=not no_retry, refresh_since=time.time(), threads=threads,
                                 checkpoint_every=every)
            made = trackers(log or [], out)
            outcome = _run_plan(the_plan, store, options, (jobs, executor, address, slurm), quiet,
                                (lambda record: log_all(made, record)) if made else None)
        records = plan_records(the_plan, store)
        _print_notes(err, store)
        if not records:
            hint = "run without --no-run" if no_run else "no planned run finished: see the errors above"
            raise DataError(f"the store {str(out)!r} holds none of the {len(the_plan.specs)} planned runs; {hint}")
        board = build(records, tuple(metric) if metric else None, the_plan.expected(),
                      all_metrics=fmt == "json" or view.metrics is not None)
        view.check(board)
        board.provenance = provenance(out)
    print_board(_board_stdout(), board, fmt, view)  # type: ignore[arg-type]
    if any(r.status != "ok" for r in outcome):
        raise typer.Exit(1)


def _print_dry_run(the_plan, fmt: str) -> None:
    """The resolved runs: a table (id, method, task, split, seed, non-default settings) or their keys as JSON."""
    from uqbench.report import emit
    from uqbench.spec import plan_table

    if fmt == "json":
        typer.echo(json.dumps([{"id": s.id, "key": dataclasses.asdict(s.key())} for s in the_plan.specs], indent=2))
        return
    emit(_wide_stdout(), *plan_table(the_plan.specs), fmt, title=f"{len(the_plan.specs)} planned runs")  # type: ignore[arg-type]


def _run_plan(the_plan, store, options, parallel: tuple, quiet: bool, on_stored=None) -> list:
    """Run what the store lacks with the executor `parallel` names (`make_executor`'s arguments after the
    runner); returns the records made now (Ctrl-C: exit 130, finished runs kept)."""
    from uqbench.driver import PlanDisplay, make_executor, pending, run_specs
    from uqbench.runner import Runner, wanted

    err = _stderr()
    ensure_writable(store.root)
    todo = pending(the_plan, store, options)
    display = PlanDisplay(err, quiet, workers=parallel[0])
    options.progress = display
    executor = make_executor(Runner(options), *parallel)
    if not quiet:
        held = [r for r in (store.get(spec.id) for spec in the_plan.specs) if r is not None]
        again = [r for r in held if wanted(r, options, options.save_predictions)]
        reasons = {"forced": len(again)} if options.force else {
            "failed": sum(r.status == "failed" for r in again),
            "without saved predictions (the same run again, to save them)": sum(r.status == "ok" for r in again)}
        redo = "; ".join(f"{n} {why}" for why, n in reasons.items() if n)
        err.print(f"{len(held)} of {len(the_plan.specs)} planned runs are in {str(store.root)!r}"
                  f"{f' (running again: {redo})' if redo else ''}; running {len(todo)}", highlight=False, markup=False)
    try:
        with terminate_as_interrupt():
            outcome = run_specs(todo, executor, store, display, on_stored)
    except KeyboardInterrupt as exc:
        left = len(todo) - display.stored
        err.print(f"interrupted: {display.stored} run(s) finished now and kept in {str(store.root)!r}, {left} not "
                  "run; run the same command again to resume", highlight=False, markup=False)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    if not quiet and todo:
        err.print(display.summary(), highlight=False)
    return outcome


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: finished runs are kept, workers stopped (exit code 143)."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (a batch scheduler's stop is then clean)."""
    import signal

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _note_problems(err: Console, store, the_plan) -> None:
    """Read the planned runs' records once, so that unusable ones are reported (and set aside) before running."""
    for spec in the_plan.specs:
        store.get(spec.id)
    _print_notes(err, store)


def _nothing_to_do(mode: str, **given: bool) -> None:
    """BadConfig when options that only matter for running are given with one that runs nothing (`--no-run`,
    `--dry-run`): they would be ignored without a word."""
    ignored = [f"--{name.replace('_', '-')}" for name, on in given.items() if on]
    if ignored:
        them = "it" if len(ignored) == 1 else "them"
        raise BadConfig(f"{mode} runs nothing, so {', '.join(ignored)} would do nothing: give {them} without {mode}, "
                        f"or leave {them} out")


def _print_notes(err: Console, store) -> None:
    """One line `note: PATH: reason; ...` per unusable file the store has met (also with --quiet: a file set
    aside is never moved without a word)."""
    for problem in store.problems:
        err.print(f"note: {one_line(problem)}", highlight=False, markup=False)


@app.command()
def reproduce(
    protocol: Annotated[str, typer.Argument(help="A shipped protocol (see `uqbench list protocols`) or a .toml file.")],
    datasets: Annotated[
        Optional[str], typer.Option("--datasets", help="Comma-separated datasets: boston or uci-boston (default: all).")
    ] = None,
    splits: Annotated[Optional[int], typer.Option("--splits", help="Only the first N splits of every dataset.")] = None,
    seeds: Annotated[
        Optional[int], typer.Option("--seeds", help="Only seeds 0 .. N-1 (protocols whose repetitions are seeds).")
    ] = None,
    k: Annotated[float, typer.Option("--k", help="Tolerance in combined standard errors.")] = 2.0,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_gpus: SlurmGpusOpt = None,
    slurm_cpus: SlurmCpusOpt = None,
    slurm_array_parallelism: SlurmParallelOpt = None,
    slurm_cluster: SlurmClusterOpt = None,
    out: OutOpt = Path("results"),
    fmt: FormatOpt = "table",
    no_run: Annotated[bool, typer.Option("--no-run", help="Run nothing; compare what the store holds.")] = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a paper's protocol (what the store lacks) and set the results beside its published table.

    Exit 0 when every compared cell is within K combined standard errors, 1 when one is not, 2 on bad input.
    """
    from uqbench import protocols
    from uqbench import reproduce as rep
    from uqbench.driver import check_device, check_parallel, check_threads, plan_records
    from uqbench.executors_slurm import SlurmOptions
    from uqbench.experiment import CommandLine, compare_request
    from uqbench.report import emit
    from uqbench.results import ResultStore
    from uqbench.runner import RunOptions, check_runnable
    from uqbench.spec import plan

    with user_errors():
        _check_format(fmt)
        if not (k > 0 and math.isfinite(k)):
            raise BadConfig(f"--k {k}: must be a positive, finite number")
        slurm = SlurmOptions(slurm_partition, slurm_time, slurm_gpus, slurm_cpus, slurm_array_parallelism, slurm_cluster)
        check_parallel(jobs, executor, address, slurm)
        check_threads(threads)
        every = _checkpoint_every(checkpoint_every)
        if no_run:
            _nothing_to_do("--no-run", jobs=jobs != 1, executor=executor != "local", threads=threads is not None,
                           checkpoint_every=checkpoint_every is not None)
        proto = protocols.load(protocol)
        tasks = _datasets(_names(datasets, "--datasets"), proto)
        line = CommandLine(tasks=tasks, seeds=seeds, splits=splits, data_dir=data_dir)
        request, needs_gpu = compare_request(line, proto.experiment)
        the_plan = plan(request)
        _check_reference_splits(proto, the_plan)
        store = ResultStore(out, quarantine=not no_run)
        if not no_run:
            check_device(needs_gpu, device)
            the_plan.prepare()
            if executor == "local":
                check_runnable(the_plan.specs, device)
            options = RunOptions(out=out, device=device, data_dir=data_dir, refresh_since=time.time(), threads=threads,
                                 checkpoint_every=every)
            _run_plan(the_plan, store, options, (jobs, executor, address, slurm), quiet)
        cells = rep.compare(proto.reference, plan_records(the_plan, store), list(request.tasks), k,
                            planned=the_plan.expected())
        subset = _subset(the_plan, proto, request.seeds)
    if fmt == "json":
        typer.echo(json.dumps(rep.to_json(proto, cells, k, subset), indent=2, allow_nan=False, default=str))
    else:
        columns, rows, title = rep.table(proto, cells, fmt, k, subset)
        reference = f"reference: {proto.reference.source}"
        emit(_wide_stdout(), columns, rows, fmt, title=title, note=reference)  # type: ignore[arg-type]
        if fmt in ("table", "markdown"):
            typer.echo(f"\n{reference}", err=fmt == "table")
    if not rep.verdict(cells):
        raise typer.Exit(1)


def _check_reference_splits(proto, the_plan) -> None:
    """BadConfig when the reference says it averaged over more repetitions than the protocol has (the task's
    splits times the protocol's seeds): its standard errors would be divided by a count that cannot be."""
    seeds = proto.experiment.seeds or 1
    for task, n in proto.reference.splits.items():
        if task in the_plan.tasks and n > (have := the_plan.tasks[task].n_splits() * seeds):
            raise BadConfig(f"{proto.path}: reference.{task}.splits: {n} repetitions, but the protocol has {have} "
                            f"for task {task!r} ({the_plan.tasks[task].n_splits()} splits x {seeds} seeds)")


def _datasets(names: tuple[str, ...] | None, proto) -> tuple[str, ...] | None:
    """--datasets as the protocol's task names ('boston' -> 'uci-boston'); every one must be in the protocol."""
    if names is None:
        return None
    planned = proto.experiment.tasks or ()
    out = []
    for name in names:
        match = [t for t in planned if t == name or t == f"uci-{name}"]
        if not match:
            short = ", ".join(t.removeprefix("uci-") for t in planned)
            raise BadConfig(f"--datasets {name!r}: protocol {proto.name!r} has no such dataset; it has: {short}")
        out.append(match[0])
    return tuple(out)


def _subset(the_plan, proto, seeds: int) -> str:
    """'' when every split and seed of the protocol ran; else what was used (the comparison says it used a subset)."""
    used = {t: len(s) for t, s in the_plan.splits.items()}
    full = {t: task.n_splits() for t, task in the_plan.tasks.items()}
    parts = [f"{t.removeprefix('uci-')} {used[t]} of {full[t]} splits" for t in used if used[t] < full[t]]
    planned = proto.experiment.seeds or 1
    parts += [f"seeds 0..{seeds - 1} of {planned}"] if seeds < planned else []
    return "; a subset: " + ", ".join(parts) if parts else ""


@app.command()
def check(
    baseline: Annotated[Path, typer.Argument(help="Baseline from `uqbench compare --format json`.")],
    results: Annotated[Path, typer.Option("--results", help="Results directory to check.")] = Path("results"),
    tolerance: Annotated[
        Optional[list[str]],
        typer.Option("--tolerance", help="Absolute tolerance, default 0.001; METRIC=VALUE for one metric (repeatable)."),
    ] = None,
    k: Annotated[
        Optional[list[str]],
        typer.Option("--k", help="Multiple of the combined standard error, default 2; METRIC=VALUE for one metric."),
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Compare the store with a baseline; exit 1 on a regression or missing runs, 0 otherwise, 2 on bad input."""
    from uqbench.check import Thresholds, check as run_check, finding_rows, load_baseline, summary
    from uqbench.errors import DataError
    from uqbench.report import emit
    from uqbench.results import ResultStore

    with user_errors():
        _check_format(fmt)
        thresholds = Thresholds.parse(tolerance or [], k or [])
        board = load_baseline(baseline)
        if not results.is_dir():
            raise DataError(f"--results {str(results)!r}: no such directory")
        store = ResultStore(results)
        findings = run_check(board, store.records(), thresholds)
    for problem in store.problems:
        typer.echo(f"note: {one_line(problem)}", err=True)
    columns, rows, title = finding_rows(findings)
    if rows or fmt != "table":
        emit(_wide_stdout(), columns, rows, fmt, title=title)  # type: ignore[arg-type]
    else:
        typer.echo("no changes beyond tolerance")
    lines, code = summary(findings, len(board.rows), results)
    for line in lines:
        typer.echo(line, err=True)
    if code:
        raise typer.Exit(code)


@app.command()
def plot(
    results: Annotated[Path, typer.Option("--results", help="Results directory with saved predictions.")] = Path("results"),
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the figures (default: RESULTS/plots).")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (default: all).")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Comma-separated methods (default: all).")] = None,
    kind: Annotated[
        Optional[list[str]],
        typer.Option("--kind", help="reliability, bands, ood, curves or shift (repeatable; default: all)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Figure file format: png, pdf or svg.")] = "png",
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of PNG figures (and of images inside PDF/SVG).")] = 150,
    data_dir: DataDirOpt = None,
) -> None:
    """Draw figures that compare methods: reliability, 1-D regression bands, OOD scores (from saved predictions),
    training curves and metrics under dataset shift (from the records)."""
    from uqbench.errors import DataError
    from uqbench.files import subdir
    from uqbench.plots import (APPLIES, KINDS, RECORD_KINDS, NoPredictions, check_output, collect, draw, draw_records,
                               none_applies, write)
    from uqbench.results import ResultStore

    with user_errors():
        for name in kind or ():
            if name not in KINDS:
                raise BadConfig(f"--kind {name!r}: expected one of {', '.join(KINDS)}")
        check_output(fmt, dpi)
        task_names, method_names = _names(tasks, "--tasks"), _names(methods, "--methods")
        if not results.is_dir():
            raise DataError(f"--results {str(results)!r}: no such directory")
        store, notes = ResultStore(results), []
        records, kinds = _selected(store.records(), task_names, method_names, results), tuple(dict.fromkeys(kind or KINDS))
        recorded = draw_records(records, kinds, notes)
        if kinds == ("curves",) and not recorded:
            raise DataError(f"no run in {str(results)!r} kept a training curve: curves need "
                            f"{APPLIES['curves']}; records made before uqbench kept curves have none")
        if not recorded and all(k in RECORD_KINDS for k in kinds):
            raise none_applies(kinds, {r.key.task for r in records})
        predicted, figures = tuple(k for k in kinds if k not in RECORD_KINDS), []
        if predicted:
            try:
                figures = draw(collect(records, results, notes), predicted, data_dir, notes)
            except NoPredictions as exc:
                if not recorded:
                    raise
                drawn = " and ".join(dict.fromkeys(RECORD_KINDS[d.kind] for d in recorded))
                notes.append(f"{exc}; only the {drawn} are drawn")
        figures += recorded
        target = out or subdir(results, "plots")
        ensure_writable(target)
        paths = write(figures, target, fmt, dpi)
    _print_notes(_stderr(), store)
    for line in notes:
        _stderr().print(f"note: {one_line(line)}", highlight=False, markup=False)
    for path in paths:
        typer.echo(str(path))


def _selected(records: list, tasks: tuple[str, ...] | None, methods: tuple[str, ...] | None, results: Path) -> list:
    """The records of the named tasks and methods (None: all); DataError for a name of which the store has no run."""
    from uqbench.errors import DataError

    for option, names, field in (("--tasks", tasks, "task"), ("--methods", methods, "method")):
        held = sorted({getattr(r.key, field) for r in records})
        for name in names or ():
            if name not in held:
                raise DataError(f"{option} {name!r}: {str(results)!r} holds no run of it; it holds runs of: "
                                f"{', '.join(held) or 'nothing'}")
    return [r for r in records
            if (tasks is None or r.key.task in tasks) and (methods is None or r.key.method in methods)]


def _wide_stdout() -> Console:
    """stdout for wide tables: on a terminal its width; otherwise (a file, a CI log) as wide as a table needs."""
    return _stdout() if sys.stdout.isatty() else Console(file=sys.stdout, soft_wrap=True, width=400)


def _board_stdout() -> Console:
    """stdout for leaderboards: as `_wide_stdout`, but COLUMNS, when set, is the width in a pipe too (rich reads
    it), so that `COLUMNS=80 uqbench compare > board.txt` lays the tables out for 80 columns."""
    return _stdout() if os.environ.get("COLUMNS", "").isdigit() else _wide_stdout()


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    """'a, b' -> ('a', 'b'); None stays None."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise BadConfig(f"{option} {text!r}: expected comma-separated names")
    return names


def _check_format(fmt: str) -> None:
    from uqbench.report import FORMATS

    if fmt not in FORMATS:
        raise BadConfig(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
