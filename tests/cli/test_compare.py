"""`uqbench compare`: planning, running only what is missing, resume after Ctrl-C, leaderboard output, suites."""

from __future__ import annotations

import io

import json

import pytest
from rich.console import Console

from uqbench import driver
from uqbench.driver import PlanDisplay, pending, run_specs
from uqbench.errors import BadConfig, UnknownName
from uqbench.executors import InProcess
from uqbench.experiment import CommandLine, compare_request
from uqbench.methods import methods
from uqbench.methods.map import MAP
from uqbench.results import ResultStore
from uqbench.runner import RunOptions, Runner
from uqbench.spec import plan
from uqbench.suites import UCI_TASKS, Suite, suites

SMALL = ("--epochs", "1", "--set", "n_train=64", "--set", "n_test=32")
TINY = ("--tasks", "two-moons,toy-regression", "--methods", "map", "--seeds", "2", *SMALL)


def _plan(**line):
    return plan(compare_request(CommandLine(**line))[0])


@pytest.fixture
def classification_only(monkeypatch):
    """A method that supports classification only, registered for one test."""

    class _Cls(MAP):
        kinds = frozenset({"classification"})

    monkeypatch.setitem(methods._items, "cls-only", _Cls)
    monkeypatch.setitem(methods._origin, "cls-only", "builtin")
    monkeypatch.setattr(_Cls, "name", "cls-only")


class StopAfter:
    """An executor that behaves like InProcess, then raises KeyboardInterrupt (Ctrl-C) after `k` records."""

    def __init__(self, runner, k):
        self.inner, self.k = InProcess(runner), k

    def run(self, specs):
        for i, record in enumerate(self.inner.run(specs)):
            if i == self.k:
                raise KeyboardInterrupt
            yield record


