"""Result store: ids from content hashes, atomic writes, round trips, aggregation."""

from __future__ import annotations

import json
import os

import pytest

from uqbench.files import write_atomic
from uqbench.results import QUARANTINE, ResultStore, RunKey, RunRecord, aggregate, clean_metrics, mean_se


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
                "method_source", "data_sha256", "info", "env", "created_at", "predictions", "curves"}
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


def _good(tmp_path) -> tuple[RunRecord, dict]:
    record = RunRecord(key=_key(), status="ok", metrics={"nll": 0.3})
    return record, record.to_json()


def _without(data: dict, name: str) -> dict:
    return {k: v for k, v in data.items() if k != name}


CORRUPT = {  # what is written at a record's name -> what the store reports
    "empty": (lambda d: b"", "not valid JSON"),
    "truncated": (lambda d: json.dumps(d).encode()[:40], "not valid JSON"),
    "a list": (lambda d: b"[]", "a JSON array, not a record"),
    "null": (lambda d: b"null", "a JSON null, not a record"),
    "another schema": (lambda d: json.dumps({**d, "schema": "x/1"}).encode(), "schema 'x/1', expected"),
    "a leaderboard": (lambda d: b'{"schema": "uqbench.leaderboard/1", "rows": []}', "schema 'uqbench.leaderboard/1'"),
    "missing status": (lambda d: json.dumps(_without(d, "status")).encode(), "no field 'status'"),
    "missing key field": (lambda d: json.dumps({**d, "key": _without(d["key"], "seed")}).encode(), "no field key.'seed'"),
    "unknown field": (lambda d: json.dumps({**d, "extra": 1}).encode(), "unknown field 'extra'"),
    "created_at not a time": (lambda d: json.dumps({**d, "created_at": "9999"}).encode(), "field 'created_at'"),
    "created_at in the future": (lambda d: json.dumps({**d, "created_at": "2999-01-01T00:00:00Z"}).encode(),
                                 "field 'created_at'"),
    "ok with an error": (lambda d: json.dumps({**d, "error": {"phase": "fit", "type": "X", "message": "m"}}).encode(),
                         "status 'ok' with an error"),
    "failed without an error": (lambda d: json.dumps({**d, "status": "failed"}).encode(),
                                "status 'failed' with no error"),
    "a key twice": (lambda d: json.dumps(d)[:-1].encode() + b', "status": "failed"}', "the key 'status' appears twice"),
    "curves not a list": (lambda d: json.dumps({**d, "curves": {"stage": "x"}}).encode(), "field 'curves'"),
    "a curve with text losses": (lambda d: json.dumps({**d, "curves": [{"stage": "x", "train": ["1"], "val": None}]})
                                 .encode(), "field 'curves'"),
    "a curve with an extra key": (lambda d: json.dumps({**d, "curves": [{"stage": "x", "train": [], "val": None,
                                                                          "lr": 1}]}).encode(), "field 'curves'"),
    "seed a string": (lambda d: json.dumps({**d, "key": {**d["key"], "seed": "0"}}).encode(), "field key.'seed'"),
    "seed a boolean": (lambda d: json.dumps({**d, "key": {**d["key"], "seed": True}}).encode(), "field key.'seed'"),
    "status unknown": (lambda d: json.dumps({**d, "status": "error"}).encode(), "field 'status'"),
    "metric a string": (lambda d: json.dumps({**d, "metrics": {"nll": "0.3"}}).encode(), "field 'metrics'"),
    "metric NaN": (lambda d: json.dumps({**d, "metrics": {"nll": float("nan")}}).encode(), "NaN is not JSON"),
    "metric Infinity": (lambda d: json.dumps({**d, "metrics": {"nll": float("inf")}}).encode(), "Infinity is not JSON"),
    "huge metric": (lambda d: json.dumps(d).replace('0.3', '1e999').encode(), "field 'metrics' has a wrong type or value"),
    "id of another key": (lambda d: json.dumps({**d, "id": "f" * 16}).encode(), "is not the hash of its key"),
    "predictions outside": (lambda d: json.dumps({**d, "predictions": "../../etc/passwd"}).encode(), "predictions '../../etc/passwd'"),
    "non-UTF-8": (lambda d: b"\xff\xfe{}", "not UTF-8 text"),
    "deeply nested": (lambda d: b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    "a 5000-digit integer": (lambda d: json.dumps(d).replace('"seed": 0', '"seed": ' + "9" * 5000).encode(),
                             "not valid JSON (Exceeds the limit"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_an_unusable_record_is_reported_once_and_set_aside_only_when_its_run_is_planned(tmp_path, name):
    record, data = _good(tmp_path)
    content, reason = CORRUPT[name]
    path = tmp_path / f"{record.id}.json"
    path.write_bytes(content(data))
    before = path.read_bytes()

    reader = ResultStore(tmp_path)  # read-only commands: report, leave in place
    assert reader.records() == [] and reader.get(record.id) is None
    (problem,) = reader.problems
    assert problem.startswith(f"{path}: ") and reason in problem and problem.endswith("; ignored"), problem
    assert path.read_bytes() == before

    runner = ResultStore(tmp_path, quarantine=True)
    assert runner.records() == [] and path.exists()  # reading the whole store only reports
    assert runner.get(record.id) is None and not path.exists()  # a planned run: set aside, so it runs again
    (aside,) = (tmp_path / QUARANTINE).iterdir()
    assert aside.read_bytes() == before and aside.name.startswith(record.id)
    assert runner.problems[-1] == f"{path}: {problem[len(str(path)) + 2 : -len('; ignored')]}; moved to {aside}, its run runs again"


def test_a_record_under_another_name_and_a_linked_record_are_not_counted(tmp_path):
    store = ResultStore(tmp_path)
    record, _ = _good(tmp_path)
    store.write(record)
    copy = tmp_path / ("0" * 16 + ".json")
    copy.write_bytes(store.path(record.id).read_bytes())
    other = tmp_path / ("1" * 16 + ".json")
    other.symlink_to(store.path(record.id))
    assert store.records() == [record]  # counted once
    assert sorted(store.problems) == sorted([f"{copy}: holds the record {record.id}, not {copy.stem}; ignored",
                                             f"{other}: a symbolic link (not followed); ignored"])


def test_two_quarantined_copies_of_one_record_keep_both(tmp_path):
    record, _ = _good(tmp_path)
    store = ResultStore(tmp_path, quarantine=True)
    for text in ("first", "second"):
        store.path(record.id).write_text(text)
        store.get(record.id)
    assert sorted(p.read_text() for p in (tmp_path / QUARANTINE).iterdir()) == ["first", "second"]


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


def test_a_record_written_before_curves_were_kept_is_read_with_none(tmp_path):
    record, data = _good(tmp_path)
    del data["curves"]
    (tmp_path / f"{record.id}.json").write_text(json.dumps(data))
    (read,) = ResultStore(tmp_path).records()
    assert read.curves == [] and read.id == record.id


def test_each_fit_of_a_run_keeps_its_per_epoch_losses(cli, tmp_path, torch_state):
    base = ("run", "--task", "toy-regression", "--epochs", "3", "--out", tmp_path, "--json", "-q")
    (vbll,) = json.loads(cli(*base[:1], "vbll", *base[1:], "--set", "training=post").stdout)
    assert [c["stage"] for c in vbll["curves"]] == ["Network", "RegressionHead"]  # post-training: net, then head
    assert all(len(c["train"]) == 3 and all(isinstance(v, float) for v in c["train"]) for c in vbll["curves"])
    (laplace,) = json.loads(cli(*base[:1], "laplace", *base[1:]).stdout)
    assert laplace["curves"] == []  # its MAP network came from the cache: the run that trained it has the curve


def test_a_fit_with_early_stopping_keeps_the_validation_curve_too():
    import torch
    from torch import nn

    from uqbench.methods.base import FitContext
    from uqbench.models import BackboneConfig
    from uqbench.training import TrainConfig

    x, y = torch.randn(64, 2), torch.randn(64, 1)
    ctx = FitContext(TrainConfig(epochs=4, patience=10), BackboneConfig().spec((2,)))
    net = nn.Linear(2, 1)
    ctx.fit(net, lambda a, b: ((net(a) - b) ** 2).mean(), (x, y), val=(x, y),
            val_loss_fn=lambda a, b: ((net(a) - b) ** 2).mean(1), stage="linear")
    (curve,) = ctx.curves
    assert curve["stage"] == "linear" and len(curve["train"]) == len(curve["val"]) == 4
