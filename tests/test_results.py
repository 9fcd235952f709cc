"""Result store: ids from content hashes, atomic writes, round trips, aggregation."""

from __future__ import annotations

import json
import os

import pytest

from uqbench.results import ResultStore, RunKey, RunRecord, aggregate, clean_metrics, mean_se, write_atomic


def _key(seed=0, **cfg):
    return RunKey("map", dict(cfg), "two-moons", {"epochs": 10}, seed, 0)


def test_id_is_a_stable_content_hash_of_the_key():
    assert _key().id == _key().id and len(_key().id) == 16
    assert _key(seed=1).id != _key().id
    assert _key(lr=0.1).id != _key().id  # a changed config value never reuses a result


def test_record_round_trips_with_every_field_present(tmp_path):
    store = ResultStore(tmp_path)
    record = RunRecord(key=_key(), status="ok", metrics={"accuracy": 0.9}, n={"train": 10})
    path = store.write(record)
    data = json.loads(path.read_text())
    expected = {"schema", "id", "key", "status", "error", "metrics", "warnings", "n", "timings_s", "artifacts",
                "method_source", "data_sha256", "info", "env", "created_at", "predictions"}
    assert set(data) == expected
    assert data["id"] == record.id and path.name == f"{record.id}.json"
    assert store.load(record.id) == record
    assert store.has(record.key) and not store.has(_key(seed=9))


def test_failed_record_keeps_its_error(tmp_path):
    store = ResultStore(tmp_path)
    error = {"phase": "fit", "type": "NonFiniteLoss", "message": "loss became nan at epoch 2 step 1"}
    store.write(RunRecord(key=_key(), status="failed", error=error))
    assert store.records()[0].error == error


def test_write_is_atomic_old_content_survives_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_atomic(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_store_ignores_foreign_and_partial_files(tmp_path):
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"schema": "something-else"}')
    assert ResultStore(tmp_path).records() == []


def test_non_finite_metrics_become_null_with_a_warning():
    cleaned, warnings = clean_metrics({"nll": float("inf"), "accuracy": 0.5})
    assert cleaned == {"nll": None, "accuracy": 0.5}
    assert warnings == ["metric 'nll' was inf"]


def test_mean_and_standard_error():
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / 3**0.5)
    assert mean_se([4.0]) == (4.0, 0.0)


def test_aggregate_skips_failed_runs_and_missing_values():
    records = [
        RunRecord(key=_key(0), status="ok", metrics={"nll": 1.0, "ece": None}),
        RunRecord(key=_key(1), status="ok", metrics={"nll": 3.0, "ece": 0.1}),
        RunRecord(key=_key(2), status="failed"),
    ]
    agg = aggregate(records)
    assert agg["nll"] == (2.0, 1.0, 2)
    assert agg["ece"] == (0.1, 0.0, 1)
