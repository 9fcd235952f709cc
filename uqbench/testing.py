"""Public conformance checks for methods and tasks (after scikit-learn's check_estimator).

Plugin authors run the same checks the uqbench test suite runs over every registered method and task:

    from uqbench.testing import check_method, check_task
    check_method(MyMethod)            # raises AssertionError naming the failed check
    check_task(MyTask)                # the same for a task (a config too, when the defaults read no data)

Besides fitting tiny tasks, `check_method` builds the method's Config with the values its declared constraints
refuse (`invalid_values`: just outside every declared range, infinity, an unknown choice), so a method writes no
validation tests of its own for single fields.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import random
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from torch import Tensor

from uqbench.config import Interval, build, field_constraints, field_types
from uqbench.errors import BadConfig, Unsupported
from uqbench.methods.base import FitContext, Method, ood_score
from uqbench.methods.map import MAP
from uqbench.metrics import evaluate
from uqbench.models import BackboneSpec
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction
from uqbench.runner import predict_all
from uqbench.search import Holdout
from uqbench.tasks.base import KINDS, Split, Task, TaskData, TaskKind, tasks
from uqbench.training import TrainConfig, seeded

N_TRAIN, N_TEST, N_OOD, N_CLASSES, IN_DIM = 96, 40, 16, 3, 2


def tiny_task(kind: TaskKind, seed: int = 0) -> TaskData:
    """A small in-memory task of `kind`: 2-D inputs, 3 classes or 1 regression output, one OOD set 'far'."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_TEST, IN_DIM, generator=g)
    if kind == "classification":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    else:
        y = torch.sin(2 * x[:, :1]) + 0.1 * torch.randn(N_TRAIN + N_TEST, 1, generator=g)
    return TaskData(
        kind=kind,
        train=Split(x[:N_TRAIN], y[:N_TRAIN]),
        test=Split(x[N_TRAIN:], y[N_TRAIN:]),
        val=Split(x[:N_TEST], y[:N_TEST]),
        out_dim=N_CLASSES if kind == "classification" else 1,
        ood={"far": 6 + torch.randn(N_OOD, IN_DIM, generator=g)},
        target_loc=None if kind == "classification" else torch.zeros(1),
        target_scale=None if kind == "classification" else torch.ones(1),
    )


def tiny_context(seed: int = 0) -> FitContext:
    """A FitContext for `tiny_task`: 3 epochs, batch 32."""
    return FitContext(recipe=TrainConfig(epochs=3, batch_size=32, lr=1e-2), backbone=BackboneSpec("mlp", (IN_DIM,), 16, 2), seed=seed)


def check_method(method_cls: type[Method]) -> None:
    """Run every conformance check on a Method subclass; raises AssertionError naming the failed check."""
    _check_config(method_cls)
    _check_declared_constraints(method_cls)
    for kind in KINDS:
        if kind in method_cls.kinds:
            _check_fit(method_cls, kind)
        else:
            _check_unsupported(method_cls, kind)


def _check_config(method_cls: type[Method]) -> None:
    assert dataclasses.is_dataclass(method_cls.Config), f"{method_cls.__name__}.Config is not a dataclass"
    config = method_cls.Config()
    text = json.dumps(dataclasses.asdict(config))
    assert method_cls.Config(**json.loads(text)) == config, "Config does not round-trip through JSON"
    assert method_cls.summary(), f"{method_cls.__name__} has no docstring summary"


def _check_declared_constraints(method_cls: type[Method]) -> None:
    """Every value outside a field's declared range or choices is refused with a BadConfig naming the field."""
    owner = f"method {method_cls.name or method_cls.__name__!r}"
    for name, value in invalid_values(method_cls.Config):
        try:
            build(method_cls.Config, {name: value}, owner)
        except BadConfig as exc:
            assert repr(name) in str(exc), f"the error for {name}={value!r} does not name {name!r}: {exc}"
        else:
            raise AssertionError(f"{method_cls.__name__}.Config accepts {name}={value!r}, outside its declared range")


def invalid_values(config_cls: type) -> list[tuple[str, Any]]:
    """(field, value) pairs that a config's declared constraints refuse: for every `Interval` on a field, the
    values just outside each finite bound (integers for an integer field) and infinity; for every `Literal`
    field, a string that is not among its choices."""
    types_ = field_types(config_cls)
    bad: list[tuple[str, Any]] = []
    for name, intervals in field_constraints(config_cls).items():
        integer = int in _members(types_[name])
        bad += [(name, value) for interval in intervals for value in _outside(interval, integer)]
    return bad + [(name, "not-a-choice") for name, tp in types_.items() if _has_choices(tp)]


