"""The `uqbench` command line: parse, call the runner or the report, print.

stdout carries only results (tables, markdown, csv, json); progress and errors go to stderr. Bad input ends
with one line `error: ...` on stderr and exit code 2; `run` exits 1 when a run failed (its record is kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from uqbench.errors import BadConfig, UserError

app = typer.Typer(
    name="uqbench",
    help="Benchmark predictive-uncertainty methods on regression and classification tasks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _stdout() -> Console:
    return Console(file=sys.stdout, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit code 2."""
    try:
        yield
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


# Options shared by several commands (defined once).
OutOpt = Annotated[Path, typer.Option("--out", help="Results directory (one JSON record per run).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format: table, markdown, csv or json.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
DataDirOpt = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Read dataset files from this directory (no download).")
]


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods or tasks")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show every hyperparameter.")] = False,
    fmt: FormatOpt = "table",
) -> None:
    """List the registered methods or tasks."""
    from uqbench.listing import list_rows

    with user_errors():
        columns, rows, broken = list_rows(what, verbose)
        _check_format(fmt)
        from uqbench.report import emit

        emit(_stdout(), columns, rows, fmt)  # type: ignore[arg-type]
        for line in broken:
            typer.echo(f"unavailable plugin: {line}", err=True)


@app.command()
def plugins(fmt: FormatOpt = "table") -> None:
    """List third-party plugins found through entry points, with their status."""
    from uqbench.listing import plugin_rows
    from uqbench.report import emit

    with user_errors():
        _check_format(fmt)
        columns, rows = plugin_rows()
        if not rows and fmt == "table":
            typer.echo("no plugins found" + (" (UQBENCH_NO_PLUGINS is set)" if os.environ.get("UQBENCH_NO_PLUGINS") else ""), err=True)
            return
        emit(_stdout(), columns, rows, fmt)  # type: ignore[arg-type]


@app.command()
def run(
    method: Annotated[str, typer.Argument(help="Method name (see `uqbench list methods`).")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see `uqbench list tasks`).")],
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds: runs seeds 0 .. N-1.")] = 1,
    split: Annotated[int, typer.Option("--split", help="Which split of the task (for tasks with several).")] = 0,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Override the task's number of epochs.")] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Hyperparameter key=value (method or task; repeatable).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    out: OutOpt = Path("results"),
    data_dir: DataDirOpt = None,
    save_predictions: Annotated[
        bool, typer.Option("--save-predictions", help="Write <record-id>.npz with the predictions.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run even when a record already exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as a JSON list, nothing else.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train METHOD on a task for one or more seeds, evaluate, store one record per seed, print the metrics."""
    from uqbench.progress import make_progress
    from uqbench.report import emit
    from uqbench.runner import RunOptions, Runner, resolve
    from uqbench.report import metric_rows

    err = _stderr()
    with user_errors():
        if seeds < 1:
            raise BadConfig(f"--seeds {seeds}: must be at least 1")
        spec = resolve(method, task, set_ or [], data_dir=data_dir, epochs=epochs)
        if not 0 <= split < spec.task.n_splits():
            raise BadConfig(f"--split {split}: task {task!r} has splits 0 .. {spec.task.n_splits() - 1}")
        ensure_writable(out)
        progress = make_progress(err, quiet or as_json)
        runner = Runner(RunOptions(out=out, device=device, save_predictions=save_predictions, force=force, progress=progress))
        records = []
        for seed in range(seeds):
            if hasattr(progress, "label"):
                progress.label = f"{method} {task} seed {seed}"
            record, fresh = runner.run(spec, seed, split)
            records.append(record)
            if not as_json and not quiet:
                state = "done" if fresh else "already in the store (use --force to re-run)"
                err.print(f"{method} on {task}, seed {seed}: {record.status}, {state} -> {out / (record.id + '.json')}")
            if record.status == "failed":
                err.print(f"[red]seed {seed} failed in {record.error['phase']}: {record.error['type']}: {record.error['message']}")
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
    else:
        columns, rows = metric_rows(records)
        emit(_stdout(), columns, rows, "table", title=f"{method} on {task} ({len(records)} seed{'s' * (len(records) > 1)})")
    if any(r.status == "failed" for r in records):
        raise typer.Exit(1)


def ensure_writable(directory: Path) -> None:
    """Create `directory` if needed and prove it is writable; BadConfig otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BadConfig(f"--out {str(directory)!r}: not a writable directory ({exc.strerror or exc})") from None


def _check_format(fmt: str) -> None:
    from uqbench.report import FORMATS

    if fmt not in FORMATS:
        raise BadConfig(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
