"""`uqbench plot --kind shift`: each metric against corruption severity, a box per method (Ovadia et al. 2019, Fig. 2),
drawn from the records alone."""

from __future__ import annotations

import numpy as np
import pytest

from uqbench.results import ResultStore, RunKey, RunRecord

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "gaussian_blur", "snow", "frost", "fog", "spatter", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression")  # 18: a grey task's
METRICS = ("accuracy", "nll", "brier", "ece")
TASK = "fashion-mnist"


def shifted_metrics(rng: np.random.Generator, clean: float) -> dict[str, float]:
    """A record's metric table: clean values, every `shift.<corruption>.<severity>.<metric>`, and the means over
    corruptions (`shift.<severity>.<metric>`, `shift.<metric>`), which the figure must not draw: set to 99."""
    out: dict[str, float] = {m: clean + i / 10 for i, m in enumerate(METRICS)}
    for c in CORRUPTIONS:
        for s in range(1, 6):
            out.update({f"shift.{c}.{s}.{m}": float(rng.uniform(0, 1)) * s for m in METRICS})
    out.update({f"shift.{s}.{m}": 99.0 for s in range(1, 6) for m in METRICS})
    out.update({f"shift.{m}": 99.0 for m in METRICS})
    return out


def record(method: str, task: str, seed: int, metrics: dict[str, float], config: dict | None = None) -> RunRecord:
    return RunRecord(RunKey(method, config or {}, task, {}, seed, 0), "ok", metrics=metrics)


@pytest.fixture
def store(tmp_path):
    """2 methods x 2 seeds on a grey image task with shift metrics (written `map` first, so that the leaderboard's
    order, `ensemble` first, is not the writing order), and a regression task whose records carry shift.gap.*."""
    rng = np.random.default_rng(0)
    root, results = tmp_path / "store", ResultStore(tmp_path / "store")
    root.mkdir()
    for method, clean in (("map", 0.5), ("ensemble", 0.6)):
        for seed in (0, 1):
            results.write(record(method, TASK, seed, shifted_metrics(rng, clean + seed / 100)))
    results.write(record("map", "toy-regression", 0, {"nll": 1.0, "rmse": 0.5, "shift.gap.nll": 3.0}))
    return root


def _shift_figure(store):
    from uqbench.plots import draw_shift

    (drawn,) = draw_shift(ResultStore(store).records())
    assert (drawn.task, drawn.kind) == (TASK, "shift")
    return drawn.figure


def _leaderboard_labels(store) -> list[str]:
    from uqbench.leaderboard import build, task_table

    _, rows, _ = task_table(build(ResultStore(store).records()), TASK, "markdown")
    return [row[0] for row in rows]


def _boxes(ax, n_methods: int) -> list[list]:
    """The box patches of each method, in drawing order (each method draws its six boxes in one call)."""
    patches = list(ax.patches)
    assert len(patches) % n_methods == 0
    per = len(patches) // n_methods
    return [patches[i * per : (i + 1) * per] for i in range(n_methods)]


def _median(ax, box) -> float:
    """The median line of a box: the one that spans the box's width."""
    x0, x1 = box.get_path().get_extents().intervalx
    (line,) = [ln for ln in ax.lines if np.allclose(ln.get_xdata(), [x0, x1])]
    return float(line.get_ydata()[0])


