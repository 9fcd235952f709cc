"""The metric table and the one `evaluate` function every method's predictions go through.

Conventions: NLL in nats per example; regression metrics in original target units; calibration errors bin the
confidence in 15 bins [e_b, e_{b+1}), the last one closed; OOD scores are "higher = more out-of-distribution".
Metric keys are flat and stable:

- classification: `accuracy`, `nll`, `brier`, `ece`, `ece_adaptive`, `ece_classwise`, `mce`, `aurc`;
- regression: `rmse`, `mae`, `nll`, `nll_moments`, `crps`, `coverage90`, `coverage95`, `qce`;
- per OOD set (both kinds): `ood.<set>.auroc`, `ood.<set>.aupr_in`, `ood.<set>.aupr_out`, `ood.<set>.fpr95`;
- under distribution shift (both kinds): `shift.<name>[.<severity>].<metric>` and their means (`uqbench.metrics.shift`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from torch import Tensor

from uqbench.metrics import classification, ood, regression, shift
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how to compute it and how to read it.

    Attributes:
        fn: -> float, called as fn(probs [N, C], targets [N]) for classification (numpy), fn(prediction,
            targets [N, D]) for regression (a Gaussian or GaussianMixture and a numpy array), and
            fn(score_in [N], score_out [N_set]) for OOD metrics (kind 'ood').
        kind: 'classification', 'regression' or 'ood'.
        higher_is_better: direction, used by leaderboards and `check`.
        unit: e.g. 'nats', 'fraction', 'target units'.
        doc: one line.
        ideal: the nominal value of a metric that is best neither high nor low (interval coverage), else None;
            when set, the best value is the closest to it and `higher_is_better` only says which side is safer.
    """

    fn: Callable[..., float]
    kind: str
    higher_is_better: bool
    unit: str
    doc: str
    ideal: float | None = None

    def badness(self, value: float) -> float:
        """The value on a lower-is-better scale (see `badness`).

        >>> METRICS["accuracy"].badness(0.9), round(METRICS["coverage90"].badness(0.8), 6)
        (-0.9, 0.1)
        """
        return badness(value, self.higher_is_better, self.ideal)


def badness(value: float, higher_is_better: bool, ideal: float | None = None) -> float:
    """A metric value on a lower-is-better scale: the value, its negative, or its distance from the metric's
    nominal value `ideal` (0.90 for the coverage of a 90% interval: 0.99 is as bad as 0.81). Leaderboards rank,
    bold and test by it, and `check` measures regressions on it."""
    if ideal is not None:
        return abs(value - ideal)
    return -value if higher_is_better else value


CLASSIFICATION: dict[str, MetricSpec] = {
    "accuracy": MetricSpec(classification.accuracy, "classification", True, "fraction", "top-1 accuracy"),
    "nll": MetricSpec(classification.nll, "classification", False, "nats", "negative log-likelihood per example"),
    "brier": MetricSpec(classification.brier, "classification", False, "score", "Brier score (sum over classes)"),
    "ece": MetricSpec(classification.ece, "classification", False, "fraction", "expected calibration error, 15 bins"),
    "ece_adaptive": MetricSpec(
        classification.ece_adaptive, "classification", False, "fraction", "equal-mass ECE, 15 bins"
    ),
    "ece_classwise": MetricSpec(
        classification.ece_classwise, "classification", False, "fraction", "classwise ECE, 15 bins, mean over classes"
    ),
    "mce": MetricSpec(classification.mce, "classification", False, "fraction", "maximum calibration error, 15 bins"),
    "aurc": MetricSpec(
        classification.aurc, "classification", False, "fraction", "area under the selective risk-coverage curve"
    ),
}
REGRESSION: dict[str, MetricSpec] = {
    "rmse": MetricSpec(regression.rmse, "regression", False, "target units", "root mean squared error"),
    "mae": MetricSpec(regression.mae, "regression", False, "target units", "mean absolute error"),
    "nll": MetricSpec(
        regression.gaussian_nll, "regression", False, "nats", "negative log predictive density per example"
    ),
    "nll_moments": MetricSpec(
        regression.moment_nll, "regression", False, "nats", "NLL of the moment-matched Gaussian (exact `nll` for one)"
    ),
    "crps": MetricSpec(regression.crps, "regression", False, "target units", "continuous ranked probability score"),
    "coverage90": MetricSpec(
        regression.coverage90, "regression", True, "fraction", "coverage of the central 90% interval", ideal=0.90
    ),
    "coverage95": MetricSpec(
        regression.coverage95, "regression", True, "fraction", "coverage of the central 95% interval", ideal=0.95
    ),
    "qce": MetricSpec(regression.qce, "regression", False, "fraction", "quantile calibration error, 99 levels"),
}
OOD: dict[str, MetricSpec] = {
    "auroc": MetricSpec(ood.auroc, "ood", True, "fraction", "OOD detection AUROC, OOD positive"),
    "aupr_in": MetricSpec(ood.aupr_in, "ood", True, "fraction", "average precision, in-distribution positive"),
    "aupr_out": MetricSpec(ood.aupr_out, "ood", True, "fraction", "average precision, OOD positive"),
    "fpr95": MetricSpec(ood.fpr95, "ood", False, "fraction", "fraction of OOD accepted at 95% of in-dist. kept"),
}
# Key -> spec for reading records (direction and unit); `nll` means the same in both kinds.
METRICS: dict[str, MetricSpec] = {**REGRESSION, **CLASSIFICATION}


