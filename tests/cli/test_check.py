"""`uqbench check`: exit 0 (nothing regressed), 1 (a regression, named), 2 (bad input, one line naming it)."""

from __future__ import annotations

import copy
import json
import math

import pytest

import uqbench
from uqbench.check import Thresholds
from uqbench.leaderboard import build
from uqbench.results import ResultStore, RunKey, RunRecord

NLL = [0.30, 0.32, 0.31]  # se ≈ 0.0058
ACC = [0.90, 0.91, 0.92]


def _records(nll=NLL, acc=ACC, failed=(), method="map"):
    out = []
    for seed, (n, a) in enumerate(zip(nll, acc)):
        key = RunKey(method, {}, "two-moons", {"epochs": 3}, seed, 0, code={"uqbench": uqbench.__version__})
        status = "failed" if seed in failed else "ok"
        metrics = {"nll": n, "accuracy": a} if status == "ok" else {}
        error = {"phase": "fit", "type": "NonFiniteLoss", "message": "loss became nan"} if status == "failed" else None
        out.append(RunRecord(key, status, error=error, metrics=metrics, timings_s={"fit": 1.0, "predict": 0.1}))
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
        "no-results": (baseline, "--results", tmp_path / "none"),
        "bad-tolerance": (baseline, "--results", results, "--tolerance", "nll=abc"),
    }[case]
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


# -- malformed baselines: exit 2, one `error:` line naming the file and the place, never a traceback -------------
GOOD = build(_records(), all_metrics=True).to_json()


def _put(*path, value):
    """The good baseline with the field at `path` set to `value` (or deleted: DROP); json.dumps writes NaN literally."""

    def make():
        top = copy.deepcopy(GOOD)
        *parents, last = path
        doc = top
        for step in parents:
            doc = doc[step]
        if value is DROP:
            del doc[last]
        else:
            doc[last] = value
        return json.dumps(top)

    return make


def _sub(old, new):
    """The good baseline's text with `old` (which it must contain) replaced by `new`."""

    def make():
        text = json.dumps(GOOD)
        assert old in text
        return text.replace(old, new, 1)

    return make


def _raw(content):
    return lambda: content


DROP = object()
CELL = ("rows", 0, "metrics", "nll")
ROW = ("rows", 0)
EXPECTED_ONLY_ROW = "expected only: task, method, config_id, method_config, task_config, recipe, backbone, n_runs"

