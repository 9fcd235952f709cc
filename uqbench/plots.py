"""Figures from saved predictions (`--save-predictions`): reliability diagrams, 1-D regression bands, OOD-score
histograms. PNG files drawn with matplotlib's Agg canvas (no pyplot, no global state).

A reliability diagram pools the runs of one (task, method, config) that saved predictions; the regression band
and the OOD histograms show the run with the lowest (seed, split). Regression predictions are saved as mean and variance (a
mixture's moments), so the regression reliability curve treats each prediction as that Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uqbench import npz
from uqbench.errors import DataError
from uqbench.files import read_bytes, subdir, write_atomic
from uqbench.results import RunRecord

KINDS = ("reliability", "bands", "ood")
BINS = 15  # equal-width confidence bins, as the ECE metric uses
CMAP = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


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


def collect(records: list[RunRecord], results: Path, notes: list[str] | None = None) -> list[Runs]:
    """Group the successful runs with saved predictions; DataError when there are none. A record whose saved
    predictions are gone from the store is left out with a line appended to `notes`."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for rec in records:
        if rec.status != "ok" or not rec.predictions:
            continue
        if not (results / rec.predictions).exists():
            if notes is not None:
                notes.append(f"{results / rec.predictions}: missing, so run {rec.id} ({rec.key.method} on "
                             f"{rec.key.task}, seed {rec.key.seed} split {rec.key.split}) is not drawn "
                             "(run it again with --save-predictions to make it)")
            continue
        groups.setdefault((rec.key.task, rec.key.method, rec.key.config_id), []).append(rec)
    if not groups:
        raise DataError(
            f"no saved predictions in {str(results)!r}: run `uqbench compare --save-predictions` "
            "(or `uqbench run ... --save-predictions`) first"
        )
    methods_per_task: dict[tuple[str, str], int] = {}
    for task, method, _ in groups:
        methods_per_task[task, method] = methods_per_task.get((task, method), 0) + 1
    out = []
    for (task, method, cid), recs in groups.items():
        recs = sorted(recs, key=lambda r: (r.key.seed, r.key.split))
        label = method if methods_per_task[task, method] == 1 else f"{method}-{cid[:8]}"
        arrays = [load_predictions(results / r.predictions) for r in recs]  # type: ignore[operator]
        out.append(Runs(task, label, recs, arrays))
    return out


