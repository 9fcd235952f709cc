"""Method interface: a Method holds hyperparameters only; `fit` returns a Predictor; the method registry.

Rules (after scikit-learn's estimator contract): every hyperparameter lives in the nested frozen dataclass
`Config`, whose fields all have defaults; `fit` never mutates the method and returns a new Predictor, so Method
objects stay small and picklable. Methods never compute metrics and never print.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from uqbench.artifacts import ArtifactCache
from uqbench.checkpoints import Checkpoints
from uqbench.errors import Unsupported
from uqbench.models import BackboneSpec, build_backbone
from uqbench.prediction import Prediction
from uqbench.registry import Registry
from uqbench.tasks.base import KINDS, TaskData, TaskKind
from uqbench.training import NullProgress, Progress, TrainConfig, TrainResult, fit_module


@runtime_checkable
class Predictor(Protocol):
    """What `Method.fit` returns.

    `predict` is called in eval mode under `torch.no_grad()` on batches the caller chooses; it returns
    predictions in standardised target units (regression). A predictor with a score of its own also defines
    `ood_score(x) -> Tensor | None`: [N] scores, higher = more out-of-distribution; without the method, or when it
    returns None, the evaluator uses its default (1 - max probability for classification, total predictive
    variance for regression) — see `ood_score`. An optional attribute `info: dict` (resolved hyperparameters,
    which estimator was used, ...) is copied into the run record's `info`.
    """

    def predict(self, x: Tensor) -> Prediction: ...


def ood_score(predictor: Predictor, x: Tensor) -> Tensor | None:
    """The predictor's own OOD score of x [N, ...] ([N], higher = more OOD), or None for the evaluator's default."""
    score = getattr(predictor, "ood_score", None)
    return None if score is None else score(x)


@dataclass(frozen=True)
class FitContext:
    """Everything a method may use besides the data; nothing global.

    Attributes:
        recipe: the run's training recipe (budget, optimiser, precision).
        backbone: the run's backbone, resolved for the data's input shape; build it with `make_backbone`.
        seed: the run's seed (the global RNG is already seeded with it when `fit` is called).
        device: where to put modules.
        artifacts: cache of shared trained networks.
        artifact_key: the run's key without the method (`RunSpec.shared_key`): the part of every artifact key
            that the run fixes (task, data, recipe, backbone, seed, split, uqbench version).
        progress: receives training progress.
        train_transform: augmentation for training batches, from the task.
        curves: every `fit` call's per-epoch losses, in order, as the record's `curves` keeps them (filled in).
        checkpoints: where `fit` calls save their training state and resume it (default: nowhere).
    """

    recipe: TrainConfig
    backbone: BackboneSpec
    seed: int = 0
    device: torch.device = torch.device("cpu")
    artifacts: ArtifactCache = field(default_factory=ArtifactCache)
    artifact_key: dict[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=NullProgress)
    train_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None
    curves: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: Checkpoints = field(default_factory=Checkpoints)

    def make_backbone(self, *, dropout: float = 0.0, spectral_norm: float | None = None,
                      input_dropout: float = 0.0) -> nn.Module:
        """A freshly initialised backbone on `device` (draws from the global RNG)."""
        return build_backbone(self.backbone, dropout=dropout, spectral_norm=spectral_norm,
                              input_dropout=input_dropout).to(self.device)

    def fit(self, module: nn.Module, loss_fn: Callable[..., Tensor], data: tuple[Tensor, ...], **kwargs: Any) -> TrainResult:
        """`uqbench.training.fit_module` with this run's recipe, seed, progress and augmentation.

        Keyword arguments override those of `fit_module` (e.g. `cfg=` a modified TrainConfig, `params=`);
        `stage` names the curve this call adds to `curves` (default: the module's class name). The call is
        checkpointed as the k-th of the run, or of the artifact being trained (`ArtifactCache.training`).
        """
        stage = kwargs.pop("stage", type(module).__name__)
        kwargs.setdefault("cfg", self.recipe)
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("progress", self.progress)
        kwargs.setdefault("batch_transform", self.train_transform)
        kwargs.setdefault("checkpoint", self.checkpoints.next(self.artifacts.training))
        result = fit_module(module, loss_fn, data, **kwargs)
        self.curves.append({"stage": stage, "train": list(result.history), "val": list(result.val_history) or None})
        return result


class Method(ABC):
    """Base class of every method. Subclasses set `kinds` and `Config` and implement `fit`.

    The first line of the class docstring (paper, year) is what `uqbench list methods` shows.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[frozenset[TaskKind]] = frozenset()
    reference: ClassVar[bool] = False  # a reference runner (another package's code), never in `all` or a pattern

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()

    def supports(self, kind: TaskKind) -> str | None:
        """None when this method, with its config, can handle tasks of `kind`; otherwise why not, as a phrase
        that follows the method's name ("does not support regression; it supports: classification").

        The default reads `kinds`; a method whose config narrows what it supports (VBLL's `head='gen'` is for
        classification only) extends it. `compare` skips an unsupported pair with this line; `run` refuses it.
        """
        if kind not in self.kinds:
            return f"does not support {kind}; it supports: {', '.join(sorted(self.kinds))}"
        return None

    def check_kind(self, kind: TaskKind, task_name: str = "") -> None:
        """Raise Unsupported when this method, with its config, cannot handle `kind`."""
        reason = self.supports(kind)
        if reason is not None:
            task = f" (task {task_name!r})" if task_name else ""
            head, sep, tail = reason.partition(";")
            raise Unsupported(f"method {self.name!r} {head}{task}{sep}{tail}")

    @abstractmethod
    def fit(self, data: TaskData, ctx: FitContext) -> Predictor:
        """Train on `data.train` (and `data.val` if the method uses it); return a Predictor."""

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _check_method(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"{cls!r} is not a subclass of uqbench.methods.base.Method")
    if not cls.kinds or not set(cls.kinds) <= set(KINDS):
        raise ValueError(f"{cls.__name__}.kinds must be a non-empty subset of {KINDS}")
    if not dataclasses.is_dataclass(cls.Config):
        raise ValueError(f"{cls.__name__}.Config must be a dataclass")
    cls.Config()


methods: Registry[type[Method]] = Registry("method", group="uqbench.methods", check=_check_method)
