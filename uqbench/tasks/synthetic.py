"""Synthetic tasks that prove behaviour in seconds: toy 1-D regression with a gap, and two moons.

Each seed draws a fresh data set (and the model's initialisation), so repetitions over seeds are independent.
Inputs and regression targets are standardised with training-set statistics; OOD sets use the same scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from uqbench.config import AT_LEAST_ONE, NON_NEGATIVE, Checked
from uqbench.models import BackboneConfig
from uqbench.tasks.base import Split, Task, TaskData, tasks
from uqbench.training import TrainConfig


def scaling(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training array's per-column mean and standard deviation [F] (the latter never 0)."""
    return train.mean(0), train.std(0) + 1e-12


def standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale every array with the training array's per-column mean and standard deviation."""
    loc, scale = scaling(train)
    return tuple((a - loc) / scale for a in (train, *others))


def _float(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


@tasks.register("toy-regression")
class ToyRegression(Task):
    """1-D regression, y = sin(3x/2) + x/4 + noise, inputs in two clusters with a gap between them.

    Training and test inputs are uniform on [-4, -1.5] and [1.5, 4]. OOD sets: `gap` — inputs uniform on
    [-1, 1], inside the gap no training point covers; `far` — inputs uniform on [-8, -6] and [6, 8], beyond both
    ends. A good method is more uncertain on both than on the test set.
    """

    kind = "regression"
    ood_sets = ("gap", "far")
    recipe = TrainConfig(epochs=200, batch_size=32, lr=3e-3)
    backbone = BackboneConfig("mlp", width=64, depth=2, activation="elu")

    @dataclass(frozen=True)
    class Config(Checked):
        """Data settings: training and test points, noise standard deviation."""

        n_train: Annotated[int, AT_LEAST_ONE] = 400
        n_test: Annotated[int, AT_LEAST_ONE] = 200
        noise: Annotated[float, NON_NEGATIVE] = 0.1

    def size(self) -> str:
        return f"{self.config.n_train} / {self.config.n_test}"

    def load(self, seed: int, split: int) -> TaskData:
        cfg = self.config
        rng = np.random.default_rng([seed, split])

        def clusters(n: int, lo: float, hi: float) -> np.ndarray:
            side = rng.choice([-1.0, 1.0], size=n)
            return (side * rng.uniform(lo, hi, size=n))[:, None]

        def target(x: np.ndarray) -> np.ndarray:
            return np.sin(1.5 * x) + 0.25 * x + cfg.noise * rng.standard_normal(x.shape)

        x_tr, x_te = clusters(cfg.n_train, 1.5, 4.0), clusters(cfg.n_test, 1.5, 4.0)
        y_tr, y_te = target(x_tr), target(x_te)
        x_gap, x_far = rng.uniform(-1.0, 1.0, size=(200, 1)), clusters(200, 6.0, 8.0)
        x_tr_s, x_te_s, x_gap_s, x_far_s = standardise(x_tr, x_te, x_gap, x_far)
        x_loc, x_scale = scaling(x_tr)
        y_loc, y_scale = y_tr.mean(0), y_tr.std(0)
        return TaskData(
            kind="regression",
            train=Split(_float(x_tr_s), _float((y_tr - y_loc) / y_scale)),
            test=Split(_float(x_te_s), _float((y_te - y_loc) / y_scale)),
            out_dim=1,
            ood={"gap": _float(x_gap_s), "far": _float(x_far_s)},
            target_loc=_float(y_loc),
            target_scale=_float(y_scale),
            input_loc=_float(x_loc),
            input_scale=_float(x_scale),
            data_sha256=self.fingerprint(split),
        )


@tasks.register("two-moons")
class TwoMoons(Task):
    """Two interleaving half-moons (scikit-learn make_moons), 2 classes.

    OOD set `far`: points drawn uniformly from the box [-6, 7] x [-6, 6.5] and kept only if they lie more than
    2 units (original coordinates) from every training point — inputs unlike anything seen in training, where a
    distance-aware method should be uncertain (predictive entropy near ln 2).
    """

    kind = "classification"
    ood_sets = ("far",)
    recipe = TrainConfig(epochs=100, batch_size=64, lr=3e-3)
    backbone = BackboneConfig("mlp", width=128, depth=3)

    @dataclass(frozen=True)
    class Config(Checked):
        """Data settings: training, test and far-OOD points, noise of make_moons."""

        n_train: Annotated[int, AT_LEAST_ONE] = 800
        n_test: Annotated[int, AT_LEAST_ONE] = 200
        n_ood: Annotated[int, AT_LEAST_ONE] = 500
        noise: Annotated[float, NON_NEGATIVE] = 0.1

    def size(self) -> str:
        return f"{self.config.n_train} / {self.config.n_test}"

    def load(self, seed: int, split: int) -> TaskData:
        from sklearn.datasets import make_moons

        cfg = self.config
        x, y = make_moons(cfg.n_train + cfg.n_test, noise=cfg.noise, random_state=seed * 1000 + split)
        x_tr, y_tr, x_te, y_te = x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]
        x_far = self._far_points(x_tr, np.random.default_rng([seed, split, 1]))
        x_tr_s, x_te_s, x_far_s = standardise(x_tr, x_te, x_far)
        return TaskData(
            kind="classification",
            train=Split(_float(x_tr_s), torch.as_tensor(y_tr, dtype=torch.long)),
            test=Split(_float(x_te_s), torch.as_tensor(y_te, dtype=torch.long)),
            out_dim=2,
            ood={"far": _float(x_far_s)},
            data_sha256=self.fingerprint(split),
        )

    def _far_points(self, x_train: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kept: list[np.ndarray] = []
        while sum(len(k) for k in kept) < self.config.n_ood:
            cand = rng.uniform([-6.0, -6.0], [7.0, 6.5], size=(4 * self.config.n_ood, 2))
            dist = np.sqrt(((cand[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)).min(1)
            kept.append(cand[dist > 2.0])
        return np.concatenate(kept)[: self.config.n_ood]
