"""Figures that compare methods, from saved predictions (`--save-predictions`): per task one reliability figure,
one figure of predictive bands (regression with one input) and one of OOD-score distributions, each with every
method of the task in it (`uqbench.figures` draws them). PNG, PDF or SVG, drawn with matplotlib's Agg canvas (no
pyplot, no global state).

A reliability figure pools the runs of one (task, method, config) that saved predictions; the bands and the OOD
scores show each method's run with the lowest (seed, split). Regression predictions are saved as mean and variance
(a mixture's moments), so the regression figures treat each prediction as that Gaussian.

Two kinds need no saved predictions (RECORD_KINDS): the training curves and the metrics under dataset shift, both
read from the records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uqbench import npz
from uqbench.errors import BadConfig, DataError
from uqbench.files import read_bytes, subdir, write_atomic
from uqbench.results import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from uqbench.leaderboard import Row

KINDS = ("reliability", "bands", "ood", "curves", "shift")
RECORD_KINDS = {"curves": "training curves", "shift": "metrics under shift"}  # drawn from the records alone
FORMATS = ("png", "pdf", "svg")
DPI = (10, 600)  # the dots per inch `--dpi` accepts, inclusive


@dataclass
class Runs:
    """The runs of one (task, method, config) with their saved arrays, lowest (seed, split) first."""

    task: str
    label: str
    records: list[RunRecord]
    arrays: list[dict[str, np.ndarray]]

    def pooled(self, name: str) -> np.ndarray:
        return np.concatenate([a[name] for a in self.arrays])

    def metric(self, key: str) -> float | None:
        values = [r.metrics.get(key) for r in self.records if r.metrics.get(key) is not None]
        return float(np.mean(values)) if values else None


class NoPredictions(DataError):
    """A store without saved predictions to draw (only the training curves can be)."""


def collect(records: list[RunRecord], results: Path, notes: list[str] | None = None) -> list[Runs]:
    """Group the successful runs with saved predictions; DataError when there are none. A record whose saved
    predictions are gone from the store, or whose key this installation cannot rebuild (a plugin method that is
    not installed, a config value out of range), is left out with a line appended to `notes`."""
    from uqbench.errors import UserError
    from uqbench.spec import RunSpec

    notes = notes if notes is not None else []
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for rec in records:
        if rec.status != "ok" or not rec.predictions:
            continue
        run = f"run {rec.id} ({rec.key.method} on {rec.key.task}, seed {rec.key.seed} split {rec.key.split})"
        if not (results / rec.predictions).exists():
            notes.append(f"{results / rec.predictions}: missing, so {run} is not drawn (run it again with "
                         "--save-predictions to make it)")
            continue
        try:
            RunSpec.from_key(rec.key)
        except UserError as exc:
            notes.append(f"{results / (rec.id + '.json')}: {exc}; so {run} is not drawn")
            continue
        groups.setdefault((rec.key.task, rec.key.method, rec.key.config_id), []).append(rec)
    if not groups:
        raise NoPredictions(
            f"no saved predictions in {str(results)!r}: run `uqbench compare --save-predictions` "
            "(or `uqbench run ... --save-predictions`) first"
        )
    out = []
    for (task, method, cid), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: (r.key.seed, r.key.split))
        label = _labels([(m, c) for t, m, c in groups if t == task])[method, cid]
        arrays = [load_predictions(results / r.predictions) for r in recs]  # type: ignore[operator]
        out.append(Runs(task, label, recs, arrays))
    return out


MAX_PREDICTIONS_BYTES = 4 << 30


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved-predictions file, checked; DataError naming the file when it is not one.

    Read without following links and without unpickling (`uqbench.npz.parse`: no object arrays, at most
    MAX_PREDICTIONS_BYTES judged from the headers). Expected: `targets` [N] and `score` [N], then `probs` [N, C] or
    `mean` and `var` [N, D], per OOD set the same arrays prefixed `ood_<name>_` (see the README), and for regression
    optionally the dense grid `grid_x` [G, 1], `grid_mean` and `grid_var` [G, D]; every value finite (probabilities
    in [0, 1], variances >= 0, class targets in 0 .. C-1).
    """
    try:
        arrays = npz.parse(read_bytes(path, MAX_PREDICTIONS_BYTES), MAX_PREDICTIONS_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: not a saved-predictions file ({type(exc).__name__}: {exc})") from None
    except npz.NotAnArchive as exc:
        raise DataError(f"{path}: not a saved-predictions file ({exc})") from None
    problem = _shape_problem(arrays) or _grid_problem(arrays) or _value_problem(arrays)
    if problem:
        raise DataError(f"{path}: not a saved-predictions file ({problem})")
    return arrays


def _shape_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a predictions file's arrays, or None."""
    if "targets" not in arrays or arrays["targets"].ndim not in (1, 2):
        return "no array 'targets' of shape [N] or [N, D]"
    rows_of = {"": len(arrays["targets"])}  # array-name prefix -> rows: the test set, then each OOD set
    rows_of.update({k[: -len("score")]: v.size for k, v in arrays.items() if k.startswith("ood_") and k.endswith("_score")})
    for prefix, rows in rows_of.items():
        score = arrays.get(f"{prefix}score")
        if score is None or score.shape != (rows,):
            return f"array {prefix}score missing or not of shape [{rows}]"
        for part in ["probs"] if f"{prefix}probs" in arrays else ["mean", "var"]:
            a = arrays.get(prefix + part)
            if a is None or a.ndim != 2 or len(a) != rows or a.dtype.kind != "f":
                return f"array {prefix}{part} missing or not a float [{rows}, K] array"
    return None


def _grid_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a predictions file's optional dense grid (`grid_x`, `grid_mean`, `grid_var`), or None."""
    names = [n for n in ("grid_x", "grid_mean", "grid_var") if n in arrays]
    if not names:
        return None
    if "mean" not in arrays:
        return f"array {names[0]}: a dense grid belongs to regression predictions only"
    x, d = arrays.get("grid_x"), arrays["mean"].shape[1]
    if x is None or x.ndim != 2 or x.shape[1] != 1 or len(x) < 2 or x.dtype.kind != "f":
        return "array grid_x missing or not a float [G, 1] array (G >= 2)"
    for part in ("grid_mean", "grid_var"):
        a = arrays.get(part)
        if a is None or a.shape != (len(x), d) or a.dtype.kind != "f":
            return f"array {part} missing or not a float [{len(x)}, {d}] array"
    return None


def _value_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a predictions file's values (NaN, probabilities outside [0, 1], ...), or None."""
    for name, a in arrays.items():
        if a.dtype.kind not in "iuf":
            return f"array {name} is not numeric ({a.dtype})"
        if not np.isfinite(a).all():
            return f"array {name} has values that are not finite"
    probs = [a for name, a in arrays.items() if name.endswith("probs")]
    if any(((a < 0) | (a > 1)).any() for a in probs):
        return "probabilities outside [0, 1]"
    if any((a < 0).any() for name, a in arrays.items() if name.endswith("var")):
        return "negative variances"
    targets = arrays["targets"]
    if probs and (targets.ndim != 1 or (targets != np.round(targets)).any() or targets.min(initial=0) < 0
                  or targets.max(initial=0) >= arrays["probs"].shape[1]):
        return f"array targets: expected class indices 0 .. {arrays['probs'].shape[1] - 1}"
    return None


APPLIES = {  # what a kind needs, for the message when no run has it
    "reliability": "saved predictions",
    "bands": "a regression task with one input (toy-regression)",
    "ood": "a task with OOD sets",
    "curves": "runs that trained a network (not one loaded from the cache)",
    "shift": "records with shift.* metrics: run an image task with --set shift=true (a regression task's shift.gap.* "
             "metrics have no severities to draw)",
}


def check_output(fmt: str, dpi: int) -> None:
    """BadConfig unless `fmt` is one of FORMATS and `dpi` lies in the DPI range."""
    if fmt not in FORMATS:
        raise BadConfig(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not DPI[0] <= dpi <= DPI[1]:
        raise BadConfig(f"--dpi {dpi}: expected a whole number of dots per inch from {DPI[0]} to {DPI[1]}")


@dataclass
class Drawn:
    """One figure, not yet written: `<task>/<kind>.<format>` under the output folder."""

    task: str
    kind: str
    figure: Figure


def draw(runs: list[Runs], kinds: tuple[str, ...] = KINDS, data_dir: Path | None = None,
         notes: list[str] | None = None) -> list[Drawn]:
    """Every figure of `kinds` that applies to each task, all of its methods in one figure; DataError when none
    does. Lines appended to `notes`: a group left out of its task's figures (predictions of another kind than the
    first group's) and bands drawn without a dense grid."""
    from uqbench import figures

    notes = notes if notes is not None else []
    drawn = []
    for task, groups in _by_task(runs, notes).items():
        makers = {
            "reliability": lambda g=groups: figures.reliability(g),
            "bands": lambda g=groups: figures.bands(g, data_dir, notes),
            "ood": lambda g=groups: figures.ood(g),
        }
        for kind in kinds:
            fig = makers[kind]()
            if fig is not None:
                drawn.append(Drawn(task, kind, fig))
    if not drawn:
        raise none_applies(kinds, {g.task for g in runs}, "saved runs")
    return drawn


def none_applies(kinds: tuple[str, ...], tasks: set[str], runs: str = "runs") -> DataError:
    """The error when no figure of `kinds` applies to the `runs` of `tasks`: what each kind needs."""
    need = "; ".join(f"{kind} needs {APPLIES[kind]}" for kind in kinds)
    held = ", ".join(sorted(tasks)) or "none"
    return DataError(f"no figure of kind {', '.join(kinds)} applies to the {runs} (tasks: {held}): {need}")


def draw_records(records: list[RunRecord], kinds: tuple[str, ...] = tuple(RECORD_KINDS),
                 notes: list[str] | None = None) -> list[Drawn]:
    """The figures of the RECORD_KINDS among `kinds` (`draw_curves`, `draw_shift`), from the records alone."""
    curves = draw_curves(records) if "curves" in kinds else []
    return curves + (draw_shift(records, notes) if "shift" in kinds else [])


def draw_curves(records: list[RunRecord]) -> list[Drawn]:
    """The `curves` figure of every task whose successful runs kept a training curve (from the records alone)."""
    from uqbench import figures

    by_task: dict[str, dict[tuple[str, str], list[RunRecord]]] = {}
    for rec in records:
        if rec.status == "ok":
            by_task.setdefault(rec.key.task, {}).setdefault((rec.key.method, rec.key.config_id), []).append(rec)
    drawn = []
    for task, groups in sorted(by_task.items()):
        labels = _labels(list(groups))
        runs = {labels[k]: sorted(v, key=lambda r: (r.key.seed, r.key.split)) for k, v in sorted(groups.items())}
        fig = figures.curves(task, runs)
        if fig is not None:
            drawn.append(Drawn(task, "curves", fig))
    return drawn


SEVERITIES = 5  # corruption severities 1 .. 5 (0: the clean test set)
_SHIFT_KEY = re.compile(rf"shift\.([a-z][a-z0-9_]*)\.([1-{SEVERITIES}])\.([a-z0-9_]+)")  # <name>.<severity>.<metric>


@dataclass
class Shift:
    """One leaderboard row's values for the `shift` figure of its task.

    Attributes:
        label: the row's name on the leaderboard (`uqbench.leaderboard.row_labels`).
        clean: metric -> [R] its value on the clean test set in each of the row's R runs (seeds and splits).
        shifted: metric -> severity (1 .. SEVERITIES) -> corruption -> its value (`shift.<corruption>.<severity>.
            <metric>`), the mean over the runs that report it.
    """

    label: str
    clean: dict[str, list[float]]
    shifted: dict[str, dict[int, dict[str, float]]]

    def values(self, metric: str, severity: int) -> list[float]:
        """The values a box of the figure spans: the runs' at severity 0, else the corruptions'."""
        if severity == 0:
            return self.clean.get(metric, [])
        return list(self.shifted.get(metric, {}).get(severity, {}).values())

    def corruptions(self) -> set[str]:
        return {c for by_severity in self.shifted.values() for by_name in by_severity.values() for c in by_name}


def draw_shift(records: list[RunRecord], notes: list[str] | None = None) -> list[Drawn]:
    """The `shift` figure of every task whose records carry per-corruption shift metrics (from the records alone),
    its methods the leaderboard's rows (`uqbench.leaderboard.build`: the newest record of each run) in its order and
    with its labels. A row of such a task without shift metrics is left out with a line appended to `notes`."""
    from uqbench import figures
    from uqbench.leaderboard import build, row_labels

    notes = notes if notes is not None else []
    board, drawn = build(records), []
    for task in board.tasks():
        rows = board.task_rows(task)
        methods = {label: _shift(row, label) for row, label in zip(rows, row_labels(rows))}
        if not any(methods.values()):
            continue
        notes.extend(f"{label} on {task} is not in the shift figure: no successful run of it has shift.* metrics"
                     for label, shift in methods.items() if shift is None)
        drawn.append(Drawn(task, "shift", figures.shift(task, [s for s in methods.values() if s is not None])))
    return drawn


def _shift(row: Row, label: str) -> Shift | None:
    """The row's values for the shift figure; None when its runs report no shift metric with a severity (the
    metrics of `uqbench.metrics.shift`)."""
    from uqbench.metrics.shift import metric_name

    shifted: dict[str, dict[int, dict[str, float]]] = {}
    for key, runs in row.values.items():
        match = _SHIFT_KEY.fullmatch(key)
        if match and runs and metric_name(key):
            corruption, severity, metric = match.group(1), int(match.group(2)), match.group(3)
            shifted.setdefault(metric, {}).setdefault(severity, {})[corruption] = float(np.mean(list(runs.values())))
    if not shifted:
        return None
    clean = {m: [row.values[m][run] for run in sorted(row.values[m])] for m in shifted if m in row.values}
    return Shift(label, clean, shifted)


def _labels(groups: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(method, config id) -> its label: the method, with the config id's start when it has several configs."""
    configs: dict[str, int] = {}
    for method, _ in groups:
        configs[method] = configs.get(method, 0) + 1
    return {(m, cid): m if configs[m] == 1 else f"{m}-{cid[:8]}" for m, cid in groups}


def _by_task(runs: list[Runs], notes: list[str]) -> dict[str, list[Runs]]:
    """The groups of each task whose predictions are of the kind (classes or Gaussians) of its first group's; a
    line in `notes` for each group left out."""
    tasks: dict[str, list[Runs]] = {}
    for group in runs:
        same = tasks.setdefault(group.task, [])
        if not same or ("probs" in group.arrays[0]) == ("probs" in same[0].arrays[0]):
            same.append(group)
        else:
            notes.append(f"{group.label} on {group.task} is not drawn: its predictions are of another kind than "
                         f"those of {same[0].label} (plot it alone with --methods)")
    return tasks


def write(drawn: list[Drawn], out: Path, fmt: str = "png", dpi: int = 150) -> list[Path]:
    """Write the figures as `<out>/<task>/<kind>.<fmt>` at `dpi` dots per inch; returns their paths."""
    written = []
    for d in drawn:
        path = subdir(out, d.task) / f"{d.kind}.{fmt}"
        write_atomic(path, lambda fh, f=d.figure: f.savefig(fh, format=fmt, dpi=dpi))
        written.append(path)
    return written


__all__ = ["FORMATS", "KINDS", "RECORD_KINDS", "SEVERITIES", "Drawn", "NoPredictions", "Runs", "Shift",
           "check_output", "collect", "draw", "draw_curves", "draw_records", "draw_shift", "load_predictions",
           "none_applies", "write"]
