"""Soft spectral normalisation (SNGP, Liu et al. 2020): rescale a weight only when its spectral norm exceeds c."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class SoftSpectralNorm(nn.Module):
    """Parametrisation W -> W / max(1, sigma(W) / c), sigma estimated by power iteration.

    One power-iteration step per training forward pass (the SNGP reference), none in eval mode, so evaluation
    never changes the estimate. Conv weights are flattened to [out, in * k * k] (the reshaped-matrix norm of
    Miyato et al. 2018, not the operator norm of the convolution).

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
        u = torch.randn(mat.shape[0], dtype=mat.dtype, device=mat.device)
        v = torch.randn(mat.shape[1], dtype=mat.dtype, device=mat.device)
        self.register_buffer("u", u / u.norm())
        self.register_buffer("v", v / v.norm())
        self.power_iterate(weight, 15)  # start from a converged estimate

    @torch.no_grad()
    def power_iterate(self, weight: Tensor, steps: int) -> None:
        """Refine the singular-vector estimates with `steps` power-iteration steps on `weight`."""
        mat = weight.detach().flatten(1)
        for _ in range(steps):
            self.v.copy_(nn.functional.normalize(mat.t() @ self.u, dim=0))
            self.u.copy_(nn.functional.normalize(mat @ self.v, dim=0))

    def sigma(self, weight: Tensor) -> Tensor:
        """Current estimate u^T W v of the spectral norm of `weight` (differentiable in `weight`)."""
        # Clones: the buffers change in place at the next training forward, which must not invalidate this graph.
        return self.u.clone() @ weight.flatten(1) @ self.v.clone()

    def forward(self, weight: Tensor) -> Tensor:
        if self.training:
            self.power_iterate(weight, self.n_power_iterations)
        factor = torch.clamp(self.sigma(weight) / self.bound, min=1.0)
        return weight / factor


def spectral_normalise(layer: nn.Module, bound: float | None, n_power_iterations: int = 1) -> nn.Module:
    """Attach `SoftSpectralNorm` to `layer.weight` (no-op when bound is None)."""
    if bound is not None:
        parametrize.register_parametrization(layer, "weight", SoftSpectralNorm(layer.weight, bound, n_power_iterations))
    return layer



def freeze_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every `SoftSpectralNorm` in `module` by the plain weight it gives in eval mode; returns `module`.

    Eval-mode forward passes are unchanged (the estimate no longer moves there anyway), and the module becomes
    picklable, which torch's parametrised modules are not. Use it once training is over.
    """
    was_training = module.training
    module.eval()
    for layer in module.modules():
        if parametrize.is_parametrized(layer, "weight") and any(
            isinstance(p, SoftSpectralNorm) for p in layer.parametrizations.weight
        ):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    module.train(was_training)
    return module
