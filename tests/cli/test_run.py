"""`uqbench run`: records per seed, skip-if-done, --force determinism, --json, --save-predictions."""

from __future__ import annotations

import json

import numpy as np

FAST = ("--epochs", "3", "--quiet")


def test_run_prints_metrics_and_writes_one_record_per_seed(cli, tmp_path):
    result = cli("run", "map", "--task", "two-moons", "--seeds", "2", "--out", tmp_path, *FAST)
    assert result.exit_code == 0, result.output
    for key in ("accuracy", "nll", "brier", "ece", "ood.far.auroc"):
        assert key in result.stdout
    assert "± " in result.stdout
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_json_output_is_only_the_records(cli, tmp_path):
    result = cli("run", "map", "--task", "toy-regression", "--out", tmp_path, "--json", *FAST)
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert len(records) == 1 and records[0]["status"] == "ok"
    assert set(records[0]["metrics"]) == {
        "rmse", "mae", "nll", "nll_moments", "crps", "coverage90", "coverage95", "qce",
        *(f"ood.{s}.{k}" for s in ("gap", "far") for k in ("auroc", "aupr_in", "aupr_out", "fpr95")),
    }
    assert records[0]["key"]["recipe"]["epochs"] == 3


def test_existing_record_is_not_recomputed_unless_forced(cli, tmp_path):
    args = ("run", "map", "--task", "two-moons", "--out", tmp_path, "--json", *FAST)
    first = json.loads(cli(*args).stdout)[0]
    path = tmp_path / f"{first['id']}.json"
    stamp = path.stat().st_mtime_ns
    again = json.loads(cli(*args).stdout)[0]
    assert path.stat().st_mtime_ns == stamp and again == first
    forced = json.loads(cli(*args, "--force").stdout)[0]
    assert forced["metrics"] == first["metrics"]  # deterministic on CPU
    assert path.stat().st_mtime_ns != stamp


def test_set_changes_the_config_and_the_record_id(cli, tmp_path):
    a = json.loads(cli("run", "map", "--task", "two-moons", "--out", tmp_path, "--json", *FAST).stdout)[0]
    b = json.loads(cli("run", "map", "--task", "two-moons", "--set", "lr=0.01", "--out", tmp_path, "--json", *FAST).stdout)[0]
    assert b["key"]["recipe"]["lr"] == 0.01 and a["id"] != b["id"]


def test_save_predictions_writes_the_documented_arrays(cli, tmp_path):
    rec = json.loads(cli("run", "map", "--task", "two-moons", "--out", tmp_path, "--json", "--save-predictions", *FAST).stdout)[0]
    arrays = np.load(tmp_path / rec["predictions"])
    assert set(arrays.files) == {"probs", "targets", "score", "ood_far_probs", "ood_far_score"}
    assert arrays["probs"].shape == (200, 2) and arrays["ood_far_score"].shape == (500,)
    reg = json.loads(cli("run", "map", "--task", "toy-regression", "--out", tmp_path, "--json", "--save-predictions", *FAST).stdout)[0]
    arrays = np.load(tmp_path / reg["predictions"])
    assert {"mean", "var", "targets", "score", "ood_gap_mean", "ood_gap_var", "ood_gap_score"} <= set(arrays.files)


def test_record_has_env_timings_and_sizes(cli, tmp_path):
    rec = json.loads(cli("run", "map", "--task", "digits", "--out", tmp_path, "--json", "--epochs", "1", "--quiet").stdout)[0]
    assert rec["env"]["torch"] and rec["env"]["device"] == "cpu"
    assert set(rec["timings_s"]) == {"fit", "predict", "evaluate"}
    assert rec["n"] == {"train": 1300, "val": 0, "test": 497, "ood.rotated": 497, "ood.noise": 497}
    assert rec["method_source"] == "builtin" and rec["artifacts"]["backbone"].startswith("map-")