MALFORMED = [
    ("latin-1 byte", lambda: _sub("top-1 accuracy", "top-1 accuracy \xe9")().encode("latin-1"), "not UTF-8 text: byte 0xe9 at offset "),
    ("utf-16", lambda: json.dumps(GOOD).encode("utf-16"), "not UTF-8 text (UTF-16, as Windows PowerShell's `>` writes it)"),
    ("not json", _raw("{nope"), "not valid JSON (Expecting property name enclosed in double quotes"),
    ("empty file", _raw(""), "not valid JSON (Expecting value: line 1 column 1"),
    ("array", _raw("[]"), "expected a uqbench.leaderboard/1 document (from `uqbench compare --format json`); got an array"),
    ("number", _raw("3"), "expected a uqbench.leaderboard/1 document (from `uqbench compare --format json`); got 3"),
    ("null", _raw("null"), "expected a uqbench.leaderboard/1 document (from `uqbench compare --format json`); got null"),
    ("string", _raw('"x"'), 'expected a uqbench.leaderboard/1 document (from `uqbench compare --format json`); got the string "x"'),
    ("deeply nested", _raw("[" * 100_000), "not a uqbench.leaderboard/1 document: nested too deeply"),
    ("other schema", _put("schema", value="uqbench.run/2"), "got schema 'uqbench.run/2'"),
    ("no schema", _put("schema", value=DROP), "(from `uqbench compare --format json`); got no schema"),
    ("schema a number", _put("schema", value=1), "(from `uqbench compare --format json`); got schema 1"),
    ("unknown top field", _put("comment", value="hi"), "comment: unknown field; expected only: schema, metrics, rank_by, rows"),
    ("no rank_by", _put("rank_by", value=DROP), "rank_by: missing field; expected an object"),
    ("direction as string", _put("metrics", "nll", "higher_is_better", value="false"),
     'metrics.nll.higher_is_better: expected true or false; got the string "false"'),
    ("direction as 0", _put("metrics", "nll", "higher_is_better", value=0), "metrics.nll.higher_is_better: expected true or false; got 0"),
    ("direction flipped", _put("metrics", "nll", "higher_is_better", value=True),
     "metrics.nll: expected higher_is_better false and ideal null (uqbench's 'nll'); got true and null"),
    ("ideal invented", _put("metrics", "accuracy", "ideal", value=0.5),
     "metrics.accuracy: expected higher_is_better true and ideal null (uqbench's 'accuracy'); got true and 0.5"),
    ("unknown metric", _sub('"nll": {"higher_is_better"', '"nlll": {"higher_is_better"'),
     "metrics.nlll: unknown metric 'nlll'. Did you mean 'nll'?"),
    ("header entry array", _put("metrics", "nll", value=[]), "metrics.nll: expected an object; got an array"),
    ("header typo", _sub('"higher_is_better": false', '"higher_is_beter": false'),
     "metrics.nll.higher_is_beter: unknown field; expected only: higher_is_better, ideal, unit, doc"),
    ("header unit missing", _put("metrics", "nll", "unit", value=DROP), "metrics.nll.unit: missing field; expected a string"),
    ("no header entry", _put("metrics", "nll", value=DROP),
     "rows[0].metrics.nll: expected an entry for 'nll' in the 'metrics' header; there is none"),
    ("empty rows", _put("rows", value=[]), "rows: empty, so there is nothing to compare; expected the rows `uqbench compare` writes"),
    ("rows object", _put("rows", value={}), "rows: expected an array; got an object"),
    ("row string", _put("rows", 0, value="map"), 'rows[0]: expected an object; got the string "map"'),
    ("config_id int", _put(*ROW, "config_id", value=5), "rows[0].config_id: expected a non-empty printable string; got 5"),
    ("task empty", _put(*ROW, "task", value=""), 'rows[0].task: expected a non-empty printable string; got the string ""'),
    ("method with a newline", _put(*ROW, "method", value="map\nok"),
     'rows[0].method: expected a non-empty printable string; got the string "map\\nok"'),
    ("key with a newline", _put("a\nb", value=1), '["a\\nb"]: unknown field; expected only: schema, metrics, rank_by, rows'),
    ("row without runs", _put(*ROW, "n_runs", value=0), "rows[0]: expected at least one run (n_runs + n_failed >= 1); got none"),
    ("row field typo", _sub('"n_runs": 3', '"n_run": 3'), f"rows[0].n_run: unknown field; {EXPECTED_ONLY_ROW}"),
    ("row field missing", _put(*ROW, "n_failed", value=DROP), "rows[0].n_failed: missing field; expected a non-negative integer"),
    ("n_failed string", _put(*ROW, "n_failed", value="0"), 'rows[0].n_failed: expected a non-negative integer; got the string "0"'),
    ("n_failed bool", _put(*ROW, "n_failed", value=False), "rows[0].n_failed: expected a non-negative integer; got false"),
    ("n_failed negative", _put(*ROW, "n_failed", value=-1), "rows[0].n_failed: expected a non-negative integer; got -1"),
    ("n_runs fraction", _put(*ROW, "n_runs", value=2.5), "rows[0].n_runs: expected a non-negative integer; got 2.5"),
    ("count beyond floats", _put(*ROW, "n_missing", value=10**400),
     "rows[0].n_missing: expected a non-negative integer; got an integer beyond the float range"),
    ("5000-digit count", _sub('"n_missing": 0', '"n_missing": ' + "9" * 5000), "not valid JSON (Exceeds the limit (4300 digits)"),
    ("mean NaN", _put(*CELL, "mean", value=math.nan), "rows[0].metrics.nll.mean: expected a finite number; got NaN"),
    ("mean Infinity", _put(*CELL, "mean", value=-math.inf), "rows[0].metrics.nll.mean: expected a finite number; got -Infinity"),
    ("mean 1e400", _sub('"mean": 0.31', '"mean": 1e400'),
     "rows[0].metrics.nll.mean: expected a finite number; got Infinity (or a number beyond the float range, such as 1e400)"),
    ("mean string", _put(*CELL, "mean", value="0.31"), 'rows[0].metrics.nll.mean: expected a finite number; got the string "0.31"'),
    ("mean null", _put(*CELL, "mean", value=None), "rows[0].metrics.nll.mean: expected a finite number; got null"),
    ("mean bool", _put(*CELL, "mean", value=True), "rows[0].metrics.nll.mean: expected a finite number; got true"),
    ("se negative", _put(*CELL, "se", value=-0.1), "rows[0].metrics.nll.se: expected a finite number >= 0; got -0.1"),
    ("se NaN", _put(*CELL, "se", value=math.nan), "rows[0].metrics.nll.se: expected a finite number >= 0; got NaN"),
    ("cell n zero", _put(*CELL, "n", value=0), "rows[0].metrics.nll.n: expected 1 to the row's n_runs (3); got 0"),
    ("cell n above n_runs", _put(*CELL, "n", value=4), "rows[0].metrics.nll.n: expected 1 to the row's n_runs (3); got 4"),
    ("cell array", _put(*CELL, value=[0.31]), "rows[0].metrics.nll: expected an object; got an array"),
    ("row metrics array", _put(*ROW, "metrics", value=[]), "rows[0].metrics: expected an object; got an array"),
    ("p_value above 1", _put(*CELL, "p_value", value=1.5), "rows[0].metrics.nll.p_value: expected a number in [0, 1] or null; got 1.5"),
    ("best as 1", _put(*CELL, "best", value=1), "rows[0].metrics.nll.best: expected true or false; got 1"),
    ("repeated key", _sub('"mean": 0.31', '"mean": 99.0, "mean": 0.31'),
     'rows[0].metrics.nll: the key "mean" appears more than once; expected each key once'),
    ("repeated metric", _sub('"nll": {"mean"', '"accuracy": {}, "nll": {"mean"'),
     'rows[0].metrics: the key "accuracy" appears more than once; expected each key once'),
    ("cost string", _put(*ROW, "cost", "n_params", value="100"),
     'rows[0].cost.n_params: expected a finite number >= 0 or null; got the string "100"'),
    ("rank zero", _put(*ROW, "rank", value=0), "rows[0].rank: expected a finite number >= 1 or null; got 0"),
    ("NaN in a config", _put(*ROW, "task_config", "epochs", value=math.nan), "rows[0].task_config.epochs: expected a finite number; got NaN"),
    ("duplicate row", lambda: json.dumps({**GOOD, "rows": GOOD["rows"] * 2}),
     "rows[1]: the same task, method and config_id as rows[0]; expected one row per (task, method, config)"),
    ("rank_by unknown metric", _put("rank_by", "two-moons", value="rmse"),
     "rank_by[\"two-moons\"]: expected a metric of the 'metrics' header; got the string \"rmse\""),
    ("rank_by unknown task", _put("rank_by", "cifar", value="nll"), "rank_by.cifar: expected a task of the rows; no row has task 'cifar'"),
    ("rank_by a metric the task's rows lack", lambda: json.dumps({
        **GOOD, "metrics": {**GOOD["metrics"], "rmse": {**GOOD["metrics"]["nll"], "unit": "target units"}},
        "rank_by": {"two-moons": "rmse"}}),
     "rank_by[\"two-moons\"]: 'rmse' is a metric no row of task 'two-moons' has"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_baseline_exits_2_with_one_line_naming_the_place(cli, setup, tmp_path, make, message):
    _, store = setup
    path = tmp_path / "hostile.json"
    content = make()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = cli("check", path, "--results", store())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: baseline '{path}': ")
    assert message in result.stderr


def test_the_hostile_table_is_large_and_the_good_baseline_passes(cli, setup, tmp_path):
    assert len(MALFORMED) >= 25 and len({c[0] for c in MALFORMED}) == len(MALFORMED)
    _, store = setup
    for name, content in (("plain.json", json.dumps(GOOD)), ("bom.json", "\ufeff" + json.dumps(GOOD))):
        (tmp_path / name).write_text(content, encoding="utf-8")
        assert cli("check", tmp_path / name, "--results", store()).exit_code == 0


def test_a_directory_as_baseline_exits_2(cli, setup, tmp_path):
    _, store = setup
    result = cli("check", tmp_path, "--results", store())
    assert result.exit_code == 2 and result.stderr == f"error: baseline '{tmp_path}': cannot read it (Is a directory)\n"


# -- an empty baseline, an incomplete store, a mistyped pattern --------------------------------------------------
def test_a_baseline_without_rows_is_bad_input_even_with_a_clean_rank_by(cli, setup, tmp_path):
    _, store = setup
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({**GOOD, "rows": [], "rank_by": {}}))
    result = cli("check", path, "--results", store())
    assert result.exit_code == 2
    assert result.stderr == (f"error: baseline '{path}': rows: empty, so there is nothing to compare; "
                             "expected the rows `uqbench compare` writes\n")


def _two_methods(tmp_path, **kwargs):
    """A baseline of map and mc-dropout (3 runs each), and a store of map's runs (kwargs) and mc-dropout's."""
    baseline = tmp_path / "two.json"
    baseline.write_text(json.dumps(build(_records() + _records(method="mc-dropout"), all_metrics=True).to_json()))
    results = tmp_path / "store"
    for rec in _records(**kwargs):
        ResultStore(results).write(rec)
    return baseline, results


def _config(method):
    return _records(method=method)[0].key.config_id


def test_a_store_with_some_of_a_rows_runs_is_runs_missing_not_a_pass(cli, tmp_path):
    baseline, results = _two_methods(tmp_path)
    for rec in _records(method="mc-dropout")[:2]:
        ResultStore(results).write(rec)
    result = cli("check", baseline, "--results", results, "--format", "csv")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["task,method,metric,baseline,current,worse by,allowed,verdict",
                                          "two-moons,mc-dropout,runs,3,2,—,0,missing"]
    assert result.stderr.splitlines() == [
        f"runs missing: mc-dropout on two-moons (config {_config('mc-dropout')}): the baseline has 3 run(s), the store 2",
        ("0 regressed, 0 improved, 3 unchanged (3 compared); runs missing in 1 of 2 baseline row(s); run the comparison "
         "that made the baseline first (a changed default changes the config id: then make a new baseline)"),
    ]


def test_a_store_lacking_a_whole_row_is_runs_missing_beside_a_regression(cli, tmp_path):
    baseline, results = _two_methods(tmp_path, nll=[v + 0.1 for v in NLL])
    result = cli("check", baseline, "--results", results, "--format", "csv")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[1].startswith("two-moons,map,nll,0.31,0.41,+0.1,") and lines[1].endswith(",regressed")
    assert lines[2:] == ["two-moons,mc-dropout,runs,3,0,—,0,missing"]
    assert "the baseline has 3 run(s), the store 0" in result.stderr
    assert "1 regressed, 0 improved, 2 unchanged (3 compared); runs missing in 1 of 2 baseline row(s);" in result.stderr


def test_a_store_with_no_run_of_any_baseline_row_compared_nothing(cli, setup, tmp_path):
    baseline, _ = setup
    (tmp_path / "empty").mkdir()
    result = cli("check", baseline, "--results", tmp_path / "empty")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"nothing compared: '{tmp_path / 'empty'}' holds no run of any of the baseline's 1 row(s)"
    assert lines[1].startswith("0 regressed, 0 improved, 0 unchanged (0 compared); runs missing in 1 of 1 baseline row(s);")
    assert len(lines) == 2


def test_an_unusable_record_is_noted_and_its_run_is_missing(cli, setup):
    baseline, store = setup
    results = store()
    path = ResultStore(results).path(_records()[0].id)
    path.write_text(json.dumps({"schema": "uqbench.run/1"}))
    result = cli("check", baseline, "--results", results)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"note: {path}: ") and "the baseline has 3 run(s), the store 2" in lines[1]


