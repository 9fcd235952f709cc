"""Task interface: what a task hands to a method, and the task registry.

A task turns (seed, split) into a `TaskData`: tensors in standardised units, the scaling that undoes it,
named out-of-distribution input sets, and the backbone the task calls for. Training budget and backbone size
live in the task's `Config` (a frozen dataclass extending `TrainConfig`), so `--set epochs=...` and the record's
`task_config` describe exactly how a run was trained.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor

from uqbench.models import BackboneSpec
from uqbench.registry import Registry
from uqbench.training import TrainConfig

TaskKind = Literal["regression", "classification"]
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
class TaskData:
    """Everything a method may see of a task for one (seed, split), plus what the evaluator needs.

    Attributes:
        kind: 'regression' or 'classification'.
        train, test: the splits; `val` is optional (early stopping, post-hoc tuning).
        ood: name -> OOD inputs [N_ood, *in_shape], in the same units as `train.x`.
        out_dim: number of classes, or number of regression targets D.
        backbone: the backbone the task calls for.
        target_loc, target_scale: regression only, [D]: original = loc + scale * standardised.
        train_transform: optional augmentation `(x_batch, generator) -> x_batch` for training batches.
        data_sha256: file name -> sha256 of the files the data came from ('generated' for synthetic data).
        info: free-form facts for the record (e.g. the protocol name).
    """

    kind: TaskKind
    train: Split
    test: Split
    out_dim: int
    backbone: BackboneSpec
    val: Split | None = None
    ood: dict[str, Tensor] = field(default_factory=dict)
    target_loc: Tensor | None = None
    target_scale: Tensor | None = None
    train_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None
    data_sha256: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


class Task(ABC):
    """A benchmark task. Subclasses set the class attributes and implement `load`.

    The first line of the class docstring is the one-line description `uqbench list tasks` shows.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[TaskKind]
    Config: ClassVar[type] = TrainConfig
    ood_sets: ClassVar[tuple[str, ...]] = ()
    source: ClassVar[str] = "generated"  # where the data comes from, for `list tasks`

    def __init__(self, config: Any | None = None, data_dir: Path | None = None):
        self.config = config if config is not None else self.Config()
        self.data_dir = data_dir

    def n_splits(self) -> int:
        """Number of distinct splits `load` accepts (split indices 0 .. n-1)."""
        return 1

    def size(self) -> str:
        """Short size description for `list tasks`, e.g. '800 / 200'."""
        return ""

    @abstractmethod
    def load(self, seed: int, split: int) -> TaskData:
        """Build the data for one repetition. Must be a pure function of (config, seed, split, files)."""

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _check_task(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"{cls!r} is not a subclass of uqbench.tasks.base.Task")
    if getattr(cls, "kind", None) not in KINDS:
        raise ValueError(f"{cls.__name__}.kind must be one of {KINDS}")
    if not dataclasses.is_dataclass(cls.Config) or not issubclass(cls.Config, TrainConfig):
        raise ValueError(f"{cls.__name__}.Config must be a dataclass extending uqbench.training.TrainConfig")
    cls.Config()


tasks: Registry[type[Task]] = Registry("task", group="uqbench.tasks", check=_check_task)
