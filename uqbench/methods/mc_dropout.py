"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian approximation", ICML).

A network with dropout after every hidden layer is trained as usual (the MAP objective of `map`, with dropout
active); at test time dropout stays on and T stochastic forward passes are averaged:

- classification: p(y | x) = 1/T sum_t softmax(f_t(x)), the Monte Carlo estimate of the predictive;
- regression, `predictive=moments` (default): the moment-matched Gaussian of the T sampled means plus the noise,
  mean = 1/T sum_t f_t(x), var = sigma^2 + 1/T sum_t f_t(x)^2 - mean^2 (the paper's moment estimator);
  `predictive=mixture`: the exact density of the T-component mixture 1/T sum_t N(f_t(x), sigma^2), what Gal's code
  scores (its test log-likelihood is logsumexp_t(-tau/2 (y - f_t)^2) - log T - log(2 pi)/2 + log(tau)/2).

The noise: by default sigma^2 is learned like `map`'s, under dropout (trained on the Gaussian NLL). With `tau`,
it is fixed at 1/tau in original target units, as in the paper, and the network is trained as Gal's code trains
it: on the mean squared error of the standardised targets, plus, with `length_scale` l, the L2 term
reg * sum(W^2) on every weight matrix (not the biases), reg = l^2 (1 - p) / (2 N tau), N the training rows (the
paper's prior length-scale; Keras' `l2(reg)`), applied as the weight decay 2 reg of the weight matrices (the same
gradient, for Adam and SGD; the recipe's weight decay is not used then). `input_dropout`
drops the inputs too (Gal's UCI networks: Dropout(p) before the first layer).

Only the dropout modules are switched to train mode at prediction; every other layer stays in eval mode. The
dropout masks are drawn from torch's global RNG, which the runner seeds with the run's seed, so predictions
are reproducible. The T passes run as batched forward passes over copies of the input (each copy draws its own
masks), in chunks of about `PASS_ROWS` rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated, Callable, Iterator, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from uqbench.config import AT_LEAST_ONE, POSITIVE, PROBABILITY, Checked
from uqbench.errors import BadConfig
from uqbench.likelihoods import Gaussian, default_likelihood
from uqbench.methods.base import FitContext, Method, methods
from uqbench.models.network import Network
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
PASS_ROWS = 1 << 18  # rows (copies x inputs) per batched stochastic forward pass


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
    """Averages `samples` stochastic forward passes of a dropout network (or keeps them as a mixture)."""

    def __init__(self, network: Network, samples: int, mixture: bool = False):
        self.network = network
        self.samples = samples
        self.mixture = mixture

    def sample_outputs(self, x: Tensor) -> Tensor:
        """Outputs of `samples` passes with fresh dropout masks: [T, N, K] (logits or means, standardised units)."""
        copies = max(1, PASS_ROWS // max(1, x.shape[0]))
        outs = []
        with dropout_active(self.network):
            for start in range(0, self.samples, copies):
                t = min(copies, self.samples - start)
                out = self.network(x.expand(t, *x.shape).reshape(t * x.shape[0], *x.shape[1:]))
                outs.append(out.reshape(t, x.shape[0], -1))
        return torch.cat(outs)

    def predict(self, x: Tensor) -> Prediction:
        likelihood, params = self.network.likelihood, self.network.likelihood_params()
        return likelihood.mixture(self.sample_outputs(x), params, moment_matched=not self.mixture)


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
            samples: T, the number of stochastic forward passes averaged at prediction (Gal's code: 10,000).
            input_dropout: also drop the inputs with probability p (MLP backbones; Gal's UCI networks).
            tau: regression: the noise precision 1 / sigma^2 in original target units, fixed instead of learned;
                the network then trains on the squared error (Gal's code). None: sigma is learned.
            length_scale: with `tau`: the prior length-scale l of the L2 term on the weight matrices, reg =
                l^2 (1 - p) / (2 N tau) (Gal's code: 1e-2; naval 1, yacht 0.1); None: the recipe's weight decay.
            predictive: regression: 'moments' (the moment-matched Gaussian) or 'mixture' (the exact density of the
                T-sample mixture, Gal's test log-likelihood).
        """

        p: Annotated[float, PROBABILITY] = 0.05
        samples: Annotated[int, AT_LEAST_ONE] = 50
        input_dropout: bool = False
        tau: Annotated[float | None, POSITIVE] = None
        length_scale: Annotated[float | None, POSITIVE] = None
        predictive: Literal["moments", "mixture"] = "moments"

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.length_scale is not None and self.tau is None:
                raise BadConfig("'length_scale' needs 'tau' (its L2 term is l^2 (1 - p) / (2 N tau)); got tau=None")

    def fit(self, data: TaskData, ctx: FitContext) -> MCDropoutPredictor:
        cfg = self.config
        if cfg.tau is not None and data.kind != "regression":
            raise BadConfig("method 'mc-dropout': 'tau' is a regression noise precision; got a classification task")
        backbone = ctx.make_backbone(dropout=cfg.p, input_dropout=cfg.p if cfg.input_dropout else 0.0)
        likelihood = default_likelihood(data.kind)
        if cfg.tau is not None:  # 1 / tau in original units, in the standardised units the network predicts
            assert data.target_scale is not None
            likelihood = Gaussian(fixed_var=float(1.0 / (cfg.tau * data.target_scale.square().mean())))
        network = Network.linear(backbone, likelihood, data.out_dim).to(ctx.device)
        val = None if data.val is None else (data.val.x, data.val.y)
        loss, params = network.loss, network.param_groups()
        if cfg.tau is not None:
            loss, params = self._gal_objective(network, len(data.train), ctx.recipe.optimizer)
        ctx.fit(network, loss, (data.train.x, data.train.y), params=params, val=val, val_loss_fn=network.nll,
                description="mc-dropout")
        return MCDropoutPredictor(network, cfg.samples, mixture=cfg.predictive == "mixture")

    def _gal_objective(self, network: Network, n: int, optimizer: str) -> tuple[Callable[[Tensor, Tensor], Tensor], list[dict]]:
        """Gal's training loss, the mean squared error, and its parameter groups: with `length_scale`, the weight
        matrices decayed by 2 reg, the gradient of Keras' reg * sum(W^2) (so the same as that term in the loss for
        Adam and SGD, whose weight decay is added to the gradient), the biases not at all."""
        cfg = self.config

        def loss(x: Tensor, y: Tensor) -> Tensor:
            return F.mse_loss(network(x), y)

        if cfg.length_scale is None:
            return loss, network.param_groups()
        if optimizer == "adamw":
            raise BadConfig("method 'mc-dropout': 'length_scale' is an L2 term in the loss, which AdamW's decoupled "
                            "weight decay is not; use optimizer=adam (Gal's code) or sgd")
        assert cfg.tau is not None
        reg = cfg.length_scale**2 * (1 - cfg.p) / (2 * n * cfg.tau)
        kernels = {id(m.weight) for m in network.modules() if isinstance(m, nn.Linear)}
        params = list(network.parameters())
        return loss, [{"params": [p for p in params if id(p) in kernels], "weight_decay": 2 * reg},
                      {"params": [p for p in params if id(p) not in kernels], "weight_decay": 0.0}]
