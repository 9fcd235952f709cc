"""Run one `RunSpec`: load the task's data, fit the method, predict, evaluate, and make its record.

The flow of one run: task.load(seed, split) -> method.fit(data, ctx) -> predictor.predict(x) ->
metrics.evaluate(prediction, targets, OOD scores) -> record -> store. Each arrow is a plain function call. What a
run is comes from `uqbench.spec`; how it is executed (device, where files are, what is kept) from `RunOptions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import io
import math
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
from uqbench.artifacts import ArtifactCache
from uqbench.checkpoints import DEFAULT_EVERY, Checkpoints
from uqbench.errors import BadConfig, RunFailed, UserError
from uqbench.methods import FitContext, Predictor
from uqbench.methods.base import ood_score
from uqbench.metrics import default_ood_score, evaluate, evaluate_shifted
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction
from uqbench.files import write_atomic
from uqbench.results import ResultStore, RunRecord, clean_metrics
from uqbench.search import best
from uqbench.spec import RunSpec
from uqbench.tasks import TaskData
from uqbench.training import NullProgress, Progress, mixed_precision, seeded, torch_threads

PREDICT_BATCH = 1024


@dataclass
class RunOptions:
    """How runs are executed (nothing here changes a run's result, so nothing here is in its key).

    Attributes:
        out: the results directory (records, artifacts, saved predictions).
        device: 'auto', 'cpu' or 'cuda'.
        data_dir: where tasks read their files (None: the cache, downloading what is missing).
        save_predictions: also write `<id>.npz`.
        force: re-run runs the store holds, and retrain the artifacts they use that were stored before
            `refresh_since`.
        retry: re-run runs the store holds as failed.
        refresh_since: see `force` (set by the CLI to the time the command started).
        progress: receives training progress.
        threads: torch's intra-op threads for each run (`--threads`; None: torch's default, or the worker's share
            of the cores). The count is in every record (`env.threads`): it changes the last bits of some sums.
        checkpoint_every: save each training call's state every this many epochs (and at its end), so that a
            killed run resumes from it (`uqbench.checkpoints`); 0: no checkpoints.
    """

    out: Path = Path("results")
    device: str = "auto"
    data_dir: Path | None = None
    save_predictions: bool = False
    force: bool = False
    retry: bool = True
    refresh_since: float | None = None
    progress: Progress = field(default_factory=NullProgress)
    threads: int | None = None
    checkpoint_every: int = DEFAULT_EVERY


def _finite(values: list[float]) -> list[float | None]:
    """Losses for JSON: a non-finite one as null."""
    return [v if math.isfinite(v) else None for v in values]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadConfig("--device cuda: no CUDA device is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise BadConfig(f"--device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


def check_runnable(specs: list[RunSpec], device: str) -> None:
    """BadConfig, before anything is written, when this machine cannot run the specs: no such device, or a
    precision it lacks (`fp16` off CUDA). For runs that go elsewhere (Ray on a cluster) the workers judge."""
    where = resolve_device(device)
    for precision in sorted({spec.recipe.precision for spec in specs}):
        mixed_precision(where, precision)


def wanted(record: RunRecord | None, options: RunOptions, need_predictions: bool = False) -> bool:
    """Whether a run must be (re-)run, given its stored record (None: not in the store)."""
    if record is None or options.force:
        return True
    if record.status == "failed":
        return options.retry
    return need_predictions and (record.predictions is None or not (options.out / record.predictions).is_file())


class Runner:
    """Runs specs into a result store, sharing one artifact cache between them."""

    def __init__(self, options: RunOptions):
        self.options = options
        self.store = ResultStore(options.out, quarantine=True)
        self.device = resolve_device(options.device)
        self.refresh = options.refresh_since if options.force else None
        self.artifacts = ArtifactCache(options.out / "artifacts", refresh_since=self.refresh)

    def run(self, spec: RunSpec) -> tuple[RunRecord, bool]:
        """The record of `spec` and whether it was computed now (False: taken from the store).

        A computed record is stored unless its status is 'error' (a failure of the environment, not a result).
        """
        key = spec.key()
        stored = self.store.get(key.id)
        if not wanted(stored, self.options, self.options.save_predictions):
            return stored, False  # type: ignore[return-value]
        record = self.execute(spec)
        if record.status != "error":
            self.store.write(record)
        return record, True

    def execute(self, spec: RunSpec) -> RunRecord:
        """Train, predict and evaluate one run (after its hyperparameter search, if it has one), on
        `options.threads` threads when set. A RunFailed or a crash inside the method gives a 'failed' record; a
        UserError (data missing or changed, a setting this machine cannot run) an 'error' record."""
        threads = self.options.threads
        with torch_threads(threads) if threads is not None else contextlib.nullcontext():
            return self._execute(spec)

    def _execute(self, spec: RunSpec) -> RunRecord:
        key = spec.key()
        record = RunRecord(key=key, status="ok", method_source=key.code.get("method", "builtin"),
                           env=environment(self.device))
        record.created_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        phase = ["load"]  # the phase the run is in, kept up to date by _fit_predict for the error message
        checkpoints = Checkpoints(self.artifacts.directory, key.id, self.options.checkpoint_every, self.refresh)
        label = f"{spec.method} on {spec.task}, seed {spec.seed} split {spec.split}"
        try:
            task = spec.make_task(self.options.data_dir)
            data = task.load(spec.seed, spec.split)
            if data.data_sha256 != spec.data:
                raise DataChanged(spec, data.data_sha256)
            record.data_sha256, record.info = dict(data.data_sha256), dict(data.info)
            record.n = {"train": len(data.train), "val": len(data.val) if data.val else 0, "test": len(data.test)}
            record.n.update({f"ood.{k}": int(v.shape[0]) for k, v in data.ood.items()})
            if data.shifted:  # every shifted set of a task has the test set's size (a gap: its own, one set)
                record.n["shift"] = len(data.shifted[0].y)
                record.info["shifted_sets"] = len(data.shifted)
            fitted = spec
            if spec.search is not None:
                phase[0] = "search"
                t0 = time.perf_counter()
                chosen, record.info["search"] = self._search(spec, task, label, checkpoints)
                record.timings_s["search"] = time.perf_counter() - t0
                fitted = dataclasses.replace(spec.with_values(chosen), search=None)
            self._label(label)
            predictor, outputs = self._fit_predict(fitted, data, checkpoints, record, phase)
            if checkpoints.resumed():
                record.info["resumed"] = checkpoints.resumed()
            phase[0] = "evaluate"
            t0 = time.perf_counter()
            metrics = evaluate(outputs.test, outputs.targets, outputs.score, outputs.ood_scores)
            metrics.update(evaluate_shifted(outputs.shifted))
            record.metrics, record.warnings = clean_metrics(metrics)
            record.timings_s["evaluate"] = time.perf_counter() - t0
            if self.options.save_predictions:
                phase[0] = "predict"
                with seeded(spec.seed):
                    grid = predict_grid(predictor, data, self.device)
                record.predictions = f"{key.id}.npz"
                save_predictions(self.options.out / record.predictions, outputs, grid)
        except UserError as exc:  # the environment or a setting this machine cannot run: not a result
            record.status, record.metrics = "error", {}
            record.error = {"phase": phase[0], "type": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # one failed run (RunFailed, or a crash inside a method) must not stop the others
            record.status, record.metrics = "failed", {}
            record.error = {"phase": phase[0], "type": type(exc).__name__, "message": str(exc)}
            if not isinstance(exc, RunFailed):
                record.error["traceback"] = traceback.format_exc(limit=8)
        return record

    def _fit_predict(self, spec: RunSpec, data: TaskData, checkpoints: Checkpoints, record: RunRecord | None = None,
                     phase: list[str] | None = None) -> tuple[Predictor, Outputs]:
        """Fit the spec's method on `data` (its training calls checkpointed in `checkpoints`) and predict its
        test and OOD sets; fills the record's timings, info and artifacts when one is given."""
        phase = phase if phase is not None else [""]
        self.artifacts.used.clear()
        ctx = FitContext(
            recipe=spec.recipe,
            backbone=spec.backbone.spec(data.in_shape),
            seed=spec.seed,
            device=self.device,
            artifacts=self.artifacts,
            artifact_key=spec.shared_key(),
            progress=self.options.progress,
            train_transform=data.train_transform,
            checkpoints=checkpoints,
        )
        with seeded(spec.seed):
            phase[0] = "fit"
            t0 = time.perf_counter()
            predictor = spec.make_method().fit(data, ctx)
            fit_s = time.perf_counter() - t0
            phase[0] = "predict"
            t0 = time.perf_counter()
            outputs = predict_all(predictor, data, self.device)
            predict_s = time.perf_counter() - t0
        if record is not None:
            record.timings_s.update(fit=fit_s, predict=predict_s)
            record.info.update(getattr(predictor, "info", {}))
            record.info.setdefault("n_params", count_parameters(predictor))
            record.artifacts["backbone"] = next(iter(self.artifacts.used), None)
            record.curves = [{**c, "train": _finite(c["train"]), "val": None if c["val"] is None else _finite(c["val"])}
                             for c in ctx.curves]
        return predictor, outputs

    def _search(self, spec: RunSpec, task, label: str,
                checkpoints: Checkpoints) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
        """Score every grid point on the validation part; returns the best point and the report for the record.

        A candidate whose training fails (a NaN loss, say) scores worst and is recorded with its error.
        """
        search = spec.search
        assert search is not None
        held_out = task.load_holdout(spec.seed, spec.split, search.holdout)
        data = {**spec.data, "holdout": search.holdout.describe()}  # its own artifacts: it trains on fewer rows
        candidates, report = search.candidates(), []
        for i, values in enumerate(candidates):
            self._label(f"{label}, candidate {i + 1}/{len(candidates)}")
            candidate = dataclasses.replace(spec.with_values(values), search=None, data=data)
            entry: dict[str, Any] = {"settings": {f"{p}.{k}": v for (p, k), v in values.items()}}
            try:
                _, outputs = self._fit_predict(candidate, held_out, checkpoints)
                scores = evaluate(outputs.test, outputs.targets, outputs.score, outputs.ood_scores)
                entry["score"] = clean_metrics({search.metric: scores[search.metric]})[0][search.metric]
            except UserError:
                raise
            except Exception as exc:
                entry.update(score=None, error=f"{type(exc).__name__}: {exc}")
            report.append(entry)
        chosen = best([e["score"] for e in report], search.metric)
        if report[chosen]["score"] is None:
            raise RunFailed(f"every candidate of the search failed; the first: {report[0]['error']}")
        summary = {**search.to_dict(), "n_train": len(held_out.train), "n_validation": len(held_out.test),
                   "candidates": report, "chosen": report[chosen]["settings"]}
        return candidates[chosen], summary

    def _label(self, text: str) -> None:
        """Name the run (and search candidate) the training progress belongs to."""
        if hasattr(self.options.progress, "label"):
            self.options.progress.label = text


