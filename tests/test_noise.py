"""A learned noise parameter reaches its maximum-likelihood value within the default budget (`noise_lr`)."""

from __future__ import annotations

import dataclasses

import torch

from uqbench.methods.base import FitContext
from uqbench.methods.map import MAP
from uqbench.models import BackboneSpec
from uqbench.tasks import Split, TaskData
from uqbench.training import TrainConfig, seeded


def _linear_gaussian(n: int = 500, noise: float = 0.2) -> TaskData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + noise * torch.randn(n, 1, generator=g)
    y = (y - y.mean()) / y.std(unbiased=False)
    return TaskData(kind="regression", train=Split(x, y), test=Split(x, y), out_dim=1,
                    target_loc=torch.zeros(1), target_scale=torch.ones(1))


def _sigma(cfg: TrainConfig, data: TaskData) -> tuple[float, float]:
    """(learned sigma, root mean squared training residual of the trained network: the ML sigma given its mean)."""
    with seeded(0):
        predictor = MAP().fit(data, FitContext(recipe=cfg, backbone=BackboneSpec("mlp", (3,), 50, 1)))
    net = predictor.network
    with torch.no_grad():
        residual = float((net(data.train.x) - data.train.y).square().mean().sqrt())
        learned = float(net.likelihood.noise_var(net.likelihood_params()).sqrt())
    return learned, residual


def test_the_noise_reaches_its_maximum_likelihood_value_in_the_default_budget():
    """Default recipe (100 epochs of 64 = 800 steps): sigma goes from 1 (the targets' std) to the ML value, about
    0.08 here; trained at the weights' lr 1e-3 it would still be near 0.41 (measured), since Adam moves log sigma
    about one learning rate per step."""
    data = _linear_gaussian()
    x1 = torch.cat([data.train.x, torch.ones(len(data.train), 1)], 1).double()
    beta = torch.linalg.lstsq(x1, data.train.y.double()).solution
    least_squares = float((data.train.y.double() - x1 @ beta).square().mean().sqrt())
    learned, residual = _sigma(TrainConfig(), data)
    assert abs(learned / residual - 1) < 0.05  # the ML sigma of the mean the network learned
    assert abs(learned / least_squares - 1) < 0.1  # and of the true linear model
    slow, _ = _sigma(dataclasses.replace(TrainConfig(), noise_lr=1e-3), data)
    assert slow > 3 * least_squares
