"""Optional experiment tracking (`--log mlflow`, `--log tensorboard`): every run stored now also goes to MLflow or
TensorBoard with its resolved config, its metrics and its training curves. The trackers are extras, imported only
when asked (`pip install "uqbench[mlflow]"` or `"uqbench[tensorboard]"`); they write inside the results folder:
`<out>/mlruns` (an MLflow file store, unless `MLFLOW_TRACKING_URI` names another; `mlflow ui --backend-store-uri
<out>/mlruns`) and `<out>/tensorboard/<id>`
(`tensorboard --logdir <out>/tensorboard`).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

from uqbench.errors import BadConfig
from uqbench.results import RunRecord

TRACKERS = {"mlflow": "mlflow", "tensorboard": "torch.utils.tensorboard"}  # --log name -> the module it needs
EXTRAS = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


class Tracker(Protocol):
    def log(self, record: RunRecord) -> None: ...


def trackers(names: list[str] | tuple[str, ...], out: Path) -> list[Tracker]:
    """The trackers `--log` names (checked before any run: an unknown name or a missing extra is BadConfig)."""
    made: list[Tracker] = []
    for name in dict.fromkeys(names):
        if name not in TRACKERS:
            raise BadConfig(f"--log {name!r}: expected one of {', '.join(TRACKERS)}")
        try:
            importlib.import_module(TRACKERS[name])
        except ImportError:
            raise BadConfig(f"--log {name}: it is not installed; pip install \"uqbench[{EXTRAS[name]}]\"") from None
        made.append(MLflow(out / "mlruns") if name == "mlflow" else TensorBoard(out / "tensorboard"))
    return made


def params(record: RunRecord) -> dict[str, str]:
    """The run's resolved config, flat: 'method_config.p' -> '0.05', ... (every key field but the data)."""
    key = record.key
    flat = {"method": key.method, "task": key.task, "seed": key.seed, "split": key.split, "id": record.id}
    for part in ("method_config", "task_config", "recipe", "backbone"):
        flat.update({f"{part}.{k}": v for k, v in getattr(key, part).items()})
    return {k: json.dumps(v) if not isinstance(v, str) else v for k, v in flat.items()}


def _name(record: RunRecord) -> str:
    return f"{record.key.method} on {record.key.task}, seed {record.key.seed} split {record.key.split}"


class MLflow:
    """One MLflow run per uqbench run, in the experiment named after the task: at `MLFLOW_TRACKING_URI` when set
    (a server, a database), else in a file store in the results folder (MLflow 3 keeps file stores in maintenance
    mode and asks for an opt-in, given here for this store only: it needs no database package)."""

    def __init__(self, root: Path):
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = root.resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)

    def log(self, record: RunRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        experiment = self.client.get_experiment_by_name(record.key.task)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(record.key.task)
        run = self.client.create_run(experiment_id, run_name=_name(record), tags={"uqbench.id": record.id})
        metrics = [Metric(k, v, 0, 0) for k, v in record.metrics.items() if v is not None]
        for curve in record.curves:
            for part in ("train", "val"):
                metrics += [Metric(f"curve.{curve['stage']}.{part}", v, 0, step)
                            for step, v in enumerate(curve[part] or (), start=1) if v is not None]
        self.client.log_batch(run.info.run_id, metrics=metrics,
                              params=[Param(k, v[:6000]) for k, v in params(record).items()],
                              tags=[RunTag("uqbench.status", record.status)])
        self.client.set_terminated(run.info.run_id, "FINISHED" if record.status == "ok" else "FAILED")


class TensorBoard:
    """One event folder per uqbench run: its config as text, its metrics and curves as scalars."""

    def __init__(self, root: Path):
        self.root = root

    def log(self, record: RunRecord) -> None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(self.root / record.id)) as writer:
            writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in params(record).items()))
            for key, value in record.metrics.items():
                if value is not None:
                    writer.add_scalar(f"metrics/{key}", value, 0)
            for curve in record.curves:
                for part in ("train", "val"):
                    for step, value in enumerate(curve[part] or (), start=1):
                        if value is not None:
                            writer.add_scalar(f"curves/{curve['stage']}/{part}", value, step)


def log_all(made: list[Tracker], record: RunRecord) -> None:
    for tracker in made:
        tracker.log(record)


__all__ = ["TRACKERS", "MLflow", "TensorBoard", "Tracker", "log_all", "params", "trackers"]