class DataChanged(UserError):
    """The data a run read is not the data its key names (a file changed after the run was planned)."""

    def __init__(self, spec: RunSpec, read: dict[str, str]):
        changed = sorted(k for k in {*spec.data, *read} if spec.data.get(k) != read.get(k))
        super().__init__(f"the data of {spec.task} split {spec.split} changed after the run was planned "
                         f"({', '.join(changed[:3])}); plan it again")


@dataclass
class Outputs:
    """Predictions of one run, regression ones in original target units."""

    test: Prediction
    targets: Tensor
    score: Tensor
    ood: dict[str, Prediction]
    ood_scores: dict[str, Tensor]
    shifted: list[tuple[str, int | None, Prediction, Tensor]] = field(default_factory=list)  # name, severity, ...


def predict_all(predictor: Predictor, data: TaskData, device: torch.device) -> Outputs:
    """Predict the test set, every OOD set and every shifted set in batches; undo the target scaling for
    regression. A shifted set's inputs are built one set at a time, and let go once predicted."""
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
    shifted = []
    for part in data.shifted:
        pred, _ = _predict(predictor, part.inputs(), device)
        y = part.y
        if data.kind == "regression":
            pred, y = pred.rescale(data.target_loc, data.target_scale), y * data.target_scale + data.target_loc
        shifted.append((part.name, part.severity, pred, y))
    return Outputs(test, targets, default_ood_score(test) if score is None else score, ood, ood_scores, shifted)


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


