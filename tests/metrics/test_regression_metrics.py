"""Regression metrics against independent computations on the same arrays: scipy.stats (densities, CDFs),
numerical integration (CRPS), bisection on the exact mixture CDF (interval coverage, quantile calibration),
scikit-learn (RMSE, MAE) and hand computations. Mixtures are never moment-matched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqbench.metrics import regression as reg
from uqbench.prediction import Gaussian, GaussianMixture

stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")
optimize = pytest.importorskip("scipy.optimize")


def make_mixture(n: int, d: int = 1, m: int = 3, seed: int = 0) -> tuple[GaussianMixture, np.ndarray]:
    """A bimodal-ish mixture [M, N, D] (far from its moment-matched Gaussian) and targets drawn near it."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(m, n, d, generator=g, dtype=torch.float64)
    vars_ = 0.2 + torch.rand(m, n, d, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(m, generator=g, dtype=torch.float64), 0)
    targets = means.mean(0) + 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return GaussianMixture(means, vars_, weights), targets.numpy()


def make_gaussian(n: int, d: int = 1, seed: int = 0) -> tuple[Gaussian, np.ndarray]:
    mix, targets = make_mixture(n, d, m=1, seed=seed)
    return Gaussian(mix.means[0], mix.vars[0]), targets


def components(p: Gaussian | GaussianMixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """means [M, N, D], standard deviations [M, N, D], weights [M] as numpy."""
    if isinstance(p, Gaussian):
        return p.mean.numpy()[None], p.var.sqrt().numpy()[None], np.ones(1)
    return p.means.numpy(), p.vars.sqrt().numpy(), p.weights.numpy()


def scipy_cdf(p: Gaussian | GaussianMixture, y: np.ndarray) -> np.ndarray:
    mu, sd, w = components(p)
    return np.einsum("m,mnd->nd", w, stats.norm.cdf(y, mu, sd))


def bisection_quantiles(p: Gaussian | GaussianMixture, level: float) -> np.ndarray:
    """The level-quantile [N, D] of each marginal, found by Brent's bisection on the scipy mixture CDF."""
    mu, sd, w = components(p)
    out = np.empty(mu.shape[1:])
    for i, j in np.ndindex(out.shape):
        def f(x, i=i, j=j):
            return float(w @ stats.norm.cdf(x, mu[:, i, j], sd[:, i, j])) - level
        lo, hi = mu[:, i, j].min() - 20 * sd[:, i, j].max(), mu[:, i, j].max() + 20 * sd[:, i, j].max()
        out[i, j] = optimize.brentq(f, lo, hi, xtol=1e-12)
    return out


PREDICTIONS = [make_gaussian(200, seed=1), make_mixture(200, seed=2), make_mixture(60, d=2, m=5, seed=3)]
IDS = ["gaussian", "mixture", "mixture-2d"]


@pytest.mark.parametrize(("pred", "y"), PREDICTIONS, ids=IDS)
def test_nll_matches_scipy_logpdf(pred, y):
    mu, sd, w = components(pred)
    log_components = stats.norm.logpdf(y, mu, sd).sum(-1)  # [M, N], outputs joint per component
    expected = -np.log(np.einsum("m,mn->n", w, np.exp(log_components))).mean()
    assert reg.gaussian_nll(pred, y) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("pred", "y"), PREDICTIONS, ids=IDS)
def test_rmse_mae_of_the_exact_mixture_mean_match_sklearn(pred, y):
    skm = pytest.importorskip("sklearn.metrics")
    mu, _, w = components(pred)
    mean = np.einsum("m,mnd->nd", w, mu)
    assert reg.rmse(pred, y) == pytest.approx(np.sqrt(skm.mean_squared_error(y.ravel(), mean.ravel())), rel=1e-10)
    assert reg.mae(pred, y) == pytest.approx(skm.mean_absolute_error(y.ravel(), mean.ravel()), rel=1e-10)


@pytest.mark.parametrize(("pred", "y"), PREDICTIONS, ids=IDS)
def test_pit_matches_scipy_cdf(pred, y):
    np.testing.assert_allclose(reg.pit(pred, y), scipy_cdf(pred, y), rtol=1e-10, atol=1e-14)


def crps_by_integration(mu: np.ndarray, sd: np.ndarray, w: np.ndarray, y: float) -> float:
    """CRPS = integral of (F(x) - 1[x >= y])^2 dx for one scalar mixture, by adaptive quadrature."""
    def sq(x):
        return (float(w @ stats.norm.cdf(x, mu, sd)) - (x >= y)) ** 2
    lo, hi = min(mu.min(), y) - 30 * sd.max(), max(mu.max(), y) + 30 * sd.max()
    return integrate.quad(sq, lo, y, limit=200, epsabs=1e-11)[0] + integrate.quad(sq, y, hi, limit=200, epsabs=1e-11)[0]


