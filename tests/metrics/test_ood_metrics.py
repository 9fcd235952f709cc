"""OOD metrics against scikit-learn on the same scores (AUROC, average precision both ways, roc_curve for FPR95),
with continuous scores and with many ties, plus hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from uqbench.metrics import ood

skm = pytest.importorskip("sklearn.metrics")


def make_scores(seed: int, n_in: int, n_out: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score_in, score_out = rng.normal(0.0, 1.0, n_in), rng.normal(1.0, 1.5, n_out)
    if ties:
        score_in, score_out = np.round(score_in), np.round(score_out)
    return score_in, score_out


CASES = [(0, 500, 300, False), (1, 1000, 1000, True), (2, 7, 40, True), (3, 20, 3, False), (4, 2000, 500, True)]


@pytest.mark.parametrize(("seed", "n_in", "n_out", "ties"), CASES)
def test_auroc_and_aupr_match_sklearn(seed, n_in, n_out, ties):
    score_in, score_out = make_scores(seed, n_in, n_out, ties)
    labels_out = np.r_[np.zeros(n_in), np.ones(n_out)]
    scores = np.r_[score_in, score_out]
    assert ood.auroc(score_in, score_out) == pytest.approx(skm.roc_auc_score(labels_out, scores), abs=1e-12)
    assert ood.aupr_out(score_in, score_out) == pytest.approx(
        skm.average_precision_score(labels_out, scores), abs=1e-12
    )
    assert ood.aupr_in(score_in, score_out) == pytest.approx(
        skm.average_precision_score(1 - labels_out, -scores), abs=1e-12
    )


@pytest.mark.parametrize(("seed", "n_in", "n_out", "ties"), CASES)
def test_fpr95_matches_sklearn_roc_curve_with_in_distribution_positive(seed, n_in, n_out, ties):
    score_in, score_out = make_scores(seed, n_in, n_out, ties)
    fpr, tpr, _ = skm.roc_curve(np.r_[np.ones(n_in), np.zeros(n_out)], -np.r_[score_in, score_out],
                                drop_intermediate=False)
    assert ood.fpr95(score_in, score_out) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_fpr95_hand_computation():
    score_in = np.arange(1.0, 21.0)  # 20 inputs: keeping 95% means accepting 19, threshold 19
    score_out = np.array([0.5, 19.0, 19.5, 25.0])
    assert ood.fpr95(score_in, score_out) == 0.5
    # 7 inputs: 95% needs all 7 (6/7 < 0.95), threshold 7
    assert ood.fpr95(np.arange(1.0, 8.0), np.array([6.5, 7.0, 8.0])) == pytest.approx(2 / 3)


def test_infinite_scores_are_one_tied_threshold():
    score_in, score_out = np.array([0.0, np.inf]), np.array([np.inf, np.inf])
    assert ood.auroc(score_in, score_out) == 0.75
    assert ood.fpr95(score_in, score_out) == 1.0


def test_perfect_separation_and_chance():
    score_in, score_out = np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0])
    assert [f(score_in, score_out) for f in (ood.auroc, ood.aupr_in, ood.aupr_out, ood.fpr95)] == [1.0, 1.0, 1.0, 0.0]
    same_in, same_out = np.zeros(30), np.zeros(10)
    assert ood.auroc(same_in, same_out) == 0.5
    assert ood.aupr_out(same_in, same_out) == pytest.approx(0.25)
    assert ood.aupr_in(same_in, same_out) == pytest.approx(0.75)
