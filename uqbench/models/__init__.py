"""Backbones: feature extractors that methods put their own heads on.

A task names its backbone with a `BackboneSpec`; `build_backbone(spec, dropout=..., spectral_norm=...)` builds
it with the variant a method asks for (MC dropout wants dropout in the hidden layers, SNGP wants spectral
normalisation). Every backbone is an `nn.Module` mapping inputs [B, *in_shape] to features [B, out_features]
and has an integer attribute `out_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from uqbench.errors import BadConfig


@dataclass(frozen=True)
class BackboneSpec:
    """Which backbone a task uses.

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


Builder = Callable[..., nn.Module]  # (spec, *, dropout: float, spectral_norm: float | None) -> nn.Module
ARCHITECTURES: dict[str, Builder] = {}


def architecture(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a backbone builder under `name`."""

    def decorator(fn: Builder) -> Builder:
        ARCHITECTURES[name] = fn
        return fn

    return decorator


def build_backbone(spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None) -> nn.Module:
    """Build the backbone `spec` names.

    Args:
        dropout: dropout probability after every hidden activation (0 = none).
        spectral_norm: bound on the spectral norm of every hidden weight matrix (None = no normalisation).
    """
    from uqbench.models import cnn, mlp, resnet  # noqa: F401  (register the built-in architectures)

    if spec.arch not in ARCHITECTURES:
        raise BadConfig(f"unknown backbone {spec.arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[spec.arch](spec, dropout=dropout, spectral_norm=spectral_norm)
