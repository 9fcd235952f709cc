"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive uncertainty
estimation using deep ensembles", NeurIPS).

M networks of the task's architecture, each from its own random initialisation and seeing the training data in
its own order, are trained by maximum likelihood and combined with uniform weights:

- classification: p(y | x) = 1/M sum_m softmax(f_m(x));
- regression: each member has a second output through a softplus, its variance sigma_m^2 = softplus(s_m(x)) +
  1e-6 (the paper's positivity floor), trained with the Gaussian NLL, and the ensemble is the uniform Gaussian
  mixture 1/M sum_m N(mu_m(x), sigma_m^2(x)). The paper scores the moment-matched Gaussian of that mixture;
  here the evaluator takes NLL from the exact mixture density and RMSE from its mean. With
  `heteroscedastic=false` every member instead has `map`'s learned constant noise.

The members are trained together as one batched model: every layer of a `StackedNetworks` holds all M members'
parameters (a linear layer becomes one batched matrix product, a convolution or batch norm one layer over M
groups of channels), so one step of the training loop (`fit_module`) updates all members with as many kernel
launches as one network needs, and M members cost far less than M separate runs on a CPU. The members stay
independent: the loss is the sum of the members' losses, nothing in a layer mixes members, and the optimiser's
updates act element-wise, so each member follows the path it would follow alone. Two exceptions come from the
one training loop: `grad_clip` bounds the norm of all members' gradients together, and early stopping
(`patience`) stops every member at the epoch of the best summed validation loss. The training data
is an index tensor; member m reads example `perm_m[i]` where the loop reads example i, `perm_m` being a fixed
random permutation of its own, so every member sees every example once per epoch, in its own order.

Where member 0 can be an ordinary `map` network (classification, or regression with `heteroscedastic=false`)
it *is* the cached MAP network of this (task, seed, split), reused from the artifact cache when `map`,
`laplace` or post-trained `vbll` ran first; the run record names the artifact. Hence `ensemble` with `members=1` (and
`heteroscedastic=false` for regression) predicts exactly what `map` predicts on the same seed. The adversarial
training of the paper (optional there) is not used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from uqbench.errors import BadConfig, Unsupported
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import MAPNetwork, gaussian_nll, train_map_network
from uqbench.prediction import Categorical, Gaussian, GaussianMixture, Prediction
from uqbench.tasks.base import TaskData
from uqbench.training import seeded

MIN_VAR = 1e-6  # floor of a member's predicted variance (standardised units), as in the paper
Head = Literal["classification", "homoscedastic", "heteroscedastic"]


class StackedLinear(nn.Module):
    """M `nn.Linear` layers as one batched matrix product: [M * B, ..., in] -> [M * B, ..., out]."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach() for l in layers]))  # [M, out, in]
        bias = [l.bias for l in layers]
        self.bias = nn.Parameter(torch.stack([b.detach() for b in bias])) if bias[0] is not None else None  # [M, out]

    def forward(self, h: Tensor) -> Tensor:
        m, out_features = self.weight.shape[:2]
        rows = h.reshape(m, -1, h.shape[-1])
        if self.bias is None:
            out = torch.bmm(rows, self.weight.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias[:, None, :], rows, self.weight.transpose(1, 2))
        return out.reshape(*h.shape[:-1], out_features)


class ChannelStacked(nn.Module):
    """Runs `layer` (a grouped conv or a batch norm over M * C channels) on members stacked along channels.

    [M * B, C, *S] -> [B, M * C, *S] -> layer -> [B, M * C', *S'] -> [M * B, C', *S'], so member m owns the
    m-th block of channels: a convolution with M times the groups never mixes members, and batch statistics
    are per member.
    """

    def __init__(self, layer: nn.Module, members: int):
        super().__init__()
        self.layer, self.members = layer, members

    def forward(self, h: Tensor) -> Tensor:
        m, b = self.members, h.shape[0] // self.members
        h = h.reshape(m, b, *h.shape[1:]).transpose(0, 1).reshape(b, m * h.shape[1], *h.shape[2:])
        out = self.layer(h)
        out = out.reshape(b, m, out.shape[1] // m, *out.shape[2:]).transpose(0, 1)
        return out.reshape(m * b, *out.shape[2:])


def _stacked_conv(layers: list[nn.Conv2d]) -> nn.Module:
    c, m = layers[0], len(layers)
    if c.padding_mode != "zeros":
        raise Unsupported(f"ensemble: cannot stack a Conv2d with padding_mode={c.padding_mode!r}; only 'zeros'")
    conv = nn.Conv2d(m * c.in_channels, m * c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                     groups=m * c.groups, bias=c.bias is not None)
    conv.weight = nn.Parameter(torch.cat([l.weight.detach() for l in layers]))
    if c.bias is not None:
        conv.bias = nn.Parameter(torch.cat([l.bias.detach() for l in layers]))
    return ChannelStacked(conv, m)


def _stacked_norm(layers: list[nn.Module]) -> nn.Module:
    bn = copy.deepcopy(layers[0])
    bn.num_features *= len(layers)
    for name, tensor in list(bn.named_parameters(recurse=False)) + list(bn.named_buffers(recurse=False)):
        if tensor.ndim == 1:  # per-channel parameters and running statistics (not the scalar batch counter)
            stacked = torch.cat([getattr(l, name).detach() for l in layers])
            setattr(bn, name, nn.Parameter(stacked) if isinstance(tensor, nn.Parameter) else stacked)
    return ChannelStacked(bn, len(layers))


def stack_layers(networks: list[nn.Module]) -> nn.Module:
    """A copy of networks[0] in which every layer holds the parameters of all M networks.

    The copy works on inputs with the members folded into the batch dimension, [M * B, *in_shape] (member m's
    examples in rows m * B .. (m + 1) * B), and returns outputs in the same layout. Layers with parameters
    become batched versions (Linear: one batched matrix product; Conv2d and BatchNorm: M-fold grouped
    channels); layers without parameters act on each example alone and are kept. Parameters owned directly by
    the root module (such as `MAPNetwork.log_noise`) are stacked to [M, *shape].

    Raises:
        Unsupported: a layer with parameters or buffers of another type (or a parametrised weight).
    """
    stacked = copy.deepcopy(networks[0])
    for name, _ in list(stacked.named_parameters(recurse=False)):
        setattr(stacked, name, nn.Parameter(torch.stack([getattr(n, name).detach() for n in networks])))
    for name, module in list(stacked.named_modules()):
        own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        if not name or not own:
            continue
        layers = [n.get_submodule(name) for n in networks]
        if type(module) is nn.Linear:
            stacked.set_submodule(name, StackedLinear(layers))
        elif type(module) is nn.Conv2d:
            stacked.set_submodule(name, _stacked_conv(layers))
        elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
            stacked.set_submodule(name, _stacked_norm(layers))
        else:
            raise Unsupported(f"ensemble: cannot batch layer {name!r} of type {type(module).__name__}; "
                              "layers with parameters must be Linear, Conv2d or BatchNorm1d/2d")
    return stacked


class StackedNetworks(nn.Module):
    """M networks of one architecture trained and evaluated as one model.

    Every layer holds the M members' parameters stacked (see `stack_layers`), so one optimiser step on this
    module updates every member, and one forward pass evaluates all of them with as many kernel launches as one
    network needs.

    Args:
        networks: M >= 1 modules of identical structure (their current weights become the stacked ones).
    """

    def __init__(self, networks: list[nn.Module]):
        super().__init__()
        self.members = len(networks)
        self.network = stack_layers(networks)

    def __len__(self) -> int:
        return self.members

    def param(self, name: str) -> Tensor:
        """A parameter of the stacked network, e.g. 'log_noise' [M, D]."""
        return self.network.get_parameter(name)

    def param_groups(self, no_decay: tuple[str, ...] = ()) -> list[dict]:
        """Optimiser groups: every parameter decayed except those named in `no_decay`."""
        named = list(self.network.named_parameters())
        groups: list[dict] = [{"params": [p for n, p in named if n not in no_decay]}]
        kept = [p for n, p in named if n in no_decay]
        return groups + ([{"params": kept, "weight_decay": 0.0}] if kept else [])

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """Member outputs [M, B, K] for x [M, B, *in_shape] (member m gets x[m]), or for x [B, *in_shape] given
        to every member when `shared`."""
        if shared:
            x = x.expand(self.members, *x.shape)
        out = self.network(x.reshape(-1, *x.shape[2:]))
        return out.reshape(self.members, -1, *out.shape[1:])


def member_nll(out: Tensor, y: Tensor, head: Head, log_noise: Tensor | None = None) -> Tensor:
    """Negative log-likelihood of each member on each example: [M, B] (nats, constants dropped).

    Args:
        out: raw member outputs [M, B, K] (logits, means, or means and variance pre-activations).
        y: class indices [M, B] or standardised targets [M, B, D].
        head: how to read `out`.
        log_noise: [M, D] log noise standard deviations (homoscedastic head only).
    """
    if head == "classification":
        return F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none").view(y.shape)
    if head == "homoscedastic":
        assert log_noise is not None
        return gaussian_nll(out, y, log_noise[:, None, :])
    mean, var = mean_var(out)
    return gaussian_nll(mean, y, 0.5 * var.log())


def mean_var(out: Tensor) -> tuple[Tensor, Tensor]:
    """Split heteroscedastic outputs [..., 2D] into means [..., D] and variances softplus(s) + 1e-6 [..., D]."""
    mean, raw = out.chunk(2, dim=-1)
    return mean, F.softplus(raw) + MIN_VAR


class EnsemblePredictor:
    """Uniform mixture of the members: the cached MAP network (if reused) followed by the stacked members."""

    def __init__(self, head: Head, map_network: MAPNetwork | None, stacked: StackedNetworks | None):
        self.head = head
        self.map_network = map_network
        self.stacked = stacked

    def member_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Raw outputs of every member [M, N, K] and, for the homoscedastic head, log noise std [M, D]."""
        outs, noises = [], []
        if self.map_network is not None:
            outs.append(self.map_network(x)[None])
            if self.head == "homoscedastic":
                noises.append(self.map_network.log_noise[None])
        if self.stacked is not None:
            outs.append(self.stacked(x, shared=True))
            if self.head == "homoscedastic":
                noises.append(self.stacked.param("log_noise"))
        return torch.cat(outs), torch.cat(noises) if noises else None

    def predict(self, x: Tensor) -> Prediction:
        out, log_noise = self.member_outputs(x)
        if self.head == "classification":
            return Categorical(torch.softmax(out, dim=-1).mean(0))
        if self.head == "heteroscedastic":
            means, variances = mean_var(out)
        else:
            assert log_noise is not None
            means, variances = out, torch.exp(2 * log_noise)[:, None, :].expand_as(out).clone()
        if means.shape[0] == 1:
            return Gaussian(means[0], variances[0])
        weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=means.dtype, device=means.device)
        return GaussianMixture(means, variances, weights)


