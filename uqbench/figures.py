"""The figures `uqbench plot` draws, each comparing every method of one task: `reliability`, `bands`, `ood`,
`curves` (the training curves the records keep) and `shift` (the records' metrics under dataset shift).

Each takes the groups of one task (`uqbench.plots.Runs`, one per method and config, lowest (seed, split) first) and
returns a matplotlib Figure on the Agg canvas (the object API only, no pyplot), or None when the kind does not
apply. A grid of panels, one per method, shares its axes where the quantities share units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uqbench.errors import DataError
from uqbench.plots import SEVERITIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from uqbench.plots import Runs, Shift
    from uqbench.results import RunRecord
    from uqbench.tasks import TaskData

BINS = 15  # equal-width confidence bins, as the ECE metric uses
COLUMNS = 3  # panels per row
PANEL = (3.4, 2.6)  # inches (width, height) per panel
METHOD_COLOR, GAP_COLOR = "tab:blue", "tab:red"
SET_COLORS = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
LINE_COLORS = ("tab:blue", *SET_COLORS, "tab:red", "tab:grey")
CLUSTER_GAP = 0.05  # OOD inputs further apart than this fraction of the panel's x range shade separate regions


def _panels(n: int, title: str, sharex: bool = False, sharey: bool = False,
            columns: int = COLUMNS) -> tuple[Figure, list[Axes]]:
    """A figure titled `title` holding a grid of n panels, `columns` per row; the unused cells of the last row are
    removed and the panel above each of them shows its x tick labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n, columns)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False).flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    for ax in axes[max(n - cols, 0) : n]:
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(title)
    return fig, axes[:n]


def _label(axes: list[Axes], xlabel: str, ylabel: str, columns: int = COLUMNS) -> None:
    """x labels under the bottom panel of each column, y labels left of the first column (of `columns`)."""
    cols = min(len(axes), columns)
    for i, ax in enumerate(axes):
        if i >= len(axes) - cols:
            ax.set_xlabel(xlabel)
        if i % cols == 0:
            ax.set_ylabel(ylabel)


def _which_runs(groups: list[Runs]) -> tuple[str, list[str]]:
    """For figures of each group's first run: the caption's words for that run ("seed 0 split 0" when every group's
    first run has it) and a suffix per panel title (the run's seed and split when the groups' differ)."""
    runs = [(g.records[0].key.seed, g.records[0].key.split) for g in groups]
    if len(set(runs)) == 1:
        return f"seed {runs[0][0]} split {runs[0][1]}", ["" for _ in groups]
    return "its lowest seed and split (in its panel's title)", [f", seed {s} split {p}" for s, p in runs]


def reliability(groups: list[Runs]) -> Figure:
    """Classification: a reliability diagram per method (`_reliability_classes`); regression: every method's
    coverage curve in one panel (`_coverage`)."""
    if "probs" in groups[0].arrays[0]:
        return _reliability_classes(groups)
    return _coverage(groups)


