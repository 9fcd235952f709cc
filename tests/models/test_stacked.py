"""Stacked networks: for every registered architecture the batched model computes what each member computes, and
trains as the members train apart."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from uqbench.errors import Unsupported
from uqbench.likelihoods import Gaussian
from uqbench.models import ARCHITECTURES, DEFAULT_SIZES, BackboneConfig, BackboneSpec, build_backbone
from uqbench.models.network import Network
from uqbench.models.stacked import StackedNetworks
from uqbench.training import TrainConfig, fit_module, seeded

BackboneConfig()  # registers the built-in architectures
SPECS = [  # small widths, the architectures' own depths
    BackboneSpec(arch, (3,) if arch == "mlp" else (3, 8, 8), 4, 3 if arch == "mlp" else DEFAULT_SIZES[arch][1])
    for arch in sorted(ARCHITECTURES)
]


def test_every_builtin_architecture_is_covered() -> None:
    assert [s.arch for s in SPECS] == ["cnn", "mlp", "resnet-small", "resnet18", "wrn-28-10"]


def _members(spec: BackboneSpec, m: int = 3) -> list[Network]:
    with seeded(0):
        return [Network.linear(build_backbone(spec), Gaussian(), 2) for _ in range(m)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.arch)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_stacked_forward_equals_each_member(spec: BackboneSpec, training: bool) -> None:
    """In float64: in float32 the grouped convolutions' other summation order, normalised by batch statistics of
    a few values in the last stage, moves resnet18's outputs by up to 5e-6."""
    nets = [net.double() for net in _members(spec)]
    stacked = StackedNetworks(copy.deepcopy(nets)).train(training)
    x = torch.randn(3, 5, *spec.in_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.stack([net.train(training)(x[m]) for m, net in enumerate(nets)])
    torch.testing.assert_close(stacked(x), expected, rtol=1e-5, atol=1e-6)
    shared = torch.stack([net(x[0]) for net in nets])
    torch.testing.assert_close(stacked(x[0], shared=True), shared, rtol=1e-5, atol=1e-6)
    if training and spec.arch.startswith(("resnet", "wrn")):  # batch-norm running statistics stay per member
        stats = dict(stacked.network.named_buffers())
        name = next(n for n in stats if n.endswith("running_mean"))
        member_name = name.replace(".layer.", ".")
        torch.testing.assert_close(stats[name], torch.cat([net.get_buffer(member_name) for net in nets]))


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: s.arch)
def test_training_together_equals_training_apart(spec: BackboneSpec) -> None:
    """Two AdamW epochs of the batched model give each member the weights it gets when trained alone."""
    nets = _members(spec)
    stacked = StackedNetworks(copy.deepcopy(nets))
    x, y = torch.randn(3, 16, *spec.in_shape), torch.randn(3, 16, 2)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, weight_decay=1e-2)

    def stacked_loss(idx: torch.Tensor) -> torch.Tensor:
        return ((stacked(x[:, idx]) - y[:, idx]) ** 2).mean((1, 2)).sum()

    fit_module(stacked, stacked_loss, (torch.arange(16),), cfg, seed=0)
    for m, net in enumerate(nets):
        fit_module(net, lambda idx, net=net, m=m: ((net(x[m, idx]) - y[m, idx]) ** 2).mean(), (torch.arange(16),),
                   cfg, seed=0)
    torch.testing.assert_close(stacked(x), torch.stack([net(x[m]) for m, net in enumerate(nets)]), rtol=1e-4, atol=1e-5)


def test_log_noise_is_stacked_and_not_decayed() -> None:
    stacked = StackedNetworks(_members(SPECS[1]))
    log_noise = stacked.network.likelihood_params()["log_noise"]
    assert log_noise.shape == (3, 2)
    groups = stacked.network.param_groups()
    assert groups[1] == {"params": [log_noise], "weight_decay": 0.0, "noise": True}  # trains at the recipe's noise_lr


def test_layer_without_a_batched_version_is_refused() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4))
    with pytest.raises(Unsupported, match="'1' of type LayerNorm"):
        StackedNetworks([net, copy.deepcopy(net)])
