"""Likelihoods: how a network's raw outputs f become a distribution over targets (laplace-torch's `likelihood`).

- `Categorical()`: f [..., C] are logits, p(y | f) = softmax(f)_y.
- `Gaussian()`: f [..., D] are means, p(y | f) = N(y; f, diag(sigma^2)) with a learned noise standard deviation
  per output, sigma = exp(log_noise), log_noise [D] initialised at 0 (standardised target units).
- `Gaussian(heteroscedastic=True)`: f [..., 2D] are means and variance pre-activations s, sigma^2 = softplus(s) +
  1e-6 (the positivity floor of Lakshminarayanan et al. 2017).
- `Gaussian(fixed_var=v)`: a known noise variance v (standardised units), not learned: MC dropout's 1 / tau.

A likelihood is a frozen description, not a module: the parameters it owns (`init_params`) live on the network that
uses it (`uqbench.models.network.Network`), and every method that needs them takes them as `params`, a mapping from
their names to tensors broadcastable against the outputs (for stacked ensemble members, [M, 1, D]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Union

import torch
from torch import Tensor
from torch.nn import functional as F

from uqbench import prediction

MIN_VAR = 1e-6  # floor of a predicted variance (standardised units)
Params = Mapping[str, Tensor]


@dataclass(frozen=True)
class Categorical:
    """Softmax likelihood over C classes; owns no parameters."""

    def out_features(self, out_dim: int) -> int:
        """Network outputs needed for `out_dim` classes: C logits."""
        return out_dim

    def init_params(self, out_dim: int) -> dict[str, Tensor]:
        """No parameters of its own."""
        return {}

    def nll(self, out: Tensor, y: Tensor, params: Params) -> Tensor:
        """Cross-entropy -log softmax(out)_y per example: logits [..., C], class indices y [...] -> [...] (nats)."""
        return F.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)

    def log_likelihood(self, out: Tensor, y: Tensor, params: Params) -> Tensor:
        """log p(y | out) summed over examples: logits [N, C], class indices [N] -> scalar (nats)."""
        return -F.cross_entropy(out, y, reduction="sum")

    def predictive(self, out: Tensor, params: Params) -> prediction.Categorical:
        """softmax(out) for logits [N, C]."""
        return prediction.Categorical(torch.softmax(out, dim=-1))

    def mixture(self, outs: Tensor, params: Params, moment_matched: bool = False) -> prediction.Categorical:
        """Uniform mixture of S predictives, 1/S sum_s softmax(outs_s), for logits [S, N, C].

        A mixture of categoricals is categorical, so `moment_matched` changes nothing.
        """
        return prediction.Categorical(torch.softmax(outs, dim=-1).mean(0))

    def marginal(
        self, mean: Tensor, var: Tensor, params: Params, probit_factor: float = math.pi / 8
    ) -> prediction.Categorical:
        """Predictive for Gaussian logits f ~ N(mean, diag(var)) [N, C] by the probit (mean-field) approximation
        softmax(mean / sqrt(1 + probit_factor var)); pi/8 is the probit value."""
        return prediction.Categorical(torch.softmax(mean / torch.sqrt(1.0 + probit_factor * var), dim=-1))

    def output_hessian(self, out: Tensor, params: Params) -> Tensor:
        """Hessian of the NLL in the logits, diag(p) - p p^T with p = softmax(out): [N, C] -> [N, C, C]."""
        p = torch.softmax(out, dim=-1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


@dataclass(frozen=True)
class Gaussian:
    """Diagonal Gaussian likelihood over D outputs (standardised target units).

    Attributes:
        heteroscedastic: the network predicts the variance (outputs [..., 2D]); otherwise the variance is a
            constant per output: learned, parameter `log_noise` [D] (log standard deviation), or `fixed_var`.
        fixed_var: a known noise variance (standardised target units); the likelihood then owns no parameter.
    """

    heteroscedastic: bool = False
    fixed_var: float | None = None

    def __post_init__(self) -> None:
        if self.heteroscedastic and self.fixed_var is not None:
            raise ValueError("a heteroscedastic Gaussian has no fixed variance")

    def out_features(self, out_dim: int) -> int:
        """Network outputs needed for `out_dim` targets: D means, and D variance pre-activations if heteroscedastic."""
        return 2 * out_dim if self.heteroscedastic else out_dim

    def init_params(self, out_dim: int) -> dict[str, Tensor]:
        """A learned noise: {'log_noise': zeros [D]} (noise standard deviation 1); heteroscedastic or fixed: none."""
        return {} if self.heteroscedastic or self.fixed_var is not None else {"log_noise": torch.zeros(out_dim)}

    def noise_var(self, params: Params) -> Tensor:
        """The constant noise variance: exp(2 log_noise) [D], or the fixed one (a scalar tensor).

        Raises:
            ValueError: heteroscedastic, whose variance depends on the input.
        """
        if self.heteroscedastic:
            raise ValueError("a heteroscedastic Gaussian has no constant noise variance; use Gaussian()")
        if self.fixed_var is not None:
            return torch.tensor(self.fixed_var, dtype=torch.float32)
        return torch.exp(2 * params["log_noise"])

    def mean_var(self, out: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        """Means [..., D] and variances of outputs [..., K]: heteroscedastic [..., D], else the noise variance
        (broadcastable, not expanded)."""
        if self.heteroscedastic:
            mean, raw = out.chunk(2, dim=-1)
            return mean, F.softplus(raw) + MIN_VAR
        var = self.noise_var(params)
        return out, var.to(out.device) if self.fixed_var is not None else var

    def nll(self, out: Tensor, y: Tensor, params: Params) -> Tensor:
        """sum_d [log sigma_d + (y_d - mean_d)^2 / (2 sigma_d^2)] per example (constants dropped): targets y
        [..., D] -> [...] (nats)."""
        if self.fixed_var is None and not self.heteroscedastic:
            mean, log_std = out, params["log_noise"]
        else:
            mean, var = self.mean_var(out, params)
            log_std = 0.5 * var.log()
        return (log_std + 0.5 * (y - mean) ** 2 * torch.exp(-2 * log_std)).sum(-1)

    def log_likelihood(self, out: Tensor, y: Tensor, params: Params) -> Tensor:
        """log p(y | out) summed over examples, every constant included: means [N, D], targets [N, D] -> scalar
        (nats), in the dtype of `out`; homoscedastic only."""
        noise_var = self.noise_var(params).to(out.dtype)
        n = out.shape[0]
        return -0.5 * (((y.to(out.dtype) - out) ** 2 / noise_var).sum() + n * torch.log(2 * math.pi * noise_var).sum())

    def predictive(self, out: Tensor, params: Params) -> prediction.Gaussian:
        """N(mean, var) per example for outputs [N, K]."""
        mean, var = self.mean_var(out, params)
        return prediction.Gaussian(mean, var.expand_as(mean).contiguous())

    def mixture(
        self, outs: Tensor, params: Params, moment_matched: bool = False
    ) -> prediction.Gaussian | prediction.GaussianMixture:
        """Uniform mixture 1/S sum_s N(mean_s, var_s) of S predictives, for outputs [S, N, K].

        Args:
            outs: [S, N, K], one row per network (ensemble member) or stochastic pass.
            params: `log_noise` [D] shared by all components, or [S, 1, D] one per component.
            moment_matched: the Gaussian with the mixture's mean and variance instead (law of total variance,
                Var = E[var_s] + Var[mean_s]; a noise variance shared by all components is its own mean).

        Returns:
            A Gaussian when S = 1 or `moment_matched`, else a GaussianMixture [S, N, D].
        """
        mean, var = self.mean_var(outs, params)
        if moment_matched:
            noise = var if var.ndim < mean.ndim else var.mean(0)
            return prediction.Gaussian(mean.mean(0), mean.var(0, unbiased=False) + noise)
        var = var.expand_as(mean).contiguous()
        if mean.shape[0] == 1:
            return prediction.Gaussian(mean[0], var[0])
        weights = torch.full((mean.shape[0],), 1.0 / mean.shape[0], dtype=mean.dtype, device=mean.device)
        return prediction.GaussianMixture(mean, var, weights)

    def marginal(
        self, mean: Tensor, var: Tensor, params: Params, probit_factor: float = math.pi / 8
    ) -> prediction.Gaussian:
        """Predictive N(mean, var + sigma^2) for Gaussian outputs f ~ N(mean, diag(var)) [N, D]; homoscedastic only
        (`probit_factor` is for classification and unused here)."""
        return prediction.Gaussian(mean, var + self.noise_var(params))

    def output_hessian(self, out: Tensor, params: Params) -> Tensor:
        """Hessian of the NLL in the means, diag(1 / sigma^2): [N, D] -> [N, D, D] in the dtype of `out`;
        homoscedastic only."""
        return torch.diag(1.0 / self.noise_var(params).to(out.dtype)).expand(out.shape[0], -1, -1)


Likelihood = Union[Categorical, Gaussian]


def default_likelihood(kind: str, heteroscedastic: bool = False) -> Likelihood:
    """The likelihood for a task of `kind`: 'classification' -> Categorical(), 'regression' -> Gaussian.

    Args:
        heteroscedastic: regression only: an input-dependent variance instead of a learned constant.
    """
    if kind == "classification":
        return Categorical()
    if kind == "regression":
        return Gaussian(heteroscedastic)
    raise ValueError(f"unknown task kind {kind!r}; expected 'regression' or 'classification'")
