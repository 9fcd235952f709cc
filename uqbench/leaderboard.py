"""Leaderboards: run records aggregated per (task, method, config), ranked, with paired within-noise marks.

Per task, every metric column marks the best method (by the metric's direction, or for a metric with a nominal
value such as interval coverage, by the distance from it) and, for every other method,
whether its difference from the best is within noise: a two-sided paired t-test at the 5% level over the runs
both methods have for the same (seed, split). It needs at least two such pairs; with fewer the mark is left out.
A method's rank on a task is its rank by the task's ranking metric (ties share the mean rank); its average rank
is the mean over the tasks of the comparison where it has one.

When the store holds several records of one run (the same config, seed and split, from different uqbench
versions), only the newest counts.

The JSON form (schema `uqbench.leaderboard/1`) is what `compare --format json` prints and `check` reads:
`{"schema", "metrics": {key: {"higher_is_better", "ideal", "unit", "doc"}}, "rank_by": {task: metric},
"rows": [{"task", "method", "config_id", "method_config", "task_config", "recipe", "backbone", "n_runs",
"n_failed", "n_missing",
"metrics": {key: {"mean", "se", "n", "best", "within_noise", "p_value"}},
"cost": {"fit_s", "predict_s", "n_params"}, "rank", "avg_rank"}],
"provenance": {"uqbench", "git_commit", "store", "created_at"} or null}`; `from_json` validates it field by field
(`uqbench.leaderboard_schema`). The provenance says what made the document (`provenance`); nothing reads it back.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from uqbench.errors import UnknownName
from uqbench.leaderboard_schema import SCHEMA, validate
from uqbench.results import RunRecord, aggregate, mean_se

DEFAULT_METRICS = ("accuracy", "rmse", "nll", "crps", "brier", "ece", "ood.*.auroc", "shift.accuracy", "shift.rmse",
                   "shift.nll", "shift.ece")
RANK_BY = "nll"
ALPHA = 0.05


@dataclass
class Cell:
    """One metric of one row: mean and standard error over `n` runs, and how it compares with the best."""

    mean: float
    se: float
    n: int
    best: bool = False
    within_noise: bool | None = None  # vs the best (paired t-test); None for the best or < 2 paired runs
    p_value: float | None = None


@dataclass
class Row:
    """One (task, method, config) of a leaderboard."""

    task: str
    method: str
    config_id: str
    method_config: dict[str, Any]
    task_config: dict[str, Any]
    recipe: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    n_runs: int = 0  # successful runs
    n_failed: int = 0
    n_missing: int = 0  # planned runs the store does not hold
    metrics: dict[str, Cell] = field(default_factory=dict)
    cost: dict[str, float | None] = field(default_factory=dict)  # fit_s, predict_s (means), n_params
    rank: float | None = None
    avg_rank: float | None = None
    values: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict, repr=False)  # per (seed, split)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["values"]
        return out


@dataclass
class Leaderboard:
    """Rows of every task, the metric header (direction, unit), each task's ranking metric, and what made it."""

    metrics: dict[str, dict[str, Any]]
    rows: list[Row]
    rank_by: dict[str, str]
    provenance: dict[str, Any] | None = None  # see `provenance`; None when not known (an older baseline)

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r.task for r in self.rows))

    def task_rows(self, task: str) -> list[Row]:
        return [r for r in self.rows if r.task == task]

    def columns(self, task: str) -> list[str]:
        """The metric keys shown for `task`, in header order."""
        keys = dict.fromkeys(k for r in self.task_rows(task) for k in r.metrics)
        return [k for k in self.metrics if k in keys]

    def __str__(self) -> str:
        from uqbench.leaderboard_output import board_text

        return board_text(self)

    def _repr_markdown_(self) -> str:
        from uqbench.leaderboard_output import board_text

        return board_text(self, "markdown")

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "metrics": self.metrics, "rank_by": self.rank_by, "rows": [r.to_json() for r in self.rows],
                "provenance": self.provenance}

    @classmethod
    def from_json(cls, data: Any) -> Leaderboard:
        """Parse the JSON form; raises DataError, naming the place, unless it is a valid `uqbench.leaderboard/1`
        document (see `uqbench.leaderboard_schema`)."""
        validate(data)
        rows = [Row(**{**r, "metrics": {k: Cell(**c) for k, c in r["metrics"].items()}}) for r in data["rows"]]
        return cls(dict(data["metrics"]), rows, dict(data["rank_by"]), data.get("provenance"))


