"""Task interface: what a task hands to a method, and the task registry.

A task turns (seed, split) into a `TaskData`: tensors in standardised units, the scaling that undoes it, and
named out-of-distribution input sets. A task owns three things a run is made of: its data settings (`Config`,
a `Checked` dataclass: sizes, protocol, augmentation), its default training recipe (`recipe`, a `TrainConfig`)
and its default backbone (`backbone`, a `BackboneConfig`); `uqbench.spec.resolve` starts from these and applies
the user's settings. `fingerprint(split)` names the data a split reads, so that a run's key changes with it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor

from uqbench.config import Checked
from uqbench.models import BackboneConfig
from uqbench.registry import Registry
from uqbench.search import Holdout
from uqbench.training import TrainConfig

TaskKind = Literal["regression", "classification"]
SHIFT_DATA = "shift"  # the name (or the folder in the name) of a fingerprint entry of shifted test sets
KINDS: tuple[TaskKind, ...] = ("regression", "classification")


@dataclass(frozen=True)
class Split:
    """One set of examples.

    Attributes:
        x: inputs [N, *in_shape], float.
        y: classification: class indices [N] (int64); regression: standardised targets [N, D] (float).
    """

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class ShiftedSet:
    """A labelled test set under a named shift: a corruption at a severity (images), a gap in one input (UCI).

    Attributes:
        name: the shift, e.g. 'gaussian_noise' or 'gap'; metric keys are `shift.<name>[.<severity>].<metric>`.
        severity: 1 (mildest) .. 5, or None for a shift without severities.
        y: targets, as `Split.y`.
        inputs: builds the inputs [N, *in_shape], in the same units as `train.x`, when the evaluator asks (a
            task with many shifted sets keeps them compact until then).
    """

    name: str
    severity: int | None
    y: Tensor
    inputs: Callable[[], Tensor]

    @property
    def label(self) -> str:
        """`<name>.<severity>`, or `<name>` without a severity: the part of its metric keys after `shift.`."""
        return self.name if self.severity is None else f"{self.name}.{self.severity}"


@dataclass(frozen=True)
class TaskData:
    """Everything a method may see of a task for one (seed, split), plus what the evaluator needs.

    Attributes:
        kind: 'regression' or 'classification'.
        train, test: the splits; `val` is optional (early stopping, post-hoc tuning).
        ood: name -> OOD inputs [N_ood, *in_shape], in the same units as `train.x`.
        shifted: labelled test sets under distribution shift, evaluated with the task kind's shift metrics
            (`uqbench.metrics.shift`); empty unless the task's settings ask for them.
        out_dim: number of classes, or number of regression targets D.
        target_loc, target_scale: regression only, [D]: original = loc + scale * standardised.
        input_loc, input_scale: [*in_shape]: original = loc + scale * the inputs given here; None when the task
            gives its inputs unscaled or does not say (figures then label the inputs as given).
        train_transform: optional augmentation `(x_batch, generator) -> x_batch` for training batches.
        data_sha256: what the data came from, exactly as `Task.fingerprint(split)` names it (file -> sha256, or
            'generated/<version>' for synthetic data); the runner checks the two agree.
        info: free-form facts for the record (e.g. the protocol name).
    """

    kind: TaskKind
    train: Split
    test: Split
    out_dim: int
    val: Split | None = None
    ood: dict[str, Tensor] = field(default_factory=dict)
    shifted: tuple[ShiftedSet, ...] = ()
    target_loc: Tensor | None = None
    target_scale: Tensor | None = None
    input_loc: Tensor | None = None
    input_scale: Tensor | None = None
    train_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None
    data_sha256: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class NoSettings(Checked):
    """The data settings of a task that has none."""


class Task(ABC):
    """A benchmark task. Subclasses set the class attributes and implement `load`.

    The first line of the class docstring is the one-line description `uqbench list tasks` shows.

    Class attributes:
        kind: 'regression' or 'classification'; a task whose data decides it (a user's file) makes `kind` and
            `ood_sets` properties, so code that plans runs asks the task instance, never the class.
        Config: the data settings (a `Checked` dataclass, every field defaulted); part of every run's key.
        recipe: the default training recipe of runs on this task.
        backbone: the default backbone of runs on this task.
        ood_sets: names of the OOD input sets `load` returns.
        source: where the data comes from, for `list tasks`.
        data_version: version of a generator (synthetic data): bump it when the generated data changes.
        evaluated_only: Config fields that change only what a run is evaluated on (`shift`), never what it
            trains on; with the fingerprint entries of shifted sets (named `SHIFT_DATA` or `SHIFT_DATA/<file>`)
            they are left out of the key of the networks runs share (`RunSpec.shared_key`), so asking for shift
            metrics does not train a cached network again.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[TaskKind]
    Config: ClassVar[type] = NoSettings
    recipe: ClassVar[TrainConfig] = TrainConfig()
    backbone: ClassVar[BackboneConfig] = BackboneConfig()
    ood_sets: ClassVar[tuple[str, ...]] = ()
    source: ClassVar[str] = "generated"
    data_version: ClassVar[str] = "1"
    evaluated_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any | None = None, data_dir: Path | None = None):
        self.config = config if config is not None else self.Config()
        self.data_dir = data_dir

    def n_splits(self) -> int:
        """Number of distinct splits `load` accepts (split indices 0 .. n-1)."""
        return 1

    def size(self) -> str:
        """Short size description for `list tasks`, e.g. '800 / 200'."""
        return ""

    def shifted_labels(self) -> tuple[str, ...]:
        """Labels (`ShiftedSet.label`) of the shifted test sets `load` returns with these settings; none by default."""
        return ()

    def fingerprint(self, split: int) -> dict[str, str]:
        """What identifies the data of `split` (part of every run's key): file -> sha256 for files (from a dataset
        card where there is one, else hashed now), or `{name: 'generated/<data_version>'}` for generated data.

        Raises:
            DataError: files that are needed to tell are missing.
        """
        return {self.name: f"generated/{self.data_version}"}

    def prepare(self, splits: list[int]) -> None:
        """Make the files of these splits available (download, verify) before any run starts; DataError if not."""

    @abstractmethod
    def load(self, seed: int, split: int) -> TaskData:
        """Build the data for one repetition. Must be a pure function of (config, seed, split, files)."""

    def load_holdout(self, seed: int, split: int, holdout: Holdout) -> TaskData:
        """The training part of (seed, split) cut in two for a hyperparameter search: `train` the kept rows,
        `test` the held-out ones, no validation, OOD or shifted sets.

        This default carves the loaded tensors and keeps the task's scaling; a task that can standardise the
        kept rows on their own statistics (as the UCI tasks do, like the dropout repository's search) overrides it.
        """
        data = self.load(seed, split)
        keep, held = (torch.as_tensor(rows) for rows in holdout.rows(len(data.train), seed))
        x, y = data.train.x, data.train.y
        return dataclasses.replace(data, train=Split(x[keep], y[keep]), test=Split(x[held], y[held]), val=None, ood={},
                                   shifted=())

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _check_task(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"{cls!r} is not a subclass of uqbench.tasks.base.Task")
    if not isinstance(getattr(cls, "kind", None), property) and getattr(cls, "kind", None) not in KINDS:
        raise ValueError(f"{cls.__name__}.kind must be one of {KINDS} (or a property: decided by the data)")
    if not dataclasses.is_dataclass(cls.Config) or not issubclass(cls.Config, Checked):
        raise ValueError(f"{cls.__name__}.Config must be a dataclass extending uqbench.config.Checked")
    undefaulted = [f.name for f in dataclasses.fields(cls.Config)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if undefaulted:
        raise ValueError(f"{cls.__name__}.Config fields must all have defaults; without one: {', '.join(undefaulted)}")
    if not isinstance(cls.recipe, TrainConfig) or not isinstance(cls.backbone, BackboneConfig):
        raise ValueError(f"{cls.__name__}.recipe must be a TrainConfig and .backbone a BackboneConfig")
    shared = _names(cls.Config) & (_names(TrainConfig) | _names(BackboneConfig))
    if shared:
        raise ValueError(f"{cls.__name__}.Config repeats recipe or backbone fields: {', '.join(sorted(shared))}")
    cls.Config()


def _names(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


tasks: Registry[type[Task]] = Registry("task", group="uqbench.tasks", check=_check_task)
