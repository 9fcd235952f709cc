"""Leaderboard aggregation: mean and standard error, ranks, best per column, paired within-noise marks, JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from uqbench.errors import DataError, UnknownName
from uqbench.leaderboard import SCHEMA, Cell, Leaderboard, Row, build, flat_table, paired_test, rank_table, task_table
from uqbench.leaderboard_schema import CELL, COST, DOCUMENT, HEADER, ROW, parse
from uqbench.results import RunKey, RunRecord


def record(method, task, seed, metrics, status="ok", lr=0.003, split=0, fit=1.0, n_params=None):
    key = RunKey(method, {}, task, {"lr": lr}, seed, split)
    info = {} if n_params is None else {"n_params": n_params}
    return RunRecord(key, status, metrics=metrics if status == "ok" else {}, timings_s={"fit": fit, "predict": 0.1}, info=info)


NLL = {"a": [0.30, 0.32, 0.31], "b": [0.50, 0.52, 0.49], "c": [0.305, 0.318, 0.312]}
ACC = {"a": [0.90, 0.91, 0.92], "b": [0.95, 0.96, 0.94], "c": [0.80, 0.81, 0.82]}


def moons_records():
    return [
        record(m, "two-moons", s, {"nll": NLL[m][s], "accuracy": ACC[m][s]}, n_params=100)
        for m in ("a", "b", "c")
        for s in range(3)
    ]


def row(board, task, method):
    return next(r for r in board.rows if r.task == task and r.method == method)


def test_mean_and_standard_error_match_numpy():
    board = build(moons_records())
    cell = row(board, "two-moons", "a").metrics["nll"]
    assert cell.mean == pytest.approx(np.mean(NLL["a"]))
    assert cell.se == pytest.approx(np.std(NLL["a"], ddof=1) / np.sqrt(3))
    assert cell.n == 3


def test_best_follows_each_metrics_direction():
    board = build(moons_records())
    assert row(board, "two-moons", "a").metrics["nll"].best  # lower is better
    assert row(board, "two-moons", "b").metrics["accuracy"].best  # higher is better
    assert not row(board, "two-moons", "a").metrics["accuracy"].best
    assert board.metrics["nll"]["higher_is_better"] is False and board.metrics["accuracy"]["higher_is_better"] is True


def test_within_noise_is_a_paired_t_test_against_the_best():
    board = build(moons_records())
    c, b = row(board, "two-moons", "c").metrics["nll"], row(board, "two-moons", "b").metrics["nll"]
    assert c.p_value == pytest.approx(stats.ttest_rel(NLL["a"], NLL["c"]).pvalue)
    assert c.within_noise is True  # a and c differ by less than their paired noise
    assert b.within_noise is False and b.p_value < 0.05
    assert row(board, "two-moons", "a").metrics["nll"].within_noise is None  # the best itself


def test_pairing_uses_only_common_seeds_and_needs_two():
    assert paired_test({(0, 0): 1.0, (1, 0): 2.0}, {(1, 0): 2.5, (2, 0): 1.0}) == (None, None)
    assert paired_test({(0, 0): 1.0, (1, 0): 2.0}, {(0, 0): 1.0, (1, 0): 2.0}) == (True, 1.0)
    assert paired_test({(0, 0): 1.0, (1, 0): 2.0}, {(0, 0): 1.5, (1, 0): 2.5}) == (False, 0.0)  # constant shift


def test_ranks_share_ties_and_average_over_tasks():
    recs = moons_records() + [
        record(m, "toy-regression", s, {"nll": v, "rmse": 1.0})
        for m, v in (("a", 2.0), ("b", 1.0), ("c", 1.0))
        for s in range(2)
    ]
    board = build(recs)
    assert board.rank_by == {"two-moons": "nll", "toy-regression": "nll"}
    assert [row(board, "two-moons", m).rank for m in "abc"] == [1, 3, 2]
    assert [row(board, "toy-regression", m).rank for m in "abc"] == [3, 1.5, 1.5]
    assert [row(board, "two-moons", m).avg_rank for m in "abc"] == [2.0, 2.25, 1.75]
    columns, rows = rank_table(board)
    assert columns == ["method", "two-moons", "toy-regression", "avg rank"]
    assert [r[0] for r in rows] == ["c", "a", "b"]


def test_metric_patterns_choose_columns_and_the_ranking_metric():
    recs = [record("a", "digits", s, {"accuracy": 0.9, "nll": 0.3, "ood.noise.auroc": 0.8, "ood.rot.auroc": 0.7}) for s in range(2)]
    board = build(recs, metrics=("ood.*.auroc", "nll"))
    assert board.columns("digits") == ["ood.noise.auroc", "ood.rot.auroc", "nll"]
    assert board.rank_by["digits"] == "ood.noise.auroc"
    with pytest.raises(UnknownName, match="--metric 'rmse'.*available: accuracy, nll"):
        build(recs, metrics=("rmse",))


def test_failed_and_missing_runs_are_counted():
    recs = moons_records()[:3] + [record("a", "two-moons", 3, {}, status="failed")]
    r = row(build(recs, expected={("two-moons", "a"): 5}), "two-moons", "a")
    assert (r.n_runs, r.n_failed, r.n_missing) == (3, 1, 1)


def test_the_splits_of_one_config_are_one_row_though_each_reads_its_own_files():
    keys = [RunKey("a", {}, "uci-yacht", {}, 0, split, data={"index_train": f"sha-of-split-{split}"}) for split in range(3)]
    board = build([RunRecord(k, "ok", metrics={"nll": 1.0 + k.split}) for k in keys])
    assert len(board.rows) == 1 and board.rows[0].n_runs == 3


def test_configs_are_kept_apart():
    recs = [record("a", "t", s, {"nll": 1.0}, lr=lr) for s in range(2) for lr in (0.1, 0.2)]
    board = build(recs)
    assert len(board.rows) == 2 and len({r.config_id for r in board.rows}) == 2
    assert recs[0].key.config_id == board.rows[0].config_id
    labels = [r[0] for r in task_table(board, "t", "table")[1]]
    assert all(label.startswith("a (") for label in labels)


def test_cost_columns():
    r = row(build(moons_records()), "two-moons", "a")
    assert r.cost == pytest.approx({"fit_s": 1.0, "predict_s": 0.1, "n_params": 100})


def test_json_round_trip_and_schema_check():
    board = build(moons_records())
    data = json.loads(json.dumps(board.to_json()))
    assert data["schema"] == SCHEMA and data["rows"][0]["metrics"]["nll"]["se"] >= 0
    again = Leaderboard.from_json(data)
    assert again.to_json() == board.to_json()
    with pytest.raises(DataError, match="schema 'other/1'"):
        Leaderboard.from_json({"schema": "other/1"})
    with pytest.raises(DataError, match="^" + re.escape("rows[0].method: missing field; expected a non-empty printable string")):
        Leaderboard.from_json({"schema": SCHEMA, "metrics": {}, "rank_by": {}, "rows": [{"task": "x"}]})


def _rich_board():
    """Two tasks, a dotted OOD key, coverage (a nominal value), a failed run, a stated parameter count."""
    recs = moons_records() + [record("a", "two-moons", 3, {}, status="failed")]
    recs += [record(m, "uci", s, {"coverage90": 0.9 + s / 100, "ood.far.auroc": 0.7, "rmse": 1.0 + s}, n_params=1.5e6)
             for m in ("a", "b") for s in range(2)]
    return build(recs, all_metrics=True, expected={("uci", "a"): 3})


def test_everything_build_writes_passes_validation_and_round_trips():
    board = _rich_board()
    text = json.dumps(board.to_json(), allow_nan=False)
    assert '"ood.far.auroc"' in text and '"n_failed": 1' in text and '"n_missing": 1' in text
    assert Leaderboard.from_json(parse(text)).to_json() == board.to_json()


def test_the_schema_tables_name_exactly_the_fields_to_json_writes():
    board = _rich_board()
    data = board.to_json()
    assert set(DOCUMENT) == set(data)
    assert set(ROW) == {f.name for f in dataclasses.fields(Row)} - {"values"} == set(data["rows"][0])
    assert set(CELL) == {f.name for f in dataclasses.fields(Cell)} == set(data["rows"][0]["metrics"]["nll"])
    assert set(HEADER) == set(data["metrics"]["nll"]) and set(COST) == set(data["rows"][0]["cost"])


def _cell(key, row=0, **fields):
    return lambda d: d["rows"][row]["metrics"][key].update(fields)


@pytest.mark.parametrize(
    "edit, message",
    [
        (_cell("nll", mean=math.nan), "rows[0].metrics.nll.mean: expected a finite number; got NaN"),
        (lambda d: d["metrics"]["nll"].update(higher_is_better="false"),
         'metrics.nll.higher_is_better: expected true or false; got the string "false"'),
        (_cell("accuracy", se=-1.0), "rows[0].metrics.accuracy.se: expected a finite number >= 0; got -1.0"),
        (lambda d: d["rows"][0].update(n_runs=True), "rows[0].n_runs: expected a non-negative integer; got true"),
        (lambda d: d["metrics"]["coverage90"].update(ideal=None),
         "metrics.coverage90: expected higher_is_better true and ideal 0.9 (uqbench's 'coverage90'); got true and null"),
        (_cell("ood.far.auroc", row=-1, n="2"),
         'rows[4].metrics["ood.far.auroc"].n: expected a non-negative integer; got the string "2"'),
        (lambda d: d["rows"].append(dict(d["rows"][0])), "rows[5]: the same task, method and config_id as rows[0]"),
        (lambda d: d.update(rows=[]), "rows: empty, so there is nothing to compare"),
    ],
)
def test_from_json_names_the_place_of_a_malformed_field(edit, message):
    data = json.loads(json.dumps(_rich_board().to_json()))
    edit(data)
    with pytest.raises(DataError, match="^" + re.escape(message)):
        Leaderboard.from_json(data)


def test_parse_marks_a_repeated_key_for_validation_to_refuse():
    text = json.dumps(build(moons_records()).to_json()).replace('"n_failed": 0', '"n_failed": 0, "n_failed": 0', 1)
    with pytest.raises(DataError, match=re.escape('rows[0]: the key "n_failed" appears more than once; expected each key once')):
        Leaderboard.from_json(parse(text))


def test_markdown_cells_mark_best_and_ties():
    columns, rows, title = task_table(build(moons_records()), "two-moons", "markdown")
    assert columns[:3] == ["method", "accuracy ↑", "nll ↓"] and title == "two-moons (rank by nll)"
    by_method = {r[0]: r for r in rows}
    assert by_method["a"][2].startswith("**0.3100 ± ")
    assert by_method["c"][2].endswith(" ≈") and not by_method["b"][2].endswith(" ≈")


def test_flat_table_has_a_mean_and_se_column_per_metric():
    columns, rows = flat_table(build(moons_records()))
    assert columns[-4:] == ["accuracy", "accuracy_se", "nll", "nll_se"] and len(rows) == 3


def test_coverage_is_ranked_by_its_distance_from_the_nominal_level():
    """For a 90% interval, 0.90 coverage beats 0.99 (and 0.85): the best is the closest to the nominal level."""
    values = {"exact": [0.90, 0.91, 0.89], "wide": [0.99, 0.99, 1.0], "narrow": [0.85, 0.84, 0.86]}
    recs = [record(m, "uci", s, {"coverage90": v[s]}) for m, v in values.items() for s in range(3)]
    board = build(recs, metrics=("coverage90",))
    assert board.metrics["coverage90"]["ideal"] == 0.9 and board.rank_by["uci"] == "coverage90"
    assert [row(board, "uci", m).rank for m in values] == [1, 3, 2]
    assert row(board, "uci", "exact").metrics["coverage90"].best and not row(board, "uci", "wide").metrics["coverage90"].best
    columns, _, _ = task_table(board, "uci", "markdown")
    assert columns[1] == "coverage90 → 0.9"