def test_failed_run_is_recorded_and_exit_code_is_1(cli, tmp_path):
    result = cli("run", "map", "--task", "two-moons", "--set", "lr=1e30", "--out", tmp_path, *FAST)
    assert result.exit_code == 1
    assert "failed in fit: NonFiniteLoss" in result.stderr
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "NonFiniteLoss"


def test_threads_sets_and_records_torchs_thread_count_and_restores_it(cli, tmp_path, torch_state):
    import torch

    before = torch.get_num_threads()
    result = cli("run", "map", "--task", "two-moons", "--epochs", "1", "--threads", "1", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["env"]["threads"] == 1 and torch.get_num_threads() == before
    pooled = cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "2", "--epochs", "1", "--jobs", "2",
                 "--threads", "1", "--out", tmp_path / "pool", "--format", "json", "-q")
    assert pooled.exit_code == 0, pooled.output
    assert {json.loads(p.read_text())["env"]["threads"] for p in (tmp_path / "pool").glob("*.json")} == {1}
    for bad in ("0", "-2", "5000"):
        refused = cli("run", "map", "--task", "two-moons", "--threads", bad, "--out", tmp_path)
        assert refused.exit_code == 2 and refused.stderr == f"error: --threads {bad}: must be between 1 and 4096\n"


def _saved(cli, out, *args):
    """The saved arrays and the reloaded data of the one run `run map ... --save-predictions` makes."""
    from uqbench.results import ResultStore
    from uqbench.spec import RunSpec

    assert cli("run", "map", *args, "--out", out, "--save-predictions", "--epochs", "2", "--quiet").exit_code == 0
    (record,) = ResultStore(out).records()
    spec = RunSpec.from_key(record.key)
    return np.load(out / record.predictions), spec.make_task(None).load(spec.seed, spec.split)


def test_save_predictions_adds_a_dense_grid_for_regression_with_one_input(cli, tmp_path):
    arrays, data = _saved(cli, tmp_path, "--task", "toy-regression", "--set", "n_train=64", "--set", "n_test=32")
    x = arrays["grid_x"]
    assert x.shape == (400, 1) and arrays["grid_mean"].shape == arrays["grid_var"].shape == (400, 1)
    step = np.diff(x[:, 0])
    assert step[0] > 0 and np.allclose(step, step[0], rtol=1e-3)  # evenly spaced (float32)
    seen = np.concatenate([data.train.x.numpy(), *(v.numpy() for v in data.ood.values())])[:, 0]
    margin = 0.1 * (seen.max() - seen.min())
    assert np.isclose(x.min(), seen.min() - margin, atol=1e-5) and np.isclose(x.max(), seen.max() + margin, atol=1e-5)
    assert np.isfinite(arrays["grid_mean"]).all() and (arrays["grid_var"] > 0).all()
    # original target units, as `mean`: the grid's predictions bracket the test predictions' range
    assert arrays["grid_mean"].min() <= arrays["mean"].min() and arrays["grid_mean"].max() >= arrays["mean"].max()


def test_no_grid_for_classification_or_several_inputs(cli, tmp_path):
    rows = "\n".join(f"{i % 7},{i % 5},{(i % 7) * 0.5 + (i % 5) * 0.1:.2f}" for i in range(60))
    (tmp_path / "two.csv").write_text("a,b,y\n" + rows + "\n")
    arrays, data = _saved(cli, tmp_path / "csv", "--task", "csv", "--set", f"path={tmp_path / 'two.csv'}",
                          "--set", "target=y", "--set", "kind=regression")
    assert data.in_shape == (2,) and "mean" in arrays and not {"grid_x", "grid_mean", "grid_var"} & set(arrays.files)
    arrays, _ = _saved(cli, tmp_path / "moons", "--task", "two-moons", "--set", "n_train=64", "--set", "n_test=32")
    assert "probs" in arrays and not {"grid_x", "grid_mean", "grid_var"} & set(arrays.files)