def _confidence_bins(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of the top-label confidence of probs [N, C] with class targets [N]: the mean confidence,
    the accuracy (both 0 for an empty bin) and the number of predictions, each [BINS]."""
    conf, correct = probs.max(1), probs.argmax(1) == targets
    which = np.clip(np.digitize(conf, np.linspace(0.0, 1.0, BINS + 1)[1:-1], right=True), 0, BINS - 1)
    count = np.bincount(which, minlength=BINS)
    acc = np.bincount(which, weights=correct, minlength=BINS) / np.maximum(count, 1)
    return np.bincount(which, weights=conf, minlength=BINS) / np.maximum(count, 1), acc, count


def _reliability_classes(groups: list[Runs]) -> Figure:
    """A grid of small reliability diagrams, one per method, sharing both axes: accuracy per confidence bin
    against the diagonal, the gap to the bin's mean confidence, and the share of predictions in each bin.

    A grid rather than overlaid curves: with six methods, curves that all hug the diagonal hide each other, and the
    bins a confident method leaves empty break its curve; one panel per method keeps each method's gaps and bin
    mass readable, and the shared axes keep them comparable. Each panel's legend gives the method's ECE (the mean
    over the runs pooled in the panel).
    """
    edges = np.linspace(0.0, 1.0, BINS + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / BINS
    fig, axes = _panels(len(groups), f"Reliability on {groups[0].task}", sharex=True, sharey=True)
    for ax, group in zip(axes, groups):
        conf, acc, count = _confidence_bins(group.pooled("probs"), group.pooled("targets").astype(int))
        used = count > 0
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        bars = ax.bar(centers[used], acc[used], width=width, color=METHOD_COLOR, edgecolor="black", lw=0.5,
                      alpha=0.8, label="accuracy")
        ax.bar(centers[used], (conf - acc)[used], bottom=acc[used], width=width, color=GAP_COLOR, alpha=0.3,
               hatch="//", edgecolor=GAP_COLOR, lw=0.5, label="gap to mean confidence")
        ax.stairs(count / count.sum(), edges, color="black", lw=1, label="share of predictions")
        ece, n = group.metric("ece"), len(group.records)
        if ece is not None:
            ax.legend([bars], [f"ECE {ece:.4f}" + (f" (mean of {n} runs)" if n > 1 else "")], loc="upper left",
                      fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_title(group.label, fontsize=10)
    _label(axes, f"confidence (top label, {BINS} bins)", "accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return fig


def _coverage(groups: list[Runs]) -> Figure:
    """Every method's observed coverage of the central intervals of its predictive Gaussians against their nominal
    coverage, overlaid on the diagonal in one panel (a few curves of one quantity read best on one set of axes);
    the legend gives each method's quantile calibration error (QCE, the mean over its runs) where recorded."""
    from scipy import stats

    nominal = np.linspace(0.05, 0.95, 19)
    half_widths = stats.norm.ppf(0.5 + nominal / 2)  # in standard deviations
    fig, (ax,) = _panels(1, f"Reliability on {groups[0].task}")
    fig.set_size_inches(5.2, 5.2)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for i, group in enumerate(groups):
        z = np.abs(group.pooled("targets") - group.pooled("mean")) / np.sqrt(group.pooled("var"))
        qce = group.metric("qce")
        ax.plot(nominal, [(z <= w).mean() for w in half_widths], marker="o", ms=3, color=_line_color(i),
                label=group.label + (f" (QCE {qce:.3f})" if qce is not None else ""))
    ax.set(xlabel="nominal coverage of the central interval", ylabel="observed coverage on the test set",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _line_color(i: int) -> str:
    return LINE_COLORS[i % len(LINE_COLORS)]


@dataclass
class Band:
    """What one panel of `bands` shows, every x in the task's original input units (see `_original_inputs`) and
    every y in original target units.

    Attributes:
        label: the panel's title.
        x, mean, sd: [G] predictive mean and standard deviation at the inputs x (ascending): the saved dense grid,
            or without one the test and OOD inputs.
        dense: whether x is the saved grid.
        x_train, y_train: [N] the training data.
        ood: OOD set name -> its inputs [N_set].
        x_label: the x axis' label.
    """

    label: str
    x: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    dense: bool
    x_train: np.ndarray
    y_train: np.ndarray
    ood: dict[str, np.ndarray]
    x_label: str


def bands(groups: list[Runs], data_dir: Path | None = None, notes: list[str] | None = None) -> Figure | None:
    """Regression with one input and one target: a grid of panels, one per method, sharing both axes, each with the
    predictive mean ± 2σ on the saved dense input grid over the training data, the OOD sets' input ranges shaded;
    None for other tasks.

    The training data and the input scaling are not saved with the predictions, so the task is loaded again from
    the record's key. A predictions file without the grid (an older uqbench) is drawn over its test and OOD inputs,
    said in the panel's title and in a line appended to `notes`.
    """
    caption, suffixes = _which_runs(groups)
    drawn = [(g, b) for g, suffix in zip(groups, suffixes) if (b := _band(g, suffix, data_dir)) is not None]
    if not drawn:
        return None
    for g, band in drawn:
        if not band.dense and notes is not None:
            notes.append(f"{g.records[0].predictions}: no dense input grid (saved by an older uqbench), so the bands "
                         f"of {g.label} on {g.task} join its test and OOD predictions; run it again with --force "
                         "--save-predictions for the grid")
    panels = [b for _, b in drawn]
    fig, axes = _panels(len(panels), f"Predictive bands on {groups[0].task}", sharex=True, sharey=True)
    for ax, band in zip(axes, panels):
        _draw_band(ax, band)
    lo, hi = np.percentile(panels[0].y_train, [0.5, 99.5])
    axes[0].set_ylim(lo - 0.75 * (hi - lo), hi + 0.75 * (hi - lo))
    _label(axes, panels[0].x_label, "y")
    handles = dict(zip(*reversed(axes[0].get_legend_handles_labels())))  # one entry per label
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8,
               title=f"each method's run with {caption}; shaded: the inputs of each OOD set", title_fontsize=8)
    return fig


def _band(group: Runs, suffix: str, data_dir: Path | None) -> Band | None:
    """The panel of one group's first run; None unless its task has one input and one target. DataError when the
    saved predictions are not of the task as it loads now (another number of test inputs)."""
    record, arrays = group.records[0], group.arrays[0]
    if "mean" not in arrays or arrays["mean"].shape[1] != 1:
        return None
    data = _reload(record, data_dir)
    if data.in_shape != (1,):
        return None
    if len(arrays["mean"]) != len(data.test):
        raise DataError(f"{record.predictions}: {len(arrays['mean'])} predictions, but the run's test set has "
                        f"{len(data.test)} inputs: not this run's predictions")
    dense = "grid_x" in arrays
    if dense:
        x, mean, var = arrays["grid_x"][:, 0], arrays["grid_mean"][:, 0], arrays["grid_var"][:, 0]
    else:
        names = [n for n in data.ood if f"ood_{n}_mean" in arrays]
        x = np.concatenate([data.test.x[:, 0].numpy(), *(data.ood[n][:, 0].numpy() for n in names)])
        mean = np.concatenate([arrays["mean"][:, 0], *(arrays[f"ood_{n}_mean"][:, 0] for n in names)])
        var = np.concatenate([arrays["var"][:, 0], *(arrays[f"ood_{n}_var"][:, 0] for n in names)])
    order = np.argsort(x)
    assert data.target_loc is not None and data.target_scale is not None
    return Band(
        label=group.label + suffix + ("" if dense else " (test and OOD inputs only)"),
        x=_original_inputs(data, x[order]), mean=mean[order], sd=np.sqrt(var[order]), dense=dense,
        x_train=_original_inputs(data, data.train.x[:, 0].numpy()),
        y_train=(data.train.y * data.target_scale + data.target_loc)[:, 0].numpy(),
        ood={name: _original_inputs(data, x[:, 0].numpy()) for name, x in data.ood.items()},
        x_label="x" if data.input_loc is None else "x (original units)",
    )


def _reload(record: RunRecord, data_dir: Path | None) -> TaskData:
    from uqbench.spec import RunSpec

    spec = RunSpec.from_key(record.key)
    return spec.make_task(data_dir).load(spec.seed, spec.split)


def _original_inputs(data: TaskData, x: np.ndarray) -> np.ndarray:
    """One-column inputs x [N] of the task as the original inputs, undoing the task's scaling where it says it."""
    if data.input_loc is None or data.input_scale is None:
        return x
    return x * float(data.input_scale.reshape(-1)[0]) + float(data.input_loc.reshape(-1)[0])


def _draw_band(ax: Axes, band: Band) -> None:
    """One panel of `bands`: the OOD sets' input regions, the band, the mean and the training data."""
    every = np.concatenate([band.x, *band.ood.values()])
    span = float(every.max() - every.min())
    for (name, x), color in zip(band.ood.items(), SET_COLORS):
        for lo, hi in _clusters(x, CLUSTER_GAP * span):
            ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0, label=f"OOD inputs: {name}")
    ax.fill_between(band.x, band.mean - 2 * band.sd, band.mean + 2 * band.sd, color=METHOD_COLOR, alpha=0.3, lw=0,
                    label="mean ± 2σ")
    ax.plot(band.x, band.mean, color=METHOD_COLOR, lw=1.3, label="predictive mean")
    ax.scatter(band.x_train, band.y_train, s=3, color="black", alpha=0.5, lw=0, label="training data")
    ax.set_title(band.label, fontsize=10)


