"""q(W): the Gaussian variational posterior over a VBLL last layer, with hand-written gradients.

The VBLL objectives touch q(W) only through three quantities: the epistemic variances phi^T S_i phi, the trace
sum_i tr(S_i) and the log-determinant sum_i log|S_i| (the last two through the KL). `RowGaussian.terms` computes
them with plain tensor operations (so autograd also works through them), and `RowGaussian.backward` gives their
gradients in closed form. The heads' training objectives (`vbll_heads.py`) are autograd Functions built on these
two: one forward and one backward pass of a few dozen tensor operations, instead of the ~60 autograd nodes the
same objective records op by op; on small networks that bookkeeping, not arithmetic, is the cost of a step
(`benchmarks/vbll_overhead.py`). The tests check every gradient against central finite differences and against
the authors' package.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

Parameterization = Literal["dense", "diagonal", "lowrank"]


class RowGaussian(nn.Module):
    """K independent Gaussians over R^d, q(w_i) = N(mean_i, S_i): the variational posterior of a last layer.

    dense: S_i = L_i L_i^T, L_i lower triangular with diagonal exp(logdiag_i) and strictly-lower part taken from
    `offdiag` [K, d, d] (its upper triangle is unused); diagonal: S_i = diag(exp(2 logdiag_i)); lowrank:
    S_i = diag(exp(2 logdiag_i)) + U_i U_i^T with U_i = `factor` [K, d, r].
    """

    def __init__(self, rows: int, dim: int, parameterization: Parameterization, rank: int | None,
                 mean_std: float, log_std: float):
        super().__init__()
        self.parameterization = parameterization
        self.mean = nn.Parameter(torch.randn(rows, dim) * mean_std)
        self.logdiag = nn.Parameter(torch.full((rows, dim), log_std))
        if parameterization == "dense":
            self.offdiag = nn.Parameter(torch.zeros(rows, dim, dim))
        elif parameterization == "lowrank":
            assert rank is not None
            # random, not zero: U = 0 is a stationary point of the objective
            self.factor = nn.Parameter(torch.randn(rows, dim, rank) / dim)

    def tensors(self) -> list[nn.Parameter]:
        """The parameters in the order `backward` returns their gradients: mean, logdiag[, offdiag | factor]."""
        extra = {"dense": ["offdiag"], "lowrank": ["factor"], "diagonal": []}[self.parameterization]
        return [self.mean, self.logdiag, *(getattr(self, name) for name in extra)]

    def cholesky(self) -> Tensor:
        """Dense only: the Cholesky factors L [K, d, d]."""
        return torch.diagonal_scatter(self.offdiag.tril(-1), self.logdiag.exp(), dim1=-2, dim2=-1)

    def quad(self, phi: Tensor) -> Tensor:
        """phi^T S_i phi for every example and row: phi [B, d] -> [B, K] (the epistemic variance of w_i^T phi)."""
        return self.terms(phi)[0]

    def logdet(self) -> Tensor:
        """sum_i log |S_i| (scalar; matrix determinant lemma for lowrank)."""
        return self.terms(None)[2]

    def kl(self, prior_var: float) -> Tensor:
        """sum_i KL(q(w_i) || N(0, s I)) + K d / 2, i.e. with the constant dropped (scalar, nats)."""
        _, trace, logdet, _ = self.terms(None)
        return self.kl_from(trace, logdet, prior_var)

    def kl_from(self, trace: Tensor, logdet: Tensor, prior_var: float) -> Tensor:
        """The KL of `kl` from the trace and log-determinant that `terms` returned (scalar)."""
        return 0.5 * ((self.mean.square().sum() + trace) / prior_var + self.mean.numel() * math.log(prior_var)
                      - logdet)

    def terms(self, phi: Tensor | None) -> tuple[Tensor | None, Tensor, Tensor, tuple[Tensor, ...]]:
        """(phi^T S_i phi [B, K] or None without phi, sum_i tr(S_i), sum_i log|S_i|, what `backward` needs)."""
        logdet = 2 * self.logdiag.sum()
        if self.parameterization == "dense":
            chol = self.cholesky()
            if phi is None:
                return None, chol.square().sum(), logdet, ()
            projected = phi @ chol  # [K, B, d]: row i holds L_i^T phi_b
            return projected.square().sum(-1).T, chol.square().sum(), logdet, (chol, projected)
        var = (2 * self.logdiag).exp()  # [K, d]
        trace = var.sum()
        phi_sq = None if phi is None else phi.square()
        quad = None if phi is None else phi_sq @ var.T
        if self.parameterization == "diagonal":
            return quad, trace, logdet, (var, phi_sq)
        factor = self.factor  # U [K, d, r]
        trace = trace + factor.square().sum()
        scaled = factor / var.unsqueeze(-1)  # D^-1 U
        eye = torch.eye(factor.shape[-1], dtype=factor.dtype, device=factor.device)
        inner_chol = torch.linalg.cholesky(eye + factor.transpose(-1, -2) @ scaled)  # of I + U^T D^-1 U
        logdet = logdet + 2 * inner_chol.diagonal(dim1=-2, dim2=-1).log().sum()
        projected = None
        if phi is not None:
            projected = torch.einsum("bd,kdr->bkr", phi, factor)  # U_i^T phi
            quad = quad + projected.square().sum(-1)
        return quad, trace, logdet, (var, phi_sq, projected, scaled, inner_chol)

    def backward(self, phi: Tensor, saved: tuple[Tensor, ...], d_quad: Tensor, d_kl: float, prior_var: float,
                 need_phi: bool) -> tuple[Tensor | None, list[Tensor]]:
        """Gradients of an objective that depends on q(W) through quad = phi^T S phi and the KL.

        Args:
            phi: features [B, d] given to `terms`; saved: what `terms` returned for them.
            d_quad: d objective / d quad, [B, K]; d_kl: d objective / d KL.
            prior_var: the KL's prior variance.
            need_phi: whether to compute d objective / d phi.

        Returns:
            (d phi [B, d] or None, gradients of `tensors()` in that order, the KL's part of d mean included).
        """
        d_trace, d_logdet = 0.5 * d_kl / prior_var, -0.5 * d_kl
        d_mean = self.mean * (d_kl / prior_var)
        d_phi = None
        if self.parameterization == "dense":
            chol, projected = saved
            weighted = projected * d_quad.T.unsqueeze(-1)  # [K, B, d]
            d_chol = torch.baddbmm(chol, phi.T.expand(chol.shape[0], -1, -1), weighted, beta=2 * d_trace, alpha=2)
            d_logdiag = (d_chol.diagonal(dim1=-2, dim2=-1) * chol.diagonal(dim1=-2, dim2=-1)).add_(2 * d_logdet)
            if need_phi:
                d_phi = (weighted @ chol.transpose(1, 2)).sum(0).mul_(2)
            return d_phi, [d_mean, d_logdiag, d_chol.tril_(-1)]
        var, phi_sq = saved[:2]
        d_var = (d_quad.T @ phi_sq).add_(d_trace)  # [K, d]
        if need_phi:
            d_phi = 2 * phi * (d_quad @ var)
        if self.parameterization == "diagonal":
            return d_phi, [d_mean, (2 * var * d_var).add_(2 * d_logdet)]
        projected, scaled, inner_chol = saved[2:]
        factor = self.factor
        # S^-1 U = D^-1 U (I + U^T D^-1 U)^-1 (Woodbury), and d log|S| / d logdiag = 2 D diag(S^-1)
        s_inv_factor = scaled @ torch.cholesky_inverse(inner_chol)
        weighted = projected * d_quad.unsqueeze(-1)  # [B, K, r]
        d_factor = (2 * torch.einsum("bd,bkr->kdr", phi, weighted) + (2 * d_trace) * factor
                    + (2 * d_logdet) * s_inv_factor)
        d_logdiag = 2 * var * d_var + 2 * d_logdet * (1 - var * (s_inv_factor * scaled).sum(-1))
        if need_phi:
            d_phi = d_phi + 2 * torch.einsum("bkr,kdr->bd", weighted, factor)
        return d_phi, [d_mean, d_logdiag, d_factor]
