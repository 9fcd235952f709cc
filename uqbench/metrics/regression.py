"""Regression metrics on predictive distributions in original target units; targets [N, D]."""

from __future__ import annotations

import numpy as np
import torch

from uqbench.prediction import Gaussian, GaussianMixture


def rmse(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Root mean squared error of the predictive mean over all examples and outputs (target units).

    >>> rmse(Gaussian(torch.tensor([[0.0], [2.0]]), torch.ones(2, 1)), np.array([[1.0], [1.0]]))
    1.0
    """
    mean = prediction.moments().mean.double().numpy()
    return float(np.sqrt(((mean - targets) ** 2).mean()))


def gaussian_nll(prediction: Gaussian | GaussianMixture, targets: np.ndarray) -> float:
    """Mean negative log predictive density, nats per example (summed over outputs); exact for mixtures.

    >>> round(gaussian_nll(Gaussian(torch.zeros(1, 1), torch.ones(1, 1)), np.zeros((1, 1))), 6)
    0.918939
    """
    y = torch.as_tensor(targets, dtype=torch.float64)
    return float(-_double(prediction).log_prob(y).mean())


def _double(p: Gaussian | GaussianMixture) -> Gaussian | GaussianMixture:
    if isinstance(p, Gaussian):
        return Gaussian(p.mean.double(), p.var.double())
    return GaussianMixture(p.means.double(), p.vars.double(), p.weights.double())
