"""Classification metrics on probabilities [N, C] (numpy float arrays) and integer targets [N].

Binning (all calibration errors): the bins are the intervals [e_b, e_{b+1}) of the edges e_0 = 0 < ... < e_B = 1,
the last one closed, [e_{B-1}, 1] (numpy's histogram convention, the same as netcal's). The gap of a bin is
|mean correctness - mean confidence| over the examples in it; empty bins count for nothing.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12
BINS = 15


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


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: top-label confidence in `bins` equal-width bins, the gap of each bin weighted
    by the fraction of examples in it (Guo et al., 2017). A fraction in [0, 1].

    >>> round(ece(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1])), 6)
    0.45
    """
    conf, hit = _top_label(probs, targets)
    mass, gap = _bin_gaps(conf, hit, np.linspace(0.0, 1.0, bins + 1))
    return float((mass * gap).sum())


def ece_adaptive(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Equal-mass ECE: as `ece`, but the inner bin edges are the empirical quantiles (linear interpolation) of the
    top-label confidence at 1/bins, 2/bins, ..., so every bin holds about N / bins examples.

    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    >>> round(ece_adaptive(probs, np.array([0, 0, 1, 1]), bins=2), 6)
    0.4
    """
    conf, hit = _top_label(probs, targets)
    edges = np.quantile(conf, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    mass, gap = _bin_gaps(conf, hit, edges)
    return float((mass * gap).sum())


def ece_classwise(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Classwise ECE (Kull et al., 2019): for each class k, the probabilities of k over all examples in `bins`
    equal-width bins, gap |fraction of class k - mean probability of k|, weighted by bin mass; then the mean
    over classes. A fraction in [0, 1].

    >>> round(ece_classwise(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1])), 6)
    0.45
    """
    n, c = probs.shape
    idx = _bin_index(probs, np.linspace(0.0, 1.0, bins + 1)) + np.arange(c) * bins  # [N, C], one bin set per class
    hit = (targets[:, None] == np.arange(c)).astype(np.float64)
    # the weighted gap of a bin, mass * |mean(hit - p)|, is |sum(hit - p)| / N
    diff = np.bincount(idx.ravel(), (hit - probs).ravel(), minlength=c * bins)
    return float(np.abs(diff).sum() / (n * c))


def mce(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Maximum calibration error: the largest gap over the non-empty equal-width bins of top-label confidence.

    >>> round(mce(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1])), 6)
    0.8
    """
    conf, hit = _top_label(probs, targets)
    _, gap = _bin_gaps(conf, hit, np.linspace(0.0, 1.0, bins + 1))
    return float(gap.max())


def aurc(probs: np.ndarray, targets: np.ndarray) -> float:
    """Area under the risk-coverage curve of selective prediction (Geifman and El-Yaniv, 2017): examples are
    accepted from the most to the least confident (top-label probability), and the error rate among the accepted
    ones is averaged over coverage. Examples with equal confidence enter together. A fraction; lower is better.

    >>> round(aurc(np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]]), np.array([0, 1, 1, 1])), 6)
    0.145833
    """
    conf, hit = _top_label(probs, targets)
    order = np.argsort(-conf, kind="stable")
    conf, errors = conf[order], np.cumsum(1.0 - hit[order])
    ends = np.r_[np.flatnonzero(conf[1:] != conf[:-1]), conf.size - 1]  # last example of each confidence level
    accepted = ends + 1
    risk = errors[ends] / accepted
    return float((risk * np.diff(np.r_[0, accepted])).sum() / conf.size)


def _top_label(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence [N] and correctness [N] (1.0 or 0.0)."""
    return probs.max(1), (probs.argmax(1) == targets).astype(np.float64)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value in [0, 1] for increasing edges [B + 1]; same shape as `values`."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def _bin_gaps(conf: np.ndarray, hit: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of examples [B] and gap |mean hit - mean conf| [B] (0 when empty) of each bin."""
    idx = _bin_index(conf, edges)
    count = np.bincount(idx, minlength=len(edges) - 1)
    gap = np.abs(np.bincount(idx, hit - conf, minlength=len(edges) - 1)) / np.maximum(count, 1)
    return count / conf.size, gap