def test_the_cli_writes_one_shift_figure_per_task_with_shift_metrics(cli, store, tmp_path):
    result = cli("plot", "--results", store, "--out", tmp_path / "figs", "--kind", "shift")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "figs" / TASK / "shift.png")]  # toy-regression has no severities
    assert (tmp_path / "figs" / TASK / "shift.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert result.stderr == ""


def test_without_saved_predictions_the_default_kinds_draw_the_record_figures_and_say_so(cli, store, tmp_path):
    result = cli("plot", "--results", store, "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "figs" / TASK / "shift.png")]  # the records keep no curves
    assert result.stderr.startswith("note: no saved predictions") and "only the metrics under shift are drawn" in result.stderr


def test_svg(cli, store, tmp_path):
    result = cli("plot", "--results", store, "--out", tmp_path, "--kind", "shift", "--format", "svg")
    assert result.exit_code == 0, result.output
    head = (tmp_path / TASK / "shift.svg").read_bytes()[:400]
    assert head.startswith(b"<?xml") and b"<svg" in head


def test_one_panel_per_metric_with_units_and_one_box_per_method_and_severity(store):
    fig = _shift_figure(store)
    assert fig.get_suptitle() == f"Dataset shift on {TASK}"
    assert [ax.get_title() for ax in fig.axes] == ["accuracy (higher is better)", "nll (lower is better)",
                                                   "brier (lower is better)", "ece (lower is better)"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy (fraction)", "nll (nats)", "brier (score)",
                                                    "ece (fraction)"]
    for ax in fig.axes[2:]:  # the bottom row (the x axis is shared)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "2", "3", "4", "5"]
        assert ax.get_xlabel() == "corruption severity"
    for ax in fig.axes:
        assert [len(boxes) for boxes in _boxes(ax, 2)] == [6, 6]
        centres = [[np.mean(b.get_path().get_extents().intervalx) for b in boxes] for boxes in _boxes(ax, 2)]
        assert np.all(np.round(centres) == [range(6)] * 2)  # box k of each method sits at severity k
        assert np.all(np.array(centres[0]) < np.array(centres[1]))  # side by side, in the legend's order
        assert len({tuple(b.get_facecolor()) for boxes in _boxes(ax, 2) for b in boxes}) == 2


def test_the_medians_are_those_of_the_records(store):
    records = ResultStore(store).records()
    fig = _shift_figure(store)
    for ax, metric in zip(fig.axes, METRICS):
        for method, boxes in zip(("ensemble", "map"), _boxes(ax, 2)):
            mine = [r.metrics for r in records if (r.key.task, r.key.method) == (TASK, method)]
            assert len(mine) == 2
            expected = [np.median([m[metric] for m in mine])]  # clean: over the seeds
            expected += [np.median([np.mean([m[f"shift.{c}.{s}.{metric}"] for m in mine]) for c in CORRUPTIONS])
                         for s in range(1, 6)]  # each severity: over the corruptions of the seeds' means
            assert [_median(ax, box) for box in boxes] == pytest.approx(expected, rel=1e-12)
            for s, box in zip(range(1, 6), boxes[1:]):
                values = [np.mean([m[f"shift.{c}.{s}.{metric}"] for m in mine]) for c in CORRUPTIONS]
                assert box.get_path().get_extents().intervaly == pytest.approx(np.percentile(values, [25, 75]))
                centre = np.mean(box.get_path().get_extents().intervalx)
                ends = [ln.get_ydata()[1] for ln in ax.lines  # the two whiskers: vertical lines at the box's centre
                        if np.allclose(ln.get_xdata(), centre) and ln.get_ydata()[0] != ln.get_ydata()[1]]
                assert sorted(ends) == pytest.approx([min(values), max(values)])


def test_the_methods_are_the_leaderboards_rows_in_its_order(store):
    fig = _shift_figure(store)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == _leaderboard_labels(store) == ["ensemble", "map"]
    assert "the 18 corruptions" in legend.get_title().get_text()
    assert [boxes[0].get_label() for boxes in _boxes(fig.axes[0], 2)] == ["ensemble", "map"]


def test_a_method_with_two_configs_is_labelled_as_on_the_leaderboard(store, tmp_path):
    rng = np.random.default_rng(1)
    ResultStore(store).write(record("map", TASK, 0, shifted_metrics(rng, 0.4), config={"weight_decay": 0.1}))
    fig = _shift_figure(store)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == _leaderboard_labels(store) and len(labels) == 3
    assert sum(label.startswith("map (") for label in labels) == 2


def test_a_method_without_shift_metrics_is_left_out_with_a_note(cli, store, tmp_path):
    ResultStore(store).write(record("mc-dropout", TASK, 0, {m: 0.5 for m in METRICS}))
    result = cli("plot", "--results", store, "--out", tmp_path, "--kind", "shift")
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"note: mc-dropout on {TASK} is not in the shift figure: no successful run of it has "
                             "shift.* metrics\n")
    assert [t.get_text() for t in _shift_figure(store).legends[0].get_texts()] == ["ensemble", "map"]


def test_records_without_shift_metrics_are_one_line_and_exit_2(cli, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    ResultStore(store).write(record("map", TASK, 0, {m: 0.5 for m in METRICS}))
    ResultStore(store).write(record("map", "toy-regression", 0, {"nll": 1.0, "shift.gap.nll": 3.0}))
    result = cli("plot", "--results", store, "--out", tmp_path / "figs", "--kind", "shift")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no figure of kind shift applies to the runs (tasks: {TASK}, toy-regression): shift needs records "
        "with shift.* metrics: run an image task with --set shift=true (a regression task's shift.gap.* metrics "
        "have no severities to draw)\n")
    assert not (tmp_path / "figs").exists()
