"""Last-layer Laplace: GGN maths, evidence, parity with laplace-torch, and the behaviour the issue asks for."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import jacrev

from uqbench.likelihoods import default_likelihood
from uqbench.likelihoods import Gaussian as GaussianLikelihood
from uqbench.methods.laplace import LaplacePredictor, fit_last_layer
from uqbench.models import BackboneSpec, build_backbone
from uqbench.models.network import Network
from uqbench.prediction import Categorical, Gaussian
from uqbench.results import RunRecord
from uqbench.runner import RunOptions, Runner
from uqbench.spec import resolve
from uqbench.training import seeded

STRUCTURES = ("full", "kron", "diag")


def _problem(kind: str, n: int = 60) -> tuple[Network, torch.Tensor, torch.Tensor]:
    """A small float64 network with perturbed weights (not at a minimum) and data of `kind`."""
    with seeded(0):
        regression = kind == "regression"
        body = build_backbone(BackboneSpec("mlp", (3,), width=6, depth=2))
        net = Network.linear(body, default_likelihood(kind), 1 if regression else 3).double().eval()
        x = torch.randn(n, 3, dtype=torch.float64)
        if regression:
            y = torch.sin(x[:, :1]) + 0.1 * torch.randn(n, 1, dtype=torch.float64)
        else:
            y = (x[:, 0] > 0).long() + (x[:, 1] > 0.3).long()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return net, x, y


def _noise_var(net: Network) -> torch.Tensor:
    """The regression network's noise variance sigma^2 [D] (detached)."""
    return torch.exp(2 * net.log_noise.detach())


def _explicit_ggn(net: Network, x: torch.Tensor) -> torch.Tensor:
    """sum_n J_n^T Lambda_n J_n with J_n from autograd, parameters in nn.Linear order (W row-major, then b)."""
    phi = net.features(x).detach()
    w, b = net.head.weight.detach(), net.head.bias.detach()

    def out(theta: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        c = b.numel()
        return theta[:-c].reshape(w.shape) @ feature + theta[-c:]

    theta = torch.cat([w.reshape(-1), b])
    total = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype)
    for feature in phi:
        jac = jacrev(out)(theta, feature)
        f = out(theta, feature)
        if isinstance(net.likelihood, GaussianLikelihood):
            lam = torch.diag(1 / _noise_var(net))
        else:
            p = torch.softmax(f, -1)
            lam = torch.diag(p) - torch.outer(p, p)
        total += jac.T @ lam @ jac
    return total


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_full_ggn_equals_explicit_jacobian_sum(kind: str) -> None:
    net, x, y = _problem(kind)
    fit = fit_last_layer(net, x, y, "full")
    expected = _explicit_ggn(net, x) + 0.3 * torch.eye(fit.ggn.precision(0.3).shape[0], dtype=torch.float64)
    torch.testing.assert_close(fit.ggn.precision(0.3), expected, rtol=1e-10, atol=1e-10)