def _outside(interval: Interval, integer: bool) -> list[float]:
    values: list[float] = [math.inf]
    if interval.low is not None:
        values.append(_below(interval.low, interval.closed in ("both", "left"), integer))
    if interval.high is not None:  # mirrored: just above `high` is minus just below `-high`
        values.append(-_below(-interval.high, interval.closed in ("both", "right"), integer))
    return values


def _below(low: float, closed: bool, integer: bool) -> float:
    """The value nearest to a lower bound `low` that the bound excludes (the bound itself when it is open)."""
    if integer:
        return math.ceil(low) - 1 if closed else math.floor(low)
    return math.nextafter(low, -math.inf) if closed else float(low)


def _members(tp: Any) -> tuple[Any, ...]:
    """The types a field admits: the arguments of a union, else the type itself."""
    return typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)


def _has_choices(tp: Any) -> bool:
    return any(typing.get_origin(t) is Literal for t in _members(tp))


def _fit_predict(method: Method, data: TaskData, seed: int) -> tuple[object, Prediction, torch.Tensor | None]:
    with seeded(seed):
        predictor = method.fit(data, tiny_context(seed))
        with torch.no_grad():
            pred = predictor.predict(data.test.x)
            score = ood_score(predictor, data.ood["far"])
    return predictor, pred, score


def _check_fit(method_cls: type[Method], kind: TaskKind) -> None:
    method = method_cls()
    before = dataclasses.asdict(method.config)
    data = tiny_task(kind)
    predictor, pred, score = _fit_predict(method, data, seed=0)
    assert dataclasses.asdict(method.config) == before, "fit mutated the method's config"
    _check_prediction(pred, kind, data)
    if score is not None:
        assert score.shape == (N_OOD,), f"ood_score must be [N]; got {tuple(score.shape)}"
        assert torch.isfinite(score).all(), "ood_score has non-finite values"
    _, pred2, score2 = _fit_predict(method_cls(), data, seed=0)
    assert _same(pred, pred2), f"two fits with the same seed differ ({kind})"
    assert (score is None) == (score2 is None) and (score is None or torch.equal(score, score2)), "ood_score not reproducible"
    buf = io.BytesIO()
    pickle.dump(predictor, buf)
    clone = pickle.loads(buf.getvalue())
    with seeded(0), torch.no_grad():
        again = clone.predict(data.test.x)
    _check_prediction(again, kind, data)


def _check_prediction(pred: Prediction, kind: TaskKind, data: TaskData) -> None:
    n = len(data.test)
    if kind == "classification":
        assert isinstance(pred, Categorical), f"classification must predict Categorical; got {type(pred).__name__}"
        assert pred.probs.shape == (n, data.out_dim), f"probs must be [{n}, {data.out_dim}]"
    else:
        assert isinstance(pred, (Gaussian, GaussianMixture)), f"regression must predict a Gaussian; got {type(pred).__name__}"
        assert pred.moments().mean.shape == (n, data.out_dim), f"mean must be [{n}, {data.out_dim}]"
    for f in dataclasses.fields(pred):
        assert getattr(pred, f.name).dtype.is_floating_point, f"{f.name} must be a float tensor"


def _same(a: Prediction, b: Prediction) -> bool:
    return type(a) is type(b) and all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def _check_unsupported(method_cls: type[Method], kind: TaskKind) -> None:
    try:
        method_cls().check_kind(kind)
    except Unsupported:
        return
    raise AssertionError(f"{method_cls.__name__}.check_kind({kind!r}) must raise Unsupported")


# -- tasks ----------------------------------------------------------------------------------------------------
def check_task(task_cls: type[Task], config: Any | None = None, *, data_dir: Path | None = None) -> None:
    """Run every conformance check on a Task subclass; raises AssertionError naming the broken rule.

    The class passes the registry's checks; the task, built with `config` (default: `task_cls.Config()`), has at
    least one split and a stable fingerprint; `load(seed, 0)` for seeds 0 and 1 returns a `TaskData` that keeps the
    contract (shapes, dtypes, units, OOD sets, `data_sha256`) and is the same on a second call whatever the global
    RNGs hold; `load_holdout` cuts the training rows as `Holdout.rows` says; and `map` runs one epoch on it end to
    end (fit, predict, metrics all finite).

    Args:
        task_cls: the Task subclass.
        config: its data settings, for a task whose defaults read no data (a file path to set).
        data_dir: where its files are, as `--data-dir` gives them.
    """
    _check_task_class(task_cls)
    task = task_cls(config, data_dir)
    _check_task_config(task)
    _check_task_shape(task)
    task.prepare([0])
    data = _check_pure_load(task, seed=0)
    _check_pure_load(task, seed=1)
    _check_holdout(task, data)
    _check_end_to_end(task, data)