def member_seed(seed: int, member: int) -> int:
    """Seed of one member's initialisation and data permutation, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


def train_stacked(data: TaskData, ctx: FitContext, head: Head, members: list[int]) -> StackedNetworks:
    """Build members (each initialised from `member_seed(seed, m)`) and train them as one batched model."""
    width = 2 * data.out_dim if head == "heteroscedastic" else data.out_dim
    networks, perms = [], []
    n = len(data.train)
    for m in members:
        with seeded(member_seed(ctx.seed, m)):
            networks.append(MAPNetwork(ctx.make_backbone(), width, head == "homoscedastic"))
        perms.append(torch.randperm(n, generator=torch.Generator().manual_seed(member_seed(ctx.seed, m))))
    model = StackedNetworks(networks).to(ctx.device)
    x, y = data.train.x.to(ctx.device), data.train.y.to(ctx.device)
    perm = torch.stack(perms).to(ctx.device)  # [M, N]

    def log_noise() -> Tensor | None:
        return model.param("log_noise") if head == "homoscedastic" else None

    augment = ctx.train_transform
    aug_generator = torch.Generator().manual_seed(ctx.seed)

    def loss(idx: Tensor) -> Tensor:
        rows = perm[:, idx]  # [M, B]: member m's examples for this step
        xb = x[rows]
        if augment is not None:
            xb = augment(xb.flatten(0, 1), aug_generator).unflatten(0, rows.shape)
        return member_nll(model(xb), y[rows], head, log_noise()).mean(1).sum()

    def val_loss(xv: Tensor, yv: Tensor) -> Tensor:
        targets = yv.expand(len(model), *yv.shape)
        return member_nll(model(xv, shared=True), targets, head, log_noise()).sum(0)

    val = None if data.val is None else (data.val.x, data.val.y)
    ctx.fit(model, loss, (torch.arange(n),), params=model.param_groups(no_decay=("log_noise",)),
            val=val, val_loss_fn=val_loss, batch_transform=None, description="ensemble")
    return model


@methods.register("ensemble")
class DeepEnsemble(Method):
    """Deep ensemble of M networks trained as one batched model (Lakshminarayanan et al. 2017)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters of `ensemble`.

        Attributes:
            members: M, the number of networks.
            heteroscedastic: regression only: members predict an input-dependent variance (the paper); false
                gives `map`'s learned constant noise per member, and member 0 is then the cached MAP network.
        """

        members: int = 5
        heteroscedastic: bool = True

        def __post_init__(self) -> None:
            if self.members < 1:
                raise BadConfig(f"'members' of method 'ensemble' must be a positive integer; got {self.members}")

    def fit(self, data: TaskData, ctx: FitContext) -> EnsemblePredictor:
        head: Head = "classification"
        if data.kind == "regression":
            head = "heteroscedastic" if self.config.heteroscedastic else "homoscedastic"
        map_network = None
        if head != "heteroscedastic":
            map_network, _ = train_map_network(data, ctx)
        rest = list(range(0 if map_network is None else 1, self.config.members))
        stacked = train_stacked(data, ctx, head, rest) if rest else None
        return EnsemblePredictor(head, map_network, stacked)
