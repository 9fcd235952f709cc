"""Prediction types validate their inputs; mixtures give exact densities and moments."""

from __future__ import annotations

import math

import pytest
import torch

from uqbench.prediction import Categorical, Gaussian, GaussianMixture


def test_categorical_requires_normalised_rows():
    Categorical(torch.tensor([[0.2, 0.8]]))
    with pytest.raises(ValueError, match="sum to 1"):
        Categorical(torch.tensor([[2.0, 1.0]]))  # logits are never silently softmaxed
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        Categorical(torch.tensor([0.5, 0.5]))


def test_gaussian_validates_and_rescales():
    with pytest.raises(ValueError, match="strictly positive"):
        Gaussian(torch.zeros(2, 1), torch.zeros(2, 1))
    g = Gaussian(torch.tensor([[1.0]]), torch.tensor([[4.0]])).rescale(torch.tensor([10.0]), torch.tensor([3.0]))
    assert g.mean.item() == 13.0 and g.var.item() == 36.0


def test_gaussian_log_prob_matches_torch():
    mean, var, y = torch.randn(5, 2), torch.rand(5, 2) + 0.1, torch.randn(5, 2)
    expected = torch.distributions.Normal(mean, var.sqrt()).log_prob(y).sum(-1)
    assert torch.allclose(Gaussian(mean, var).log_prob(y), expected)


def test_mixture_density_and_moments():
    means = torch.tensor([[[-1.0]], [[1.0]]])
    vars_ = torch.tensor([[[0.5]], [[0.5]]])
    mix = GaussianMixture(means, vars_, torch.tensor([0.5, 0.5]))
    y = torch.tensor([[0.3]])
    density = 0.5 * sum(math.exp(-((0.3 - m) ** 2) / (2 * 0.5)) / math.sqrt(2 * math.pi * 0.5) for m in (-1, 1))
    assert mix.log_prob(y).item() == pytest.approx(math.log(density), rel=1e-6)
    moments = mix.moments()
    assert moments.mean.item() == pytest.approx(0.0) and moments.var.item() == pytest.approx(1.5)


def test_concat_joins_batches():
    parts = [Gaussian(torch.zeros(2, 1), torch.ones(2, 1)), Gaussian(torch.ones(3, 1), torch.ones(3, 1))]
    assert Gaussian.concat(parts).mean.shape == (5, 1)
