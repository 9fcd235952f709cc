"""`uqbench plot`: one figure per (task, kind) comparing every method, in PNG, PDF or SVG, from saved predictions."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "pdf": (b"%PDF-",), "svg": (b"<?xml", b"<svg")}
SMALL = ("--epochs", "1", "--set", "n_train=64", "--set", "n_test=32", "-q")
METHODS = ("map", "mc-dropout")
EVERY = ["toy-regression/bands", "toy-regression/curves", "toy-regression/ood", "toy-regression/reliability",
         "two-moons/curves", "two-moons/ood", "two-moons/reliability"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A store with saved predictions of two methods on a regression and a classification task (one seed)."""
    from typer.testing import CliRunner

    from uqbench.cli import app

    out = tmp_path_factory.mktemp("results")
    args = ["compare", "--tasks", "toy-regression,two-moons", "--methods", ",".join(METHODS), "--seeds", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--save-predictions", *SMALL])
    assert result.exit_code == 0, result.output
    return out


def _written(root, fmt):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*.{fmt}"))


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_plot_writes_one_figure_per_task_and_kind(cli, saved, tmp_path, fmt):
    result = cli("plot", "--results", saved, "--out", tmp_path, "--format", fmt, "--dpi", "60")
    assert result.exit_code == 0, result.output
    written = _written(tmp_path, fmt)
    assert written == [f"{name}.{fmt}" for name in EVERY]
    assert sorted(result.stdout.split()) == sorted(str(tmp_path / w) for w in written)
    for w in written:
        head = (tmp_path / w).read_bytes()[:400]
        assert head.startswith(MAGIC[fmt][0]) and all(m in head for m in MAGIC[fmt])


def test_dpi_sets_the_png_size(cli, saved, tmp_path):
    def width(dpi):
        out = tmp_path / str(dpi)
        assert cli("plot", "--results", saved, "--out", out, "--kind", "ood", "--dpi", dpi).exit_code == 0
        return int.from_bytes((out / "two-moons" / "ood.png").read_bytes()[16:20], "big")  # the IHDR width

    assert width(100) == 2 * width(50)


def _figures(store, kinds=("reliability", "bands", "ood"), notes=None):
    from uqbench.plots import collect, draw
    from uqbench.results import ResultStore

    return {(d.task, d.kind): d.figure for d in draw(collect(ResultStore(store).records(), store), kinds, None, notes)}


def _texts(fig):
    """The figure's title, its panels' titles and every legend's labels."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return (fig.get_suptitle(), [ax.get_title() for ax in fig.axes],
            {t.get_text() for legend in legends for t in legend.get_texts()})


def test_figures_compare_every_method_with_titles_in_words(saved):
    figures = _figures(saved)
    title, panels, labels = _texts(figures["two-moons", "reliability"])
    assert title == "Reliability on two-moons" and panels == list(METHODS)
    assert sum(label.startswith("ECE ") for label in labels) == len(METHODS)
    title, panels, labels = _texts(figures["toy-regression", "reliability"])
    assert title == "Reliability on toy-regression"
    assert all(any(label.startswith(f"{m} (QCE ") for label in labels) for m in METHODS)
    title, panels, labels = _texts(figures["toy-regression", "bands"])
    assert title == "Predictive bands on toy-regression" and panels == list(METHODS)
    assert {"OOD inputs: gap", "OOD inputs: far", "mean ± 2σ", "training data"} <= labels
    assert [ax.get_xlabel() for ax in figures["toy-regression", "bands"].axes] == ["x (original units)"] * 2
    title, panels, labels = _texts(figures["two-moons", "ood"])
    assert title == "OOD scores on two-moons" and panels == list(METHODS)
    assert sum(label.startswith("far (AUROC ") for label in labels) == len(METHODS)
    assert {ax.get_xlabel() for ax in figures["two-moons", "ood"].axes} == {"1 − max probability"}
    assert {ax.get_xlabel() for ax in figures["toy-regression", "ood"].axes} == {"predictive variance (target units²)"}


def test_bands_are_drawn_on_the_saved_grid_over_the_ood_regions(saved):
    from uqbench.results import ResultStore

    fig = _figures(saved, ("bands",))["toy-regression", "bands"]
    (record,) = [r for r in ResultStore(saved).records() if r.key.task == "toy-regression" and r.key.method == "map"]
    mean_line = next(line for line in fig.axes[METHODS.index("map")].lines if line.get_label() == "predictive mean")
    assert np.allclose(mean_line.get_ydata(), np.load(saved / record.predictions)["grid_mean"][:, 0])
    x = mean_line.get_xdata()
    assert len(x) == 400 and x.min() < -8 and x.max() > 8  # original units: the far set lies at |x| in [6, 8]
    shaded = sorted((round(p.get_x()), round(p.get_x() + p.get_width())) for p in fig.axes[0].patches
                    if p.get_label() == "OOD inputs: far")
    assert shaded == [(-8, -6), (6, 8)]  # two regions, not one spanning the training data


def _without_grid(store, tmp_path):
    """A copy of the store whose regression predictions are in the format before the dense grid."""
    copy = tmp_path / "old"
    shutil.copytree(store, copy)
    for path in copy.glob("*.npz"):
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files if not k.startswith("grid_")}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.write_bytes(buffer.getvalue())
    return copy


def test_predictions_without_a_grid_still_plot_and_say_so(cli, saved, tmp_path):
    old = _without_grid(saved, tmp_path)
    result = cli("plot", "--results", old, "--out", tmp_path / "figs", "--kind", "bands")
    assert result.exit_code == 0, result.output
    assert _written(tmp_path / "figs", "png") == ["toy-regression/bands.png"]
    lines = result.stderr.splitlines()
    assert len(lines) == len(METHODS) and all(line.startswith("note: ") and "no dense input grid" in line
                                              and "--force --save-predictions" in line for line in lines)
    _, panels, _ = _texts(_figures(old, ("bands",))["toy-regression", "bands"])
    assert panels == [f"{m} (test and OOD inputs only)" for m in METHODS]


def test_kind_task_and_method_filters(cli, saved, tmp_path):
    result = cli("plot", "--results", saved, "--out", tmp_path, "--kind", "reliability", "--tasks", "two-moons",
                 "--methods", "map")
    assert result.exit_code == 0
    assert _written(tmp_path, "png") == ["two-moons/reliability.png"]


def test_compare_save_predictions_reruns_records_without_them(cli, tmp_path):
    args = ("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", "--out", tmp_path, *SMALL)
    assert cli(*args).exit_code == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["predictions"] is None
    assert cli("plot", "--results", tmp_path, "--kind", "reliability").exit_code == 2
    curves_only = cli("plot", "--results", tmp_path)  # the records' training curves need no saved predictions
    assert curves_only.exit_code == 0 and curves_only.stdout.strip().endswith("two-moons/curves.png")
    assert "only the training curves are drawn" in curves_only.stderr
    assert cli(*args, "--save-predictions").exit_code == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert (tmp_path / record["predictions"]).exists()


def _regression_npz(store):
    from uqbench.results import ResultStore

    record = next(r for r in ResultStore(store).records() if r.key.task == "toy-regression")
    return store / record.predictions


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(grid_x=a["grid_x"][:, 0]), "array grid_x missing or not a float [G, 1] array (G >= 2)"),
        (lambda a: a.pop("grid_var"), "array grid_var missing or not a float [400, 1] array"),
        (lambda a: a.update(grid_mean=a["grid_mean"][:7]), "array grid_mean missing or not a float [400, 1] array"),
        (lambda a: a["grid_var"].__setitem__(3, -1.0), "negative variances"),
        (lambda a: a["grid_mean"].__setitem__(3, np.nan), "array grid_mean has values that are not finite"),
    ],
)
def test_a_bad_grid_is_refused(cli, saved, tmp_path, change, message):
    store = tmp_path / "store"
    shutil.copytree(saved, store)
    path = _regression_npz(store)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    result = cli("plot", "--results", store, "--out", tmp_path / "figs")
    assert result.exit_code == 2 and result.stderr == f"error: {path}: not a saved-predictions file ({message})\n"
    assert not (tmp_path / "figs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--kind", "scatter"), "--kind 'scatter': expected one of reliability, bands, ood"),
        (("--tasks", "digits"), "--tasks 'digits': "),
        (("--tasks", "digits"), "holds no run of it; it holds runs of: toy-regression, two-moons"),
        (("--format", "jpeg"), "--format 'jpeg': expected one of png, pdf, svg"),
        (("--format", "PNG"), "--format 'PNG': expected one of png, pdf, svg"),
        (("--dpi", "0"), "--dpi 0: expected a whole number of dots per inch from 10 to 600"),
        (("--dpi", "-150"), "--dpi -150: expected a whole number of dots per inch from 10 to 600"),
        (("--dpi", "601"), "--dpi 601: expected a whole number of dots per inch from 10 to 600"),
        (("--dpi", "high"), "Invalid value for '--dpi'"),
    ],
)
def test_bad_input_exits_2(cli, saved, tmp_path, args, message):
    result = cli("plot", "--results", saved, "--out", tmp_path, *args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not any(tmp_path.iterdir())


def test_a_task_with_runs_of_both_kinds_draws_the_first_kind_and_says_so(cli, tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i / 10},{i % 2}\n" for i in range(60)))
    for kind in ("classification", "regression"):
        args = ("run", "map", "--task", "csv", "--set", f"path={tmp_path / 'd.csv'}", "--set", "target=y",
                "--set", f"kind={kind}", "--epochs", "1", "--save-predictions", "--out", tmp_path / "store", "-q")
        assert cli(*args).exit_code == 0
    result = cli("plot", "--results", tmp_path / "store", "--out", tmp_path / "figs", "--kind", "reliability")
    assert result.exit_code == 0, result.output
    assert _written(tmp_path / "figs", "png") == ["csv/reliability.png"]
    (line,) = result.stderr.splitlines()
    assert line.startswith("note: map-") and "predictions are of another kind" in line


def test_curves_draw_every_network_each_run_trained_from_the_records(cli, tmp_path):
    store = tmp_path / "store"
    args = ("compare", "--tasks", "toy-regression", "--methods", "map,vbll", "--seeds", "2", "--set",
            "vbll.training=post", "--out", store, *SMALL)
    assert cli(*args).exit_code == 0
    result = cli("plot", "--results", store, "--kind", "curves", "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "figs" / "toy-regression" / "curves.png")]
    from uqbench.plots import draw_curves
    from uqbench.results import ResultStore

    (drawn,) = draw_curves(ResultStore(store).records())
    panels = [ax for ax in drawn.figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["map (2 runs)", "vbll (2 runs)"]
    assert [len(ax.get_lines()) for ax in panels] == [2, 2]  # map: its network per seed; vbll: its head per seed
    assert panels[1].get_legend().get_texts()[0].get_text() == "RegressionHead"


def test_curves_of_records_that_have_none_are_one_line(cli, tmp_path):
    from uqbench.results import ResultStore

    store = tmp_path / "store"
    assert cli("run", "map", "--task", "two-moons", "--out", store, *SMALL).exit_code == 0
    (record,) = ResultStore(store).records()
    data = json.loads((store / f"{record.id}.json").read_text())
    del data["curves"]  # a record made before uqbench kept curves
    (store / f"{record.id}.json").write_text(json.dumps(data))
    result = cli("plot", "--results", store, "--kind", "curves")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: no run in '{store}' kept a training curve")
