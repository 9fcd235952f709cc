"""Soft spectral normalisation (SNGP, Liu et al. 2020): rescale a weight only when its spectral norm exceeds c."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class SoftSpectralNorm(nn.Module):
    """Parametrisation W -> W / max(1, sigma(W) / c), sigma estimated by power iteration.

    One power-iteration step per training forward pass (the SNGP reference), none in eval mode, so evaluation
    never changes the estimate. Conv weights are flattened to [out, in * k * k].

    Args:
        weight: the weight it will parametrise (sets the shape of the power-iteration vectors).
        bound: c, the largest allowed spectral norm.
        n_power_iterations: steps per training forward pass.
    """

    def __init__(self, weight: Tensor, bound: float, n_power_iterations: int = 1):
        super().__init__()
        self.bound = bound
        self.n_power_iterations = n_power_iterations
        mat = weight.detach().flatten(1)
        u = torch.randn(mat.shape[0], dtype=mat.dtype)
        v = torch.randn(mat.shape[1], dtype=mat.dtype)
        self.register_buffer("u", u / u.norm())
        self.register_buffer("v", v / v.norm())
        with torch.no_grad():
            for _ in range(15):  # start from a converged estimate
                self._power_step(mat)

    @torch.no_grad()
    def _power_step(self, mat: Tensor) -> None:
        self.v.copy_(nn.functional.normalize(mat.t() @ self.u, dim=0))
        self.u.copy_(nn.functional.normalize(mat @ self.v, dim=0))

    def sigma(self, weight: Tensor) -> Tensor:
        """Current estimate of the spectral norm of `weight`."""
        return self.u @ weight.flatten(1) @ self.v

    def forward(self, weight: Tensor) -> Tensor:
        if self.training:
            for _ in range(self.n_power_iterations):
                self._power_step(weight.detach().flatten(1))
        factor = torch.clamp(self.sigma(weight) / self.bound, min=1.0)
        return weight / factor


def spectral_normalise(layer: nn.Module, bound: float | None, n_power_iterations: int = 1) -> nn.Module:
    """Attach `SoftSpectralNorm` to `layer.weight` (no-op when bound is None)."""
    if bound is not None:
        parametrize.register_parametrization(layer, "weight", SoftSpectralNorm(layer.weight, bound, n_power_iterations))
    return layer
