"""Classification metrics on probabilities [N, C] (numpy float arrays) and integer targets [N]."""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of examples whose most probable class is the target.

    >>> accuracy(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]))
    0.5
    """
    return float((probs.argmax(1) == targets).mean())


def nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the targets, nats per example (probabilities clipped at 1e-12).

    >>> round(nll(np.array([[0.5, 0.5], [0.25, 0.75]]), np.array([0, 1])), 6)
    0.490415
    """
    return float(-np.log(np.clip(probs[np.arange(len(targets)), targets], _EPS, None)).mean())


def brier(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over examples of the squared error between probabilities and the one-hot target, summed over classes.

    >>> brier(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1]))
    0.25
    """
    onehot = np.eye(probs.shape[1])[targets]
    return float(((probs - onehot) ** 2).sum(1).mean())


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: 15 equal-width bins of top-label confidence, |accuracy - confidence| weighted
    by the fraction of examples in each bin (computed with netcal).

    >>> round(ece(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1])), 6)
    0.45
    """
    from netcal.metrics import ECE

    return float(ECE(bins=bins).measure(probs.astype(np.float64), targets))
