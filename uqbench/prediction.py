"""Predictive distributions: the only thing a method hands to the evaluator.

Three frozen types, each validated on construction so that metrics never have to guess:

- `Categorical(probs [N, C])` for classification; rows must sum to 1 (never an automatic softmax).
- `Gaussian(mean [N, D], var [N, D])` for regression, a diagonal Gaussian per example.
- `GaussianMixture(means [M, N, D], vars [M, N, D], weights [M])` for ensembles of Gaussians.

Regression predictions come out of methods in standardised target units; the runner calls `rescale` to go back
to original units before computing metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

_ROW_SUM_TOL = 1e-4


@dataclass(frozen=True)
class Categorical:
    """Class probabilities.

    Attributes:
        probs: [N, C] non-negative, each row summing to 1 (within 1e-4 in float32).
    """

    probs: Tensor

    def __post_init__(self) -> None:
        p = self.probs
        if p.ndim != 2:
            raise ValueError(f"Categorical.probs must be [N, C]; got shape {tuple(p.shape)}")
        if not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError("Categorical.probs must be finite and non-negative")
        if p.numel() and (p.sum(-1) - 1).abs().max() > _ROW_SUM_TOL:
            raise ValueError("Categorical.probs rows must sum to 1; apply a softmax in the method")

    @staticmethod
    def concat(parts: list[Categorical]) -> Categorical:
        return Categorical(torch.cat([p.probs for p in parts]))


@dataclass(frozen=True)
class Gaussian:
    """Independent Gaussian per example and output dimension.

    Attributes:
        mean: [N, D].
        var: [N, D], strictly positive.
    """

    mean: Tensor
    var: Tensor

    def __post_init__(self) -> None:
        if self.mean.ndim != 2 or self.mean.shape != self.var.shape:
            raise ValueError(
                f"Gaussian.mean and .var must both be [N, D]; got {tuple(self.mean.shape)} "
                f"and {tuple(self.var.shape)}"
            )
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.var).all()):
            raise ValueError("Gaussian mean and variance must be finite")
        if (self.var <= 0).any():
            raise ValueError("Gaussian.var must be strictly positive")

    def rescale(self, loc: Tensor, scale: Tensor) -> Gaussian:
        """The distribution of `loc + scale * y`; loc and scale are [D]."""
        return Gaussian(self.mean * scale + loc, self.var * scale**2)

    def moments(self) -> Gaussian:
        return self

    def log_prob(self, y: Tensor) -> Tensor:
        """Log density of targets y [N, D], summed over D: [N] nats."""
        return _normal_log_density(y, self.mean, self.var).sum(-1)

    @staticmethod
    def concat(parts: list[Gaussian]) -> Gaussian:
        return Gaussian(torch.cat([p.mean for p in parts]), torch.cat([p.var for p in parts]))


@dataclass(frozen=True)
class GaussianMixture:
    """A weighted mixture of M diagonal Gaussians per example (one component per ensemble member).

    Attributes:
        means: [M, N, D].
        vars: [M, N, D], strictly positive.
        weights: [M], non-negative, summing to 1.
    """

    means: Tensor
    vars: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        if self.means.ndim != 3 or self.means.shape != self.vars.shape:
            raise ValueError(
                f"GaussianMixture.means and .vars must both be [M, N, D]; got {tuple(self.means.shape)} "
                f"and {tuple(self.vars.shape)}"
            )
        if self.weights.shape != self.means.shape[:1]:
            raise ValueError(f"GaussianMixture.weights must be [M]; got {tuple(self.weights.shape)}")
        if (self.weights < 0).any() or abs(float(self.weights.sum()) - 1) > _ROW_SUM_TOL:
            raise ValueError("GaussianMixture.weights must be non-negative and sum to 1")
        if not (torch.isfinite(self.means).all() and torch.isfinite(self.vars).all()):
            raise ValueError("GaussianMixture means and variances must be finite")
        if (self.vars <= 0).any():
            raise ValueError("GaussianMixture.vars must be strictly positive")

    def rescale(self, loc: Tensor, scale: Tensor) -> GaussianMixture:
        """The distribution of `loc + scale * y`; loc and scale are [D]."""
        return GaussianMixture(self.means * scale + loc, self.vars * scale**2, self.weights)

    def moments(self) -> Gaussian:
        """The moment-matched Gaussian: mixture mean and total variance (law of total variance)."""
        w = self.weights.to(self.means.dtype)[:, None, None]
        mean = (w * self.means).sum(0)
        second = (w * (self.vars + self.means**2)).sum(0)
        return Gaussian(mean, (second - mean**2).clamp_min(torch.finfo(mean.dtype).tiny))

    def log_prob(self, y: Tensor) -> Tensor:
        """Exact log density of the mixture at y [N, D], treating the D outputs jointly per component: [N]."""
        logs = _normal_log_density(y, self.means, self.vars).sum(-1)  # [M, N]
        return torch.logsumexp(logs + self.weights.to(logs.dtype).log()[:, None], dim=0)

    @staticmethod
    def concat(parts: list[GaussianMixture]) -> GaussianMixture:
        return GaussianMixture(
            torch.cat([p.means for p in parts], dim=1), torch.cat([p.vars for p in parts], dim=1), parts[0].weights
        )


def _normal_log_density(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * (math.log(2 * math.pi) + var.log() + (y - mean) ** 2 / var)


Prediction = Union[Categorical, Gaussian, GaussianMixture]
