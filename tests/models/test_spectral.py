"""Soft spectral normalisation: the bound holds, eval never moves the estimate, frozen copies pickle."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from uqbench.models import BackboneSpec, build_backbone
from uqbench.models.spectral import SoftSpectralNorm, freeze_spectral_norm, spectral_normalise
from uqbench.training import TrainConfig, fit_module, seeded


def _normalised_layers(module: nn.Module) -> list[tuple[nn.Module, SoftSpectralNorm]]:
    return [
        (layer, p)
        for layer in module.modules()
        if parametrize.is_parametrized(layer, "weight")
        for p in layer.parametrizations.weight
        if isinstance(p, SoftSpectralNorm)
    ]


def _converge(layer: nn.Module) -> None:
    for p in layer.parametrizations.weight:
        p.power_iterate(layer.parametrizations.weight.original, 1000)


def _spectral_norm(weight: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(weight.detach().flatten(1).double(), ord=2))


@pytest.mark.parametrize("scale, bound", [(5.0, 0.95), (0.01, 0.95), (5.0, 3.0)])
def test_soft_bound_rescales_only_above_the_bound(scale: float, bound: float) -> None:
    with seeded(0):
        layer = nn.Linear(7, 5)
        with torch.no_grad():
            layer.weight.mul_(scale)
        raw = _spectral_norm(layer.weight)
        spectral_normalise(layer, bound).eval()
    _converge(layer)
    assert _spectral_norm(layer.weight) == pytest.approx(min(raw, bound), rel=1e-6)


def test_trained_body_respects_every_bound_once_power_iteration_converged() -> None:
    bound = 0.95
    spec = BackboneSpec("mlp", (3,), width=32, depth=3)
    with seeded(0):
        body = build_backbone(spec, spectral_norm=bound)
        x, y = torch.randn(256, 3), torch.randn(256, 1)
        head = nn.Linear(32, 1)
        net = nn.Sequential(body, head)
        fit_module(net, lambda a, b: ((net(a) - b) ** 2).mean(), (x, y), TrainConfig(epochs=5, lr=3e-2), seed=0)
    layers = _normalised_layers(body)
    assert len(layers) == spec.depth  # the input layer and every residual block
    lagging = [_spectral_norm(layer.weight) for layer, _ in layers]
    assert max(lagging) <= bound * 1.02  # one power-iteration step per training step lags only slightly
    for layer, _ in layers:
        _converge(layer)
        assert _spectral_norm(layer.weight) <= bound * (1 + 1e-6)


def test_conv_weights_are_bounded_as_flattened_matrices() -> None:
    with seeded(0):
        conv = spectral_normalise(nn.Conv2d(3, 8, 3), 0.5).eval()
    _converge(conv)
    assert _spectral_norm(conv.weight) <= 0.5 * (1 + 1e-6)


def test_eval_mode_never_moves_the_estimate_and_training_does() -> None:
    with seeded(0):
        layer = spectral_normalise(nn.Linear(6, 6), 0.9)
        (p,) = layer.parametrizations.weight
        with torch.no_grad():
            layer.parametrizations.weight.original.add_(torch.randn(6, 6))
        u = p.u.clone()
        layer.eval()
        layer(torch.randn(4, 6))
        assert torch.equal(p.u, u)
        layer.train()
        layer(torch.randn(4, 6))
        assert not torch.equal(p.u, u)


def test_two_training_forwards_before_one_backward() -> None:
    with seeded(0):
        layer = spectral_normalise(nn.Linear(4, 4), 0.9)
        x = torch.randn(3, 4)
        (layer(x).sum() + layer(x).sum()).backward()
    assert layer.parametrizations.weight.original.grad is not None


def test_freeze_keeps_eval_outputs_and_makes_the_module_picklable() -> None:
    with seeded(0):
        body = build_backbone(BackboneSpec("mlp", (2,), width=8, depth=3), spectral_norm=0.5).eval()
        x = torch.randn(5, 2)
    before = body(x)
    frozen = pickle.loads(pickle.dumps(freeze_spectral_norm(body)))
    assert not _normalised_layers(frozen)
    assert torch.equal(frozen(x), before)
