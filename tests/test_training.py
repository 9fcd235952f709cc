"""The training loop: seeded and reproducible, NaN guard, early stopping restores the best weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from uqbench.errors import BadConfig, NonFiniteLoss
from uqbench.training import TrainConfig, fit_module, seeded


def _problem(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def _fit(seed, **cfg):
    x, y = _problem()
    with seeded(0):
        model = nn.Linear(3, 1)
    fit_module(model, lambda a, b: ((model(a) - b) ** 2).mean(), (x, y), TrainConfig(**cfg), seed=seed)
    return model.weight.detach().clone()


def test_same_seed_same_weights_other_seed_other_order():
    assert torch.equal(_fit(1, epochs=3, batch_size=8), _fit(1, epochs=3, batch_size=8))
    assert not torch.equal(_fit(1, epochs=3, batch_size=8), _fit(2, epochs=3, batch_size=8))


def test_training_reduces_loss():
    x, y = _problem()
    with seeded(0):
        model = nn.Linear(3, 1)
    cfg = TrainConfig(epochs=50, batch_size=8, lr=0.05)
    result = fit_module(model, lambda a, b: ((model(a) - b) ** 2).mean(), (x, y), cfg, seed=0)
    assert result.history[-1] < 0.01 * result.history[0]
    assert not model.training  # left in eval mode


def test_nan_loss_stops_with_a_clear_reason():
    x, y = _problem()
    model = nn.Linear(3, 1)
    calls = {"n": 0}

    def loss(a, b):
        calls["n"] += 1
        value = ((model(a) - b) ** 2).mean()
        return value * float("nan") if calls["n"] == 11 else value

    with pytest.raises(NonFiniteLoss, match=r"loss became nan at epoch 2 step 3"):
        fit_module(model, loss, (x, y), TrainConfig(epochs=5, batch_size=8), seed=0)


def test_early_stopping_restores_best_weights():
    x, y = _problem()
    model = nn.Linear(3, 1)
    seen = []

    def val_loss(a, b):
        # pretend validation gets worse after the first epoch
        seen.append(model.weight.detach().clone())
        return torch.full((a.shape[0],), float(len(seen)))

    result = fit_module(
        model, lambda a, b: ((model(a) - b) ** 2).mean(), (x, y), TrainConfig(epochs=20, patience=2),
        seed=0, val=(x, y), val_loss_fn=val_loss,
    )
    assert result.epochs_run == 3
    assert torch.equal(model.weight, seen[0])


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("lr", -0.1), ("grad_clip", 0.0), ("patience", 0)])
def test_bad_train_config_is_rejected(field, value):
    with pytest.raises(BadConfig, match=field):
        TrainConfig(**{field: value})


def test_seeded_restores_the_outer_rng():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    with seeded(123):
        torch.rand(10)
    assert torch.equal(torch.rand(1), expected)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_flat_adam_follows_torchs_adam(optimizer):
    """FlatAdam (the CPU path) gives torch.optim.Adam / AdamW's updates, groups with their own lr and weight decay
    included, and survives a caller that sets the gradients to None."""
    import copy

    from uqbench.training import FlatAdam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(net)

    def groups(module):
        return [{"params": [module[0].weight, module[2].weight], "weight_decay": 0.1},
                {"params": [module[0].bias, module[2].bias], "weight_decay": 0.0, "lr": 0.05}]

    flat = FlatAdam(groups(net), lr=0.01, eps=1e-8, weight_decay=0.0, decoupled=optimizer == "adamw")
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    reference = cls(groups(twin), lr=0.01, eps=1e-8, weight_decay=0.0)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    for step in range(30):
        for module, opt in ((net, flat), (twin, reference)):
            opt.zero_grad(set_to_none=True)
            if step == 10:
                module.zero_grad(set_to_none=True)  # what other code may do: FlatAdam takes the gradients back
            ((module(x) - y) ** 2).mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
