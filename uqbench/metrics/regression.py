"""Regression metrics on predictive distributions in original target units; targets [N, D] (numpy floats).

A `Gaussian` is handled as a one-component `GaussianMixture`, and every distributional metric (NLL, CRPS,
coverage, quantile calibration) is exact for mixtures: nothing is moment-matched (except `moment_nll`, which says
so, for papers that scored an ensemble's moment-matched Gaussian). CRPS is exact up to `CRPS_EXACT_COMPONENTS`
(256) components; a larger mixture (MC dropout's 10,000-sample mixture) estimates the pairwise term on that many
components spaced evenly along each prediction's sorted means (within 6e-4 of the exact value, relative, on 2,000-
component mixtures with equal and with unequal variances). The point metrics (RMSE, MAE)
use the predictive mean, which is the exact mixture mean. Each output dimension is scored on its own marginal;
metrics in target units average over examples and outputs, the NLL sums over outputs (a joint density).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from torch import Tensor

from uqbench.prediction import Gaussian, GaussianMixture

QCE_LEVELS = np.arange(1, 100) / 100  # quantile levels 0.01, ..., 0.99
CRPS_EXACT_COMPONENTS = 256  # the pairwise CRPS term costs M^2 per prediction


def rmse(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Root mean squared error of the predictive mean over all examples and outputs (target units).

    >>> rmse(Gaussian(torch.tensor([[0.0], [2.0]]), torch.ones(2, 1)), np.array([[1.0], [1.0]]))
    1.0
    """
    return float(np.sqrt(((_mean(prediction) - targets) ** 2).mean()))


