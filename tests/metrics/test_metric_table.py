"""The METRICS tables and `evaluate`: documented keys, specs, lookups, and invariance of every metric under a
permutation of the examples (sklearn-style tests over the whole table)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uqbench.metrics import CLASSIFICATION, METRICS, OOD, REGRESSION, MetricSpec, evaluate, metric_spec
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction

CLASSIFICATION_KEYS = ["accuracy", "nll", "brier", "ece", "ece_adaptive", "ece_classwise", "mce", "aurc"]
REGRESSION_KEYS = ["rmse", "mae", "nll", "nll_moments", "crps", "coverage90", "coverage95", "qce"]
OOD_KEYS = ["auroc", "aupr_in", "aupr_out", "fpr95"]


def test_documented_keys_are_the_table_keys():
    assert list(CLASSIFICATION) == CLASSIFICATION_KEYS
    assert list(REGRESSION) == REGRESSION_KEYS
    assert list(OOD) == OOD_KEYS
    import uqbench.metrics

    for key in CLASSIFICATION_KEYS + REGRESSION_KEYS + OOD_KEYS:
        assert f"`{key}`" in uqbench.metrics.__doc__ or f"`ood.<set>.{key}`" in uqbench.metrics.__doc__


@pytest.mark.parametrize("key", sorted(set(METRICS) | {f"ood.a.b.{k}" for k in OOD}))
def test_every_spec_is_complete(key):
    spec = metric_spec(key)
    assert isinstance(spec, MetricSpec) and callable(spec.fn)
    assert spec.kind in ("classification", "regression", "ood")
    assert isinstance(spec.higher_is_better, bool) and spec.unit and spec.doc
    if spec.ideal is not None:
        assert spec.badness(spec.ideal) == 0 and spec.badness(spec.ideal + 0.1) > 0


def test_badness_orders_values_by_direction():
    assert metric_spec("accuracy").badness(0.9) < metric_spec("accuracy").badness(0.8)
    assert metric_spec("nll").badness(0.1) < metric_spec("nll").badness(0.2)
    assert metric_spec("coverage95").badness(0.94) < metric_spec("coverage95").badness(0.99)


@pytest.mark.parametrize(("key", "hint"), [("acuracy", "'accuracy'"), ("ood.far.auroc2", "'ood.<set>.auroc'"),
                                           ("ood.auroc", "'ood.<set>.auroc'")])
def test_unknown_keys_raise_with_a_suggestion(key, hint):
    with pytest.raises(KeyError, match=f"unknown metric '{key}'. Did you mean {hint}"):
        metric_spec(key)


def classification_case(seed: int) -> tuple[Prediction, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(300, 4, generator=g), -1)
    probs = torch.round(probs, decimals=1)  # ties in confidence and scores
    probs = probs / probs.sum(-1, keepdim=True)
    targets = torch.randint(0, 4, (300,), generator=g)
    score = 1 - probs.max(-1).values
    return Categorical(probs), targets, score, {"far": torch.rand(50, generator=g), "near": score[:40] + 0.1}


def regression_case(seed: int, mixture: bool) -> tuple[Prediction, torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    means, vars_ = torch.randn(3, 200, 2, generator=g), 0.1 + torch.rand(3, 200, 2, generator=g)
    pred = GaussianMixture(means, vars_, torch.tensor([0.2, 0.3, 0.5])) if mixture else Gaussian(means[0], vars_[0])
    targets = torch.randn(200, 2, generator=g)
    score = pred.moments().var.sum(-1)
    return pred, targets, score, {"shifted": torch.round(score[:60] * 4) / 2}


CASES = {
    "classification": (classification_case(0), CLASSIFICATION_KEYS),
    "gaussian": (regression_case(1, mixture=False), REGRESSION_KEYS),
    "mixture": (regression_case(2, mixture=True), REGRESSION_KEYS),
}


def permuted(pred: Prediction, perm: torch.Tensor) -> Prediction:
    if isinstance(pred, Categorical):
        return Categorical(pred.probs[perm])
    if isinstance(pred, Gaussian):
        return Gaussian(pred.mean[perm], pred.var[perm])
    return GaussianMixture(pred.means[:, perm], pred.vars[:, perm], pred.weights)


@pytest.mark.parametrize("case", CASES)
def test_evaluate_returns_every_documented_key(case):
    (pred, targets, score, ood_scores), keys = CASES[case]
    out = evaluate(pred, targets, score, ood_scores)
    expected = keys + [f"ood.{name}.{k}" for name in ood_scores for k in OOD_KEYS]
    assert sorted(out) == sorted(expected)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


@pytest.mark.parametrize("case", CASES)
def test_every_metric_is_invariant_to_the_order_of_examples(case):
    (pred, targets, score, ood_scores), _ = CASES[case]
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(len(targets), generator=g)
    shuffled_ood = {k: v[torch.randperm(len(v), generator=g)] for k, v in ood_scores.items()}
    before = evaluate(pred, targets, score, ood_scores)
    after = evaluate(permuted(pred, perm), targets[perm], score[perm], shuffled_ood)
    assert after == pytest.approx(before, abs=1e-12)


def test_nan_scores_void_only_that_sets_ood_metrics():
    pred, targets, score, ood_scores = classification_case(4)
    ood_scores["broken"] = torch.tensor([0.1, float("nan")])
    out = evaluate(pred, targets, score, ood_scores)
    assert all(math.isnan(out[f"ood.broken.{k}"]) for k in OOD_KEYS)
    assert all(math.isfinite(v) for k, v in out.items() if not k.startswith("ood.broken."))


@pytest.mark.parametrize(("case", "change", "message"), [
    ("classification", lambda t, s: (t[:-1], s), r"class targets must have shape \[300\]; got \[299\]"),
    ("gaussian", lambda t, s: (t[:, :1], s), r"regression targets must have shape \[200, 2\]; got \[200, 1\]"),
    ("mixture", lambda t, s: (t, s[:10]), r"test OOD scores must have shape \[200\]; got \[10\]"),
])
def test_mismatched_shapes_are_rejected(case, change, message):
    (pred, targets, score, ood_scores), _ = CASES[case]
    targets, score = change(targets, score)
    with pytest.raises(ValueError, match=message):
        evaluate(pred, targets, score, ood_scores)


def test_class_targets_out_of_range_are_rejected():
    pred, targets, score, ood_scores = classification_case(5)
    targets = targets.clone()
    targets[0] = 4
    with pytest.raises(ValueError, match=r"class targets must lie in \[0, 4\); got 0..4"):
        evaluate(pred, targets, score, ood_scores)