def _check_task_class(task_cls: type[Task]) -> None:
    try:
        tasks.validate(task_cls)
    except ValueError as exc:
        raise AssertionError(f"{getattr(task_cls, '__name__', task_cls)} fails the registry's checks: {exc}") from None
    assert task_cls.summary(), f"{task_cls.__name__} has no docstring summary"


def _check_task_config(task: Task) -> None:
    """The config comes back equal from its JSON, as `RunSpec.from_key` reads a stored run's key."""
    config, name = task.config, type(task).__name__
    try:
        again = build(type(config), json.loads(json.dumps(dataclasses.asdict(config))), f"task {name!r}")
    except (BadConfig, TypeError) as exc:
        raise AssertionError(f"{name}.Config does not round-trip through JSON: {exc}") from None
    assert again == config, f"{name}.Config does not round-trip through JSON: {again} != {config}"


def _check_task_shape(task: Task) -> None:
    """kind, ood_sets, n_splits and fingerprint, as the task instance answers them (a property may ask the data)."""
    name = type(task).__name__
    assert task.kind in KINDS, f"{name}.kind must be one of {KINDS}; got {task.kind!r}"
    assert all(isinstance(s, str) for s in task.ood_sets), f"{name}.ood_sets must be names; got {task.ood_sets!r}"
    n = task.n_splits()
    assert isinstance(n, int) and n >= 1, f"{name}.n_splits() must be an int >= 1; got {n!r}"
    for split in sorted({0, n - 1}):
        first = task.fingerprint(split)
        assert isinstance(first, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in first.items()), (
            f"{name}.fingerprint({split}) must be a dict[str, str]; got {first!r}")
        assert task.fingerprint(split) == first, f"{name}.fingerprint({split}) differs between two calls"


def _check_pure_load(task: Task, seed: int) -> TaskData:
    """`load(seed, 0)` keeps the contract and is a pure function of (config, seed, split)."""
    where = f"{type(task).__name__}.load({seed}, 0)"
    with _global_rngs(seed + 100):
        data = task.load(seed, 0)
    _check_task_data(task, data, where)
    with _global_rngs(seed + 200):
        again = task.load(seed, 0)
    differs = _first_difference(data, again)
    assert differs is None, f"{where} is not a pure function of (config, seed, split): two calls differ in {differs}"
    return data


