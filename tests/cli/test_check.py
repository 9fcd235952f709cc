"""`uqbench check`: exit 0 (nothing regressed), 1 (a regression, named), 2 (bad input, one line naming it)."""

from __future__ import annotations

import json

import pytest

from uqbench.check import Thresholds
from uqbench.leaderboard import build
from uqbench.results import ResultStore, RunKey, RunRecord

NLL = [0.30, 0.32, 0.31]  # se ≈ 0.0058
ACC = [0.90, 0.91, 0.92]


def _records(nll=NLL, acc=ACC, failed=()):
    out = []
    for seed, (n, a) in enumerate(zip(nll, acc)):
        key = RunKey("map", {}, "two-moons", {"epochs": 3}, seed, 0)
        status = "failed" if seed in failed else "ok"
        metrics = {"nll": n, "accuracy": a} if status == "ok" else {}
        out.append(RunRecord(key, status, metrics=metrics, timings_s={"fit": 1.0, "predict": 0.1}))
    return out


@pytest.fixture
def setup(tmp_path):
    """A baseline made from NLL/ACC and a function that fills the store with other values."""
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(build(_records(), all_metrics=True).to_json()))
    results = tmp_path / "results"

    def store(**kwargs):
        for rec in _records(**kwargs):
            ResultStore(results).write(rec)
        return results

    return baseline, store


def test_unchanged_store_passes(cli, setup):
    baseline, store = setup
    result = cli("check", baseline, "--results", store())
    assert result.exit_code == 0, result.output
    assert "0 regressed, 0 improved, 3 unchanged (3 compared)" in result.stderr


def test_clearly_worse_metric_fails_and_is_named(cli, setup):
    baseline, store = setup
    result = cli("check", baseline, "--results", store(nll=[v + 0.1 for v in NLL]), "--format", "csv")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "task,method,metric,baseline,current,worse by,allowed,verdict"
    assert lines[1].startswith("two-moons,map,nll,0.31,0.41,+0.1,") and lines[1].endswith(",regressed")
    assert len(lines) == 2


def test_better_metric_is_reported_as_an_improvement_and_passes(cli, setup):
    baseline, store = setup
    result = cli("check", baseline, "--results", store(acc=[v + 0.05 for v in ACC]), "--format", "csv")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].startswith("two-moons,map,accuracy,0.91,0.96,-0.05,")


def test_change_within_noise_passes(cli, setup):
    baseline, store = setup
    # worse by 0.01 < k * combined se = 2 * sqrt(2) * 0.0058 ≈ 0.016
    assert cli("check", baseline, "--results", store(nll=[v + 0.01 for v in NLL])).exit_code == 0
    assert cli("check", baseline, "--results", store(nll=[v + 0.01 for v in NLL]), "--k", "1").exit_code == 1


def test_per_metric_tolerance_overrides_the_default(cli, setup):
    baseline, store = setup
    results = store(nll=[v + 0.1 for v in NLL])
    assert cli("check", baseline, "--results", results, "--tolerance", "nll=0.2").exit_code == 0
    assert cli("check", baseline, "--results", results, "--tolerance", "accuracy=0.2").exit_code == 1


def test_more_failed_runs_is_a_regression(cli, setup):
    baseline, store = setup
    result = cli("check", baseline, "--results", store(failed=(2,)), "--format", "csv")
    assert result.exit_code == 1 and "two-moons,map,failed runs,0,1,+1,0,regressed" in result.stdout


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "baseline '{tmp}/nope.json': cannot read it"),
        ("not-json", "not valid JSON"),
        ("wrong-schema", "expected a uqbench.leaderboard/1 document"),
        ("runs-absent", "the store has no runs for 1 baseline row(s): map on two-moons (config "),
        ("no-results", "--results '{tmp}/none': no such directory"),
        ("bad-tolerance", "--tolerance 'nll=abc': expected a non-negative number or METRIC=NUMBER"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, setup, tmp_path, case, message):
    baseline, store = setup
    results = store()
    args = {
        "missing": (tmp_path / "nope.json", "--results", results),
        "not-json": (tmp_path / "bad.json", "--results", results),
        "wrong-schema": (tmp_path / "run.json", "--results", results),
        "runs-absent": (baseline, "--results", tmp_path / "empty"),
        "no-results": (baseline, "--results", tmp_path / "none"),
        "bad-tolerance": (baseline, "--results", results, "--tolerance", "nll=abc"),
    }[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "run.json").write_text(json.dumps({"schema": "uqbench.run/1"}))
    result = cli("check", *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message.format(tmp=tmp_path) in result.stderr


def test_thresholds_take_the_larger_of_tolerance_and_k_se():
    t = Thresholds.parse(["0.01", "ece=0.05", "ood.*=0.1"], ["3"])
    assert t.allowed("nll", 0.0) == 0.01
    assert t.allowed("nll", 0.01) == pytest.approx(0.03)
    assert t.allowed("ece", 0.01) == 0.05 and t.allowed("ood.far.auroc", 0.0) == 0.1


def test_coverage_moving_away_from_its_nominal_level_is_a_regression(cli, tmp_path):
    """Higher coverage of a 90% interval is not better: 0.90 -> 0.99 regresses, 0.80 -> 0.90 improves."""

    def store(name, values):
        out = tmp_path / name
        for s, v in enumerate(values):
            ResultStore(out).write(RunRecord(RunKey("map", {}, "uci", {}, s, 0), "ok", metrics={"coverage90": v}))
        return out

    at = store("at", [0.90, 0.905, 0.895])
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(build(ResultStore(at).records(), all_metrics=True).to_json()))
    result = cli("check", baseline, "--results", store("wide", [0.99, 0.995, 0.985]), "--format", "csv")
    assert result.exit_code == 1 and result.stdout.splitlines()[1].endswith(",regressed")
    below = tmp_path / "below.json"
    below.write_text(json.dumps(build(ResultStore(store("low", [0.80, 0.805, 0.795])).records(), all_metrics=True).to_json()))
    result = cli("check", below, "--results", at, "--format", "csv")
    assert result.exit_code == 0 and result.stdout.splitlines()[1].endswith(",improved")
