"""Stacked networks: M networks of one architecture as one module whose every layer holds all M members' weights.

A linear layer becomes one batched matrix product, a convolution or batch norm one layer over M groups of channels,
so one forward pass evaluates every member, and one optimiser step updates every member, with as many kernel launches
as one network needs (the batched deep ensemble). Nothing in a stacked layer mixes members, so each member computes
exactly what it computes alone (up to floating-point summation order).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from uqbench.errors import Unsupported


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
        raise Unsupported(f"cannot stack a Conv2d with padding_mode={c.padding_mode!r}; only 'zeros'")
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
    the root module (such as `Network.log_noise`) are stacked to [M, *shape].

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
            raise Unsupported(f"cannot stack layer {name!r} of type {type(module).__name__} into a batched model; "
                              "layers with parameters must be Linear, Conv2d or BatchNorm1d/2d")
    return stacked


class StackedNetworks(nn.Module):
    """M networks of one architecture trained and evaluated as one model.

    Every layer holds the M members' parameters stacked (see `stack_layers`), so one optimiser step on this
    module updates every member, and one forward pass evaluates all of them with as many kernel launches as one
    network needs.

    Args:
        networks: M >= 1 modules of identical structure (their current weights become the stacked ones).

    Attributes:
        network: the stacked copy of networks[0] (`stack_layers`): same class and methods, its parameters
            [M, ...] (the members' optimiser groups are its `param_groups`, if it has them).
    """

    def __init__(self, networks: list[nn.Module]):
        super().__init__()
        self.members = len(networks)
        self.network = stack_layers(networks)

    def __len__(self) -> int:
        return self.members

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """Member outputs [M, B, K] for x [M, B, *in_shape] (member m gets x[m]), or for x [B, *in_shape] given
        to every member when `shared`."""
        if shared:
            x = x.expand(self.members, *x.shape)
        out = self.network(x.reshape(-1, *x.shape[2:]))
        return out.reshape(self.members, -1, *out.shape[1:])
