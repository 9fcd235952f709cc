"""MAP: the deterministic baseline — one network trained by maximum a posteriori estimation.

Classification minimises cross-entropy; regression minimises the Gaussian negative log-likelihood with a
learned homoscedastic noise variance per output (standardised units): the task kind's default likelihood
(`uqbench.likelihoods.default_likelihood`). The prior is weight decay on the network weights (`weight_decay` of
the task's training config); the noise parameter is not decayed.

`train_map_network` is shared: `laplace`, `vbll --set training=post` and `ensemble` start from the same trained
network, taken from the artifact cache when a run on the same (task, seed, split) already trained it; `temperature`
trains it on the training rows minus a held-out validation part, under a key that names that part; `ddu` trains
its spectrally normalised variant through it, cached under a key of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from uqbench.config import Checked
from uqbench.likelihoods import default_likelihood
from uqbench.methods.base import FitContext, Method, methods
from uqbench.models.network import Network
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData


def train_map_network(data: TaskData, ctx: FitContext, holdout: dict[str, Any] | None = None, *,
                      spectral_norm: float | None = None) -> tuple[Network, str]:
    """The trained MAP network (linear head, default likelihood) for this run, from the artifact cache or trained
    now; returns (network, artifact id).

    Args:
        holdout: for a caller whose `data.train` is the run's training split minus a validation part it holds
            out: a JSON-ready description of that part (rule, fraction, seed), added to the artifact key, so that
            runs holding out the same rows share the network and it is never taken for `map`'s, trained on all.
        spectral_norm: the bound of the backbone's spectrally normalised variant (its key then names it); None:
            the plain backbone.
    """
    likelihood = default_likelihood(data.kind)

    def build() -> Network:
        return Network.linear(ctx.make_backbone(spectral_norm=spectral_norm), likelihood, data.out_dim).to(ctx.device)

    def train(net: Network) -> None:
        ctx.fit(net, net.loss, (data.train.x, data.train.y), params=net.param_groups(),
                val=_val(data), val_loss_fn=net.nll, description="map")

    key = {"artifact": "map-network", "backbone": ctx.backbone.__dict__, **ctx.artifact_key}
    if holdout is not None:
        key["holdout"] = holdout
    if spectral_norm is not None:  # added only then, so the plain network's key (and cached file) stays as it was
        key["spectral_norm"] = spectral_norm
    return ctx.artifacts.get_or_train("map", key, build, train, seed=ctx.seed)


def _val(data: TaskData) -> tuple[Tensor, Tensor] | None:
    return None if data.val is None else (data.val.x, data.val.y)


class MAPPredictor:
    """Predictor of a single trained network."""

    def __init__(self, network: Network):
        self.network = network

    def predict(self, x: Tensor) -> Prediction:
        return self.network.predictive(x)


@methods.register("map")
class MAP(Method):
    """Deterministic network, maximum a posteriori (weight decay as the prior)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        pass

    def fit(self, data: TaskData, ctx: FitContext) -> MAPPredictor:
        network, _ = train_map_network(data, ctx)
        return MAPPredictor(network)