def _clusters(x: np.ndarray, gap: float) -> list[tuple[float, float]]:
    """The (min, max) of each run of the sorted values x [N] in which no two neighbours lie more than `gap` apart."""
    if len(x) == 0:
        return []
    x = np.sort(x)
    breaks = np.flatnonzero(np.diff(x) > gap)
    return [(float(x[a]), float(x[b])) for a, b in zip([0, *(breaks + 1)], [*breaks, len(x) - 1])]


def ood(groups: list[Runs]) -> Figure | None:
    """A grid of panels, one per method, each with histograms of the method's OOD score on the test inputs and on
    each OOD set of its first run, each set's AUROC in the legend; None without OOD sets. The x axes are not shared:
    methods with a score of their own score on other scales."""
    groups = [g for g in groups if _ood_names(g.arrays[0])]
    if not groups:
        return None
    caption, suffixes = _which_runs(groups)
    fig, axes = _panels(len(groups), f"OOD scores on {groups[0].task}")
    for i, (ax, group, suffix) in enumerate(zip(axes, groups, suffixes)):
        _score_histograms(ax, group)
        ax.set_title(group.label + suffix, fontsize=10)
        ax.set_xlabel(score_name(group.arrays[0]))
        if i % COLUMNS == 0:
            ax.set_ylabel("fraction of inputs")
    fig.supxlabel(f"each method's run with {caption}; a higher score means more out-of-distribution", fontsize=8)
    return fig