@contextmanager
def _global_rngs(seed: int) -> Iterator[None]:
    """torch's, numpy's and Python's global RNGs seeded with `seed` in the body, restored afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with seeded(seed):
            np.random.seed(seed)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _check_task_data(task: Task, data: TaskData, where: str, ood_sets: tuple[str, ...] | None = None) -> None:
    """The TaskData contract; `ood_sets`: the OOD sets it must hold (default: the task's)."""
    assert isinstance(data, TaskData), f"{where} must return a TaskData; got {type(data).__name__}"
    assert data.kind == task.kind, f"{where}.kind is {data.kind!r} but the task's kind is {task.kind!r}"
    assert isinstance(data.train, Split) and isinstance(data.train.x, Tensor), f"{where}.train must be a Split of tensors"
    in_shape = data.in_shape
    parts = {"train": data.train, "test": data.test, "val": data.val}
    for part, split in parts.items():
        if split is not None:
            _check_split(split, data, in_shape, f"{where}.{part}")
    if data.kind == "regression":
        _check_target_scaling(data, where)
    else:
        assert isinstance(data.out_dim, int) and data.out_dim >= 2, f"{where}.out_dim must be the number of classes (>= 2)"
    for name in task.ood_sets if ood_sets is None else ood_sets:
        assert name in data.ood, f"{where}.ood lacks the OOD set {name!r} that the task's ood_sets names"
    for name, x in data.ood.items():
        _check_inputs(x, in_shape, f"{where}.ood[{name!r}]")
    fingerprint = task.fingerprint(0)
    assert data.data_sha256 == fingerprint, f"{where}.data_sha256 must equal fingerprint(0) = {fingerprint}; got {data.data_sha256}"


def _check_inputs(x: Any, in_shape: tuple[int, ...], where: str) -> None:
    """x: float [N, *in_shape], N >= 1, finite."""
    assert isinstance(x, Tensor) and x.dtype.is_floating_point, f"{where} must be a float tensor; got {_described(x)}"
    assert x.ndim >= 2 and tuple(x.shape[1:]) == in_shape and len(x) >= 1, (
        f"{where} must be [N, *in_shape] = [N, {', '.join(map(str, in_shape))}] with N >= 1; got {list(x.shape)}")
    assert torch.isfinite(x).all(), f"{where} has non-finite values"


def _check_split(split: Split, data: TaskData, in_shape: tuple[int, ...], where: str) -> None:
    assert isinstance(split, Split), f"{where} must be a Split; got {type(split).__name__}"
    _check_inputs(split.x, in_shape, f"{where}.x")
    y, n = split.y, len(split.x)
    if data.kind == "classification":
        assert isinstance(y, Tensor) and y.dtype == torch.int64 and tuple(y.shape) == (n,), (
            f"{where}.y must be class indices [N] = [{n}] int64; got {_described(y)}")
        assert 0 <= int(y.min()) and int(y.max()) < data.out_dim, (
            f"{where}.y must lie in [0, out_dim) = [0, {data.out_dim}); got {int(y.min())}..{int(y.max())}")
    else:
        assert isinstance(y, Tensor) and y.dtype.is_floating_point and y.ndim == 2 and len(y) == n, (
            f"{where}.y must be standardised targets [N, D] = [{n}, D] float; got {_described(y)}")
        assert y.shape[1] == data.out_dim, f"{where}.y has D = {y.shape[1]} targets but out_dim is {data.out_dim}"
        assert torch.isfinite(y).all(), f"{where}.y has non-finite values"


def _check_target_scaling(data: TaskData, where: str) -> None:
    """Regression: target_loc and target_scale [D], finite, scale > 0 (original = loc + scale * standardised)."""
    for name in ("target_loc", "target_scale"):
        value = getattr(data, name)
        assert isinstance(value, Tensor) and value.dtype.is_floating_point and tuple(value.shape) == (data.out_dim,), (
            f"{where}.{name} must be a float tensor [D] = [{data.out_dim}] for regression; got {_described(value)}")
        assert torch.isfinite(value).all(), f"{where}.{name} has non-finite values"
    assert (data.target_scale > 0).all(), f"{where}.target_scale must be > 0"  # type: ignore[operator]


def _described(value: Any) -> str:
    return f"{value.dtype} {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def _first_difference(a: TaskData, b: TaskData) -> str | None:
    """The first field (augmentation aside) in which two loads differ, or None."""
    for f in dataclasses.fields(TaskData):
        if f.name != "train_transform" and not _equal(getattr(a, f.name), getattr(b, f.name)):
            return f.name
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, Split) and isinstance(b, Split):
        return _equal(a.x, b.x) and _equal(a.y, b.y)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _check_holdout(task: Task, data: TaskData) -> None:
    """`load_holdout(0, 0, Holdout())`: train = the kept training rows, test = the held-out ones, in the order of
    `Holdout.rows`, in the task's units or standardised again on the kept rows; no validation or OOD sets."""
    where, holdout = f"{type(task).__name__}.load_holdout(0, 0, Holdout())", Holdout()
    cut = task.load_holdout(0, 0, holdout)
    _check_task_data(task, cut, where, ood_sets=())
    assert cut.val is None and cut.ood == {}, f"{where} must have no validation and no OOD sets"
    keep, held = holdout.rows(len(data.train), 0)
    assert (len(cut.train), len(cut.test)) == (len(keep), len(held)), (
        f"{where} must cut the {len(data.train)} training rows into {len(keep)} kept and {len(held)} held out; "
        f"got {len(cut.train)} and {len(cut.test)}")
    rows = torch.as_tensor(np.concatenate([keep, held]))
    for name in ("x", "y"):
        parts = torch.cat([getattr(cut.train, name), getattr(cut.test, name)])
        assert _same_up_to_scaling(parts, getattr(data.train, name)[rows]), (
            f"{where}: train and test must be the kept and held-out training rows ({name} differs)")


def _same_up_to_scaling(a: Tensor, b: Tensor) -> bool:
    """a and b hold the same rows, up to a per-column affine map (a standardisation) for float tensors."""
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)

    def standardised(t: Tensor) -> Tensor:
        t = t.reshape(len(t), -1).double()
        centred = t - t.mean(0)
        std = centred.std(0)
        return centred / torch.where(std > 0, std, torch.ones_like(std))

    return a.shape == b.shape and torch.allclose(standardised(a), standardised(b), rtol=1e-4, atol=1e-4)


def _check_end_to_end(task: Task, data: TaskData) -> None:
    """One epoch of `map` on the task, in fp32 on the CPU: fit, predict every set, every metric finite."""
    recipe = dataclasses.replace(task.recipe, epochs=1, patience=None, precision="fp32")
    ctx = FitContext(recipe=recipe, backbone=task.backbone.spec(data.in_shape), train_transform=data.train_transform)
    try:
        with seeded(0):
            outputs = predict_all(MAP().fit(data, ctx), data, torch.device("cpu"))
        metrics = evaluate(outputs.test, outputs.targets, outputs.score, outputs.ood_scores)
    except Exception as exc:
        raise AssertionError(f"one epoch of 'map' on {type(task).__name__} fails: {type(exc).__name__}: {exc}") from exc
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    assert not bad, f"one epoch of 'map' on {type(task).__name__} gives non-finite metrics: {', '.join(bad)}"
