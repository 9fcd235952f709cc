"""Out-of-distribution detection metrics. Scores: higher = more out-of-distribution; OOD is the positive class."""

from __future__ import annotations

import numpy as np


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD (positive) from in-distribution inputs by the score.

    >>> auroc(np.array([0.1, 0.2]), np.array([0.3, 0.15]))
    0.75
    """
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([np.zeros(len(score_in)), np.ones(len(score_out))])
    return float(roc_auc_score(labels, np.concatenate([score_in, score_out])))
