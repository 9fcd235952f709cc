"""One way to print results: `emit(columns, rows, fmt)` renders a table as rich, markdown, csv, json or LaTeX on
stdout; `long_rows` turns a wide table into a long one, and `fits` says whether a rich table fits its console."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "markdown", "csv", "json", "latex"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json", "latex")


def render(columns: list[str], rows: list[list[Any]], fmt: Format, title: str | None = None, note: str | None = None,
           left: int = 1) -> str | Table:
    """The rows as a rich Table (fmt 'table') or as text (markdown via tabulate, csv, json list of objects, a LaTeX
    booktabs table with `title` as its caption and `note` below it).

    Table cells, headers and the title are plain text, whatever brackets a name holds (`[/b]` is no markup); a cell
    that is a rich `Text` keeps its style. The first `left` columns are left-aligned in a rich or LaTeX table, the
    others right-aligned; `note` is for LaTeX only (the other formats print their legend once, after the tables).
    """
    if fmt == "table":
        table = Table(title=Text(title, style="table.title") if title is not None else None, title_justify="left")
        for i, col in enumerate(columns):
            table.add_column(Text(col), justify="left" if i < left else "right")
        for row in rows:
            table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in row))
        return table
    if fmt == "markdown":
        from tabulate import tabulate

        text = tabulate(rows, headers=columns, tablefmt="github", disable_numparse=True)
        return f"**{title}**\n\n{text}\n" if title else text + "\n"
    if fmt == "latex":
        from uqbench.latex import table as latex_table

        return latex_table(columns, rows, title, note, left)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    return json.dumps([dict(zip(columns, row)) for row in rows], indent=2) + "\n"


def emit(console: Console, columns: list[str], rows: list[list[Any]], fmt: Format, title: str | None = None,
         note: str | None = None, left: int = 1) -> None:
    """Print `render(...)` to the console (stdout)."""
    out = render(columns, rows, fmt, title, note, left)
    if isinstance(out, str):
        console.file.write(out)
    else:
        console.print(out)


def fits(console: Console, table: Table) -> bool:
    """Whether `table` at its natural width (no cell wrapped or cut) is at most the console's width in columns."""
    return console.measure(table, options=console.options.update_width(10**6)).maximum <= console.width


def long_rows(columns: list[str], rows: list[list[Any]], names: tuple[str, str]) -> tuple[list[str], list[list[Any]]]:
    """A wide table `[label, cell, cell, ...]` as a long one: a row `[label, column, cell]` per cell, the label on
    its first row only; `names` are the headers of the column and cell columns (e.g. 'metric', 'mean ± s.e.').

    >>> long_rows(["method", "nll", "runs"], [["map", "0.3", "3"]], ("metric", "value"))
    (['method', 'metric', 'value'], [['map', 'nll', '0.3'], ['', 'runs', '3']])
    """
    out = []
    for row in rows:
        out += [[row[0] if i == 0 else "", column, cell] for i, (column, cell) in enumerate(zip(columns[1:], row[1:]))]
    return [columns[0], *names], out


def long_layout(columns: list[str], rows: list[list[Any]], width: int) -> str:
    """Rows as blocks instead of a table, for listings too wide to read as one at `width` columns: the first
    cell as a heading, then one `column: value` line per other cell, wrapped and indented."""
    import textwrap

    blocks = []
    for row in rows:
        lines = [str(row[0])]
        for column, cell in zip(columns[1:], row[1:]):
            lines += textwrap.wrap(f"{column}: {cell}", width=max(width, 40), initial_indent="  ",
                                   subsequent_indent="      ", break_on_hyphens=False)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def mean_se_cell(mean: float, se: float, n: int, digits: int = 4) -> str:
    """'0.1234 ± 0.0012' (or just the mean for a single run)."""
    return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} ± {se:.{digits}f}"


def metric_rows(records: list) -> tuple[list[str], list[list[Any]]]:
    """Rows 'metric | mean ± s.e. | runs' over the successful records of one method on one task; of the shift
    metrics only the means per severity and overall (every set's values are in the records, and `--json`)."""
    from uqbench.metrics import metric_spec, shift
    from uqbench.results import aggregate

    rows = []
    for key, (mean, se, n) in aggregate(records).items():
        if shift.per_set(key):
            continue
        spec = metric_spec(key)
        arrow = f"→ {spec.ideal:g}" if spec.ideal is not None else "↑" if spec.higher_is_better else "↓"
        rows.append([f"{key} {arrow}", mean_se_cell(mean, se, n), n])
    failed = sum(r.status != "ok" for r in records)
    if failed:
        rows.append(["failed runs", str(failed), len(records)])
    return ["metric", "mean ± s.e.", "runs"], rows
