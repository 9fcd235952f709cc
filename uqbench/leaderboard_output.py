"""How `uqbench compare` prints a leaderboard: which columns (`View`), in which layout, in every format.

Layouts of the per-task and average-rank tables:

- *wide*: a row per method, a column per metric (then runs, rank and cost): the table to compare methods at a
  glance, as wide as the number of metrics makes it (177 columns for two-moons' five default metrics).
- *long*: a row per (method, metric), as lm-evaluation-harness prints its results: the method named on its first
  row, the metric with its direction, `mean ± s.e.` with the best in bold and the `≈` mark kept; the runs, rank and
  cost of the method are rows of it too. Its width is that of the longest method name, metric name and value
  (52 columns for two-moons), whatever the numbers of methods and metrics, so it is the layout that fits 80 columns.
  A transposed table (metrics as rows, methods as columns) was the other candidate; it grows by a value column
  (about 19 characters) per method, so three methods already need more than 80 columns.
- *auto* (the default): wide where the wide table fits the console, long where it does not. Only `--format table`
  has a width; markdown and LaTeX are wide unless long is asked for; csv and json have one shape.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

from rich.console import Console

from uqbench.errors import BadConfig
from uqbench.latex import WITHIN_NOISE, Latex, escape
from uqbench.leaderboard import LEGEND, Leaderboard, check_patterns, flat_table, rank_table, task_table
from uqbench.report import Format, emit, fits, long_rows, render

LAYOUTS = ("auto", "wide", "long")
LATEX_NOTE = Latex(escape(LEGEND).replace(escape("≈"), WITHIN_NOISE))  # under every LaTeX task table


@dataclass(frozen=True)
class View:
    """What the leaderboard tables show and how (the options `--columns`, `--no-cost`, `--layout`)."""

    metrics: tuple[str, ...] | None = None  # metric keys or shell patterns, in column order; None: every metric
    cost: bool = True  # the fit s, predict s and params columns
    layout: str = "auto"  # one of LAYOUTS

    @classmethod
    def parse(cls, fmt: str, columns: str | None, no_cost: bool, layout: str) -> View:
        """From the options, before any run: BadConfig for an unknown layout, an empty `--columns`, or an option
        that does not apply to `fmt` (json is the whole leaderboard; csv one row per task and method)."""
        if layout not in LAYOUTS:
            raise BadConfig(f"--layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        metrics = None if columns is None else tuple(c.strip() for c in columns.split(",") if c.strip())
        if metrics == ():
            raise BadConfig(f"--columns {columns!r}: expected comma-separated metric keys or patterns")
        given = [name for name, on in (("--columns", metrics), ("--no-cost", no_cost)) if on]
        if fmt == "json" and given:
            raise BadConfig(f"{given[0]}: not for --format json, which is the whole leaderboard (the baseline of "
                            "`uqbench check`); use --metric to choose its metrics")
        if fmt in ("csv", "json") and layout != "auto":
            raise BadConfig(f"--layout {layout}: only for --format table, markdown or latex; {fmt} has one shape")
        return cls(metrics, not no_cost, layout)

    def check(self, board: Leaderboard) -> None:
        """UnknownName for a `--columns` pattern that matches no metric of the board (naming those it has)."""
        if self.metrics is not None:
            check_patterns("--columns", self.metrics, list(board.metrics))


def print_board(console: Console, board: Leaderboard, fmt: Format, view: View = View()) -> None:
    """Print the leaderboard to `console` (stdout): JSON, CSV, or a table per task, the average-rank table when
    there are several tasks, and the legend."""
    if fmt == "json":
        console.file.write(json.dumps(board.to_json(), indent=2, allow_nan=False) + "\n")
        return
    if fmt == "csv":
        emit(console, *flat_table(board, view.metrics, view.cost), "csv")
        return
    gap, note = "\n" if fmt in ("markdown", "latex") else "", LATEX_NOTE if fmt == "latex" else None
    for i, task in enumerate(board.tasks()):
        columns, rows, title = task_table(board, task, fmt, view.metrics, view.cost)
        console.file.write(gap * (i > 0))
        _emit_laid_out(console, columns, rows, fmt, title, view.layout, ("metric", "mean ± s.e."), note)
    if len(board.tasks()) > 1:
        console.file.write(gap)
        _emit_laid_out(console, *rank_table(board), fmt, "average rank across tasks", view.layout, ("task", "rank"))
    if fmt == "markdown":
        console.file.write(f"\n_{LEGEND}_\n")
    elif fmt == "table":
        console.print(textwrap.fill(LEGEND, width=console.width), style="dim", highlight=False)


def board_text(board: Leaderboard, fmt: Format = "table", width: int | None = None) -> str:
    """The leaderboard as `print_board` shows it, as a string: `--format table` at `width` columns (default: the
    terminal's, else 100), or markdown (`Leaderboard._repr_markdown_`, what a notebook renders)."""
    import io
    import shutil

    buffer = io.StringIO()
    columns = width or shutil.get_terminal_size((100, 24)).columns
    print_board(Console(file=buffer, width=columns, color_system=None, soft_wrap=False), board, fmt)
    return buffer.getvalue()


def _emit_laid_out(console: Console, columns: list[str], rows: list[list], fmt: Format, title: str, layout: str,
                   names: tuple[str, str], note: str | None = None) -> None:
    """Emit the table wide, or long (`report.long_rows` with these column `names`) when `layout` asks for it or,
    with layout auto and fmt table, when the wide table is wider than the console."""
    long = layout == "long" or (layout == "auto" and fmt == "table" and not fits(console, render(columns, rows, fmt)))
    if long:
        columns, rows = long_rows(columns, rows, names)
    emit(console, columns, rows, fmt, title, note, left=2 if long else 1)


__all__ = ["LATEX_NOTE", "LAYOUTS", "View", "board_text", "print_board"]