MAX_PREDICTIONS_BYTES = 4 << 30


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved-predictions file, checked; DataError naming the file when it is not one.

    Read without following links and without unpickling (`uqbench.npz.parse`: no object arrays, at most
    MAX_PREDICTIONS_BYTES judged from the headers). Expected: `targets` [N] and `score` [N], then `probs` [N, C] or
    `mean` and `var` [N, D], and per OOD set the same arrays prefixed `ood_<name>_` (see the README), every value
    finite (probabilities in [0, 1], variances >= 0, class targets in 0 .. C-1).
    """
    try:
        arrays = npz.parse(read_bytes(path, MAX_PREDICTIONS_BYTES), MAX_PREDICTIONS_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: not a saved-predictions file ({type(exc).__name__}: {exc})") from None
    except npz.NotAnArchive as exc:
        raise DataError(f"{path}: not a saved-predictions file ({exc})") from None
    problem = _shape_problem(arrays) or _value_problem(arrays)
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
}


@dataclass
class Drawn:
    """One figure, not yet written: `<task>/<label>-<kind>.png` under the output folder."""

    task: str
    label: str
    kind: str
    figure: object


def draw(runs: list[Runs], kinds: tuple[str, ...] = KINDS, data_dir: Path | None = None) -> list[Drawn]:
    """Every figure of `kinds` that applies to each group; DataError when none does."""
    drawn = []
    for group in runs:
        figures = {
            "reliability": lambda g=group: reliability(g),
            "bands": lambda g=group: bands(g, data_dir),
            "ood": lambda g=group: ood_histograms(g),
        }
        for kind in kinds:
            fig = figures[kind]()
            if fig is not None:
                drawn.append(Drawn(group.task, group.label, kind, fig))
    if not drawn:
        held = ", ".join(sorted({g.task for g in runs}))
        need = "; ".join(f"{kind} needs {APPLIES[kind]}" for kind in kinds)
        raise DataError(f"no figure of kind {', '.join(kinds)} applies to the saved runs (tasks: {held}): {need}")
    return drawn


def write(drawn: list[Drawn], out: Path) -> list[Path]:
    """Write the figures as `<out>/<task>/<label>-<kind>.png`; returns their paths."""
    written = []
    for d in drawn:
        path = subdir(out, d.task) / f"{d.label}-{d.kind}.png"
        write_atomic(path, lambda fh, f=d.figure: f.savefig(fh, format="png", dpi=110))
        written.append(path)
    return written


def _figure(width: float, height: float, rows: int = 1, ratios: tuple[float, ...] | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": ratios} if ratios else None)
    return fig, axes


def reliability(runs: Runs):
    """Classification: accuracy per confidence bin against the diagonal, with the bin counts below.
    Regression: observed against nominal coverage of the central intervals of the predictive Gaussian."""
    if "probs" in runs.arrays[0]:
        return _reliability_classification(runs)
    return _reliability_regression(runs)


def _reliability_classification(runs: Runs):
    probs, targets = runs.pooled("probs"), runs.pooled("targets").astype(int)
    conf, correct = probs.max(1), probs.argmax(1) == targets
    edges = np.linspace(0.0, 1.0, BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, BINS - 1)
    count = np.bincount(which, minlength=BINS)
    acc = np.bincount(which, weights=correct, minlength=BINS) / np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=conf, minlength=BINS) / np.maximum(count, 1)
    centers, width, used = (edges[:-1] + edges[1:]) / 2, 1.0 / BINS, count > 0

    fig, (top, bottom) = _figure(5.0, 5.6, rows=2, ratios=(3, 1))
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    top.bar(centers[used], acc[used], width=width, edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy")
    top.bar(centers[used], (mean_conf - acc)[used], bottom=acc[used], width=width, color="tab:red", alpha=0.3,
            hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    ece = runs.metric("ece")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
            title=f"{runs.label} on {runs.task}" + (f" — ECE {ece:.4f}" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, count, width=width, color="grey", edgecolor="black")
    bottom.set(xlabel=f"confidence (top label, {BINS} bins)", ylabel="predictions")
    return fig


def _reliability_regression(runs: Runs):
    from scipy import stats

    mean, var, y = runs.pooled("mean"), runs.pooled("var"), runs.pooled("targets")
    z = np.abs(y - mean) / np.sqrt(var)
    nominal = np.linspace(0.05, 0.95, 19)
    observed = np.array([(z <= stats.norm.ppf(0.5 + p / 2)).mean() for p in nominal])
    fig, ax = _figure(5.0, 5.0)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.plot(nominal, observed, marker="o", color="tab:blue", label="observed")
    ax.set(xlabel="nominal coverage of the central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
           title=f"{runs.label} on {runs.task} ({len(y)} test targets)")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def bands(runs: Runs, data_dir: Path | None = None):
    """1-D regression: predictive mean ± 2σ over the test and OOD inputs, with the training data; None otherwise.

    The inputs are not saved with the predictions, so the task is loaded again from the record's key.
    """
    first, arrays = runs.records[0], runs.arrays[0]
    if "mean" not in arrays or arrays["mean"].shape[1] != 1:
        return None
    data = _reload(first, data_dir)
    if data.in_shape != (1,):
        return None
    if len(arrays["mean"]) != len(data.test):
        raise DataError(f"{first.predictions}: {len(arrays['mean'])} predictions, but the run's test set has "
                        f"{len(data.test)} inputs: not this run's predictions")
    xs, means, variances = [data.test.x[:, 0].numpy()], [arrays["mean"][:, 0]], [arrays["var"][:, 0]]
    for name, x in data.ood.items():
        if f"ood_{name}_mean" in arrays:
            xs.append(x[:, 0].numpy())
            means.append(arrays[f"ood_{name}_mean"][:, 0])
            variances.append(arrays[f"ood_{name}_var"][:, 0])
    x, mean, sd = np.concatenate(xs), np.concatenate(means), np.sqrt(np.concatenate(variances))
    order = np.argsort(x)
    y_train = (data.train.y * data.target_scale + data.target_loc)[:, 0].numpy()

    fig, ax = _figure(7.0, 4.2)
    ax.fill_between(x[order], (mean - 2 * sd)[order], (mean + 2 * sd)[order], color="tab:blue", alpha=0.25,
                    label="mean ± 2σ")
    ax.plot(x[order], mean[order], color="tab:blue", lw=1.5, label="predictive mean")
    ax.scatter(data.train.x[:, 0].numpy(), y_train, s=6, color="black", alpha=0.5, label="training data")
    lo, hi = np.percentile(y_train, [0.5, 99.5])
    pad = 1.5 * (hi - lo)
    ax.set(xlabel="x (standardised)", ylabel="y", ylim=(lo - pad, hi + pad),
           title=f"{runs.label} on {runs.task}, seed {first.key.seed} split {first.key.split}")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _reload(record: RunRecord, data_dir: Path | None):
    from uqbench.spec import RunSpec

    spec = RunSpec.from_key(record.key)
    return spec.make_task(data_dir).load(spec.seed, spec.split)


def ood_histograms(runs: Runs):
    """Histograms of the OOD score on the test inputs and on each OOD set of the run with the lowest
    (seed, split) — scores of different runs need not share a scale; None without OOD sets."""
    first, arrays = runs.records[0], runs.arrays[0]
    names = [k[len("ood_") : -len("_score")] for k in arrays if k.startswith("ood_") and k.endswith("_score")]
    if not names:
        return None
    scores = {"test (in-distribution)": arrays["score"]}
    for name in names:
        auroc = first.metrics.get(f"ood.{name}.auroc")
        scores[f"{name}" + (f" (AUROC {auroc:.3f})" if auroc is not None else "")] = arrays[f"ood_{name}_score"]
    every = np.concatenate(list(scores.values()))
    lo, hi = float(every.min()), float(every.max())
    log = lo > 0 and hi / lo > 1e3
    if hi <= lo:  # every score equal (e.g. a constant predictive variance)
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.geomspace(lo, hi, 41) if log else np.linspace(lo, hi, 41)
    fig, ax = _figure(6.0, 4.0)
    for (label, s), color in zip(scores.items(), CMAP):
        weights = np.full(len(s), 1.0 / len(s))
        ax.hist(s, bins=edges, weights=weights, histtype="stepfilled", alpha=0.3, color=color)
        ax.hist(s, bins=edges, weights=weights, histtype="step", lw=1.5, color=color, label=label)
    if log:
        ax.set_xscale("log")
    ax.set(xlabel="OOD score (higher = more out-of-distribution)", ylabel="fraction of inputs",
           title=f"{runs.label} on {runs.task}, seed {first.key.seed} split {first.key.split}")
    ax.legend(fontsize=8)
    return fig


__all__ = ["KINDS", "Drawn", "Runs", "bands", "collect", "draw", "ood_histograms", "reliability", "write"]
