"""`--log mlflow` and `--log tensorboard`: each run stored now goes to the tracker with its config, metrics and
training curves; read back with MLflow's client and TensorBoard's event reader."""

from __future__ import annotations

import json

import pytest

SMALL = ("--tasks", "two-moons", "--methods", "map,mc-dropout", "--seeds", "1", "--epochs", "3",
         "--set", "n_train=64", "--set", "n_test=32", "-q")


@pytest.fixture
def logged(cli, tmp_path, monkeypatch, torch_state):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result = cli("compare", *SMALL, "--log", "mlflow", "--log", "tensorboard", "--out", tmp_path, "--format", "json")
    assert result.exit_code == 0, result.output
    records = {r.stem: json.loads(r.read_text()) for r in tmp_path.glob("*.json")}
    return tmp_path, records


def test_mlflow_gets_every_runs_config_metrics_and_curves(logged):
    import mlflow

    out, records = logged
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("two-moons").experiment_id])
    assert sorted(r.data.tags["uqbench.id"] for r in runs) == sorted(records)
    for run in runs:
        record = records[run.data.tags["uqbench.id"]]
        assert run.data.params["method"] == record["key"]["method"]
        assert run.data.params["recipe.epochs"] == "3"
        assert run.data.metrics["nll"] == pytest.approx(record["metrics"]["nll"])
        (curve,) = record["curves"]
        history = client.get_metric_history(run.info.run_id, f"curve.{curve['stage']}.train")
        assert [m.step for m in history] == [1, 2, 3] and [m.value for m in history] == pytest.approx(curve["train"])


def test_tensorboard_gets_one_event_folder_per_run(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, records = logged
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == sorted(records)
    for run_id, record in records.items():
        events = EventAccumulator(str(out / "tensorboard" / run_id))
        events.Reload()
        assert events.Scalars("metrics/accuracy")[0].value == pytest.approx(record["metrics"]["accuracy"])
        (curve,) = record["curves"]
        losses = [e.value for e in events.Scalars(f"curves/{curve['stage']}/train")]
        assert losses == pytest.approx(curve["train"])


def test_run_logs_what_it_computed_now_only(cli, tmp_path, monkeypatch, torch_state):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ("run", "map", "--task", "two-moons", "--epochs", "2", "--out", tmp_path, "--log", "tensorboard", "-q")
    assert cli(*args).exit_code == 0 and cli(*args).exit_code == 0  # the second finds the record stored
    (folder,) = (tmp_path / "tensorboard").iterdir()
    assert len(list(folder.iterdir())) == 1  # one event file: the run was logged once


def test_bad_log_options_are_one_line(cli, tmp_path, monkeypatch):
    result = cli("compare", *SMALL, "--log", "wandb", "--out", tmp_path)
    assert result.exit_code == 2 and result.stderr == "error: --log 'wandb': expected one of mlflow, tensorboard\n"
    result = cli("compare", *SMALL, "--log", "mlflow", "--no-run", "--out", tmp_path)
    assert result.exit_code == 2 and "--no-run runs nothing, so --log would do nothing" in result.stderr
    import importlib

    real = importlib.import_module

    def without_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_mlflow)
    result = cli("run", "map", "--task", "two-moons", "--log", "mlflow", "--out", tmp_path / "none")
    assert result.exit_code == 2
    assert result.stderr == 'error: --log mlflow: it is not installed; pip install "uqbench[mlflow]"\n'
    assert not (tmp_path / "none").exists()
