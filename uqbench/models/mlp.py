"""Fully connected backbone: `depth` hidden layers of `width` units."""

from __future__ import annotations

from torch import Tensor, nn

from uqbench.errors import BadConfig
from uqbench.models import BackboneSpec, architecture
from uqbench.models.spectral import spectral_normalise

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """x [B, in] -> features [B, width].

    With `spectral_norm` set the hidden-to-hidden layers become residual blocks, h + act(W h), each W
    spectrally normalised: the distance-preserving body of SNGP. The input layer is normalised too. With
    `input_dropout` the inputs themselves are dropped out first (Gal & Ghahramani's UCI networks).
    """

    def __init__(
        self, spec: BackboneSpec, dropout: float = 0.0, spectral_norm: float | None = None, input_dropout: float = 0.0
    ):
        super().__init__()
        if spec.activation not in ACTIVATIONS:
            raise BadConfig(f"unknown activation {spec.activation!r}; available: {', '.join(ACTIVATIONS)}")
        in_dim = 1
        for size in spec.in_shape:
            in_dim *= size
        act = ACTIVATIONS[spec.activation]
        self.residual = spectral_norm is not None
        first = spectral_normalise(nn.Linear(in_dim, spec.width), spectral_norm)
        self.input = nn.Sequential(nn.Flatten(), _dropout(input_dropout), first, act(), _dropout(dropout))
        self.hidden = nn.ModuleList(
            nn.Sequential(spectral_normalise(nn.Linear(spec.width, spec.width), spectral_norm), act(), _dropout(dropout))
            for _ in range(spec.depth - 1)
        )
        self.out_features = spec.width

    def forward(self, x: Tensor) -> Tensor:
        h = self.input(x)
        for layer in self.hidden:
            h = h + layer(h) if self.residual else layer(h)
        return h


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


@architecture("mlp", width=50, depth=1)
def build_mlp(
    spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None, input_dropout: float = 0.0
) -> nn.Module:
    return MLP(spec, dropout, spectral_norm, input_dropout)
