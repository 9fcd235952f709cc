"""VBLL: variational Bayesian last layers (Harrison, Willes & Snoek, ICLR 2024, arXiv 2404.11599).

A deterministic backbone phi(x) with a Bayesian last layer whose posterior q is Gaussian and whose training
objective is sampling-free (the heads and their maths are in `vbll_heads.py`). Regression uses the regression
head; classification the discriminative head (D-VBLL, `head=disc`) or the generative one (G-VBLL, `head=gen`).

`training=joint` trains backbone and head together on the VBLL objective (the paper's full training);
`training=post` takes the trained MAP network (`map`, shared through the artifact cache), freezes its backbone
and fits only a fresh VBLL head on its features (the paper's post-training). The head is never weight-decayed:
its KL term is already its prior.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn

from uqbench.config import AT_LEAST_ONE, POSITIVE, Checked
from uqbench.errors import BadConfig
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import train_map_network
from uqbench.methods.vbll_heads import (
    DiscriminativeHead,
    GenerativeHead,
    Head,
    HeadConfig,
    Parameterization,
    RegressionHead,
)
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData, TaskKind
from uqbench.training import NOISE

FEATURE_BATCH = 1024  # examples per backbone pass when post-training precomputes features


class VBLLNetwork(nn.Module):
    """Backbone + VBLL head. forward(x [B, *in_shape]) -> features [B, d]."""

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The head's training objective on the batch (scalar)."""
        return self.head_loss(self.backbone(x), y)

    def head_loss(self, phi: Tensor, y: Tensor) -> Tensor:
        """The head's objective on features phi [B, d], in float32 even under mixed-precision training: its
        variance and log-determinant terms lose too much in half precision."""
        with torch.autocast(phi.device.type, enabled=False):
            return self.head.loss(phi.float(), y)

    def nll(self, x: Tensor, y: Tensor) -> Tensor:
        """Predictive negative log-likelihood per example [B] (nats), for early stopping."""
        return self.head.nll(self.backbone(x), y)

    def param_groups(self) -> list[dict]:
        """Backbone with the recipe's weight decay; the head without (its KL is its prior)."""
        return [{"params": [p for p in self.backbone.parameters() if p.requires_grad]}, *head_groups(self.head)]


def head_groups(head: nn.Module) -> list[dict]:
    """A head's parameters without weight decay; its noise (`noise_logdiag`) in a group of its own that trains at
    the recipe's `noise_lr`."""
    named = list(head.named_parameters())
    noise = [p for n, p in named if n == "noise_logdiag"]
    groups: list[dict] = [{"params": [p for n, p in named if n != "noise_logdiag"], "weight_decay": 0.0}]
    return groups + ([{"params": noise, "weight_decay": 0.0, NOISE: True}] if noise else [])


class VBLLPredictor:
    """Predictor of a trained backbone + VBLL head; `info` holds the resolved hyperparameters."""

    def __init__(self, network: VBLLNetwork, info: dict[str, Any]):
        self.network = network
        self.info = info

    def predict(self, x: Tensor) -> Prediction:
        return self.network.head.predictive(self.network(x))

    def ood_score(self, x: Tensor) -> Tensor | None:
        return self.network.head.ood_score(self.network(x))


