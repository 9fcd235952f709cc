"""Classification metrics against independent implementations on the same arrays: netcal (ECE, equal-mass ECE,
MCE, per-class ECE), torchmetrics (top-label ECE and MCE), scikit-learn (accuracy, log loss, Brier) and hand
computations (AURC)."""

from __future__ import annotations

import numpy as np
import pytest

from uqbench.metrics import classification as cls


def make_probs(n: int, c: int, seed: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Overconfident random probabilities [N, C] and labels [N]; rounding puts many confidences on bin edges and
    makes ties."""
    rng = np.random.default_rng(seed)
    logits = 2.5 * rng.normal(size=(n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:
        probs = np.round(probs, decimals)
        probs[:, -1] = np.clip(1 - probs[:, :-1].sum(1), 0, 1)
        probs /= probs.sum(1, keepdims=True)
    labels = np.where(rng.random(n) < 0.6, probs.argmax(1), rng.integers(0, c, n))
    return probs, labels


@pytest.fixture(scope="module")
def netcal_metrics():
    return pytest.importorskip("netcal.metrics")


@pytest.mark.parametrize(("n", "c", "decimals"), [(1000, 3, None), (2000, 10, None), (1500, 3, 1), (3000, 5, 2)])
def test_equal_width_ece_and_mce_match_netcal(netcal_metrics, n, c, decimals):
    # decimals=1 puts about half the confidences exactly on bin edges k/15: netcal bins [a, b) too
    probs, labels = make_probs(n, c, seed=n + c, decimals=decimals)
    assert cls.ece(probs, labels) == pytest.approx(netcal_metrics.ECE(bins=15).measure(probs, labels), abs=1e-12)
    assert cls.mce(probs, labels) == pytest.approx(netcal_metrics.MCE(bins=15).measure(probs, labels), abs=1e-12)


@pytest.mark.parametrize(("n", "c"), [(1000, 3), (1002, 4), (999, 10)])
def test_adaptive_ece_matches_netcal_equal_mass_bins(netcal_metrics, n, c):
    # continuous confidences only: netcal raises when two quantile edges coincide, uqbench leaves that bin empty
    probs, labels = make_probs(n, c, seed=c)
    expected = netcal_metrics.ECE(bins=15, equal_intervals=False).measure(probs, labels)
    assert cls.ece_adaptive(probs, labels) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "decimals"), [(1000, 2, None), (1000, 4, None), (1500, 3, 1)])
def test_classwise_ece_is_the_mean_of_netcal_per_class_ece(netcal_metrics, n, c, decimals):
    probs, labels = make_probs(n, c, seed=7 * c, decimals=decimals)
    per_class = [netcal_metrics.ECE(bins=15).measure(probs[:, k], (labels == k).astype(int)) for k in range(c)]
    assert cls.ece_classwise(probs, labels) == pytest.approx(np.mean(per_class), abs=1e-12)


def test_netcal_bins_the_class_one_probability_for_two_classes(netcal_metrics):
    # With two classes netcal's ECE is not top-label; it equals uqbench's classwise ECE instead.
    probs, labels = make_probs(800, 2, seed=3)
    netcal_ece = netcal_metrics.ECE(bins=15).measure(probs, labels)
    assert cls.ece_classwise(probs, labels) == pytest.approx(netcal_ece, abs=1e-12)
    assert abs(cls.ece(probs, labels) - netcal_ece) > 1e-3


@pytest.mark.parametrize(("n", "c"), [(1000, 2), (1000, 5)])
def test_top_label_ece_and_mce_match_torchmetrics(n, c):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.classification")
    probs, labels = make_probs(n, c, seed=11 * c)
    p, y = torch.as_tensor(probs), torch.as_tensor(labels)
    expected_ece = tm.multiclass_calibration_error(p, y, num_classes=c, n_bins=15, norm="l1")
    expected_mce = tm.multiclass_calibration_error(p, y, num_classes=c, n_bins=15, norm="max")
    # torchmetrics works in float32
    assert cls.ece(probs, labels) == pytest.approx(float(expected_ece), abs=1e-6)
    assert cls.mce(probs, labels) == pytest.approx(float(expected_mce), abs=1e-6)


def test_ece_hand_computation_with_a_confidence_on_an_edge_and_one_of_one():
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])
    labels = np.array([0, 1, 0, 1])
    # 0.6 = 9/15 starts bin 9: acc 1/2, conf 0.6, gap 0.1, mass 1/2; 1.0 is in the closed last bin: gap 0;
    # 0.5 (argmax picks class 0, wrong) in bin 7: gap 0.5, mass 1/4
    assert cls.ece(probs, labels) == pytest.approx(0.5 * 0.1 + 0.25 * 0.5)
    assert cls.mce(probs, labels) == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c"), [(500, 2), (700, 6)])
def test_accuracy_nll_brier_match_sklearn(n, c):
    skm = pytest.importorskip("sklearn.metrics")
    probs, labels = make_probs(n, c, seed=c)
    assert cls.accuracy(probs, labels) == pytest.approx(skm.accuracy_score(labels, probs.argmax(1)))
    assert cls.nll(probs, labels) == pytest.approx(skm.log_loss(labels, probs, labels=range(c)), rel=1e-10)
    brier = skm.brier_score_loss(labels, probs, labels=range(c), scale_by_half=False)
    assert cls.brier(probs, labels) == pytest.approx(brier, rel=1e-10)


def aurc_reference(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over k = 1..N of the error rate among the k most confident examples (distinct confidences)."""
    conf, wrong = probs.max(1), probs.argmax(1) != labels
    order = np.argsort(-conf)
    return float(np.mean([wrong[order[:k]].mean() for k in range(1, len(conf) + 1)]))


def test_aurc_matches_the_risk_coverage_definition():
    probs, labels = make_probs(300, 4, seed=5)
    assert cls.aurc(probs, labels) == pytest.approx(aurc_reference(probs, labels), abs=1e-12)


def test_aurc_lets_tied_confidences_enter_together():
    # confidences 0.9, 0.7, 0.7, 0.6; one of the two tied examples is wrong. Coverage 1/4: risk 0; coverage 3/4:
    # risk 1/3 (both tied ones, never one alone); coverage 1: risk 2/4.
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 1])
    assert cls.aurc(probs, labels) == pytest.approx(0.25 * 0 + 0.5 * (1 / 3) + 0.25 * 0.5)
    assert cls.aurc(probs[::-1], labels[::-1]) == cls.aurc(probs, labels)


def test_perfect_predictions_score_zero():
    probs = np.eye(4)[[0, 1, 2, 3, 3]]
    labels = np.array([0, 1, 2, 3, 3])
    for fn in (cls.nll, cls.brier, cls.ece, cls.ece_adaptive, cls.ece_classwise, cls.mce, cls.aurc):
        assert fn(probs, labels) == pytest.approx(0.0, abs=1e-11), fn.__name__
