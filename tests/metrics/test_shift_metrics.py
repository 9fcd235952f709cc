"""Shift metrics: every set scored with the kind's table, means per severity and overall, keys and specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqbench.metrics import CLASSIFICATION, REGRESSION, evaluate_shifted, metric_spec, reported, shift
from uqbench.prediction import Categorical, Gaussian


def _categorical(n: int, seed: int) -> tuple[Categorical, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return Categorical(torch.softmax(torch.randn(n, 4, generator=g), -1)), torch.randint(0, 4, (n,), generator=g)


def test_each_set_is_scored_by_the_metric_table_and_the_means_are_over_sets():
    sets = [(name, s, *_categorical(50, 10 * i + s)) for i, name in enumerate(("fog", "snow")) for s in (1, 2)]
    out = evaluate_shifted(sets)
    for name, s, pred, y in sets:
        for m in shift.METRICS["classification"]:
            assert out[f"shift.{name}.{s}.{m}"] == CLASSIFICATION[m].fn(pred.probs.double().numpy(), y.numpy())
    for s in (1, 2):
        assert out[f"shift.{s}.ece"] == pytest.approx((out[f"shift.fog.{s}.ece"] + out[f"shift.snow.{s}.ece"]) / 2)
    per_set = [out[f"shift.{n}.{s}.nll"] for n in ("fog", "snow") for s in (1, 2)]
    assert out["shift.nll"] == pytest.approx(np.mean(per_set))
    assert list(out) == shift.keys("classification", ("fog.1", "fog.2", "snow.1", "snow.2"))


def test_a_shift_without_severities_has_its_own_keys_and_the_overall_mean():
    g = torch.Generator().manual_seed(0)
    pred = Gaussian(torch.randn(30, 1, generator=g), torch.rand(30, 1, generator=g) + 0.1)
    y = torch.randn(30, 1, generator=g)
    out = evaluate_shifted([("gap", None, pred, y)])
    assert out["shift.gap.rmse"] == REGRESSION["rmse"].fn(pred, y.double().numpy()) == out["shift.rmse"]
    assert list(out) == shift.keys("regression", ("gap",)) and not any(k.split(".")[1].isdigit() for k in out)
    assert evaluate_shifted([]) == {} and shift.keys("regression", ()) == []


def test_shift_keys_read_as_their_metric_and_other_keys_are_refused():
    assert metric_spec("shift.fog.3.ece") is CLASSIFICATION["ece"]
    assert metric_spec("shift.2.accuracy") is CLASSIFICATION["accuracy"] and metric_spec("shift.gap.crps") is REGRESSION["crps"]
    for bad in ("shift.fog.3.auroc", "shift.fog.3.mae", "shift.a.b.c.ece"):
        with pytest.raises(KeyError, match="unknown metric"):
            metric_spec(bad)
    assert shift.per_set("shift.fog.3.ece") and shift.per_set("shift.gap.rmse")
    assert not shift.per_set("shift.3.ece") and not shift.per_set("shift.ece") and not shift.per_set("ece")
    assert "shift.fog.1.brier" in reported("classification", (), ("fog.1",))