def test_compare_runs_the_plan_and_prints_json_leaderboards(cli, tmp_path):
    result = cli("compare", *TINY, "--out", tmp_path, "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert board["schema"] == "uqbench.leaderboard/1"
    assert [(r["task"], r["method"], r["n_runs"], r["n_failed"]) for r in board["rows"]] == [
        ("two-moons", "map", 2, 0),
        ("toy-regression", "map", 2, 0),
    ]
    nll = board["metrics"]["nll"]
    assert nll == {"higher_is_better": False, "ideal": None, "unit": "nats", "doc": nll["doc"]}
    assert board["metrics"]["coverage90"]["ideal"] == 0.9
    assert board["rows"][0]["recipe"]["epochs"] == 1 and board["rows"][0]["backbone"]["arch"] == "mlp"
    assert board["rows"][0]["cost"]["n_params"] == 33666 and board["rows"][0]["avg_rank"] == 1.0
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_interrupted_compare_keeps_finished_runs_and_resumes(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "make_executor", lambda runner, *parallel: StopAfter(runner, 2))
    result = cli("compare", *TINY, "--out", tmp_path)
    assert result.exit_code == 130
    assert "interrupted: 2 run(s) finished now and kept in " in result.stderr and ", 2 not run;" in result.stderr
    kept = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    assert len(kept) == 2 and not list(tmp_path.glob(".tmp-*"))

    monkeypatch.undo()
    result = cli("compare", *TINY, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 of 4 planned runs are in" in result.stderr and "running 2" in result.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished runs were not repeated
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_run_specs_writes_each_record_as_it_arrives(tmp_path):
    the_plan = _plan(tasks=("two-moons",), methods=("map",), seeds=3, epochs=1, settings=("n_train=64",))
    store = ResultStore(tmp_path)
    options = RunOptions(out=tmp_path)
    executor = StopAfter(Runner(options), 1)
    with pytest.raises(KeyboardInterrupt):
        run_specs(the_plan.specs, executor, store, PlanDisplay(Console(file=io.StringIO()), quiet=True))  # type: ignore[arg-type]
    assert [store.has(spec.key()) for spec in the_plan.specs] == [True, False, False]
    assert pending(the_plan, store, options) == the_plan.specs[1:]


def test_no_run_reports_what_the_store_holds(cli, tmp_path):
    empty = cli("compare", *TINY, "--out", tmp_path, "--no-run")
    assert empty.exit_code == 2 and "holds none of the 4 planned runs" in empty.stderr
    cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", *SMALL, "--out", tmp_path, "-q")
    result = cli("compare", *TINY, "--out", tmp_path, "--no-run", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["rows"]
    assert [(r["task"], r["n_runs"], r["n_missing"]) for r in rows] == [("two-moons", 1, 1)]


def test_markdown_table_pastes_into_a_readme(cli, tmp_path):
    result = cli("compare", *TINY, "--out", tmp_path, "--format", "markdown", "--metric", "nll", "--metric", "ood.*", "-q")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "**two-moons (rank by nll)**"
    assert lines[2].startswith("| method   | nll ↓ ") and "ood.far.auroc ↑" in lines[2] and "accuracy" not in lines[2]
    assert lines[4].startswith("| map      | **0.")
    assert "**average rank across tasks**" in lines and lines[-1].startswith("_mean ± standard error")


def test_compare_then_check_passes_and_a_worse_record_fails(cli, tmp_path):
    out = tmp_path / "results"
    base = cli("compare", *TINY, "--out", out, "--format", "json", "-q")
    (tmp_path / "base.json").write_text(base.stdout)
    assert cli("check", tmp_path / "base.json", "--results", out).exit_code == 0
    for path in out.glob("*.json"):  # every seed clearly worse, so the change is beyond noise
        record = json.loads(path.read_text())
        if record["key"]["task"] == "two-moons":
            record["metrics"]["ece"] += 0.5
            path.write_text(json.dumps(record))
    result = cli("check", tmp_path / "base.json", "--results", out, "--format", "csv")
    assert result.exit_code == 1
    assert [line.split(",")[2:] for line in result.stdout.splitlines()[1:]][0][0] == "ece"
    assert result.stdout.splitlines()[1].endswith(",regressed")


def test_set_applies_where_the_key_exists_and_a_typo_is_refused():
    the_plan = _plan(tasks=("two-moons", "digits"), methods=("map",), seeds=1, settings=("n_train=100",))
    configs = {spec.task: spec.task_config for spec in the_plan.specs}
    assert configs["two-moons"].n_train == 100 and not hasattr(configs["digits"], "n_train")
    message = r"--set n_trian=100: no planned run has a key 'n_trian' \(methods: map; tasks: two-moons, digits\)"
    with pytest.raises(BadConfig, match=message):
        _plan(tasks=("two-moons", "digits"), methods=("map",), settings=("n_trian=100",))


def test_unsupported_pairs_are_skipped_and_reported(classification_only):
    the_plan = _plan(tasks=("two-moons", "toy-regression"), methods=("map", "cls-only"), seeds=1)
    assert [(s.task, s.method) for s in the_plan.specs] == [("two-moons", "map"), ("two-moons", "cls-only"),
                                                            ("toy-regression", "map")]
    assert the_plan.skipped == [
        "cls-only on toy-regression: cls-only does not support regression; it supports: classification"]


def test_suites_plan_seeds_and_splits_and_name_missing_methods(monkeypatch):
    assert {"quick", "uci", "cifar"} <= set(suites.names())
    assert suites.get("quick").tasks == ("toy-regression", "two-moons", "digits")
    monkeypatch.setitem(suites._items, "tiny", Suite("test", ("two-moons",), ("map",), seeds=2,
                                                     settings=("two-moons.epochs=1",)))
    the_plan = _plan(suite="tiny")
    assert [(s.seed, s.split, s.recipe.epochs) for s in the_plan.specs] == [(0, 0, 1), (1, 0, 1)]
    assert _plan(suite="tiny", settings=("epochs=4",)).specs[0].recipe.epochs == 4
    assert _plan(suite="tiny", epochs=5).specs[0].recipe.epochs == 5
    uci = _plan(suite="uci", methods=("map",), splits=2)
    assert {(s.task, s.split) for s in uci.specs} == {(task, split) for task in UCI_TASKS for split in (0, 1)}
    first = _plan(tasks=("uci-boston", "two-moons"), methods=("map",), seeds=1, splits=3)
    assert [(s.task, s.split) for s in first.specs] == [("uci-boston", 0), ("uci-boston", 1), ("uci-boston", 2),
                                                        ("two-moons", 0)]  # capped at the task's one split
    monkeypatch.setitem(suites._items, "broken", Suite("test", ("two-moons",), ("map", "no-such-method")))
    with pytest.raises(UnknownName, match="suite 'broken': unknown method 'no-such-method'"):
        _plan(suite="broken")


@pytest.mark.parametrize(
    "args, message",
    [
        (("--suite", "nope"), "unknown suite 'nope'"),
        (("--suite", "quick", "--tasks", "digits"), "--suite and --tasks: give one of them"),
        (("--tasks", "two-moons", "--methods", "mapp"), "unknown method 'mapp'. Did you mean 'map'?"),
        (("--tasks", "two-moons", "--methods", "map", "--jobs", "0"), "--jobs 0: must be at least 1"),
        (("--tasks", "two-moons", "--methods", "map", "--executor", "pbs"), "--executor 'pbs': expected one of local, ray, slurm"),
        (("--tasks", "two-moons", "--methods", "map", "--address", "auto"), "--address is only for --executor ray"),
        (("--tasks", "two-moons", "--methods", "map", "--seeds", "0"), "--seeds 0: must be at least 1"),
        (("--tasks", "two-moons", "--methods", "map", "--splits", "0"), "--splits 0: must be at least 1"),
        (("--tasks", ",", "--methods", "map"), "--tasks ',': expected comma-separated names"),
        (("--tasks", "two-moons", "--format", "xml"), "--format 'xml': expected one of"),
        (("--tasks", "two-moons", "--methods", "zz-*"), "no method matches 'zz-*'"),
        (("--tasks", "two-moons", "--set", "foo.lr=1"), "'foo' is neither a part"),
        (("--tasks", "two-moons", "--set", "lr=fast"), "'lr' of the training recipe must be a float; got 'fast'"),
        (("--tasks", "two-moons", "--set", "epochs=0"), "'epochs' of the training recipe must be at least 1; got 0"),
        (("--tasks", "two-moons", "--set", "lr=inf"), "'lr' of the training recipe must be non-negative; got inf"),
        (("--tasks", "two-moons", "--layout", "tall"), "--layout 'tall': expected one of auto, wide, long"),
        (("--tasks", "two-moons", "--columns", ","), "--columns ',': expected comma-separated metric keys or patterns"),
        (("--tasks", "two-moons", "--format", "json", "--no-cost"), "--no-cost: not for --format json"),
        (("--tasks", "two-moons", "--format", "csv", "--layout", "long"), "--layout long: only for --format table"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, message):
    result = cli("compare", *args, "--out", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_unknown_metric_is_refused_after_the_runs_are_kept(cli, tmp_path):
    result = cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", *SMALL, "--out", tmp_path, "--metric", "rmse", "-q")
    assert result.exit_code == 2 and "--metric 'rmse': no run of this comparison reports it" in result.stderr
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_asking_for_predictions_later_reruns_the_same_runs_and_says_why(cli, tmp_path):
    """`--save-predictions` does not change a run's identity: the stored runs are run again (to save their
    predictions), the message says so, and the records' metrics are the same as before."""
    import json

    first = cli("compare", *TINY, "--out", tmp_path)
    assert first.exit_code == 0, first.output
    before = {p.name: json.loads(p.read_text())["metrics"] for p in tmp_path.glob("*.json")}
    second = cli("compare", *TINY, "--out", tmp_path, "--save-predictions")
    assert second.exit_code == 0, second.output
    n = len(before)
    assert (f"{n} of {n} planned runs are in {str(tmp_path)!r} (running again: {n} without saved predictions "
            f"(the same run again, to save them)); running {n}") in second.stderr
    after = {p.name: json.loads(p.read_text())["metrics"] for p in tmp_path.glob("*.json")}
    assert after == before and len(list(tmp_path.glob("*.npz"))) == n
    third = cli("compare", *TINY, "--out", tmp_path, "--save-predictions")
    assert f"{n} of {n} planned runs are in {str(tmp_path)!r}; running 0" in third.stderr


def test_the_json_leaderboard_says_what_made_it(cli, tmp_path):
    import re

    import uqbench

    result = cli("compare", *TINY, "--out", tmp_path, "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    prov = board["provenance"]
    assert set(prov) == {"uqbench", "git_commit", "store", "created_at"}
    assert prov["uqbench"] == uqbench.__version__ and prov["store"] == str(tmp_path.absolute())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", prov["created_at"])
    assert prov["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    assert board["metrics"]["coverage90"]["ideal"] == 0.9 and board["metrics"]["nll"]["ideal"] is None


def test_columns_80_lays_the_leaderboard_out_for_80_columns_in_a_pipe(cli, tmp_path, monkeypatch):
    import re

    assert cli("compare", *TINY, "--out", tmp_path, "-q").exit_code == 0
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli("compare", *TINY, "--out", tmp_path, "--no-run", "--no-cost", "--columns", "nll,ood.*.auroc")
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in narrow.stdout
    assert "│ map    │ nll ↓           │" in narrow.stdout and "fit s" not in narrow.stdout
    monkeypatch.delenv("COLUMNS")
    wide = cli("compare", *TINY, "--out", tmp_path, "--no-run", "--no-cost", "--columns", "nll,ood.*.auroc")
    header = next(line for line in wide.stdout.splitlines() if line.startswith("┃ method"))
    assert re.match(r"┃ method ┃ +nll ↓ ┃ +ood.far.auroc ↑ ┃", header)  # a pipe without COLUMNS: 400 columns, wide


def test_an_unknown_column_is_refused_after_the_runs_are_kept(cli, tmp_path):
    result = cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", *SMALL, "--out", tmp_path,
                 "--columns", "nll,rmse", "-q")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --columns 'rmse': no run of this comparison reports it; available: ")
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_latex_leaderboard(cli, tmp_path):
    result = cli("compare", *TINY, "--out", tmp_path, "--format", "latex", "-q")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 3
    assert r"\caption{two-moons (rank by nll)}" in text and r"\textbf{\boldmath $" in text
