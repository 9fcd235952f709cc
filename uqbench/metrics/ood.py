"""Out-of-distribution detection metrics on scores [N_in] and [N_out] (numpy floats).

Scores are "higher = more out-of-distribution". AUROC and AUPR-out take OOD as the positive class; AUPR-in takes
the in-distribution inputs as positive with the scores negated. Equal scores are one threshold (ties are never
broken by input order), and the curves step exactly as scikit-learn's `roc_curve` and
`average_precision_score` do.
"""

from __future__ import annotations

import numpy as np

TPR = 0.95  # fraction of in-distribution inputs kept by the FPR95 threshold


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD (positive) from in-distribution inputs by the score; ties count
    one half (the trapezoidal rule). A fraction; 0.5 is chance.

    >>> auroc(np.array([0.1, 0.2]), np.array([0.3, 0.15]))
    0.75
    """
    tp, fp = _counts(score_out, score_in)
    return float(np.trapezoid(np.r_[0, tp] / score_out.size, np.r_[0, fp] / score_in.size))


def aupr_in(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Average precision with the in-distribution inputs as positive and the scores negated (step-wise area
    under the precision-recall curve, no interpolation). A fraction; chance is N_in / (N_in + N_out).

    >>> round(aupr_in(np.array([0.1, 0.2]), np.array([0.3, 0.15])), 6)
    0.833333
    """
    return _average_precision(-score_in, -score_out)


def aupr_out(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Average precision with OOD as positive (step-wise, no interpolation). A fraction; chance is
    N_out / (N_in + N_out).

    >>> round(aupr_out(np.array([0.1, 0.2]), np.array([0.3, 0.15])), 6)
    0.833333
    """
    return _average_precision(score_out, score_in)


def fpr95(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Fraction of OOD inputs accepted (score <= t) at the lowest threshold t that accepts at least 95% of the
    in-distribution inputs. A fraction; lower is better.

    >>> fpr95(np.arange(20.0), np.array([5.0, 18.0, 19.0, 30.0]))
    0.5
    """
    kept, accepted = _counts(-score_in, -score_out)
    first = int(np.argmax(kept / score_in.size >= TPR))
    return float(accepted[first] / score_out.size)


def _average_precision(score_pos: np.ndarray, score_neg: np.ndarray) -> float:
    """Sum over thresholds of the recall gained times the precision there."""
    tp, fp = _counts(score_pos, score_neg)
    recall_gain = np.diff(np.r_[0, tp]) / score_pos.size
    return float((recall_gain * tp / (tp + fp)).sum())


def _counts(score_pos: np.ndarray, score_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives [T] when every score >= t is called positive, for each distinct score t in
    decreasing order."""
    scores = np.concatenate([score_pos, score_neg])
    positive = np.r_[np.ones(score_pos.size), np.zeros(score_neg.size)]
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    ends = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]  # last index of each distinct score
    tp = np.cumsum(positive)[ends]
    return tp, ends + 1 - tp
