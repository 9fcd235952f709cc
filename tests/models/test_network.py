"""Network: backbone + head + likelihood; its outputs, loss, optimiser groups and state dict."""

from __future__ import annotations

import pickle

import pytest
import torch

from uqbench.likelihoods import Categorical, Gaussian
from uqbench.models import BackboneSpec, build_backbone
from uqbench.models.network import Network
from uqbench.prediction import Categorical as CategoricalPrediction
from uqbench.prediction import Gaussian as GaussianPrediction
from uqbench.training import seeded

SPEC = BackboneSpec("mlp", (3,), width=8, depth=2)


def _network(likelihood, out_dim: int = 2) -> Network:
    with seeded(0):
        return Network.linear(build_backbone(SPEC), likelihood, out_dim)


@pytest.mark.parametrize(("likelihood", "width"), [(Categorical(), 2), (Gaussian(), 2),
                                                   (Gaussian(heteroscedastic=True), 4)])
def test_outputs_have_the_width_the_likelihood_needs(likelihood, width: int) -> None:
    net = _network(likelihood)
    x = torch.randn(5, 3)
    assert net(x).shape == (5, width) and net.features(x).shape == (5, 8)
    torch.testing.assert_close(net(x), net.head(net.features(x)))


def test_homoscedastic_noise_is_a_parameter_of_the_network_and_not_decayed() -> None:
    net = _network(Gaussian())
    assert list(net.state_dict())[0] == "log_noise"  # the key MAP artifacts are stored under
    log_noise = net.likelihood_params()["log_noise"]
    assert log_noise is net.log_noise and torch.equal(log_noise, torch.zeros(2))
    decayed, kept = net.param_groups()
    assert kept == {"params": [log_noise], "weight_decay": 0.0, "noise": True}  # trains at the recipe's noise_lr
    assert decayed == {"params": [p for n, p in net.named_parameters() if n != "log_noise"]}


def test_categorical_network_has_one_decayed_group() -> None:
    net = _network(Categorical())
    (group,) = net.param_groups()
    assert group["params"] == list(net.parameters()) and net.likelihood_params() == {}


@pytest.mark.parametrize("likelihood", [Categorical(), Gaussian()], ids=["categorical", "gaussian"])
def test_nll_loss_and_predictive_ask_the_likelihood(likelihood) -> None:
    net = _network(likelihood)
    x = torch.randn(5, 3)
    y = torch.randint(0, 2, (5,)) if isinstance(likelihood, Categorical) else torch.randn(5, 2)
    expected = likelihood.nll(net(x), y, net.likelihood_params())
    torch.testing.assert_close(net.nll(x, y), expected)
    torch.testing.assert_close(net.loss(x, y), expected.mean())
    kind = CategoricalPrediction if isinstance(likelihood, Categorical) else GaussianPrediction
    assert isinstance(net.predictive(x), kind)


def test_network_pickles() -> None:
    net = _network(Gaussian())
    clone = pickle.loads(pickle.dumps(net))
    x = torch.randn(4, 3)
    assert clone.likelihood == Gaussian() and torch.equal(clone(x), net(x))
