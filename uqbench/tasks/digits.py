"""scikit-learn's bundled 8x8 handwritten digits: a tiny real image task that runs offline in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from uqbench.config import Checked, Interval
from uqbench.models import BackboneConfig
from uqbench.shift import sets as shift_sets
from uqbench.tasks.base import Split, Task, TaskData, tasks
from uqbench.training import TrainConfig


@tasks.register("digits")
class Digits(Task):
    """8x8 handwritten digits (scikit-learn, 1797 images), 10 classes, small CNN.

    Each seed draws a fresh stratified train/test split. OOD sets, both built from the test images so that
    only the property named differs:
    - `rotated`: test digits rotated by 90 degrees — familiar strokes in an orientation never seen in training.
    - `noise`: images of i.i.d. uniform pixel intensities over the digits' range — no digit structure at all.
    Pixels are scaled to [0, 1] and then standardised with the training images' mean and standard deviation.
    """

    kind = "classification"
    ood_sets = ("rotated", "noise")
    source = "scikit-learn (bundled)"
    recipe = TrainConfig(epochs=30, batch_size=64, lr=3e-3)
    backbone = BackboneConfig("cnn", width=32)
    evaluated_only = ("shift",)

    @dataclass(frozen=True)
    class Config(Checked):
        """Data settings: test images of each draw (the rest, 1797 - n_test, train); `shift`: also evaluate on
        the test images under every corruption at severities 1-5 (`uqbench.shift.sets`, generated and cached)."""

        n_test: Annotated[int, Interval(10, 1787)] = 497
        shift: bool = False

    def fingerprint(self, split: int) -> dict[str, str]:
        shifted = shift_sets.fingerprint(None) if self.config.shift else {}
        return {"digits": "scikit-learn bundled", **shifted}

    def shifted_labels(self) -> tuple[str, ...]:
        return shift_sets.labels(1) if self.config.shift else ()

    def size(self) -> str:
        return f"{1797 - self.config.n_test} / {self.config.n_test}"

    def load(self, seed: int, split: int) -> TaskData:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.float32) / 16.0
        x_tr, x_te, y_tr, y_te = train_test_split(
            images, digits.target, test_size=self.config.n_test, random_state=seed * 1000 + split, stratify=digits.target
        )
        rng = np.random.default_rng([seed, split, 2])
        rotated = np.rot90(x_te, k=1, axes=(1, 2)).copy()
        noise = rng.uniform(0.0, 1.0, size=x_te.shape).astype(np.float32)
        loc, scale = x_tr.mean(), x_tr.std()

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor((a - loc) / scale, dtype=torch.float32)[:, None]

        y_test = torch.as_tensor(y_te, dtype=torch.long)
        shifted = ()
        if self.config.shift:
            files = shift_sets.generated(torch.as_tensor(x_te)[:, None])
            shifted = shift_sets.shifted_sets(files, len(x_te), y_test, lambda u8: tensor(u8[:, 0] / 255.0))
        return TaskData(
            kind="classification",
            train=Split(tensor(x_tr), torch.as_tensor(y_tr, dtype=torch.long)),
            test=Split(tensor(x_te), y_test),
            out_dim=10,
            ood={"rotated": tensor(rotated), "noise": tensor(noise)},
            shifted=shifted,
            data_sha256=self.fingerprint(split),
        )