def provenance(store: Path) -> dict[str, Any]:
    """What made a leaderboard: uqbench's version, the git commit of its source (None unless it is a git checkout),
    the results store (an absolute path) and the time (UTC, ISO 8601, to the second)."""
    import uqbench
    from uqbench.runner import git_commit

    return {"uqbench": uqbench.__version__, "git_commit": git_commit(), "store": str(Path(store).absolute()),
            "created_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def badness(header: dict[str, Any], value: float) -> float:
    """`uqbench.metrics.badness` of a value, read with the metric's header entry (direction and `ideal`)."""
    from uqbench.metrics import badness as of

    return of(value, header["higher_is_better"], header.get("ideal"))


def build(
    records: list[RunRecord],
    metrics: tuple[str, ...] | None = None,
    expected: dict[tuple[str, str], int] | None = None,
    all_metrics: bool = False,
) -> Leaderboard:
    """Aggregate records into a leaderboard.

    Args:
        records: run records (any order); grouped by task, method and config_id.
        metrics: metric keys or shell patterns (`ood.*.auroc`) to show, in order; a task is ranked by the first
            of them it reports. None: DEFAULT_METRICS (plus every other metric with `all_metrics`), ranked by
            nll. A pattern that matches no metric of any record raises UnknownName.
        expected: (task, method) -> planned number of runs, to count the missing ones.
    """
    if metrics:
        check_patterns("--metric", metrics, sorted({k for r in records for k in r.metrics if _known(k)}))
    rows = [_row(group, expected) for group in _groups(records).values()]
    patterns = metrics or (DEFAULT_METRICS + ("*",) if all_metrics else DEFAULT_METRICS)
    header: dict[str, dict[str, Any]] = {}
    rank_by: dict[str, str] = {}
    for task in dict.fromkeys(r.task for r in rows):
        task_rows = [r for r in rows if r.task == task]
        keys = _select(task_rows, patterns)
        for key in keys:
            header.setdefault(key, _describe(key))
            _mark(task_rows, key, header[key])
        for row in task_rows:
            row.metrics = {k: row.metrics[k] for k in keys if k in row.metrics}
        if keys:
            rank_by[task] = RANK_BY if RANK_BY in keys and not metrics else keys[0]
            _rank(task_rows, rank_by[task], header[rank_by[task]])
    _average_ranks(rows)
    ordered = sorted(header, key=lambda k: _order(k, patterns))
    return Leaderboard({k: header[k] for k in ordered}, rows, rank_by)


def _groups(records: list[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """Records by (task, method, config id), one record of each (seed, split): the newest of those this version
    of uqbench made, else the newest (a config id leaves out the code versions and the data, so an upgrade's
    re-runs sit beside the old records, and a record from another version can never outrank this version's)."""
    import uqbench

    def rank(rec: RunRecord) -> tuple[bool, str]:
        return rec.key.code.get("uqbench") == uqbench.__version__, rec.created_at

    newest: dict[tuple[str, int, int], RunRecord] = {}
    for rec in records:
        run = (rec.key.config_id, rec.key.seed, rec.key.split)
        if run not in newest or rank(rec) > rank(newest[run]):
            newest[run] = rec
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for rec in records:
        if newest[rec.key.config_id, rec.key.seed, rec.key.split] is rec:
            groups.setdefault((rec.key.task, rec.key.method, rec.key.config_id), []).append(rec)
    return groups


def _row(group: list[RunRecord], expected: dict[tuple[str, str], int] | None) -> Row:
    key, ok = group[0].key, [r for r in group if r.status == "ok"]
    row = Row(key.task, key.method, key.config_id, key.method_config, key.task_config, key.recipe, key.backbone,
              len(ok), len(group) - len(ok))
    if expected is not None:
        row.n_missing = max(expected.get((key.task, key.method), 0) - len(group), 0)
    row.metrics = {k: Cell(mean, se, n) for k, (mean, se, n) in aggregate(group).items()}
    for rec in ok:
        for k, v in rec.metrics.items():
            if v is not None:
                row.values.setdefault(k, {})[rec.key.seed, rec.key.split] = v
    params = [r.info.get("n_params") for r in ok if r.info.get("n_params") is not None]
    row.cost = {
        "fit_s": _mean([r.timings_s["fit"] for r in ok if "fit" in r.timings_s]),
        "predict_s": _mean([r.timings_s["predict"] for r in ok if "predict" in r.timings_s]),
        "n_params": params[0] if params else None,
    }
    return row


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _known(key: str) -> bool:
    from uqbench.metrics import metric_spec

    try:
        metric_spec(key)
    except KeyError:
        return False
    return True


def _describe(key: str) -> dict[str, Any]:
    from uqbench.metrics import metric_spec

    spec = metric_spec(key)
    return {"higher_is_better": spec.higher_is_better, "ideal": spec.ideal, "unit": spec.unit, "doc": spec.doc}


def _select(rows: list[Row], patterns: tuple[str, ...]) -> list[str]:
    """Metric keys of these rows that match the patterns, in pattern order, then in the records' order."""
    present = [k for k in dict.fromkeys(k for r in rows for k in r.metrics) if _known(k)]
    return sorted((k for k in present if any(fnmatch.fnmatchcase(k, p) for p in patterns)), key=lambda k: _order(k, patterns))


def _order(key: str, patterns: tuple[str, ...]) -> int:
    return next(i for i, p in enumerate((*patterns, "*")) if fnmatch.fnmatchcase(key, p))


def check_patterns(option: str, patterns: tuple[str, ...], present: list[str]) -> None:
    """UnknownName, naming the option, for the first metric pattern that matches none of the `present` keys."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(k, pattern) for k in present):
            raise UnknownName(f"{option} {pattern!r}: no run of this comparison reports it; available: {', '.join(present)}")


def shown(keys: list[str], patterns: tuple[str, ...] | None) -> list[str]:
    """The keys that match the patterns, in pattern order, then in their own order (None: all of them)."""
    if patterns is None:
        return keys
    return sorted((k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)), key=lambda k: _order(k, patterns))


def _mark(rows: list[Row], key: str, header: dict[str, Any]) -> None:
    """Mark the best row(s) for `key` and test every other row against the first best one."""
    have = [r for r in rows if key in r.metrics]
    if not have:
        return
    top = min(badness(header, r.metrics[key].mean) for r in have)
    best = [r for r in have if badness(header, r.metrics[key].mean) == top]
    for row in have:
        cell = row.metrics[key]
        cell.best = row in best
        if not cell.best:
            cell.within_noise, cell.p_value = paired_test(_badness_values(header, best[0], key),
                                                          _badness_values(header, row, key))


def _badness_values(header: dict[str, Any], row: Row, key: str) -> dict[tuple[int, int], float]:
    return {run: badness(header, v) for run, v in row.values.get(key, {}).items()}


def paired_test(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float]) -> tuple[bool | None, float | None]:
    """Two-sided paired t-test of a - b over their common (seed, split) runs at level ALPHA.

    Returns (within noise, p-value); (None, None) with fewer than two common runs. Identical differences
    (zero spread) count as within noise only when they are all zero.

    >>> within, p = paired_test({(0, 0): 1.0, (1, 0): 2.0, (2, 0): 3.0}, {(0, 0): 1.1, (1, 0): 1.9, (2, 0): 3.05})
    >>> within, round(p, 4)
    (True, 0.8075)
    """
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None, None
    mean, se = mean_se([a[k] - b[k] for k in common])
    if se == 0.0:
        return mean == 0.0, 1.0 if mean == 0.0 else 0.0
    from scipy import stats

    p = float(2.0 * stats.t.sf(abs(mean / se), df=len(common) - 1))
    return p >= ALPHA, p


def _rank(rows: list[Row], key: str, header: dict[str, Any]) -> None:
    """Rank 1 = best; tied rows share the mean of the ranks they span."""
    scores = {id(r): -badness(header, r.metrics[key].mean) for r in rows if key in r.metrics}
    for row in rows:
        if id(row) not in scores:
            continue
        s = scores[id(row)]
        better = sum(v > s for v in scores.values())
        ties = sum(v == s for v in scores.values())
        row.rank = better + (ties + 1) / 2


def _average_ranks(rows: list[Row]) -> None:
    ranks: dict[str, list[float]] = {}
    for row in rows:
        if row.rank is not None:
            ranks.setdefault(row.method, []).append(row.rank)
    for row in rows:
        if row.method in ranks:
            row.avg_rank = sum(ranks[row.method]) / len(ranks[row.method])


# -- layout for `uqbench compare` (report.emit prints it) ---------------------------------------------------
LEGEND = (
    "mean ± standard error over runs; ↑/↓: higher/lower is better, → x: closest to x is best; best per column in bold; "
    "≈: within noise of the best (paired t-test over the same seeds/splits, 5%); "
    "rank: by the metric in the title; avg rank: mean over tasks; fit/predict: seconds per run"
)


def task_table(board: Leaderboard, task: str, fmt: str, metrics: tuple[str, ...] | None = None,
               cost: bool = True) -> tuple[list[str], list[list[str | Text]], str]:
    """(columns, rows, title) of one task's leaderboard for fmt 'table' (best cells as styled rich Text),
    'markdown' (best cells in bold) or 'latex' (`uqbench.latex.estimate` cells).

    Args:
        metrics: metric keys or patterns to show, in order (None: every metric of the task, in header order).
        cost: with the columns fit s, predict s and params.
    """
    rows, keys = board.task_rows(task), shown(board.columns(task), metrics)
    show_missing = any(r.n_missing for r in rows)
    columns = ["method", *(f"{k} {_arrow(board, k)}" for k in keys), "runs", "failed"]
    columns += ["missing"] * show_missing + ["rank", "avg rank"] + ["fit s", "predict s", "params"] * cost
    out = []
    for row, label in zip(rows, row_labels(rows)):
        cells = [label, *(_cell(row.metrics.get(k), fmt) for k in keys), str(row.n_runs), _failed(row.n_failed, fmt)]
        cells += [str(row.n_missing)] * show_missing
        cells += [_num(row.rank, "g"), _num(row.avg_rank, ".2f")]
        cells += [_seconds(row.cost.get("fit_s")), _seconds(row.cost.get("predict_s")),
                  _count(row.cost.get("n_params"))] * cost
        out.append(cells)
    return columns, out, f"{task} (rank by {board.rank_by.get(task, '-')})"


def row_labels(rows: list[Row]) -> list[str]:
    """The name of each of one task's rows: its method, with the config id's start when the method has several
    configs on the task (`map (3f9c0a7d)`)."""
    duplicated = {r.method for r in rows if sum(o.method == r.method for o in rows) > 1}
    return [f"{r.method} ({r.config_id[:8]})" if r.method in duplicated else r.method for r in rows]


def rank_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Rank of every method on every task and its average rank, best average first."""
    tasks = board.tasks()
    ranks: dict[str, dict[str, float | None]] = {}
    for row in board.rows:
        ranks.setdefault(row.method, {})[row.task] = row.rank
    avg = {r.method: r.avg_rank for r in board.rows}
    order = sorted(ranks, key=lambda m: (avg[m] is None, avg[m] or 0.0, m))
    rows = [[m, *(_num(ranks[m].get(t), "g") for t in tasks), _num(avg[m], ".2f")] for m in order]
    return ["method", *tasks, "avg rank"], rows


def flat_table(board: Leaderboard, metrics: tuple[str, ...] | None = None,
               cost: bool = True) -> tuple[list[str], list[list[Any]]]:
    """Every row of every task with raw numbers, for CSV: one mean and one se column per metric (the metrics and
    cost columns chosen as for `task_table`)."""
    keys = shown(list(board.metrics), metrics)
    columns = ["task", "method", "config_id", "runs", "failed", "missing", "rank", "avg_rank"]
    columns += ["fit_s", "predict_s", "n_params"] * cost + [c for k in keys for c in (k, f"{k}_se")]
    rows = []
    for r in board.rows:
        cells: list[Any] = [r.task, r.method, r.config_id, r.n_runs, r.n_failed, r.n_missing, r.rank, r.avg_rank]
        cells += [r.cost.get("fit_s"), r.cost.get("predict_s"), r.cost.get("n_params")] * cost
        for k in keys:
            cell = r.metrics.get(k)
            cells += [cell.mean, cell.se] if cell else [None, None]
        rows.append(["" if c is None else c for c in cells])
    return columns, rows


def _arrow(board: Leaderboard, key: str) -> str:
    header = board.metrics[key]
    if header.get("ideal") is not None:
        return f"→ {header['ideal']:g}"
    return "↑" if header["higher_is_better"] else "↓"


def _cell(cell: Cell | None, fmt: str) -> str | Text:
    from uqbench.report import mean_se_cell

    if cell is None:
        return "—"
    text = mean_se_cell(cell.mean, cell.se, cell.n)
    if fmt == "latex":
        from uqbench.latex import estimate

        return estimate(text, cell.best, bool(cell.within_noise))
    if cell.best:
        return f"**{text}**" if fmt == "markdown" else Text(text, style="bold green")
    return f"{text} ≈" if cell.within_noise else text


def _failed(n: int, fmt: str) -> str | Text:
    return Text(str(n), style="red") if n and fmt == "table" else str(n)


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def _count(n: float | None) -> str:
    if n is None:
        return "—"
    if n < 1e3:
        return str(int(n))
    return f"{n / 1e3:.1f}k" if n < 1e6 else f"{n / 1e6:.2f}M"


__all__ = [
    "LEGEND", "SCHEMA", "Cell", "Leaderboard", "Row", "badness", "build", "check_patterns", "flat_table", "paired_test",
    "provenance", "rank_table", "row_labels", "shown", "task_table",
]
