"""MC dropout: only dropout is stochastic at test time, the predictive is the average of the samples, and the
behaviour the issue asks for on two-moons and toy-regression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from uqbench.errors import BadConfig
from uqbench.methods.mc_dropout import MCDropout, MCDropoutPredictor, dropout_active
from uqbench.prediction import Categorical, Gaussian
from uqbench.runner import Runner, RunOptions
from uqbench.spec import resolve
from uqbench.testing import tiny_context, tiny_task
from uqbench.training import seeded


def test_dropout_active_switches_only_dropout_and_restores() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Dropout2d(0.5)).eval()
    with dropout_active(net):
        assert [m.training for m in net] == [False, False, True, True]
    assert not any(m.training for m in net)


def _fit(kind: str) -> tuple[MCDropoutPredictor, torch.Tensor]:
    data = tiny_task(kind)
    with seeded(0):
        predictor = MCDropout(MCDropout.Config(p=0.2, samples=7)).fit(data, tiny_context())
    return predictor, data.test.x


def test_classification_averages_softmax_samples() -> None:
    predictor, x = _fit("classification")
    with seeded(5), torch.no_grad():
        samples = predictor.sample_outputs(x)
    with seeded(5), torch.no_grad():
        pred = predictor.predict(x)
    assert isinstance(pred, Categorical) and samples.shape == (7, *pred.probs.shape)
    assert torch.equal(pred.probs, torch.softmax(samples, -1).mean(0))
    assert not torch.equal(samples[0], samples[1]), "dropout masks must differ between samples"
    assert not predictor.network.training, "prediction must leave the network in eval mode"


def test_regression_is_moment_matched_gaussian_plus_noise() -> None:
    predictor, x = _fit("regression")
    with seeded(5), torch.no_grad():
        samples = predictor.sample_outputs(x)
    with seeded(5), torch.no_grad():
        pred = predictor.predict(x)
    assert isinstance(pred, Gaussian)
    torch.testing.assert_close(pred.mean, samples.mean(0))
    expected_var = (samples**2).mean(0) - samples.mean(0) ** 2 + torch.exp(2 * predictor.network.log_noise)
    torch.testing.assert_close(pred.var, expected_var, rtol=1e-4, atol=1e-6)
    with seeded(5), torch.no_grad():
        assert torch.equal(predictor.predict(x).var, pred.var), "same seed, same masks"


def _run(tmp_path: Path, task: str, seed: int) -> tuple[dict[str, float], np.lib.npyio.NpzFile]:
    runner = Runner(RunOptions(out=tmp_path, save_predictions=True))
    record = runner.execute(resolve("mc-dropout", task, seed=seed))
    assert record.status == "ok", record.error
    return record.metrics, np.load(tmp_path / record.predictions)


def test_two_moons_accuracy(tmp_path: Path) -> None:
    metrics, _ = _run(tmp_path, "two-moons", seed=0)
    assert metrics["accuracy"] >= 0.85  # 1.000 on seeds 0-4


def test_toy_regression_is_more_uncertain_in_the_gap(tmp_path: Path) -> None:
    _, arrays = _run(tmp_path, "toy-regression", seed=0)
    # Mean predictive std, gap / test, seeds 0-5 (p = 0.05): 1.30, 1.06, 1.13, 1.21, 1.04, 1.09; frozen at seed 0.
    assert np.sqrt(arrays["ood_gap_var"]).mean() > 1.15 * np.sqrt(arrays["var"]).mean()


# -- Gal & Ghahramani's UCI setup: fixed tau, squared-error loss with the length-scale L2, the sample mixture ----
def test_the_sample_mixture_likelihood_is_gals_formula() -> None:
    """NLL of the T-component mixture = -[logsumexp_t(-tau/2 (y - y_t)^2) - log T - log(2 pi)/2 + log(tau)/2],
    averaged over test points (original units), computed here by brute force on the same samples."""
    import dataclasses

    from scipy.special import logsumexp

    from uqbench.metrics import evaluate
    from uqbench.prediction import GaussianMixture

    tau, scale, loc = 4.0, 2.5, 1.0  # tau in original units; the standardisation the runner undoes
    data = dataclasses.replace(tiny_task("regression"), target_loc=torch.tensor([loc]), target_scale=torch.tensor([scale]))
    with seeded(0):
        predictor = MCDropout(MCDropout.Config(p=0.1, samples=300, tau=tau, predictive="mixture")).fit(data, tiny_context())
    with seeded(3), torch.no_grad():
        pred = predictor.predict(data.test.x)
    with seeded(3), torch.no_grad():
        samples = predictor.sample_outputs(data.test.x)[..., 0].double().numpy() * scale + loc  # [T, N]
    assert isinstance(pred, GaussianMixture) and pred.means.shape == (300, len(data.test), 1)
    y = data.test.y[:, 0].double().numpy() * scale + loc
    ll = logsumexp(-0.5 * tau * (y[None] - samples) ** 2, axis=0) - np.log(300) - 0.5 * np.log(2 * np.pi) + 0.5 * np.log(tau)
    original = pred.rescale(torch.tensor([loc]), torch.tensor([scale]))
    metrics = evaluate(original, data.test.y * scale + loc, torch.zeros(len(y)), {})
    assert metrics["nll"] == pytest.approx(-ll.mean(), rel=1e-6)
    torch.testing.assert_close(original.vars, torch.full_like(original.vars, 1 / tau))  # variance 1 / tau


def test_fixed_tau_trains_on_the_squared_error_with_gals_l2_on_the_weights_only() -> None:
    """With `length_scale`, Gal's objective MSE + reg sum W^2, reg = l^2 (1 - p) / (2 N tau), on every Linear weight
    and no bias: the loss is the MSE and the weights carry Adam's (coupled) weight decay 2 reg, whose gradient is
    that term's. Checked against the loss with the term added, one Adam step each."""
    import copy
    import dataclasses

    data = tiny_task("regression")
    method = MCDropout(MCDropout.Config(p=0.1, tau=4.0, length_scale=0.5))
    ctx = tiny_context()
    ctx = dataclasses.replace(ctx, recipe=dataclasses.replace(ctx.recipe, optimizer="adam"))
    with seeded(0):
        network = method.fit(data, ctx).network
    reg = 0.5**2 * 0.9 / (2 * len(data.train) * 4.0)
    loss, groups = method._gal_objective(network, len(data.train), "adam")
    weights = [m.weight for m in network.modules() if isinstance(m, nn.Linear)]
    assert [g["weight_decay"] for g in groups] == [2 * reg, 0.0] and groups[0]["params"] == weights
    assert not network.likelihood_names  # tau is not learned
    twin = copy.deepcopy(network)
    twin_weights = [m.weight for m in twin.modules() if isinstance(m, nn.Linear)]
    x, y = data.train.x[:8], data.train.y[:8]
    for net, opt_groups, l2 in ((network, groups, 0.0), (twin, [{"params": list(twin.parameters())}], reg)):
        opt = torch.optim.Adam(opt_groups, lr=1e-2)
        net.eval().zero_grad(set_to_none=True)  # no dropout: the same function on both sides
        extra = l2 * sum(w.square().sum() for w in (twin_weights if net is twin else weights))
        (torch.nn.functional.mse_loss(net(x), y) + extra).backward()
        opt.step()
    for a, b in zip(network.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(BadConfig, match="'length_scale' is an L2 term in the loss"):
        method._gal_objective(network, len(data.train), "adamw")


def test_input_dropout_drops_the_inputs_and_needs_an_mlp() -> None:
    from uqbench.errors import Unsupported
    from uqbench.models import BackboneSpec, build_backbone

    net = build_backbone(BackboneSpec("mlp", (4,), 8, 1), dropout=0.5, input_dropout=0.5)
    assert isinstance(net.input[1], nn.Dropout) and net.input[1].p == 0.5
    with pytest.raises(Unsupported, match="input dropout needs an MLP backbone"):
        build_backbone(BackboneSpec("cnn", (1, 8, 8), 4), input_dropout=0.5)


def test_length_scale_needs_tau() -> None:
    with pytest.raises(BadConfig, match="'length_scale' needs 'tau'"):
        MCDropout.Config(length_scale=0.01)