def test_more_runs_than_the_baseline_is_not_missing(cli, setup):
    baseline, store = setup
    results = store()
    extra = RunRecord(RunKey("map", {}, "two-moons", {"epochs": 3}, 3, 0), "ok", metrics={"nll": 0.31, "accuracy": 0.91})
    ResultStore(results).write(extra)
    result = cli("check", baseline, "--results", results)
    assert result.exit_code == 0 and "0 regressed, 0 improved, 3 unchanged (3 compared)\n" == result.stderr


def test_a_run_that_lost_a_metric_value_regresses_though_the_mean_of_the_others_did_not(cli, setup, tmp_path):
    """A run whose nll became non-finite (stored as null) must not hide behind the other runs' mean."""
    baseline, _ = setup
    results = tmp_path / "store"
    for rec in _records():
        metrics = {**rec.metrics, "nll": None} if rec.key.seed == 2 else rec.metrics
        ResultStore(results).write(RunRecord(rec.key, "ok", metrics=metrics, timings_s=rec.timings_s))
    result = cli("check", baseline, "--results", results, "--format", "csv")
    assert result.exit_code == 1
    assert "two-moons,map,runs without nll,0,1,+1,0,regressed" in result.stdout.splitlines()
    assert "1 regressed, 0 improved, 3 unchanged (4 compared)" in result.stderr


