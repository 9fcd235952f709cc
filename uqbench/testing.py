"""Public conformance checks for methods (after scikit-learn's check_estimator).

Plugin authors run the same checks the uqbench test suite runs over every registered method:

    from uqbench.testing import check_method
    check_method(MyMethod)            # raises AssertionError naming the failed check

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
import types
import typing
from typing import Any, Literal, Union

import torch

from uqbench.config import Interval, build, field_constraints, field_types
from uqbench.errors import BadConfig, Unsupported
from uqbench.methods.base import FitContext, Method, ood_score
from uqbench.models import BackboneSpec
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction
from uqbench.tasks.base import KINDS, Split, TaskData, TaskKind
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