def metric_spec(key: str) -> MetricSpec:
    """Spec for a record key such as 'nll', 'rmse', 'ood.far.auroc' or 'shift.fog.3.ece' (that of its metric);
    raises KeyError (naming the closest key) for any other key."""
    table, name = (OOD, key.rsplit(".", 1)[-1]) if key.startswith("ood.") and key.count(".") >= 2 else (METRICS, key)
    name = shift.metric_name(key) or name
    if name in table:
        return table[name]
    valid = [*METRICS, *(f"ood.<set>.{k}" for k in OOD),
             *dict.fromkeys(f"shift.[<set>.][<severity>.]{m}" for names in shift.METRICS.values() for m in names)]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown metric {key!r}.{hint} Available: {', '.join(valid)}")


def reported(kind: str, ood_sets: tuple[str, ...] = (), shifted: tuple[str, ...] = ()) -> list[str]:
    """The metric keys `evaluate` and `evaluate_shifted` report for a task of this kind with these OOD sets and
    shifted sets (their labels, `ShiftedSet.label`)."""
    own = REGRESSION if kind == "regression" else CLASSIFICATION
    return [*own, *(f"ood.{name}.{metric}" for name in ood_sets for metric in OOD), *shift.keys(kind, shifted)]


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
        Flat dict of metric key -> float; the metrics of an OOD set are NaN when it is empty or when any of its
        scores or the test scores are NaN.

    Raises:
        ValueError: on targets or scores of the wrong shape, or class targets outside [0, C).
    """
    table = CLASSIFICATION if isinstance(prediction, Categorical) else REGRESSION
    arrays = _arrays(prediction, targets)
    _check_shape(score, targets.shape[:1], "test OOD scores")
    out = {key: spec.fn(*arrays) for key, spec in table.items()}
    s_in = score.double().numpy()
    for set_name, s_out in ood_scores.items():
        _check_shape(s_out, s_out.shape[:1], f"OOD scores of set {set_name!r}")
        s_out = s_out.double().numpy()
        valid = s_out.size > 0 and not (np.isnan(s_in).any() or np.isnan(s_out).any())
        for key, spec in OOD.items():
            out[f"ood.{set_name}.{key}"] = spec.fn(s_in, s_out) if valid else float("nan")
    return out


def _arrays(prediction: Prediction, targets: Tensor) -> tuple:
    """What the metric functions of the prediction's kind take, after checking the targets against it."""
    if isinstance(prediction, Categorical):
        _check_shape(targets, prediction.probs.shape[:1], "class targets")
        n_classes = prediction.probs.shape[1]
        if len(targets) and not (0 <= int(targets.min()) and int(targets.max()) < n_classes):
            raise ValueError(f"class targets must lie in [0, {n_classes}); got {int(targets.min())}..{int(targets.max())}")
        return prediction.probs.double().numpy(), targets.long().numpy()
    assert isinstance(prediction, (Gaussian, GaussianMixture))
    shape = prediction.mean.shape if isinstance(prediction, Gaussian) else prediction.means.shape[1:]
    _check_shape(targets, shape, "regression targets")
    return prediction, targets.double().numpy()


def evaluate_shifted(
    sets: list[tuple[str, int | None, Prediction, Tensor]]
) -> dict[str, float]:
    """The shift metrics (`uqbench.metrics.shift`) of predictions on shifted test sets, each set's and their means.

    Args:
        sets: (shift name, severity or None, prediction, targets) per set, as `evaluate` takes them (regression in
            original target units).
    """
    per_set = {}
    for name, severity, prediction, targets in sets:
        kind = "classification" if isinstance(prediction, Categorical) else "regression"
        table = CLASSIFICATION if kind == "classification" else REGRESSION
        arrays = _arrays(prediction, targets)
        per_set[(name, severity)] = {m: table[m].fn(*arrays) for m in shift.METRICS[kind]}
    return shift.summarise(per_set)


def _check_shape(x: Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape {list(shape)}; got {list(x.shape)}")


__all__ = [
    "CLASSIFICATION", "METRICS", "OOD", "REGRESSION", "MetricSpec", "badness", "default_ood_score", "evaluate",
    "evaluate_shifted", "metric_spec", "reported",
]
