"""The authors' `vbll` package as a reference runner: their `vbll.Regression` layer on the run's backbone, trained
with the run's recipe, so that uqbench's `vbll` can be compared with it under one protocol (`harrison2024`).

It is not one of the benchmark's methods: `all` and patterns leave it out, and it needs the package, a test-only
dependency of uqbench (`pip install vbll==0.4.9`); without it `run` refuses with that line and `compare` skips it.
The paper's priors are given in uqbench's units (prior variance 1, inverse-Wishart W^-1(1, 1), lambda = 1/T) and
mapped to the package's parameters (its `prior_scale` is divided by the feature width d, so it gets d times the
prior variance). As the authors do, the layer is excluded from weight decay. Everything else is the package's own:
its random initialisation (noise scale drawn from N(0, 1) * log(wishart_scale)), its loss and its predictive.
One exception on request: `mean_init="main"` rescales the wheel's W_mean ~ N(0, 1) to N(0, 2/d), the initialisation
of the authors' GitHub main since October 2025 (commit fdc6ad0, not released) and of uqbench's `vbll`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn

from uqbench.config import POSITIVE, Checked
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.vbll import head_groups
from uqbench.prediction import Gaussian, Prediction
from uqbench.tasks.base import TaskData, TaskKind

INSTALL = "pip install vbll==0.4.9"


class PackagePredictor:
    """The package's predictive N(w^T phi, phi^T S phi + sigma^2) on the trained backbone's features."""

    def __init__(self, backbone: nn.Module, head: nn.Module, info: dict[str, Any]):
        self.backbone, self.head, self.info = backbone, head, info

    def predict(self, x: Tensor) -> Prediction:
        predictive = self.head(self.backbone(x)).predictive
        return Gaussian(predictive.mean, predictive.variance)


@methods.register("vbll-package")
class VBLLPackage(Method):
    """The authors' vbll package, regression layer (reference runner of the harrison2024 protocol; needs vbll)."""

    kinds = frozenset({"regression"})
    reference = True

    @dataclass(frozen=True)
    class Config(Checked):
        """The layer's settings in uqbench's units (those of `vbll`'s config).

        Attributes:
            parameterization: covariance of q(W): 'dense', 'diagonal' or 'lowrank' (rank 3, the package's default).
            prior_scale: prior variance of each last-layer weight (handed to the package as d * prior_scale).
            wishart_scale: Psi of the inverse-Wishart noise prior.
            dof: nu of that prior.
            mean_init: W_mean's initialisation: 'wheel' (the released 0.4.9 wheel's N(0, 1)) or 'main' (N(0, 2/d),
                the authors' GitHub main since October 2025).
        """

        parameterization: Literal["dense", "diagonal", "lowrank"] = "dense"
        prior_scale: Annotated[float, POSITIVE] = 1.0
        wishart_scale: Annotated[float, POSITIVE] = 1.0
        dof: Annotated[float, POSITIVE] = 1.0
        mean_init: Literal["wheel", "main"] = "wheel"

    def supports(self, kind: TaskKind) -> str | None:
        if importlib.util.find_spec("vbll") is None:
            return f"needs the authors' package, which is not installed ({INSTALL})"
        return super().supports(kind)

    def fit(self, data: TaskData, ctx: FitContext) -> PackagePredictor:
        cfg = self.config
        backbone = ctx.make_backbone()
        d, weight = backbone.out_features, 1.0 / len(data.train)
        head = make_head(cfg, d, data.out_dim, weight).to(ctx.device)
        network = nn.ModuleDict({"backbone": backbone, "head": head})

        def loss(x: Tensor, y: Tensor) -> Tensor:
            return head(backbone(x)).train_loss_fn(y)

        def val_nll(x: Tensor, y: Tensor) -> Tensor:
            return -head(backbone(x)).predictive.log_prob(y).sum(-1)

        val = None if data.val is None else (data.val.x, data.val.y)
        params = [{"params": list(backbone.parameters())}, *head_groups(head)]
        ctx.fit(network, loss, (data.train.x, data.train.y), params=params, val=val, val_loss_fn=val_nll,
                description="vbll-package")
        info = {"vbll-package.version": _version(), "vbll-package.prior_scale": d * cfg.prior_scale,
                "vbll-package.regularization_weight": weight}
        return PackagePredictor(backbone, head, info)


def make_head(cfg: VBLLPackage.Config, d: int, outputs: int, weight: float) -> nn.Module:
    """The package's `vbll.Regression` on d features with `cfg` in uqbench's units and the chosen W_mean init."""
    import vbll

    rank = {"cov_rank": 3} if cfg.parameterization == "lowrank" else {}
    head = vbll.Regression(d, outputs, weight, cfg.parameterization, prior_scale=d * cfg.prior_scale,
                           wishart_scale=cfg.wishart_scale, dof=cfg.dof, **rank)
    if cfg.mean_init == "main":
        with torch.no_grad():
            head.W_mean.mul_(math.sqrt(2.0 / d))
    return head


def _version() -> str:
    from importlib.metadata import version

    return version("vbll")