@pytest.mark.parametrize(
    "option, text, message",
    [
        ("--tolerance", "nl=0.2", ("--tolerance 'nl': no metric of the baseline matches it. Did you mean 'nll'? "
                                   "The baseline's metrics: accuracy, nll")),
        ("--k", "ood.*=3", "--k 'ood.*': no metric of the baseline matches it. The baseline's metrics: accuracy, nll"),
        ("--tolerance", "failed runs=1", "--tolerance 'failed runs': no metric of the baseline matches it."),
    ],
)
def test_a_pattern_that_matches_no_baseline_metric_exits_2(cli, setup, option, text, message):
    baseline, store = setup
    result = cli("check", baseline, "--results", store(), option, text)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {message}")


def test_a_pattern_matching_some_baseline_metric_is_accepted(cli, setup):
    baseline, store = setup
    assert cli("check", baseline, "--results", store(), "--tolerance", "n*=0.2", "--k", "accuracy=3").exit_code == 0


def _with_provenance(baseline, value):
    data = json.loads(baseline.read_text())
    if value is KeyError:
        del data["provenance"]
    else:
        data["provenance"] = value
    baseline.write_text(json.dumps(data))


@pytest.mark.parametrize("provenance", [
    {"uqbench": "0.1.0", "git_commit": None, "store": "/r", "created_at": "2026-12-01T00:00:00Z"},
    {"written by": "a later uqbench", "fields": [1, 2]},  # free-form: never read for a verdict
    None,
    KeyError,  # an older baseline, without the field
])
def test_provenance_never_decides_the_verdict(cli, setup, provenance):
    baseline, store = setup
    _with_provenance(baseline, provenance)
    assert cli("check", baseline, "--results", store()).exit_code == 0
    assert cli("check", baseline, "--results", store(nll=[v + 0.1 for v in NLL])).exit_code == 1


@pytest.mark.parametrize("provenance, message", [
    ("made today", "provenance: expected an object or null; got the string \"made today\""),
    ({"created_at": math.inf}, "provenance.created_at: expected a finite number; got Infinity"),
])
def test_a_malformed_provenance_is_refused(cli, setup, provenance, message):
    baseline, store = setup
    _with_provenance(baseline, provenance)
    result = cli("check", baseline, "--results", store())
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: baseline {str(baseline)!r}: {message}")


def test_a_record_of_another_uqbench_version_never_outranks_this_versions(cli, setup):
    """A store holding, beside this version's regressed runs, better records of the same configs from another
    version (an upgrade's leftovers, or planted with a later date) still fails: this version's runs are checked."""
    baseline, store = setup
    results = store(nll=[v + 0.1 for v in NLL])
    for rec in _records():
        old = RunRecord(RunKey(**{**rec.key.__dict__, "code": {"uqbench": "0.0.1"}}), "ok", metrics=rec.metrics,
                        timings_s=rec.timings_s, created_at="2026-11-30T23:59:59Z")
        ResultStore(results).write(old)
    result = cli("check", baseline, "--results", results, "--format", "csv")
    assert result.exit_code == 1 and "two-moons,map,nll,0.31,0.41," in result.stdout