def mae(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Mean absolute error of the predictive mean over all examples and outputs (target units).

    >>> mae(Gaussian(torch.tensor([[0.0], [4.0]]), torch.ones(2, 1)), np.array([[1.0], [1.0]]))
    2.0
    """
    return float(np.abs(_mean(prediction) - targets).mean())


def gaussian_nll(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Mean negative log predictive density, nats per example (summed over outputs); exact for mixtures.

    >>> round(gaussian_nll(Gaussian(torch.zeros(1, 1), torch.ones(1, 1)), np.zeros((1, 1))), 6)
    0.918939
    """
    return float(-_as_mixture(prediction).log_prob(_tensor(targets)).mean())


def moment_nll(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Mean negative log density of the moment-matched Gaussian (a mixture's mean and variance), nats per
    example; the same as `gaussian_nll` for a Gaussian. Deep ensembles' paper reports this one.

    >>> mix = GaussianMixture(torch.tensor([[[-1.0]], [[1.0]]]), torch.ones(2, 1, 1), torch.tensor([0.5, 0.5]))
    >>> round(moment_nll(mix, np.zeros((1, 1))), 6), round(gaussian_nll(mix, np.zeros((1, 1))), 6)
    (1.265512, 1.418939)
    """
    return gaussian_nll(prediction.moments() if isinstance(prediction, GaussianMixture) else prediction, targets)


def crps(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Continuous ranked probability score, mean over examples and outputs (target units; lower is better).

    Closed form for a mixture F = sum_i w_i N(mu_i, s_i^2) (Grimit et al., 2006), from
    CRPS(F, y) = E|X - y| - E|X - X'| / 2 with X, X' ~ F independent:
    sum_i w_i A(y - mu_i, s_i^2) - 1/2 sum_ij w_i w_j A(mu_i - mu_j, s_i^2 + s_j^2), where A(m, v) = E|Z| for
    Z ~ N(m, v). For one Gaussian this is s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)), z = (y - mu) / s.

    >>> round(crps(Gaussian(torch.zeros(1, 1), torch.ones(1, 1)), np.zeros((1, 1))), 6)
    0.233695
    """
    mix = _as_mixture(prediction)
    w = mix.weights[:, None, None]
    score = (w * _abs_mean(_tensor(targets) - mix.means, mix.vars)).sum(0) - 0.5 * _pairwise(mix)
    return float(score.mean())


def _pairwise(mix: GaussianMixture) -> Tensor:
    """E|X - X'| for X, X' ~ the mixture, [N, D]: exact up to CRPS_EXACT_COMPONENTS components; beyond, on that
    many equally weighted components at evenly spaced quantiles of each prediction's mixing distribution."""
    means, vars_, weights = mix.means, mix.vars, mix.weights[:, None, None].expand_as(mix.means)
    if means.shape[0] > CRPS_EXACT_COMPONENTS:
        order = means.argsort(0)
        cumulative = weights.gather(0, order).cumsum(0)
        levels = (torch.arange(CRPS_EXACT_COMPONENTS, dtype=means.dtype) + 0.5) / CRPS_EXACT_COMPONENTS
        rank = torch.searchsorted(cumulative.movedim(0, -1).contiguous(), levels.expand(*means.shape[1:], -1).contiguous())
        picked = order.gather(0, rank.clamp_max(means.shape[0] - 1).movedim(-1, 0))
        means, vars_ = means.gather(0, picked), vars_.gather(0, picked)
        weights = torch.full_like(means, 1.0 / CRPS_EXACT_COMPONENTS)
    return sum(weights[i] * (weights * _abs_mean(means[i] - means, vars_[i] + vars_)).sum(0) for i in range(len(means)))


def pit(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> np.ndarray:
    """Probability integral transform: the predictive CDF of each output at its target, [N, D] in [0, 1].

    >>> pit(Gaussian(torch.zeros(2, 1), torch.ones(2, 1)), np.array([[0.0], [100.0]])).ravel().tolist()
    [0.5, 1.0]
    """
    mix = _as_mixture(prediction)
    z = (_tensor(targets) - mix.means) / mix.vars.sqrt()
    return (mix.weights[:, None, None] * torch.special.ndtr(z)).sum(0).numpy()


def coverage(prediction: Gaussian | GaussianMixture, targets: np.ndarray, level: float) -> float:
    """Fraction of targets (over examples and outputs) inside the central `level` predictive interval
    [F^-1((1 - level) / 2), F^-1((1 + level) / 2)], found through the exact CDF: F(y) within those levels.

    >>> coverage(Gaussian(torch.zeros(4, 1), torch.ones(4, 1)), np.array([[0.0], [1.0], [-1.5], [2.0]]), 0.9)
    0.75
    """
    return float((np.abs(pit(prediction, targets) - 0.5) <= level / 2).mean())


coverage90 = partial(coverage, level=0.90)
coverage95 = partial(coverage, level=0.95)


def qce(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Quantile calibration error (Kuleshov et al., 2018, absolute form): the mean over the levels
    p = 0.01, 0.02, ..., 0.99 of |fraction of targets with F(y) <= p - p|. A fraction; 0 is perfectly calibrated.

    >>> round(qce(Gaussian(torch.zeros(2, 1), torch.ones(2, 1)), np.array([[-100.0], [100.0]])), 6)
    0.247475
    """
    u = np.sort(pit(prediction, targets).ravel())
    observed = np.searchsorted(u, QCE_LEVELS, side="right") / u.size
    return float(np.abs(observed - QCE_LEVELS).mean())


def _abs_mean(m: Tensor, v: Tensor) -> Tensor:
    """E|Z| for Z ~ N(m, v), elementwise."""
    s = v.sqrt()
    z = m / s
    return m * (2 * torch.special.ndtr(z) - 1) + 2 * s * torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def _mean(p: Gaussian | GaussianMixture) -> np.ndarray:
    return p.moments().mean.double().numpy()


def _tensor(targets: np.ndarray) -> Tensor:
    return torch.as_tensor(targets, dtype=torch.float64)


def _as_mixture(p: Gaussian | GaussianMixture) -> GaussianMixture:
    """The prediction as a float64 mixture: means and vars [M, N, D], weights [M] (renormalised in float64, so
    that the CDF ends at exactly 1)."""
    if isinstance(p, Gaussian):
        return GaussianMixture(p.mean.double()[None], p.var.double()[None], torch.ones(1, dtype=torch.float64))
    weights = p.weights.double()
    return GaussianMixture(p.means.double(), p.vars.double(), weights / weights.sum())
