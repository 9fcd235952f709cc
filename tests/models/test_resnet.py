"""ResNet backbones: the named sizes, feature shapes, and the dropout / spectral-norm variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from uqbench.models import BackboneConfig, BackboneSpec, build_backbone
from uqbench.training import seeded

# Backbone parameters without a classification head; ResNet-18 (CIFAR) and WRN-28-10 match the published
# 11.2 M and 36.5 M (those include the 10-class head: 5,130 and 6,410 parameters).
PARAMETERS = {"resnet-small": 77_392, "resnet18": 11_168_832, "wrn-28-10": 36_472_784}
FEATURES = {"resnet-small": 64, "resnet18": 512, "wrn-28-10": 640}


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", ["resnet-small", "resnet18", "wrn-28-10"])
def test_named_sizes_and_feature_shapes(name):
    with torch.device("meta"):  # shapes and sizes without allocating or initialising 36 M weights
        net = build_backbone(BackboneConfig(name).spec((3, 32, 32)))
        features = net(torch.empty(2, 3, 32, 32))
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS[name]
    assert net.out_features == FEATURES[name]
    assert features.shape == (2, FEATURES[name])


def test_greyscale_28x28_inputs_and_other_depths():
    net = build_backbone(BackboneSpec("resnet-small", (1, 28, 28), width=8, depth=2))
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 32)
    assert len(_convs(net)) == 1 + 3 * 2 * 2 + 2  # stem, two convs per block, two shortcut projections


def test_dropout_variant_is_stochastic_in_training_only():
    with seeded(0):
        net = build_backbone(BackboneSpec("resnet-small", (3, 16, 16), width=4, depth=1), dropout=0.3)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3  # one per block
    x = torch.randn(4, 3, 16, 16)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("name", ["resnet-small", "resnet18"])
def test_spectral_norm_variant_bounds_every_convolution(name):
    bound = 0.9
    with seeded(0):
        net = build_backbone(BackboneSpec(name, (3, 16, 16), width=8, depth=1), spectral_norm=bound)
    convs = _convs(net)
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    net.train()
    net(torch.randn(2, 3, 16, 16))
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma <= bound * 1.05


def test_wide_resnet_variants_build():
    spec = BackboneSpec("wrn-28-10", (3, 16, 16), width=16, depth=1)  # WRN-10-1: the same code, small
    plain = build_backbone(spec)
    variant = build_backbone(spec, dropout=0.1, spectral_norm=6.0)
    assert sum(isinstance(m, nn.Dropout) for m in variant.modules()) == 3
    assert all(parametrize.is_parametrized(c, "weight") for c in _convs(variant))
    assert plain(torch.randn(2, 3, 16, 16)).shape == variant(torch.randn(2, 3, 16, 16)).shape == (2, 64)
