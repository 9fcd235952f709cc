"""Backbones: feature extractors that methods put their own heads on.

A run names its backbone with a `BackboneConfig` (the task's default, or what the user set); resolved for the
data's input shape it becomes a `BackboneSpec`, and `build_backbone(spec, dropout=..., spectral_norm=...)` builds
it with the variant a method asks for (MC dropout wants dropout in the hidden layers, SNGP wants spectral
normalisation). Every backbone is an `nn.Module` mapping inputs [B, *in_shape] to features [B, out_features]
and has an integer attribute `out_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal

from torch import nn

from uqbench.config import AT_LEAST_ONE, Checked, ConstraintError
from uqbench.errors import BadConfig, Unsupported


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as built: architecture, input shape and sizes (a `BackboneConfig` resolved for the data).

    Attributes:
        arch: registered architecture name ('mlp', 'cnn', ...).
        in_shape: shape of one input, e.g. (8,) or (1, 28, 28).
        width: hidden units (MLP) or base channels (CNN / ResNet).
        depth: hidden layers (MLP) or blocks per stage, architecture-specific.
        activation: 'relu', 'elu' or 'tanh' for MLPs.
    """

    arch: str
    in_shape: tuple[int, ...]
    width: int = 50
    depth: int = 1
    activation: str = "relu"


@dataclass(frozen=True)
class BackboneConfig(Checked):
    """Which backbone a run uses: part of every run's key. Tasks give their default (`Task.backbone`).

    Attributes:
        arch: registered architecture: 'mlp', 'cnn', 'resnet-small', 'resnet18' or 'wrn-28-10'.
        width: hidden units (MLP) or base channels; none: the architecture's default.
        depth: hidden layers (MLP) or blocks per stage; none: the architecture's default.
        activation: hidden activation of an MLP ('relu', 'elu', 'tanh'); the convolutional ones use ReLU.
    """

    arch: str = "mlp"
    width: Annotated[int | None, AT_LEAST_ONE] = None
    depth: Annotated[int | None, AT_LEAST_ONE] = None
    activation: Literal["relu", "elu", "tanh"] = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        _register_builtins()
        if self.arch not in ARCHITECTURES:
            raise ConstraintError("arch", "one of " + ", ".join(repr(a) for a in sorted(ARCHITECTURES)), self.arch)

    def spec(self, in_shape: tuple[int, ...]) -> BackboneSpec:
        """The spec to build for inputs of `in_shape`, the architecture's defaults filled in."""
        width, depth = DEFAULT_SIZES[self.arch]
        return BackboneSpec(self.arch, tuple(in_shape), self.width or width, self.depth or depth, self.activation)


Builder = Callable[..., nn.Module]  # (spec, *, dropout: float, spectral_norm: float | None) -> nn.Module
ARCHITECTURES: dict[str, Builder] = {}
DEFAULT_SIZES: dict[str, tuple[int, int]] = {}  # architecture -> default (width, depth)


def architecture(name: str, width: int, depth: int) -> Callable[[Builder], Builder]:
    """Decorator registering a backbone builder under `name`, with its default width and depth."""

    def decorator(fn: Builder) -> Builder:
        ARCHITECTURES[name] = fn
        DEFAULT_SIZES[name] = (width, depth)
        return fn

    return decorator


def _register_builtins() -> None:
    from uqbench.models import cnn, mlp, resnet  # noqa: F401  (their decorators register the architectures)


def build_backbone(
    spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None, input_dropout: float = 0.0
) -> nn.Module:
    """Build the backbone `spec` names.

    Args:
        dropout: dropout probability after every hidden activation (0 = none).
        spectral_norm: bound on the spectral norm of every hidden weight matrix (None = no normalisation).
        input_dropout: dropout probability on the inputs (MLPs only; Gal & Ghahramani's UCI networks).

    Raises:
        Unsupported: input dropout asked of an architecture that has none.
    """
    _register_builtins()
    if spec.arch not in ARCHITECTURES:
        raise BadConfig(f"unknown backbone {spec.arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    if input_dropout:
        if spec.arch != "mlp":
            raise Unsupported(f"input dropout needs an MLP backbone; this run's backbone is {spec.arch!r}")
        return ARCHITECTURES[spec.arch](spec, dropout=dropout, spectral_norm=spectral_norm, input_dropout=input_dropout)
    return ARCHITECTURES[spec.arch](spec, dropout=dropout, spectral_norm=spectral_norm)