def test_diag_and_kron_agree_with_full_where_they_are_exact() -> None:
    net, x, y = _problem("classification")
    full = fit_last_layer(net, x, y, "full").ggn.precision(1.0)
    diag = fit_last_layer(net, x, y, "diag").ggn.precision(1.0)
    torch.testing.assert_close(torch.diagonal(diag), torch.diagonal(full))
    kron = fit_last_layer(net, x, y, "kron").ggn.precision(1.0)
    c = 3
    torch.testing.assert_close(kron[-c:, -c:], full[-c:, -c:])  # bias block: B = sum_n Lambda_n
    # On one example K-FAC is exact except that it drops the weight-bias cross terms.
    one_kron = fit_last_layer(net, x[:1], y[:1], "kron").ggn.precision(1.0)
    one_full = fit_last_layer(net, x[:1], y[:1], "full").ggn.precision(1.0)
    weight = one_full.shape[0] - c
    one_full[:weight, weight:] = 0
    one_full[weight:, :weight] = 0
    torch.testing.assert_close(one_kron, one_full)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_evidence_is_maximised_by_the_tuned_prior_precision(structure: str) -> None:
    net, x, y = _problem("classification")
    evidence = fit_last_layer(net, x, y, structure).evidence
    delta = torch.tensor(evidence.maximise(steps=300, lr=0.1), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(evidence(delta), delta)
    assert abs(float(grad)) * float(delta.detach()) < 1e-4  # stationary in log delta
    delta = delta.detach()
    assert float(evidence(delta)) > max(float(evidence(delta * 2)), float(evidence(delta / 2)))


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_predictive_is_probit_or_gaussian_of_the_linearised_output(kind: str) -> None:
    net, x, y = _problem(kind)
    fit = fit_last_layer(net, x, y, "full")
    pred = LaplacePredictor(net, fit.ggn.posterior(2.0)).predict(x[:10])
    cov = torch.linalg.inv(fit.ggn.precision(2.0))
    c = net.head.out_features
    var = torch.stack([torch.diagonal(_jacobian(phi, c) @ cov @ _jacobian(phi, c).T) for phi in net.features(x[:10])])
    mean = net(x[:10])
    if kind == "classification":
        torch.testing.assert_close(pred.probs, torch.softmax(mean / torch.sqrt(1 + math.pi / 8 * var), -1))
    else:
        torch.testing.assert_close(pred.mean, mean)
        torch.testing.assert_close(pred.var, var + _noise_var(net))
    assert LaplacePredictor(net, fit.ggn.posterior(2.0)).ood_score(x[:10]) is None
    scored = LaplacePredictor(net, fit.ggn.posterior(2.0), variance_score=True).ood_score(x[:10])
    torch.testing.assert_close(scored, var.mean(-1))


def _jacobian(phi: torch.Tensor, n_out: int) -> torch.Tensor:
    """d f / d theta [C, C * H + C] of a linear layer at features phi [H], nn.Linear parameter order."""
    eye = torch.eye(n_out, dtype=phi.dtype)
    return torch.cat([torch.kron(eye, phi.detach()[None]), eye], dim=1)


@pytest.mark.parity
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_parity_with_laplace_torch(kind: str, structure: str, torch_state: None) -> None:
    laplace = pytest.importorskip("laplace")
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_default_dtype(torch.float64)  # laplace-torch builds the full GGN in the default dtype
    net, x, y = _problem(kind)
    if kind == "regression":
        with torch.no_grad():
            net.log_noise.fill_(-0.7)
    noise = {"sigma_noise": float(net.log_noise.detach().exp())} if kind == "regression" else {}
    la = laplace.Laplace(net, kind, subset_of_weights="last_layer", hessian_structure=structure,
                         last_layer_name="head", **noise)
    la.fit(DataLoader(TensorDataset(x, y), batch_size=16))
    fit = fit_last_layer(net, x, y, structure)

    la.prior_precision = 0.7
    reference = la.posterior_precision
    reference = {"full": lambda p: p, "kron": lambda p: p.to_matrix(), "diag": torch.diag}[structure](reference)
    torch.testing.assert_close(fit.ggn.precision(0.7), reference, rtol=1e-6, atol=1e-6)
    assert float(fit.evidence(0.7)) == pytest.approx(float(la.log_marginal_likelihood()), rel=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.optimize_prior_precision(method="marglik", pred_type="glm", n_steps=100, lr=0.1)
    delta = fit.evidence.maximise(steps=100, lr=0.1)
    assert delta == pytest.approx(float(la.prior_precision), rel=1e-6)

    ours = LaplacePredictor(net, fit.ggn.posterior(delta)).predict(x[:20])
    if kind == "classification":
        torch.testing.assert_close(ours.probs, la(x[:20], pred_type="glm", link_approx="probit"), rtol=1e-6, atol=1e-6)
    else:
        mean, var = la(x[:20], pred_type="glm")
        assert isinstance(ours, Gaussian)
        torch.testing.assert_close(ours.mean, mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours.var, var[:, :, 0] + _noise_var(net), rtol=1e-6, atol=1e-6)


def _run(out: Path, task: str, settings: list[str], names: tuple[str, ...]) -> dict[str, tuple[RunRecord, dict]]:
    """Run `names` on (task, seed 0) through one runner (one artifact cache) and load their saved predictions."""
    runner = Runner(RunOptions(out=out, device="cpu", save_predictions=True))
    runs = {}
    for name in names:
        record, _ = runner.run(resolve(name, task, settings))
        assert record.status == "ok", record.error
        runs[name] = (record, dict(np.load(out / record.predictions)))
    return runs


def test_two_moons_accuracy_far_auroc_and_shared_map_network(tmp_path: Path) -> None:
    runs = _run(tmp_path, "two-moons", ["epochs=20", "width=64"], ("map", "laplace"))
    (la, _), (map_, _) = runs["laplace"], runs["map"]
    assert la.metrics["accuracy"] >= 0.85
    assert la.metrics["ood.far.auroc"] > map_.metrics["ood.far.auroc"]
    assert la.artifacts["backbone"] == map_.artifacts["backbone"] is not None  # the cached MAP network
    assert la.info["laplace.prior_precision"] > 0


def test_toy_regression_std_is_larger_in_the_gap_than_on_the_test_set(tmp_path: Path) -> None:
    (_, pred), = _run(tmp_path, "toy-regression", [], ("laplace",)).values()
    assert np.sqrt(pred["ood_gap_var"]).mean() > np.sqrt(pred["var"]).mean()
