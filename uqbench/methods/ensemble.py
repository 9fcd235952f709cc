"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive uncertainty
estimation using deep ensembles", NeurIPS).

M networks of the task's architecture, each from its own random initialisation and seeing the training data in
its own order, are trained by maximum likelihood and combined with uniform weights:

- classification: p(y | x) = 1/M sum_m softmax(f_m(x));
- regression: each member has a second output through a softplus, its variance sigma_m^2 = softplus(s_m(x)) +
  1e-6 (the paper's positivity floor), trained with the Gaussian NLL, and the ensemble is the uniform Gaussian
  mixture 1/M sum_m N(mu_m(x), sigma_m^2(x)). The paper scores the moment-matched Gaussian of that mixture (the
  evaluator's `nll_moments`); the evaluator's `nll` is the exact mixture density, RMSE uses its mean. With
  `heteroscedastic=false` every member instead has `map`'s learned constant noise.

The members are trained together as one batched model: every layer of a `StackedNetworks`
(`uqbench.models.stacked`) holds all M members' parameters (a linear layer becomes one batched matrix product, a
convolution or batch norm one layer over M groups of channels), so one step of the training loop (`fit_module`)
updates all members with as many kernel launches as one network needs, and M members cost far less than M separate
runs on a CPU. The members stay independent: the loss is the sum of the members' losses, nothing in a layer mixes
members, and the optimiser's updates act element-wise, so each member follows the path it would follow alone. Two
exceptions come from the one training loop: `grad_clip` bounds the norm of all members' gradients together, and
early stopping (`patience`) stops every member at the epoch of the best summed validation loss. The training data
is an index tensor; member m reads example `perm_m[i]` where the loop reads example i, `perm_m` being a fixed
random permutation of its own, so every member sees every example once per epoch, in its own order.

Where member 0 can be an ordinary `map` network (its likelihood is `map`'s: classification, or regression with
`heteroscedastic=false`) it *is* the cached MAP network of this (task, seed, split), reused from the artifact cache
when `map`, `laplace` or post-trained `vbll` ran first; the run record names the artifact. Hence `ensemble` with
`members=1` (and `heteroscedastic=false` for regression) predicts exactly what `map` predicts on the same seed.
The paper's adversarial training (its Algorithm 1) is `adversarial` (off by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import numpy as np
import torch
from torch import Tensor

from uqbench.config import AT_LEAST_ONE, POSITIVE, Checked
from uqbench.likelihoods import Likelihood, default_likelihood
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import train_map_network
from uqbench.models.network import Network
from uqbench.models.stacked import StackedNetworks
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData
from uqbench.training import seeded


def per_member(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Members' likelihood parameters [M, ...] made broadcastable against member outputs [M, B, K]: [M, 1, ...]."""
    return {name: value[:, None] for name, value in params.items()}


class EnsemblePredictor:
    """Uniform mixture of the members: the cached MAP network (if reused) followed by the stacked members."""

    def __init__(self, likelihood: Likelihood, map_network: Network | None, stacked: StackedNetworks | None):
        self.likelihood = likelihood
        self.map_network = map_network
        self.stacked = stacked

    def member_outputs(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Raw outputs of every member [M, N, K] and the members' likelihood parameters (e.g. log_noise [M, D])."""
        outs, params = [], []
        if self.map_network is not None:
            outs.append(self.map_network(x)[None])
            params.append({k: v[None] for k, v in self.map_network.likelihood_params().items()})
        if self.stacked is not None:
            outs.append(self.stacked(x, shared=True))
            params.append(self.stacked.network.likelihood_params())
        return torch.cat(outs), {k: torch.cat([p[k] for p in params]) for k in params[0]}

    def predict(self, x: Tensor) -> Prediction:
        out, params = self.member_outputs(x)
        return self.likelihood.mixture(out, per_member(params))


def member_seed(seed: int, member: int) -> int:
    """Seed of one member's initialisation and data permutation, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


def fast_gradient_sign(loss: Callable[[Tensor], Tensor], x: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
    """The loss at x (its graph kept) and the adversarial inputs x + step * sign(d loss / dx), detached.

    x: [..., *in_shape]; step: broadcastable against x (eps times each input dimension's range).
    """
    x = x.detach().requires_grad_(True)
    value = loss(x)
    (grad,) = torch.autograd.grad(value, x, retain_graph=True)
    return value, (x + step * grad.sign()).detach()


def train_stacked(data: TaskData, ctx: FitContext, likelihood: Likelihood, members: list[int],
                  adversarial: float | None = None) -> StackedNetworks:
    """Build members (each initialised from `member_seed(seed, m)`) and train them as one batched model.

    With `adversarial` = eps, every step also trains each member on its own adversarial batch (the paper's
    Algorithm 1, fast gradient sign): x' = x + eps * range * sign(grad_x loss), range the per-input range over the
    training split, and the step's loss is loss(x) + loss(x').
    """
    networks, perms = [], []
    n = len(data.train)
    for m in members:
        with seeded(member_seed(ctx.seed, m)):
            networks.append(Network.linear(ctx.make_backbone(), likelihood, data.out_dim))
        perms.append(torch.randperm(n, generator=torch.Generator().manual_seed(member_seed(ctx.seed, m))))
    model = StackedNetworks(networks).to(ctx.device)
    x, y = data.train.x.to(ctx.device), data.train.y.to(ctx.device)
    perm = torch.stack(perms).to(ctx.device)  # [M, N]

    def nll(out: Tensor, targets: Tensor) -> Tensor:
        """[M, B] per member and example (nats, constants dropped)."""
        return likelihood.nll(out, targets, per_member(model.network.likelihood_params()))

    augment = ctx.train_transform
    aug_generator = torch.Generator().manual_seed(ctx.seed)

    step = None if adversarial is None else adversarial * (x.amax(0) - x.amin(0))  # per input dimension

    def loss(idx: Tensor) -> Tensor:
        rows = perm[:, idx]  # [M, B]: member m's examples for this step
        xb = x[rows]
        if augment is not None:
            xb = augment(xb.flatten(0, 1), aug_generator).unflatten(0, rows.shape)
        def batch_loss(inputs: Tensor) -> Tensor:  # members are independent: grad_x is each member's own
            return nll(model(inputs), y[rows]).mean(1).sum()

        if step is None:
            return batch_loss(xb)
        clean, shifted = fast_gradient_sign(batch_loss, xb, step)
        return clean + batch_loss(shifted)

    def val_loss(xv: Tensor, yv: Tensor) -> Tensor:
        return nll(model(xv, shared=True), yv.expand(len(model), *yv.shape)).sum(0)

    val = None if data.val is None else (data.val.x, data.val.y)
    ctx.fit(model, loss, (torch.arange(n),), params=model.network.param_groups(),
            val=val, val_loss_fn=val_loss, batch_transform=None, generators=(aug_generator,), description="ensemble")
    return model


@methods.register("ensemble")
class DeepEnsemble(Method):
    """Deep ensemble of M networks trained as one batched model (Lakshminarayanan et al. 2017)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """Hyperparameters of `ensemble`.

        Attributes:
            members: M, the number of networks.
            heteroscedastic: regression only: members predict an input-dependent variance (the paper); false
                gives `map`'s learned constant noise per member, and member 0 is then the cached MAP network.
            adversarial: eps of the paper's adversarial training, as a fraction of each input dimension's range
                over the training split (the paper: 0.01); none: off. Every member then trains on its own
                adversarial examples, so none of them is the cached MAP network.
        """

        members: Annotated[int, AT_LEAST_ONE] = 5
        heteroscedastic: bool = True
        adversarial: Annotated[float | None, POSITIVE] = None

    def fit(self, data: TaskData, ctx: FitContext) -> EnsemblePredictor:
        cfg = self.config
        likelihood = default_likelihood(data.kind, heteroscedastic=cfg.heteroscedastic)
        map_network = None
        if likelihood == default_likelihood(data.kind) and cfg.adversarial is None:  # a member can be the MAP network
            map_network, _ = train_map_network(data, ctx)
        rest = list(range(0 if map_network is None else 1, cfg.members))
        stacked = train_stacked(data, ctx, likelihood, rest, cfg.adversarial) if rest else None
        return EnsemblePredictor(likelihood, map_network, stacked)
