"""One way to print results: `emit(columns, rows, fmt)` renders a table as rich, markdown, csv or json on stdout."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "markdown", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")


def render(columns: list[str], rows: list[list[Any]], fmt: Format, title: str | None = None) -> str | Table:
    """The rows as a rich Table (fmt 'table') or as text (markdown via tabulate, csv, json list of objects).

    Table cells, headers and the title are plain text, whatever brackets a name holds (`[/b]` is no markup); a cell
    that is a rich `Text` keeps its style.
    """
    if fmt == "table":
        table = Table(title=Text(title, style="table.title") if title is not None else None, title_justify="left")
        for col in columns:
            table.add_column(Text(col), justify="left" if col == columns[0] else "right")
        for row in rows:
            table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in row))
        return table
    if fmt == "markdown":
        from tabulate import tabulate

        text = tabulate(rows, headers=columns, tablefmt="github", disable_numparse=True)
        return f"**{title}**\n\n{text}\n" if title else text + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    return json.dumps([dict(zip(columns, row)) for row in rows], indent=2) + "\n"


def emit(console: Console, columns: list[str], rows: list[list[Any]], fmt: Format, title: str | None = None) -> None:
    """Print `render(...)` to the console (stdout)."""
    out = render(columns, rows, fmt, title)
    if isinstance(out, str):
        console.file.write(out)
    else:
        console.print(out)


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
    """Rows 'metric | mean ± s.e. | runs' over the successful records of one method on one task."""
    from uqbench.metrics import metric_spec
    from uqbench.results import aggregate

    rows = []
    for key, (mean, se, n) in aggregate(records).items():
        spec = metric_spec(key)
        arrow = f"→ {spec.ideal:g}" if spec.ideal is not None else "↑" if spec.higher_is_better else "↓"
        rows.append([f"{key} {arrow}", mean_se_cell(mean, se, n), n])
    failed = sum(r.status != "ok" for r in records)
    if failed:
        rows.append(["failed runs", str(failed), len(records)])
    return ["metric", "mean ± s.e.", "runs"], rows
