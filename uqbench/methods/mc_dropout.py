"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian approximation", ICML).

A network with dropout after every hidden layer is trained as usual (the MAP objective of `map`, with dropout
active); at test time dropout stays on and T stochastic forward passes are averaged:

- classification: p(y | x) = 1/T sum_t softmax(f_t(x)), the Monte Carlo estimate of the predictive;
- regression: the moment-matched Gaussian of the T sampled means plus the learned homoscedastic noise,
  mean = 1/T sum_t f_t(x), var = sigma^2 + 1/T sum_t f_t(x)^2 - mean^2 (the paper's moment estimator, with
  the noise variance sigma^2 learned like `map`'s, under dropout, instead of set through the model precision
  tau from a prior length-scale).

Only the dropout modules are switched to train mode at prediction; every other layer stays in eval mode. The
dropout masks are drawn from torch's global RNG, which the runner seeds with the run's seed, so predictions
are reproducible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated, Iterator

import torch
from torch import Tensor, nn

from uqbench.config import AT_LEAST_ONE, PROBABILITY, Checked
from uqbench.likelihoods import default_likelihood
from uqbench.methods.base import FitContext, Method, methods
from uqbench.models.network import Network
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


@contextlib.contextmanager
def dropout_active(module: nn.Module) -> Iterator[None]:
    """Put only the dropout layers of `module` in train mode for the body; restore their modes afterwards."""
    layers = [m for m in module.modules() if isinstance(m, DROPOUT_TYPES)]
    modes = [m.training for m in layers]
    try:
        for m in layers:
            m.train()
        yield
    finally:
        for m, mode in zip(layers, modes):
            m.train(mode)


class MCDropoutPredictor:
    """Averages `samples` stochastic forward passes of a dropout network."""

    def __init__(self, network: Network, samples: int):
        self.network = network
        self.samples = samples

    def sample_outputs(self, x: Tensor) -> Tensor:
        """Outputs of `samples` passes with fresh dropout masks: [T, N, K] (logits or means, standardised units)."""
        with dropout_active(self.network):
            return torch.stack([self.network(x) for _ in range(self.samples)])

    def predict(self, x: Tensor) -> Prediction:
        likelihood, params = self.network.likelihood, self.network.likelihood_params()
        return likelihood.mixture(self.sample_outputs(x), params, moment_matched=True)


@methods.register("mc-dropout")
class MCDropout(Method):
    """MC dropout: dropout kept on at test time, T stochastic passes averaged (Gal & Ghahramani 2016)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """Hyperparameters of `mc-dropout`.

        Attributes:
            p: dropout probability after every hidden layer (MLP), conv block (CNN) or between the convolutions of
                a residual block, in training and at test time. The paper's UCI experiments tune it over
                {0.005, 0.01, 0.05, 0.1}; tune it per task.
            samples: T, the number of stochastic forward passes averaged at prediction.
        """

        p: Annotated[float, PROBABILITY] = 0.05
        samples: Annotated[int, AT_LEAST_ONE] = 50

    def fit(self, data: TaskData, ctx: FitContext) -> MCDropoutPredictor:
        backbone = ctx.make_backbone(dropout=self.config.p)
        network = Network.linear(backbone, default_likelihood(data.kind), data.out_dim).to(ctx.device)
        val = None if data.val is None else (data.val.x, data.val.y)
        ctx.fit(network, network.loss, (data.train.x, data.train.y), params=network.param_groups(),
                val=val, val_loss_fn=network.nll, description="mc-dropout")
        return MCDropoutPredictor(network, self.config.samples)
