"""SNGP: Spectral-normalized Neural Gaussian Process (Liu et al., NeurIPS 2020, arXiv:2006.10108).

Two changes to a deterministic network make it distance-aware:

1. The body's hidden weights are softly spectral-normalised (`||W||_2 <= c`, one power-iteration step per
   training step) and, for MLPs, the hidden layers become residual blocks, so that feature distances follow
   input distances (`uqbench.models.spectral`).
2. The linear output layer becomes a Gaussian-process layer approximated by D random Fourier features
   (paper eq. 6): phi(h) = sqrt(2/D) cos(h W / l + b), W with orthogonal-block Gaussian columns, b ~ U[0, 2 pi],
   so phi(h)^T phi(h') ~= exp(-||h - h'||^2 / (2 l^2)); the logits g = phi(h)^T beta with beta trained together
   with the body. The Laplace posterior precision of beta (paper eq. 9, with the reference code's Gaussian
   shortcut: likelihood Hessian 1) is P = ridge I + sum_n phi_n phi_n^T, summed exactly over the final training
   epoch (reset at every epoch start, as in DUE); the predictive covariance is ridge P^{-1} (the edward2 and DUE
   convention, one covariance shared by all classes).

Prediction (paper eq. 10, mean-field): softmax(g / sqrt(1 + lambda var)), var = ridge phi^T P^{-1} phi. Regression
uses the same layer with a Gaussian likelihood and learned noise sigma^2 (per output): the precision weighs the
features by the likelihood Hessian 1 / sigma^2 and the predictive is N(g, var + sigma^2).

Defaults follow the paper's probit value lambda = pi/8 and the random-feature layer of edward2 / the TF SNGP
two-moons tutorial (D = 1024, length-scale 1, ridge 1, no feature projection or input layer-norm, exact per-epoch
precision), with the bound c = 0.95 (< 1 keeps each residual block bi-Lipschitz; lightning-uq-box's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from uqbench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Checked
from uqbench.errors import RunFailed
from uqbench.likelihoods import Gaussian, Likelihood, Params, default_likelihood
from uqbench.methods.base import FitContext, Method, methods
from uqbench.models.network import Network
from uqbench.models.spectral import freeze_spectral_norm
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData
from uqbench.training import torch_threads


def orthogonal_random_features(in_dim: int, n_features: int) -> Tensor:
    """Random Fourier frequencies [in_dim, n_features] with N(0, I) columns, orthogonal within blocks of in_dim.

    Orthogonal random features (Yu et al. 2016): Haar-random orthonormal blocks, each column rescaled by an
    independent chi(in_dim) length, so every column is marginally standard normal. Draws from the global RNG.

    The QR factorisation runs in float64 on one thread: LAPACK's blocked QR splits its work by thread, and on
    float32 its last bits (up to 1e-4 here) changed with the thread count, hence the whole training run.
    """
    n_blocks = -(-n_features // in_dim)
    gaussian = torch.randn(n_blocks, in_dim, in_dim).double()
    with torch_threads(1):
        q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]  # makes each block Haar-distributed
    directions = q.permute(1, 0, 2).reshape(in_dim, n_blocks * in_dim)[:, :n_features]
    lengths = torch.randn(in_dim, n_features).norm(dim=0)
    return (directions * lengths).float()


class RandomFeatureGP(nn.Module):
    """Random-feature GP output layer: features h [B, H] -> posterior-mode logits or means [B, K].

    In training mode, while `tracking`, every forward pass adds sum_b phi_b phi_b^T to `gram` (call `reset` at
    each epoch start); in eval mode nothing is updated.

    Args:
        in_features: H.
        out_features: K, classes or regression outputs.
        n_features: D, number of random features.
        length_scale: l of the approximated RBF kernel.
    """

    def __init__(self, in_features: int, out_features: int, n_features: int, length_scale: float):
        super().__init__()
        self.register_buffer("frequencies", orthogonal_random_features(in_features, n_features) / length_scale)
        self.register_buffer("phases", torch.rand(n_features) * 2 * math.pi)
        self.beta = nn.Linear(n_features, out_features, bias=False)
        self.register_buffer("gram", torch.zeros(n_features, n_features))
        self.register_buffer("n_seen", torch.zeros((), dtype=torch.long))
        self.tracking = True

    def features(self, h: Tensor) -> Tensor:
        """phi(h) [B, D] for features h [B, H]."""
        d = self.phases.shape[0]
        return math.sqrt(2.0 / d) * torch.cos(h @ self.frequencies + self.phases)

    def forward(self, h: Tensor) -> Tensor:
        phi = self.features(h)
        if self.training and self.tracking:
            with torch.no_grad():
                self.gram += phi.T @ phi
                self.n_seen += phi.shape[0]
        return self.beta(phi)

    def reset(self, tracking: bool = True) -> None:
        """Forget the accumulated precision (called at the start of every epoch); accumulate next if `tracking`."""
        self.gram.zero_()
        self.n_seen.zero_()
        self.tracking = tracking

    def covariance(self, ridge: float, hessian: Tensor) -> Tensor:
        """Predictive weight covariance ridge (ridge I + h_k gram)^{-1} for each likelihood Hessian h_k: [K', D, D].

        Args:
            ridge: prior ridge.
            hessian: [K'] per-output likelihood Hessians (one 1 for classification, 1 / sigma_d^2 for regression).

        Raises:
            RunFailed: the precision matrix is not positive definite.
        """
        gram = self.gram.double()
        eye = torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
        precision = ridge * eye + hessian.double()[:, None, None] * gram
        chol, info = torch.linalg.cholesky_ex(precision)
        if (info != 0).any():
            raise RunFailed(f"SNGP precision matrix is not positive definite (ridge={ridge}); increase 'ridge'")
        return (ridge * torch.cholesky_inverse(chol)).to(self.gram.dtype)


def precision_weights(likelihood: Likelihood, params: Params, device: torch.device) -> Tensor:
    """Likelihood Hessians [K'] that weigh the feature Gram matrix in the precision: 1 / sigma_d^2 per output for
    a Gaussian; for classification one Hessian 1 shared by all classes (the reference code's Gaussian shortcut)."""
    if isinstance(likelihood, Gaussian):
        return 1.0 / likelihood.noise_var(params).detach()
    return torch.ones(1, device=device)


class SNGPPredictor:
    """Mean-field predictive of a trained SNGP network.

    Args:
        network: trained, in eval mode, with a `RandomFeatureGP` head.
        covariance: [K', D, D] from `RandomFeatureGP.covariance` (K' = 1 for classification).
        mean_field_factor: lambda.
    """

    def __init__(self, network: Network, covariance: Tensor, mean_field_factor: float):
        self.network = network
        self.covariance = covariance
        self.mean_field_factor = mean_field_factor

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean [N, K] and variance [N, K'] of the GP output at inputs x (no observation noise)."""
        gp = self.network.head
        phi = gp.features(self.network.backbone(x))
        var = torch.einsum("nd,kde,ne->nk", phi, self.covariance, phi).clamp_min(0.0)
        return gp.beta(phi), var

    def predict(self, x: Tensor) -> Prediction:
        mean, var = self.moments(x)
        return self.network.likelihood.marginal(mean, var, self.network.likelihood_params(), self.mean_field_factor)


@methods.register("sngp")
class SNGP(Method):
    """SNGP: spectral-normalised body + random-feature GP output layer (Liu et al. 2020)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """SNGP hyperparameters.

        Attributes:
            spec_norm_bound: c, the soft bound on the spectral norm of every hidden weight matrix.
            n_random_features: D, random Fourier features of the GP layer.
            length_scale: l of the RBF kernel the random features approximate (feature units).
            ridge: prior ridge of the output-weight precision; the predictive covariance is ridge P^{-1}.
            mean_field_factor: lambda of the mean-field logit adjustment (pi/8 = probit approximation; 0 = off).
        """

        spec_norm_bound: Annotated[float, POSITIVE] = 0.95
        n_random_features: Annotated[int, AT_LEAST_ONE] = 1024
        length_scale: Annotated[float, POSITIVE] = 1.0
        ridge: Annotated[float, POSITIVE] = 1.0
        mean_field_factor: Annotated[float, NON_NEGATIVE] = math.pi / 8

    def fit(self, data: TaskData, ctx: FitContext) -> SNGPPredictor:
        cfg, likelihood = self.config, default_likelihood(data.kind)
        backbone = ctx.make_backbone(spectral_norm=cfg.spec_norm_bound)
        width = likelihood.out_features(data.out_dim)
        gp = RandomFeatureGP(backbone.out_features, width, cfg.n_random_features, cfg.length_scale)
        net = Network(backbone, gp, likelihood, data.out_dim).to(ctx.device)
        val = None if data.val is None else (data.val.x, data.val.y)
        train = ctx.recipe

        early_stopping = train.patience is not None and val is not None

        def on_epoch_start(epoch: int) -> None:
            # Without early stopping only the last epoch's sum is ever used: skip the D x D updates before it.
            # (With it, the sum is a buffer, saved and restored with the best epoch's weights.)
            gp.reset(tracking=early_stopping or epoch == train.epochs - 1)

        ctx.fit(net, net.loss, (data.train.x, data.train.y), params=net.param_groups(), val=val,
                val_loss_fn=net.nll, on_epoch_start=on_epoch_start, description="sngp")
        seen, n = int(gp.n_seen), len(data.train)
        if seen != n:
            raise RunFailed(f"SNGP precision saw {seen} examples in the final epoch; expected {n}")
        hessian = precision_weights(likelihood, net.likelihood_params(), gp.gram.device)
        return SNGPPredictor(freeze_spectral_norm(net), gp.covariance(cfg.ridge, hessian), cfg.mean_field_factor)
