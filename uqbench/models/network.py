"""`Network`: backbone + head + likelihood, the network that `map`, `mc-dropout`, `laplace`, `ensemble` and `sngp`
train by maximum likelihood (weight decay as the prior)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from uqbench.likelihoods import Likelihood
from uqbench.prediction import Prediction
from uqbench.training import NOISE


class Network(nn.Module):
    """A backbone, an output layer and the likelihood that reads its outputs.

    forward(x [B, *in_shape]) -> raw outputs [B, K], K = `likelihood.out_features(out_dim)` (logits, means, or
    means and variance pre-activations). The parameters the likelihood owns (homoscedastic Gaussian: `log_noise`
    [D]) are parameters of this module under their own names, so a state dict reads 'log_noise', 'backbone.*',
    'head.*'.

    Args:
        backbone: features [B, H] with an integer attribute `out_features` (H).
        head: features [B, H] -> outputs [B, K] (an `nn.Linear`, or SNGP's random-feature GP layer).
        likelihood: `uqbench.likelihoods.Categorical()` or `Gaussian(...)`.
        out_dim: C classes or D regression targets.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, likelihood: Likelihood, out_dim: int):
        super().__init__()
        self.likelihood = likelihood
        params = likelihood.init_params(out_dim)
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))
        self.likelihood_names = tuple(params)
        self.backbone = backbone
        self.head = head

    @classmethod
    def linear(cls, backbone: nn.Module, likelihood: Likelihood, out_dim: int) -> Network:
        """`backbone` with a fresh linear output layer of the width the likelihood needs (draws from the global RNG)."""
        return cls(backbone, nn.Linear(backbone.out_features, likelihood.out_features(out_dim)), likelihood, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def features(self, x: Tensor) -> Tensor:
        """Backbone features [B, H]."""
        return self.backbone(x)

    @torch.no_grad()
    def features_and_outputs(self, x: Tensor, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Features [N, H] and raw outputs [N, K] of inputs x [N, *in_shape], computed in eval mode (left on) in
        batches of `batch_size`, returned in float64 on the network's device."""
        device = next(self.parameters()).device
        self.eval()
        phis, outs = [], []
        for i in range(0, x.shape[0], batch_size):
            phi = self.features(x[i : i + batch_size].to(device))
            phis.append(phi)
            outs.append(self.head(phi))
        return torch.cat(phis).double(), torch.cat(outs).double()

    def likelihood_params(self) -> dict[str, Tensor]:
        """The likelihood's parameters by name (homoscedastic Gaussian: {'log_noise': [D]})."""
        return {name: self.get_parameter(name) for name in self.likelihood_names}

    def nll(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative log-likelihood per example [B] (nats, constants dropped); y: class indices [B] or targets [B, D]."""
        return self.likelihood.nll(self(x), y, self.likelihood_params())

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood of the batch (scalar)."""
        return self.nll(x, y).mean()

    def predictive(self, x: Tensor) -> Prediction:
        """The plug-in predictive of the outputs: Categorical [B, C] or Gaussian [B, D]."""
        return self.likelihood.predictive(self(x), self.likelihood_params())

    def param_groups(self) -> list[dict]:
        """Optimiser groups: every parameter decayed except the likelihood's own, which train at the recipe's
        `noise_lr` (the group is marked `uqbench.training.NOISE`)."""
        named = list(self.named_parameters())
        groups: list[dict] = [{"params": [p for n, p in named if n not in self.likelihood_names]}]
        kept = [p for n, p in named if n in self.likelihood_names]
        return groups + ([{"params": kept, "weight_decay": 0.0, NOISE: True}] if kept else [])
