"""Likelihoods against torch.distributions and autograd: NLL, log-likelihood, output Hessian, predictives."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import hessian
from torch.distributions import Normal

from uqbench import prediction
from uqbench.likelihoods import Categorical, Gaussian, default_likelihood

N, C, D = 6, 4, 3


def _data(likelihood, n: int = N) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Outputs [n, K] and targets for `likelihood`, float64, with a non-trivial noise parameter."""
    g = torch.Generator().manual_seed(0)
    out = torch.randn(n, likelihood.out_features(C if isinstance(likelihood, Categorical) else D), generator=g,
                      dtype=torch.float64)
    if isinstance(likelihood, Categorical):
        return out, torch.randint(0, C, (n,), generator=g), {}
    params = {k: v.double() + torch.tensor([-0.5, 0.0, 0.4], dtype=torch.float64)[: v.numel()]
              for k, v in likelihood.init_params(D).items()}
    return out, torch.randn(n, D, generator=g, dtype=torch.float64), params


def test_out_features_and_own_parameters() -> None:
    assert Categorical().out_features(C) == C and Categorical().init_params(C) == {}
    assert Gaussian().out_features(D) == D and Gaussian(heteroscedastic=True).out_features(D) == 2 * D
    (name, value), = Gaussian().init_params(D).items()
    assert name == "log_noise" and torch.equal(value, torch.zeros(D))
    assert Gaussian(heteroscedastic=True).init_params(D) == {}


@pytest.mark.parametrize(("kind", "heteroscedastic", "expected"), [
    ("classification", False, Categorical()), ("classification", True, Categorical()),
    ("regression", False, Gaussian()), ("regression", True, Gaussian(heteroscedastic=True)),
])
def test_default_likelihood(kind: str, heteroscedastic: bool, expected) -> None:
    assert default_likelihood(kind, heteroscedastic=heteroscedastic) == expected


def test_default_likelihood_of_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        default_likelihood("ranking")


def test_categorical_nll_and_log_likelihood_are_cross_entropy() -> None:
    out, y, params = _data(Categorical())
    log_p = torch.log_softmax(out, -1)[torch.arange(N), y]
    torch.testing.assert_close(Categorical().nll(out, y, params), -log_p)
    torch.testing.assert_close(Categorical().log_likelihood(out, y, params), log_p.sum())
    stacked = Categorical().nll(out.reshape(2, 3, C), y.reshape(2, 3), params)  # leading dimensions kept
    torch.testing.assert_close(stacked, -log_p.reshape(2, 3))


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_gaussian_nll_drops_only_the_constant(heteroscedastic: bool) -> None:
    likelihood = Gaussian(heteroscedastic)
    out, y, params = _data(likelihood)
    if heteroscedastic:
        mean, var = out[:, :D], torch.nn.functional.softplus(out[:, D:]) + 1e-6
    else:
        mean, var = out, torch.exp(2 * params["log_noise"]).expand(N, D)
    log_density = Normal(mean, var.sqrt()).log_prob(y).sum(-1)
    torch.testing.assert_close(likelihood.nll(out, y, params), -log_density - 0.5 * D * math.log(2 * math.pi))
    if not heteroscedastic:
        torch.testing.assert_close(likelihood.log_likelihood(out, y, params), log_density.sum())


@pytest.mark.parametrize("likelihood", [Categorical(), Gaussian()], ids=["categorical", "gaussian"])
def test_output_hessian_is_the_hessian_of_the_nll(likelihood) -> None:
    out, y, params = _data(likelihood, n=2)
    expected = torch.stack([hessian(lambda f: likelihood.nll(f[None], y[i : i + 1], params).sum(), out[i])
                            for i in range(2)])
    torch.testing.assert_close(likelihood.output_hessian(out, params), expected)


def test_plug_in_predictives() -> None:
    out, _, _ = _data(Categorical())
    torch.testing.assert_close(Categorical().predictive(out, {}).probs, torch.softmax(out, -1))
    out, _, params = _data(Gaussian())
    pred = Gaussian().predictive(out, params)
    assert isinstance(pred, prediction.Gaussian) and torch.equal(pred.mean, out)
    torch.testing.assert_close(pred.var, torch.exp(2 * params["log_noise"]).expand(N, D))
    out, _, _ = _data(Gaussian(heteroscedastic=True))
    pred = Gaussian(heteroscedastic=True).predictive(out, {})
    torch.testing.assert_close(pred.var, torch.nn.functional.softplus(out[:, D:]) + 1e-6)


def test_mixtures() -> None:
    outs = torch.randn(5, N, C, dtype=torch.float64)
    torch.testing.assert_close(Categorical().mixture(outs, {}).probs, torch.softmax(outs, -1).mean(0))
    hetero = Gaussian(heteroscedastic=True)
    outs = torch.randn(5, N, 2 * D, dtype=torch.float64)
    exact = hetero.mixture(outs, {})
    assert isinstance(exact, prediction.GaussianMixture) and torch.equal(exact.weights, torch.full((5,), 0.2,
                                                                                                   dtype=torch.float64))
    matched = hetero.mixture(outs, {}, moment_matched=True)
    torch.testing.assert_close(matched.mean, exact.moments().mean)
    torch.testing.assert_close(matched.var, exact.moments().var)
    one = hetero.mixture(outs[:1], {})
    assert isinstance(one, prediction.Gaussian) and torch.equal(one.var, hetero.predictive(outs[0], {}).var)


@pytest.mark.parametrize("per_component", [False, True], ids=["shared-noise", "noise-per-component"])
def test_homoscedastic_moment_matching_is_the_law_of_total_variance(per_component: bool) -> None:
    outs = torch.randn(4, N, D, dtype=torch.float64)
    log_noise = torch.randn(4, 1, D, dtype=torch.float64) if per_component else torch.randn(D, dtype=torch.float64)
    params = {"log_noise": log_noise}
    matched = Gaussian().mixture(outs, params, moment_matched=True)
    torch.testing.assert_close(matched.mean, outs.mean(0))
    torch.testing.assert_close(matched.var, Gaussian().mixture(outs, params).moments().var)


def test_marginals_of_gaussian_outputs() -> None:
    mean, var = torch.randn(N, C), torch.rand(N, C)
    probs = Categorical().marginal(mean, var, {}, probit_factor=0.7).probs
    torch.testing.assert_close(probs, torch.softmax(mean / torch.sqrt(1 + 0.7 * var), -1))
    log_noise = torch.tensor([0.1, -0.2, 0.3])
    pred = Gaussian().marginal(mean[:, :D], var[:, :D], {"log_noise": log_noise})
    torch.testing.assert_close(pred.var, var[:, :D] + torch.exp(2 * log_noise))


def test_a_heteroscedastic_gaussian_has_no_constant_noise() -> None:
    hetero = Gaussian(heteroscedastic=True)
    out = torch.randn(N, 2 * D)
    for call in (lambda: hetero.noise_var({}), lambda: hetero.output_hessian(out, {}),
                 lambda: hetero.marginal(out[:, :D], out[:, D:].exp(), {})):
        with pytest.raises(ValueError, match="no constant noise variance"):
            call()
