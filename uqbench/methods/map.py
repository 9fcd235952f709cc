"""MAP: the deterministic baseline — one network trained by maximum a posteriori estimation.

Classification minimises cross-entropy; regression minimises the Gaussian negative log-likelihood with a
learned homoscedastic noise variance per output (standardised units). The prior is weight decay on the
network weights (`weight_decay` of the task's training config); the noise parameter is not decayed.

`train_map_network` is shared: `laplace`, `vbll --set training=post` and `ensemble` start from the same trained
network, taken from the artifact cache when a run on the same (task, seed, split) already trained it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from uqbench.methods.base import FitContext, Method, methods
from uqbench.prediction import Categorical, Gaussian, Prediction
from uqbench.tasks.base import TaskData


class MAPNetwork(nn.Module):
    """Backbone + linear head (+ log noise standard deviation [D] for regression).

    forward(x [B, *in_shape]) -> logits [B, C] or predictive means [B, D].
    """

    def __init__(self, backbone: nn.Module, out_dim: int, regression: bool):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, out_dim)
        self.log_noise = nn.Parameter(torch.zeros(out_dim)) if regression else None

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def noise_var(self) -> Tensor:
        """Observation noise variance [D] (regression only)."""
        return torch.exp(2 * self.log_noise)

    def nll(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative log-likelihood per example [B] (nats, constants dropped)."""
        out = self(x)
        if self.log_noise is None:
            return F.cross_entropy(out, y, reduction="none")
        return gaussian_nll(out, y, self.log_noise)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood of the batch."""
        return self.nll(x, y).mean()

    def param_groups(self) -> list[dict]:
        """Optimiser groups: everything decayed except the noise parameter."""
        decayed = [p for n, p in self.named_parameters() if n != "log_noise"]
        groups: list[dict] = [{"params": decayed}]
        if self.log_noise is not None:
            groups.append({"params": [self.log_noise], "weight_decay": 0.0})
        return groups

    def predictive(self, x: Tensor) -> Prediction:
        out = self(x)
        if self.log_noise is None:
            return Categorical(torch.softmax(out, dim=-1))
        return Gaussian(out, self.noise_var().expand_as(out).clone())


def gaussian_nll(mean: Tensor, y: Tensor, log_std: Tensor) -> Tensor:
    """Per example sum_d [log sigma_d + (y - mean)^2 / (2 sigma_d^2)] (constants dropped): [B].

    mean, y: [B, D]; log_std: [D] or [B, D].
    """
    return (log_std + 0.5 * (y - mean) ** 2 * torch.exp(-2 * log_std)).sum(-1)


def train_map_network(data: TaskData, ctx: FitContext) -> tuple[MAPNetwork, str]:
    """The trained MAP network for this run, from the artifact cache or trained now; returns (network, id)."""
    regression = data.kind == "regression"

    def build() -> MAPNetwork:
        return MAPNetwork(ctx.make_backbone(), data.out_dim, regression).to(ctx.device)

    def train(net: MAPNetwork) -> None:
        ctx.fit(net, net.loss, (data.train.x, data.train.y), params=net.param_groups(),
                val=_val(data), val_loss_fn=net.nll, description="map")

    key = {"artifact": "map-network", "backbone": ctx.backbone.__dict__, **ctx.artifact_key}
    return ctx.artifacts.get_or_train("map", key, build, train, seed=ctx.seed)


def _val(data: TaskData) -> tuple[Tensor, Tensor] | None:
    return None if data.val is None else (data.val.x, data.val.y)


class MAPPredictor:
    """Predictor of a single trained network."""

    def __init__(self, network: MAPNetwork):
        self.network = network

    def predict(self, x: Tensor) -> Prediction:
        return self.network.predictive(x)


@methods.register("map")
class MAP(Method):
    """Deterministic network, maximum a posteriori (weight decay as the prior)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config:
        pass

    def fit(self, data: TaskData, ctx: FitContext) -> MAPPredictor:
        network, _ = train_map_network(data, ctx)
        return MAPPredictor(network)
