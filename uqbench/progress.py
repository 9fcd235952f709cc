"""Rich progress display for training, on stderr; silent when stderr is not a terminal or with --quiet."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from uqbench.training import NullProgress


class RichProgress:
    """One transient bar per training call: '<label> <phase>  ━━━━  12/100  loss 0.123  0:00:03'."""

    def __init__(self, console: Console):
        self.console = console
        self.label = ""
        self._progress: Progress | None = None
        self._task = None

    def start(self, description: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"{self.label} {description}".strip(), total=total, loss="-")

    def advance(self, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4g}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def make_progress(console: Console, quiet: bool) -> RichProgress | NullProgress:
    """A RichProgress when the console is an interactive terminal and not quiet, else a NullProgress."""
    if quiet or not console.is_terminal:
        return NullProgress()
    return RichProgress(console)