def curves(task: str, runs: dict[str, list[RunRecord]]) -> Figure | None:
    """A grid of panels, one per method (label -> its records), with the mean training loss per epoch of every
    network each run trained (a colour per stage, a thin line per seed and split) and, where early stopping kept
    one, the validation loss dashed; None when no run of the task has a curve (networks loaded from the cache)."""
    runs = {label: records for label, records in runs.items() if any(r.curves for r in records)}
    if not runs:
        return None
    fig, axes = _panels(len(runs), f"Training curves on {task}", sharex=False)
    for ax, (label, records) in zip(axes, runs.items()):
        stages = list(dict.fromkeys(c["stage"] for r in records for c in r.curves))
        for record in records:
            for curve in record.curves:
                color = LINE_COLORS[stages.index(curve["stage"]) % len(LINE_COLORS)]
                first = record is next(r for r in records if curve["stage"] in (c["stage"] for c in r.curves))
                _loss_line(ax, curve["train"], color, curve["stage"] if first else None, "-")
                if curve["val"] is not None:
                    _loss_line(ax, curve["val"], color, f"{curve['stage']} (validation)" if first else None, "--")
        ax.set_title(f"{label} ({len(records)} run{'s' * (len(records) > 1)})", fontsize=10)
        ax.legend(fontsize=7)
    _label(axes, "epoch", "mean training loss")
    fig.supxlabel("a line per run; the loss is each method's own objective (not comparable across methods)",
                  fontsize=8)
    return fig


SHIFT_COLUMNS = 2  # panels per row of the shift figure: its 4 metrics as a 2 x 2 grid
BOX_INCHES = 0.13  # panel width per box of the shift figure
BOX_STYLE = {"alpha": 0.6}


def shift(task: str, methods: list[Shift]) -> Figure:
    """Ovadia et al. (NeurIPS 2019), Fig. 2: a panel per metric the methods report under shift (accuracy, nll,
    brier, ece: `uqbench.metrics.shift.METRICS`), sharing x = severity 0 (the clean test set) .. SEVERITIES, and at
    each severity a box per method, side by side in the given (leaderboard) order, each in its own colour.

    A severity's box spans the corruptions (each one's value the mean over the method's runs): quartiles, median,
    and whiskers at the minimum and maximum, as in the paper. The clean box spans the method's runs (seeds and
    splits); with one run it is a line.
    """
    from matplotlib.patches import Patch

    from uqbench.metrics import metric_spec
    from uqbench.metrics.shift import METRICS

    keys = [m for m in dict.fromkeys(m for names in METRICS.values() for m in names)
            if any(m in s.shifted for s in methods)]
    fig, axes = _panels(len(keys), f"Dataset shift on {task}", sharex=True, columns=SHIFT_COLUMNS)
    cols = min(len(keys), SHIFT_COLUMNS)
    fig.set_size_inches(cols * max(PANEL[0], 1.2 + BOX_INCHES * (SEVERITIES + 1) * len(methods)),
                        PANEL[1] * math.ceil(len(keys) / cols) + 1.4)
    _label(axes, "corruption severity", "", SHIFT_COLUMNS)
    width = 0.8 / len(methods)
    for ax, key in zip(axes, keys):
        for i, method in enumerate(methods):
            boxes = {sev: values for sev in range(SEVERITIES + 1) if (values := method.values(key, sev))}
            if not boxes:
                continue
            color = {"color": _line_color(i)}
            ax.boxplot(list(boxes.values()), positions=[sev - 0.4 + width * (i + 0.5) for sev in boxes],
                       widths=0.85 * width, whis=(0, 100), showfliers=False, manage_ticks=False, patch_artist=True,
                       label=method.label, medianprops={"color": "black"},
                       boxprops={**BOX_STYLE, "facecolor": color["color"], "edgecolor": color["color"]},
                       whiskerprops=color, capprops=color)
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
        spec = metric_spec(key)
        best = (f"closest to {spec.ideal:g} is best" if spec.ideal is not None
                else f"{'higher' if spec.higher_is_better else 'lower'} is better")
        ax.set_title(f"{key} ({best})", fontsize=10)
        ax.set(xlim=(-0.5, SEVERITIES + 0.5), ylabel=f"{key} ({spec.unit})")
        ax.set_xticks(range(SEVERITIES + 1), ["clean", *map(str, range(1, SEVERITIES + 1))])
    handles = [Patch(**BOX_STYLE, color=_line_color(i), label=m.label) for i, m in enumerate(methods)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(methods), 6), fontsize=8,
               title=_shift_caption(methods), title_fontsize=8)
    return fig


