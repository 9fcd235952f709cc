"""Input standardisation shared by the tasks that read tables (UCI, a user's own files)."""

from __future__ import annotations

import numpy as np


def input_scaling(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation [F] of the training inputs [N, F]; scale 1 for constant columns.

    A constant column's computed std is not always exactly 0 (naval has one at 2.5e-13 from rounding), so
    constancy is tested on the range.
    """
    scale = np.where(np.ptp(x_train, axis=0) > 0, x_train.std(0), 1.0)
    return x_train.mean(0), scale


__all__ = ["input_scaling"]