GRID_POINTS = 400  # the dense input grid whose predictions are saved for regression tasks with one input
GRID_MARGIN = 0.1  # how far the grid reaches beyond the inputs, as a fraction of their range, at each end


def input_grid(data: TaskData) -> Tensor | None:
    """GRID_POINTS evenly spaced inputs [G, 1] in the task's input units, spanning the training inputs and every OOD
    set with a margin of GRID_MARGIN of that range at each end; None unless the task is regression with one input."""
    if data.kind != "regression" or data.in_shape != (1,):
        return None
    seen = torch.cat([data.train.x, *data.ood.values()])[:, 0]
    lo, hi = float(seen.min()), float(seen.max())
    margin = GRID_MARGIN * (hi - lo) or 1.0  # one distinct input: a grid of width 2 around it
    return torch.linspace(lo - margin, hi + margin, GRID_POINTS, dtype=data.train.x.dtype)[:, None]


def predict_grid(predictor: Predictor, data: TaskData, device: torch.device) -> tuple[Tensor, Prediction] | None:
    """The predictions on `input_grid(data)` in original target units, with the grid; None where it has none."""
    x = input_grid(data)
    if x is None:
        return None
    pred, _ = _predict(predictor, x, device)
    return x, pred.rescale(data.target_loc, data.target_scale)


def save_predictions(path: Path, out: Outputs, grid: tuple[Tensor, Prediction] | None = None) -> None:
    """Write the predictions as .npz (see the README for the array names); with `grid` (inputs [G, 1], their
    predictions) also `grid_x`, `grid_mean` and `grid_var`."""
    arrays: dict[str, np.ndarray] = {"targets": out.targets.numpy(), "score": out.score.numpy()}
    arrays.update(_arrays("", out.test))
    for name, pred in out.ood.items():
        arrays.update(_arrays(f"ood_{name}_", pred))
        arrays[f"ood_{name}_score"] = out.ood_scores[name].numpy()
    if grid is not None:
        arrays["grid_x"] = grid[0].numpy()
        arrays.update(_arrays("grid_", grid[1]))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


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


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts stored in every record; the thread count as it is now (`--threads` changes it)."""
    return {**_fixed_environment(str(device)), "threads": torch.get_num_threads()}


@functools.lru_cache(maxsize=4)
def _fixed_environment(device: str) -> dict[str, Any]:
    return {
        "uqbench": uqbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "platform": f"{platform.system()}-{platform.machine()}",
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The commit of uqbench's source when it is a git checkout, else None (never an error)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(uqbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


__all__ = ["RunOptions", "Runner", "predict_all", "resolve_device", "wanted"]
