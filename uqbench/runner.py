"""From names and options to run records: resolve configs, plan jobs, run one job, skip finished ones.

The flow of one run: task.load(seed, split) -> method.fit(data, ctx) -> predictor.predict(x) ->
metrics.evaluate(prediction, targets, OOD scores) -> record -> store. Each arrow is a plain function call.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import uqbench
from uqbench import config as cfgmod
from uqbench.artifacts import ArtifactCache
from uqbench.errors import BadConfig, RunFailed, UserError
from uqbench.methods import FitContext, Method, Predictor, methods
from uqbench.methods.base import ood_score
from uqbench.metrics import default_ood_score, evaluate
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction
from uqbench.results import ResultStore, RunKey, RunRecord, clean_metrics
from uqbench.tasks import Task, TaskData, tasks
from uqbench.training import NullProgress, Progress, seeded

PREDICT_BATCH = 1024


@dataclass(frozen=True)
class Spec:
    """A method and a task with their resolved configs: everything but the seed and split of a run."""

    method: Method
    task: Task

    def key(self, seed: int, split: int) -> RunKey:
        return RunKey(
            method=self.method.name,
            method_config=cfgmod.to_dict(self.method.config),
            task=self.task.name,
            task_config=cfgmod.to_dict(self.task.config),
            seed=seed,
            split=split,
        )


@dataclass
class RunOptions:
    """How runs are executed (nothing here changes a run's result, so nothing here is in its key)."""

    out: Path = Path("results")
    device: str = "auto"
    save_predictions: bool = False
    force: bool = False
    progress: Progress = field(default_factory=NullProgress)


def resolve(
    method_name: str,
    task_name: str,
    assignments: list[str] = (),  # type: ignore[assignment]
    data_dir: Path | None = None,
    epochs: int | None = None,
) -> Spec:
    """Look up a method and a task and build their configs from `--set key=value` assignments.

    An unqualified key goes to whichever of the two configs has it; `method.key` / `task.key` choose
    explicitly. Raises UnknownName, BadConfig or Unsupported (all exit code 2).
    """
    method_cls, task_cls = methods.get(method_name), tasks.get(task_name)
    method_types, task_types = cfgmod.field_types(method_cls.Config), cfgmod.field_types(task_cls.Config)
    overrides: dict[str, dict[str, Any]] = {"method": {}, "task": {}}
    if epochs is not None:
        overrides["task"]["epochs"] = epochs
    for text in assignments:
        key, value = cfgmod.parse_assignment(text)
        where, _, name = key.rpartition(".")
        if where not in ("", "method", "task"):
            raise BadConfig(f"--set {text}: prefix must be 'method.' or 'task.'; got {where!r}")
        if not where:
            owners = [w for w, t in (("method", method_types), ("task", task_types)) if name in t]
            if len(owners) > 1:
                raise BadConfig(f"--set {text}: {name!r} is both a method and a task key; write method.{name} or task.{name}")
            if not owners:
                raise BadConfig(
                    f"--set {text}: unknown key {name!r}; method {method_name!r} takes: "
                    f"{', '.join(method_types) or 'nothing'}; task {task_name!r} takes: {', '.join(task_types)}"
                )
            where = owners[0]
        types = method_types if where == "method" else task_types
        owner = f"method {method_name!r}" if where == "method" else f"task {task_name!r}"
        if name not in types:
            raise BadConfig(f"--set {text}: unknown key {name!r} for {owner}; valid keys: {', '.join(types)}")
        try:
            overrides[where][name] = cfgmod.coerce(types[name], value)
        except ValueError:
            raise BadConfig(
                f"--set {text}: {name!r} of {owner} must be {cfgmod.describe_type(types[name])}; got {value!r}"
            ) from None
    method = method_cls(cfgmod.build(method_cls.Config, overrides["method"], f"method {method_name!r}"))
    task = task_cls(cfgmod.build(task_cls.Config, overrides["task"], f"task {task_name!r}"), data_dir=data_dir)
    method.check_kind(task.kind, task_name)
    return Spec(method, task)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadConfig("--device cuda: no CUDA device is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise BadConfig(f"--device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


class Runner:
    """Runs jobs into a result store, sharing one artifact cache between them."""

    def __init__(self, options: RunOptions):
        self.options = options
        self.store = ResultStore(options.out)
        self.device = resolve_device(options.device)
        self.artifacts = ArtifactCache(options.out / "artifacts")

    def run(self, spec: Spec, seed: int, split: int) -> tuple[RunRecord, bool]:
        """The record for (spec, seed, split) and whether it was computed now (False: taken from the store)."""
        key = spec.key(seed, split)
        if self.store.has(key) and not self.options.force:
            return self.store.load(key.id), False
        record = self.execute(spec, seed, split)
        self.store.write(record)
        return record, True

    def execute(self, spec: Spec, seed: int, split: int) -> RunRecord:
        """Train, predict and evaluate one run; a RunFailed (or a crash inside the method) gives a failed record."""
        key = spec.key(seed, split)
        record = RunRecord(key=key, status="ok", method_source=methods.origin(spec.method.name), env=environment(self.device))
        record.created_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        phase = "load"
        try:
            data = spec.task.load(seed, split)
            record.data_sha256, record.info = dict(data.data_sha256), dict(data.info)
            record.n = {"train": len(data.train), "val": len(data.val) if data.val else 0, "test": len(data.test)}
            record.n.update({f"ood.{k}": int(v.shape[0]) for k, v in data.ood.items()})
            self.artifacts.used.clear()
            ctx = FitContext(
                train_config=spec.task.config,
                backbone=data.backbone,
                seed=seed,
                device=self.device,
                artifacts=self.artifacts,
                artifact_key={"task": key.task, "task_config": key.task_config, "seed": seed, "split": split},
                progress=self.options.progress,
                train_transform=data.train_transform,
            )
            with seeded(seed):
                phase = "fit"
                t0 = time.perf_counter()
                predictor = spec.method.fit(data, ctx)
                record.timings_s["fit"] = time.perf_counter() - t0
                record.info.update(getattr(predictor, "info", {}))
                record.info.setdefault("n_params", count_parameters(predictor))
                record.artifacts["backbone"] = next(iter(self.artifacts.used), None)
                phase = "predict"
                t0 = time.perf_counter()
                outputs = predict_all(predictor, data, self.device)
                record.timings_s["predict"] = time.perf_counter() - t0
            phase = "evaluate"
            t0 = time.perf_counter()
            metrics = evaluate(outputs.test, outputs.targets, outputs.score, outputs.ood_scores)
            record.metrics, record.warnings = clean_metrics(metrics)
            record.timings_s["evaluate"] = time.perf_counter() - t0
            if self.options.save_predictions:
                record.predictions = f"{key.id}.npz"
                save_predictions(self.options.out / record.predictions, outputs)
        except UserError:
            raise
        except Exception as exc:  # one failed run (RunFailed, or a crash inside a method) must not stop the others
            record.status, record.metrics = "failed", {}
            record.error = {"phase": phase, "type": type(exc).__name__, "message": str(exc)}
            if not isinstance(exc, RunFailed):
                record.error["traceback"] = traceback.format_exc(limit=8)
        return record


@dataclass
class Outputs:
    """Predictions of one run, regression ones in original target units."""

    test: Prediction
    targets: Tensor
    score: Tensor
    ood: dict[str, Prediction]
    ood_scores: dict[str, Tensor]


def predict_all(predictor: Predictor, data: TaskData, device: torch.device) -> Outputs:
    """Predict the test set and every OOD set in batches; undo the target scaling for regression."""
    test, score = _predict(predictor, data.test.x, device)
    targets = data.test.y
    if data.kind == "regression":
        assert data.target_loc is not None and data.target_scale is not None
        loc, scale = data.target_loc, data.target_scale
        test, targets = test.rescale(loc, scale), targets * scale + loc
    ood, ood_scores = {}, {}
    for name, x in data.ood.items():
        pred, s = _predict(predictor, x, device)
        if data.kind == "regression":
            pred = pred.rescale(data.target_loc, data.target_scale)
        ood[name], ood_scores[name] = pred, default_ood_score(pred) if s is None else s
    return Outputs(test, targets, default_ood_score(test) if score is None else score, ood, ood_scores)


@torch.no_grad()
def _predict(predictor: Predictor, x: Tensor, device: torch.device) -> tuple[Prediction, Tensor | None]:
    preds, scores = [], []
    for i in range(0, x.shape[0], PREDICT_BATCH):
        xb = x[i : i + PREDICT_BATCH].to(device)
        preds.append(_to_cpu(predictor.predict(xb)))
        s = ood_score(predictor, xb)
        if s is not None:
            scores.append(s.detach().float().cpu())
    pred = type(preds[0]).concat(preds)
    return pred, torch.cat(scores) if scores else None


def _to_cpu(p: Prediction) -> Prediction:
    fields = {f.name: getattr(p, f.name).detach().float().cpu() for f in dataclasses.fields(p)}
    return type(p)(**fields)


def save_predictions(path: Path, out: Outputs) -> None:
    """Write the predictions as .npz (see the README for the array names)."""
    arrays: dict[str, np.ndarray] = {"targets": out.targets.numpy(), "score": out.score.numpy()}
    arrays.update(_arrays("", out.test))
    for name, pred in out.ood.items():
        arrays.update(_arrays(f"ood_{name}_", pred))
        arrays[f"ood_{name}_score"] = out.ood_scores[name].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(path)


def _arrays(prefix: str, pred: Prediction) -> dict[str, np.ndarray]:
    if isinstance(pred, Categorical):
        return {f"{prefix}probs": pred.probs.numpy()}
    g = pred.moments() if isinstance(pred, GaussianMixture) else pred
    assert isinstance(g, Gaussian)
    return {f"{prefix}mean": g.mean.numpy(), f"{prefix}var": g.var.numpy()}


def count_parameters(predictor: Predictor) -> int | None:
    """Number of network parameters (elements of every `nn.Parameter`, each counted once) in the modules the
    predictor holds as attributes, directly or in a list, tuple or dict; None when it holds no module.

    Buffers (running statistics, posterior covariances) are not counted; a predictor whose cost lies elsewhere
    states it as `info["n_params"]`, which takes precedence.
    """
    params: dict[int, int] = {}
    stack, seen = list(getattr(predictor, "__dict__", {}).values()), set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            params.update((id(p), p.numel()) for p in obj.parameters())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return sum(params.values()) if params else None


@functools.lru_cache(maxsize=4)
def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts stored in every record."""
    return {
        "uqbench": uqbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(uqbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


__all__ = ["RunOptions", "Runner", "Spec", "resolve", "resolve_device", "predict_all"]
