"""The metric table and the one `evaluate` function every method's predictions go through.

Conventions: NLL in nats per example; regression metrics in original target units; ECE with 15 equal-width
bins of top-label confidence; OOD scores are "higher = more out-of-distribution" with OOD as the positive class.
Metric keys are flat and stable: `accuracy`, `nll`, `brier`, `ece`, `rmse`, `ood.<set>.auroc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from uqbench.metrics import classification, ood, regression
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how to compute it and how to read it.

    Attributes:
        fn: (prediction arrays, targets) -> float for per-prediction metrics; (score_in, score_out) -> float
            for OOD metrics (kind 'ood').
        kind: 'classification', 'regression' or 'ood'.
        higher_is_better: direction, used by leaderboards and `check`.
        unit: e.g. 'nats', 'fraction', 'target units'.
        doc: one line.
    """

    fn: Callable[..., float]
    kind: str
    higher_is_better: bool
    unit: str
    doc: str


CLASSIFICATION: dict[str, MetricSpec] = {
    "accuracy": MetricSpec(classification.accuracy, "classification", True, "fraction", "top-1 accuracy"),
    "nll": MetricSpec(classification.nll, "classification", False, "nats", "negative log-likelihood per example"),
    "brier": MetricSpec(classification.brier, "classification", False, "score", "Brier score (sum over classes)"),
    "ece": MetricSpec(classification.ece, "classification", False, "fraction", "expected calibration error, 15 bins"),
}
REGRESSION: dict[str, MetricSpec] = {
    "rmse": MetricSpec(regression.rmse, "regression", False, "target units", "root mean squared error"),
    "nll": MetricSpec(regression.gaussian_nll, "regression", False, "nats", "negative log predictive density per example"),
}
OOD: dict[str, MetricSpec] = {
    "auroc": MetricSpec(ood.auroc, "ood", True, "fraction", "OOD detection AUROC, OOD positive"),
}
# Key -> spec for reading records (direction and unit); `nll` means the same in both kinds.
METRICS: dict[str, MetricSpec] = {**REGRESSION, **CLASSIFICATION}


def metric_spec(key: str) -> MetricSpec:
    """Spec for a record key such as 'nll', 'rmse' or 'ood.far.auroc'."""
    if key.startswith("ood."):
        return OOD[key.rsplit(".", 1)[1]]
    return METRICS[key]


def default_ood_score(prediction: Prediction) -> Tensor:
    """The evaluator's OOD score when a predictor has none: 1 - max probability (classification) or the total
    predictive variance summed over outputs (regression). Shape [N], higher = more OOD."""
    if isinstance(prediction, Categorical):
        return 1.0 - prediction.probs.max(-1).values
    return prediction.moments().var.sum(-1)


def evaluate(
    prediction: Prediction, targets: Tensor, score: Tensor, ood_scores: dict[str, Tensor]
) -> dict[str, float]:
    """Every metric that applies to the prediction.

    Args:
        prediction: test-set prediction; regression in original target units.
        targets: class indices [N] or targets [N, D] in original units.
        score: OOD score of the test inputs [N].
        ood_scores: OOD set name -> scores of its inputs [N_set].

    Returns:
        Flat dict of metric key -> float.
    """
    if isinstance(prediction, Categorical):
        table, arrays = CLASSIFICATION, (prediction.probs.double().numpy(), targets.numpy())
    else:
        assert isinstance(prediction, (Gaussian, GaussianMixture))
        table, arrays = REGRESSION, (prediction, targets.double().numpy())
    out = {key: spec.fn(*arrays) for key, spec in table.items()}
    s_in = score.double().numpy()
    for set_name, s_out in ood_scores.items():
        for key, spec in OOD.items():
            out[f"ood.{set_name}.{key}"] = spec.fn(s_in, s_out.double().numpy())
    return out


__all__ = ["CLASSIFICATION", "METRICS", "OOD", "REGRESSION", "MetricSpec", "default_ood_score", "evaluate", "metric_spec"]
