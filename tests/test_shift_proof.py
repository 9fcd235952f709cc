"""The picture every dataset-shift paper shows, on this implementation (Ovadia et al. 2019): as corruptions get
more severe, MAP's accuracy falls and its calibration error rises, and a deep ensemble's NLL under shift is lower
than MAP's. Thresholds were measured once (the numbers in each test) and frozen with a margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import uqbench
from uqbench.results import ResultStore

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _means(out: Path) -> dict[str, dict[str, float]]:
    """method -> metric -> mean over its runs."""
    by_method: dict[str, list[dict[str, float]]] = {}
    for record in ResultStore(out).records():
        assert record.status == "ok", record.error
        by_method.setdefault(record.key.method, []).append(record.metrics)
    return {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in by_method.items()}


def _by_severity(metrics: dict[str, float], name: str) -> list[float]:
    """The metric on the clean test set, then its mean over corruptions at severities 1 .. 5."""
    return [metrics[name]] + [metrics[f"shift.{s}.{name}"] for s in range(1, 6)]


def _check(means: dict[str, dict[str, float]], drop: float, ece_ratio: float, nll_ratio: float) -> None:
    accuracy, ece = _by_severity(means["map"], "accuracy"), _by_severity(means["map"], "ece")
    assert all(a > b for a, b in zip(accuracy, accuracy[1:])), accuracy
    assert all(a < b for a, b in zip(ece, ece[1:])), ece
    assert accuracy[0] - accuracy[-1] >= drop and ece[-1] >= ece_ratio * ece[0], (accuracy, ece)
    assert means["ensemble"]["shift.nll"] <= nll_ratio * means["map"]["shift.nll"]


@pytest.mark.slow
def test_digits_under_shift(tmp_path, monkeypatch):
    """Measured (3 seeds, defaults): map accuracy 0.985 0.973 0.970 0.961 0.945 0.905 (clean, severity 1..5), ECE
    0.011 0.016 0.021 0.027 0.036 0.046; shift.nll map 0.163, ensemble 0.144 (0.88 x)."""
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))
    uqbench.compare("digits", methods=["map", "ensemble"], seeds=3, settings={"shift": True}, out=tmp_path / "r")
    _check(_means(tmp_path / "r"), drop=0.05, ece_ratio=2.5, nll_ratio=0.95)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (/usr/share/datasets)")
def test_fashion_mnist_under_shift(tmp_path, monkeypatch):
    """Measured (seed 0, resnet-small, 5 epochs on 10000 images, 500 test images): map accuracy 0.890 0.772 0.700
    0.657 0.641 0.602, ECE 0.042 0.072 0.113 0.128 0.142 0.174; shift.nll map 1.322, ensemble 1.171 (0.89 x)."""
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))
    uqbench.compare("fashion-mnist", methods=["map", "ensemble"], seeds=1,
                    settings={"shift": True, "n_train": 10000, "n_test": 500}, out=tmp_path / "r")
    _check(_means(tmp_path / "r"), drop=0.2, ece_ratio=3.0, nll_ratio=0.95)
