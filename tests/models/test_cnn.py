"""The small CNN's pooling block: channels-last max-pool then ReLU is ReLU then nn.MaxPool2d, values and gradients."""

from __future__ import annotations

import torch
from torch import nn

from uqbench.models import BackboneSpec, build_backbone
from uqbench.models.cnn import MaxPool2x2


def test_pool_then_relu_equals_relu_then_max_pool_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 8, 8, generator=g, dtype=torch.float64)
    upstream = torch.randn(5, 6, 4, 4, generator=g, dtype=torch.float64)
    grads = []
    for block in (nn.Sequential(MaxPool2x2(), nn.ReLU()), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))):
        leaf = x.clone().requires_grad_()
        out = block(leaf)
        (out * upstream).sum().backward()
        grads.append((out.detach().contiguous(), leaf.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_features_shape():
    net = build_backbone(BackboneSpec("cnn", (1, 8, 8), width=4))
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 8)