@methods.register("vbll")
class VBLL(Method):
    """Variational Bayesian last layers (Harrison, Willes & Snoek, ICLR 2024)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """VBLL hyperparameters; the defaults are the paper's (N(0, I) last-layer prior, IW(1, 1) noise prior).

        Attributes:
            head: classification head: 'disc' (D-VBLL) or 'gen' (G-VBLL); regression always uses its own head.
            training: 'joint' (backbone and head together) or 'post' (head on the frozen MAP backbone).
            parameterization: covariance of q(W): 'dense', 'diagonal' or 'lowrank'; none: 'dense', except
                'diagonal' for G-VBLL (the only one it supports).
            cov_rank: rank of the low-rank factor; required with parameterization='lowrank'.
            regularization_weight: lambda, the weight of the KL and noise-prior terms; none: 1 / training size.
            prior_scale: prior variance of each last-layer weight (vbll 0.4.9 divides its prior_scale by d for
                regression and multiplies it by 2/d for D-VBLL; it uses it as is for G-VBLL).
            wishart_scale: scale Psi of the inverse-Wishart prior on the noise covariance.
            dof: degrees of freedom nu of that prior.
            mc_samples: D-VBLL predictive: logit samples averaged by randomised quasi-Monte Carlo (scrambled
                Sobol, seeded by the run's seed, so deterministic).
        """

        head: Literal["disc", "gen"] = "disc"
        training: Literal["joint", "post"] = "joint"
        parameterization: Literal["dense", "diagonal", "lowrank"] | None = None
        cov_rank: Annotated[int | None, AT_LEAST_ONE] = None
        regularization_weight: Annotated[float | None, POSITIVE] = None
        prior_scale: Annotated[float, POSITIVE] = 1.0
        wishart_scale: Annotated[float, POSITIVE] = 1.0
        dof: Annotated[float, POSITIVE] = 1.0
        mc_samples: Annotated[int, AT_LEAST_ONE] = 1024

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.parameterization == "lowrank" and self.cov_rank is None:
                raise BadConfig(
                    f"'cov_rank' must be a positive integer with parameterization='lowrank'; got {self.cov_rank}"
                )
            if self.cov_rank is not None and self.parameterization != "lowrank":
                raise BadConfig(f"'cov_rank' needs parameterization='lowrank'; got {self.parameterization!r}")
            if self.head == "gen" and self.parameterization not in (None, "diagonal"):
                raise BadConfig(f"'parameterization' must be 'diagonal' with head='gen'; got {self.parameterization!r}")

    def supports(self, kind: TaskKind) -> str | None:
        if kind == "regression" and self.config.head == "gen":
            return "with head='gen' (G-VBLL) is for classification only"
        return super().supports(kind)

    def fit(self, data: TaskData, ctx: FitContext) -> VBLLPredictor:
        cfg = self.config
        self.check_kind(data.kind)
        head_cfg = self.head_config(len(data.train), data.kind, ctx.seed)
        if cfg.training == "joint":
            network, backbone_id = self._fit_joint(data, ctx, head_cfg), None
        else:
            network, backbone_id = self._fit_post(data, ctx, head_cfg)
        return VBLLPredictor(network, self._info(data.kind, head_cfg, network, backbone_id))

    def head_config(self, n_train: int, kind: str, seed: int = 0) -> HeadConfig:
        """The resolved head hyperparameters for a training set of `n_train` examples of `kind`."""
        cfg = self.config
        gen = kind == "classification" and cfg.head == "gen"
        parameterization: Parameterization = cfg.parameterization or ("diagonal" if gen else "dense")
        weight = cfg.regularization_weight if cfg.regularization_weight is not None else 1.0 / n_train
        return HeadConfig(parameterization, cfg.cov_rank, weight, cfg.prior_scale, cfg.wishart_scale, cfg.dof,
                          cfg.mc_samples, sampler_seed=seed)

    def make_head(self, in_features: int, out_dim: int, kind: str, head_cfg: HeadConfig) -> Head:
        """A freshly initialised head (draws from the global RNG)."""
        if kind == "regression":
            return RegressionHead(in_features, out_dim, head_cfg)
        if self.config.head == "gen":
            return GenerativeHead(in_features, out_dim, head_cfg)
        return DiscriminativeHead(in_features, out_dim, head_cfg)

    def _fit_joint(self, data: TaskData, ctx: FitContext, head_cfg: HeadConfig) -> VBLLNetwork:
        backbone = ctx.make_backbone()
        head = self.make_head(backbone.out_features, data.out_dim, data.kind, head_cfg).to(ctx.device)
        network = VBLLNetwork(backbone, head)
        val = None if data.val is None else (data.val.x, data.val.y)
        ctx.fit(network, network.loss, (data.train.x, data.train.y), params=network.param_groups(),
                val=val, val_loss_fn=network.nll, description="vbll")
        return network

    def _fit_post(self, data: TaskData, ctx: FitContext, head_cfg: HeadConfig) -> tuple[VBLLNetwork, str]:
        map_network, backbone_id = train_map_network(data, ctx)
        backbone = map_network.backbone.requires_grad_(False).eval()
        head = self.make_head(backbone.out_features, data.out_dim, data.kind, head_cfg).to(ctx.device)
        network = VBLLNetwork(backbone, head)
        train = (features(backbone, data.train.x, ctx.device), data.train.y)
        val = None if data.val is None else (features(backbone, data.val.x, ctx.device), data.val.y)
        # augmentation acts on inputs, and the head sees precomputed features: none in post-training
        ctx.fit(head, network.head_loss, train, params=head_groups(head),
                val=val, val_loss_fn=head.nll, batch_transform=None, description="vbll-post")
        return network, backbone_id

    def _info(self, kind: str, head_cfg: HeadConfig, network: VBLLNetwork, backbone_id: str | None) -> dict[str, Any]:
        """The resolved settings for the run record (keys 'vbll.*')."""
        head = "regression" if kind == "regression" else self.config.head
        d = network.backbone.out_features
        resolved = dataclasses.asdict(head_cfg)
        predictive = PREDICTIVE[head].format(**resolved)
        info = {f"vbll.{k}": v for k, v in resolved.items() if k not in ("mc_samples", "sampler_seed")}
        info.update({
            "vbll.head": head,
            "vbll.training": self.config.training,
            "vbll.features": d,
            # the same prior in the units of vbll 0.4.9's prior_scale argument
            "vbll.package_prior_scale": PACKAGE_PRIOR_SCALE[head](d) * head_cfg.prior_scale,
            "vbll.predictive": predictive,
            "vbll.ood_score": OOD_SCORE[head],
            "vbll.backbone": backbone_id,
        })
        return info


PREDICTIVE = {
    "regression": "closed form Gaussian",
    "disc": "quasi-Monte Carlo, {mc_samples} scrambled-Sobol logit samples, seed {sampler_seed}",
    "gen": "closed form softmax of class log-densities",
}
OOD_SCORE = {
    "regression": "total predictive variance (evaluator default)",
    "disc": "1 - max predictive probability (evaluator default)",
    "gen": "negative feature log-density",
}
PACKAGE_PRIOR_SCALE = {"regression": lambda d: d, "disc": lambda d: d / 2, "gen": lambda d: 1.0}


@torch.no_grad()
def features(backbone: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    """Backbone features of x [N, *in_shape] in batches: [N, d] on `device`."""
    return torch.cat([backbone(x[i : i + FEATURE_BATCH].to(device)) for i in range(0, x.shape[0], FEATURE_BATCH)])