@pytest.mark.parametrize(("pred", "y"), PREDICTIONS, ids=IDS)
def test_crps_closed_form_matches_numerical_integration(pred, y):
    mu, sd, w = components(pred)
    idx = list(np.ndindex(y[:8].shape))  # first 8 examples, every output
    expected = np.mean([crps_by_integration(mu[:, i, j], sd[:, i, j], w, y[i, j]) for i, j in idx])
    sub = Gaussian(pred.mean[:8], pred.var[:8]) if isinstance(pred, Gaussian) else GaussianMixture(
        pred.means[:, :8], pred.vars[:, :8], pred.weights
    )
    assert reg.crps(sub, y[:8]) == pytest.approx(expected, rel=1e-7)


def test_crps_of_a_gaussian_matches_the_textbook_formula():
    pred, y = make_gaussian(100, seed=4)
    mu, sd = pred.mean.numpy(), pred.var.sqrt().numpy()
    z = (y - mu) / sd
    expected = (sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))).mean()
    assert reg.crps(pred, y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("pred", "y"), PREDICTIONS, ids=IDS)
@pytest.mark.parametrize("level", [0.90, 0.95])
def test_coverage_matches_intervals_from_bisection_quantiles(pred, y, level):
    lo, hi = bisection_quantiles(pred, (1 - level) / 2), bisection_quantiles(pred, (1 + level) / 2)
    expected = ((lo <= y) & (y <= hi)).mean()
    assert reg.coverage(pred, y, level) == expected
    assert {0.90: reg.coverage90, 0.95: reg.coverage95}[level](pred, y) == expected


def test_qce_matches_quantiles_from_bisection():
    pred, y = make_mixture(25, seed=5)
    levels = np.arange(1, 100) / 100
    below = [(y <= bisection_quantiles(pred, p)).mean() for p in levels]
    assert reg.qce(pred, y) == pytest.approx(np.abs(np.array(below) - levels).mean(), abs=1e-12)


def test_mixture_metrics_are_not_moment_matched():
    # modes at -5 and 5 (sd 0.5); the moment-matched Gaussian has mean 0 and sd 5.02
    pred = GaussianMixture(torch.tensor([[[-5.0]], [[5.0]]]), torch.full((2, 1, 1), 0.25), torch.tensor([0.5, 0.5]))
    matched = pred.moments()
    outside = np.array([[6.0]])  # F(6) = 0.989 under the mixture, 0.88 under the matched Gaussian
    assert reg.coverage90(pred, outside) == 0.0 and reg.coverage90(matched, outside) == 1.0
    between = np.zeros((1, 1))  # where the mixture has almost no mass: CRPS 2.36 against 1.17
    assert reg.crps(pred, between) > 1.5 * reg.crps(matched, between)


def test_calibrated_predictions_have_small_qce_and_nominal_coverage():
    g = torch.Generator().manual_seed(0)
    mix, _ = make_mixture(20_000, seed=6)
    component = torch.multinomial(mix.weights, 20_000, replacement=True, generator=g)
    idx = torch.arange(20_000)
    mean, sd = mix.means[component, idx], mix.vars[component, idx].sqrt()
    y = (mean + sd * torch.randn(mean.shape, generator=g, dtype=torch.float64)).numpy()
    assert reg.qce(mix, y) < 0.01
    assert reg.coverage90(mix, y) == pytest.approx(0.90, abs=0.01)
    overconfident = GaussianMixture(mix.means, mix.vars / 9, mix.weights)
    # measured over five mixtures: calibrated qce <= 0.006, |coverage90 - 0.9| <= 0.005; variances / 9: qce >= 0.03,
    # coverage90 <= 0.73
    assert reg.qce(overconfident, y) > 0.02 and reg.coverage90(overconfident, y) < 0.8


def test_units_follow_a_rescaling_of_the_targets():
    pred, y = make_mixture(100, seed=7)
    loc, scale = torch.tensor([10.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    big, y_big = pred.rescale(loc, scale), y * 3 + 10
    for fn in (reg.rmse, reg.mae, reg.crps):
        assert fn(big, y_big) == pytest.approx(3 * fn(pred, y), rel=1e-10), fn.__name__
    for fn in (reg.coverage90, reg.coverage95, reg.qce):
        assert fn(big, y_big) == pytest.approx(fn(pred, y), abs=1e-12)
    assert reg.gaussian_nll(big, y_big) == pytest.approx(reg.gaussian_nll(pred, y) + np.log(3), rel=1e-10)


def test_float32_mixture_weights_are_renormalised():
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float32) * (1 + 5e-5)  # sums to 1 + 5e-5
    pred = GaussianMixture(torch.zeros(3, 1, 1), torch.ones(3, 1, 1), weights)
    assert reg.pit(pred, np.array([[1e6]]))[0, 0] == 1.0
