"""Backbones of your own (`uqbench.models.custom`, `backbone=` of the Python API): every method builds its
variant from the factory, refuses one the factory does not honour, and the factory's code is in every key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import uqbench
from uqbench.errors import BadConfig, UserError
from uqbench.models import custom
from uqbench.spec import method_names


class Honouring(nn.Module):
    """Linear 2 -> 32, spectral normalisation when asked, dropout of the asked probability."""

    def __init__(self, dropout: float, spectral_norm: float | None):
        super().__init__()
        layer = nn.Linear(2, 32)
        if spectral_norm is not None:
            layer = nn.utils.parametrizations.spectral_norm(layer)
        self.body = nn.Sequential(layer, nn.ReLU(), nn.Dropout(dropout))
        self.out_features = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Plain(nn.Module):
    """Linear 2 -> 16, ReLU: no dropout, no normalisation, whatever is asked."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 16)
        self.out_features = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layer(x))


def honouring(dropout, spectral_norm):
    return Honouring(dropout, spectral_norm)


def plain(dropout, spectral_norm):
    return Plain()


@pytest.fixture(autouse=True)
def _forget(custom_backbones):
    """Every architecture a test registers is forgotten afterwards."""


def test_every_method_builds_its_variant_from_the_factory(tmp_path, torch_state):
    board = uqbench.compare("two-moons", methods="all", seeds=1, settings={"epochs": 1, "n_train": 64, "n_test": 32},
                            backbone=honouring, out=tmp_path)
    assert {r.method for r in board.rows} == set(method_names("all"))
    assert all(r.n_runs == 1 and r.n_failed == 0 and r.backbone["arch"] == "custom-honouring" for r in board.rows)


@pytest.mark.parametrize("method, needs", [("mc-dropout", "dropout layers of p=0.05"),
                                           ("sngp", "spectral normalisation \\(bound 0.95\\)"),
                                           ("ddu", "spectral normalisation \\(bound 3\\)")])
def test_a_variant_the_factory_does_not_honour_is_refused_not_run_as_map(tmp_path, method, needs):
    with pytest.raises(UserError, match=f"^backbone 'custom-plain': this method needs {needs}, and the factory built none"):
        uqbench.run(method, "two-moons", settings={"epochs": 1}, backbone=plain, out=tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_the_factorys_code_is_in_the_run_key_and_the_cached_networks_key(tmp_path, torch_state):
    (first,) = uqbench.run("laplace", "two-moons", settings={"epochs": 1}, backbone=plain, out=tmp_path)
    assert first.key.code["backbone"].startswith("custom:") and first.key.backbone["arch"] == "custom-plain"
    custom.register_backbone("custom-plain", plain, version="2")  # the same name, other code
    spec = uqbench.api._plan(  # the spec the next run gets: another id, another cached network
        uqbench.experiment.run_request("laplace", "two-moons", 1, 0, uqbench.experiment.CommandLine()),
        uqbench.api._settings("run", {"epochs": 1, "arch": "custom-plain"})).specs[0]
    assert spec.code["backbone"] == "custom:2" and spec.id != first.id
    assert spec.shared_key()["code"] == {"uqbench": uqbench.__version__, "backbone": "custom:2"}


def test_bad_factories_and_names_are_one_message(tmp_path):
    with pytest.raises(BadConfig, match="is a built-in architecture"):
        custom.register_backbone("mlp", plain)
    with pytest.raises(BadConfig, match="must be kebab-case"):
        custom.register_backbone("My Net", plain)

    def no_features(dropout, spectral_norm):
        return nn.Sequential(nn.Linear(2, 3))

    with pytest.raises(UserError, match="needs an integer attribute out_features"):
        uqbench.run("map", "two-moons", settings={"epochs": 1}, backbone=no_features, out=tmp_path)
    with pytest.raises(BadConfig, match="worker processes cannot build it, so give jobs=1"):
        uqbench.compare("two-moons", methods="map", backbone=plain, jobs=2, out=tmp_path)
