"""`uqbench plot`: PNG reliability diagrams, 1-D regression bands and OOD histograms from saved predictions."""

from __future__ import annotations

import json

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = ("--epochs", "1", "--set", "n_train=64", "--set", "n_test=32", "-q")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A store with saved predictions of map on a regression and a classification task (one seed)."""
    from typer.testing import CliRunner

    from uqbench.cli import app

    out = tmp_path_factory.mktemp("results")
    args = ["compare", "--tasks", "toy-regression,two-moons", "--methods", "map", "--seeds", "1", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--save-predictions", *SMALL])
    assert result.exit_code == 0, result.output
    return out


def test_plot_writes_every_figure_that_applies(cli, saved, tmp_path):
    result = cli("plot", "--results", saved, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert written == [
        "toy-regression/map-bands.png",
        "toy-regression/map-ood.png",
        "toy-regression/map-reliability.png",
        "two-moons/map-ood.png",
        "two-moons/map-reliability.png",
    ]
    assert sorted(result.stdout.split()) == sorted(str(tmp_path / w) for w in written)
    assert all((tmp_path / w).read_bytes().startswith(PNG) for w in written)


def test_kind_and_task_filters(cli, saved, tmp_path):
    result = cli("plot", "--results", saved, "--out", tmp_path, "--kind", "reliability", "--tasks", "two-moons")
    assert result.exit_code == 0
    assert [p.name for p in tmp_path.rglob("*.png")] == ["map-reliability.png"]


def test_compare_save_predictions_reruns_records_without_them(cli, tmp_path):
    args = ("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", "--out", tmp_path, *SMALL)
    assert cli(*args).exit_code == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["predictions"] is None
    assert cli("plot", "--results", tmp_path).exit_code == 2
    assert cli(*args, "--save-predictions").exit_code == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert (tmp_path / record["predictions"]).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--kind", "scatter"), "--kind 'scatter': expected one of reliability, bands, ood"),
        (("--tasks", "digits"), "--tasks 'digits': "),
        (("--tasks", "digits"), "holds no run of it; it holds runs of: toy-regression, two-moons"),
    ],
)
def test_bad_input_exits_2(cli, saved, tmp_path, args, message):
    result = cli("plot", "--results", saved, "--out", tmp_path, *args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