def _shift_caption(methods: list[Shift]) -> str:
    corruptions = {len(m.corruptions()) for m in methods}
    which = f"the {corruptions.pop()} corruptions" if len(corruptions) == 1 else "the corruptions"
    return (f"clean: a box over each method's runs (seeds and splits)\nseverities 1–{SEVERITIES}: a box over {which},"
            " each the mean over the method's runs\nboxes: quartiles and median; whiskers: minimum and maximum")


def _loss_line(ax: Axes, losses: list[float | None], color: str, label: str | None, style: str) -> None:
    epochs = np.arange(1, len(losses) + 1)
    values = np.array([np.nan if v is None else v for v in losses], dtype=float)
    ax.plot(epochs, values, style, color=color, lw=1.0, alpha=0.8, label=label)


def _ood_names(arrays: dict[str, np.ndarray]) -> list[str]:
    return [k[len("ood_") : -len("_score")] for k in arrays if k.startswith("ood_") and k.endswith("_score")]


def _score_histograms(ax: Axes, group: Runs) -> None:
    """Histograms (fractions of each set, 40 shared bins, logarithmic when the scores span over 3 decades) of the
    OOD score of the group's first run on its test inputs and on each OOD set."""
    record, arrays = group.records[0], group.arrays[0]
    scores = {"test (in-distribution)": arrays["score"]}
    for name in _ood_names(arrays):
        auroc = record.metrics.get(f"ood.{name}.auroc")
        scores[name + (f" (AUROC {auroc:.3f})" if auroc is not None else "")] = arrays[f"ood_{name}_score"]
    every = np.concatenate(list(scores.values()))
    lo, hi = float(every.min()), float(every.max())
    log = lo > 0 and hi / lo > 1e3
    if hi <= lo:  # every score equal (e.g. a constant predictive variance): a bin around it, 5% wide
        pad = 0.05 * abs(lo) or 0.5
        lo, hi = lo - pad, hi + pad
    edges = np.geomspace(lo, hi, 41) if log else np.linspace(lo, hi, 41)
    for (label, s), color in zip(scores.items(), (METHOD_COLOR, *SET_COLORS)):
        weights = np.full(len(s), 1.0 / max(len(s), 1))
        ax.hist(s, bins=edges, weights=weights, histtype="stepfilled", alpha=0.25, color=color)
        ax.hist(s, bins=edges, weights=weights, histtype="step", lw=1.3, color=color, label=label)
    if log:
        ax.set_xscale("log")
    ax.legend(fontsize=7)


def score_name(arrays: dict[str, np.ndarray]) -> str:
    """The name of the saved OOD score: the evaluator's default (`uqbench.metrics.default_ood_score`) when the
    saved scores are it, else the method's own score, whose name the predictions do not hold."""
    if "probs" in arrays:
        default, name = 1.0 - arrays["probs"].max(1), "1 − max probability"
    else:
        summed = " summed over outputs" if arrays["var"].shape[1] > 1 else ""
        default, name = arrays["var"].sum(1), f"predictive variance{summed} (target units²)"
    if np.allclose(arrays["score"], default, rtol=1e-4, atol=1e-6):
        return name
    return "the method's own OOD score"


__all__ = ["bands", "curves", "ood", "reliability", "score_name", "shift"]
