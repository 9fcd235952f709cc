"""Shift end to end through the CLI: `--set shift=true` on digits gives shift columns in `compare`, every set's
values in the records and `--format json`, means only in `run`'s table, and `check` compares shift metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uqbench.results import ResultStore
from uqbench.shift import sets

QUICK = ["--set", "shift=true", "--set", "epochs=1", "--set", "n_test=60"]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def few_corruptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three cheap corruptions (one colour-only) stand for the 19: these tests are about the sets, not the
    corruptions (tests/shift/test_corruptions.py)."""
    monkeypatch.setattr(sets, "CORRUPTIONS", ("gaussian_noise", "contrast", "saturate"))


def test_compare_with_shift_prints_the_shift_means_and_stores_every_set(cli, tmp_path):
    out = tmp_path / "results"
    result = cli("compare", "--tasks", "digits", "--methods", "map", "--seeds", "1", "--out", str(out), *QUICK)
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[2]
    assert all(k in header for k in ("shift.accuracy", "shift.nll", "shift.ece"))
    (record,) = ResultStore(out).records()
    labels = sets.labels(1)
    assert record.info["shifted_sets"] == len(labels) == 5 * len(sets.corruption_names(1)) and record.n["shift"] == 60
    assert all(f"shift.{label}.{m}" in record.metrics for label in labels for m in ("accuracy", "nll", "brier", "ece"))
    assert all(f"shift.{s}.accuracy" in record.metrics for s in range(1, 6))

    board = cli("compare", "--tasks", "digits", "--methods", "map", "--seeds", "1", "--out", str(out), *QUICK,
                "--no-run", "--format", "json", "--metric", "shift.*")
    row = json.loads(board.stdout)["rows"][0]
    assert len(row["metrics"]) == 4 * (len(labels) + 5 + 1)


def test_run_shows_the_shift_means_not_every_set(cli, tmp_path):
    result = cli("run", "map", "--task", "digits", "--out", str(tmp_path / "r"), *QUICK)
    assert result.exit_code == 0, result.output
    assert "shift.3.ece" in result.stdout and "shift.ece" in result.stdout
    assert "shift.gaussian_noise.3" not in result.stdout


def test_check_compares_shift_metrics(cli, tmp_path):
    out = tmp_path / "results"
    args = ("--tasks", "digits", "--methods", "map", "--seeds", "1", "--out", str(out), *QUICK)
    assert cli("compare", *args).exit_code == 0
    baseline = tmp_path / "baseline.json"
    board = json.loads(cli("compare", *args, "--no-run", "--format", "json", "--metric", "accuracy", "--metric", "shift.*").stdout)
    baseline.write_text(json.dumps(board))
    assert cli("check", str(baseline), "--results", str(out)).exit_code == 0
    better = json.loads(json.dumps(board))
    better["rows"][0]["metrics"]["shift.ece"]["mean"] -= 0.05  # the store is now worse than the baseline by 0.05
    baseline.write_text(json.dumps(better))
    result = cli("check", str(baseline), "--results", str(out))
    assert result.exit_code == 1 and "shift.ece" in result.output
