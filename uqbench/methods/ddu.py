"""DDU: Deep Deterministic Uncertainty (Mukhoti et al., CVPR 2023, arXiv:2102.11582).

A softmax network whose feature space is kept distance-aware (residual connections and spectral normalisation,
so that distances between inputs are neither collapsed nor blown up), and, after training, Gaussian
discriminant analysis (GDA) on the training features z = f(x) — one Gaussian per class:

    mu_c = mean of the z of class c,   Sigma_c = 1/(n_c - 1) sum (z - mu_c)(z - mu_c)^T,   pi_c = n_c / N,
    q(z) = sum_c pi_c N(z; mu_c, Sigma_c).

Prediction is the network's own softmax (DDU's aleatoric part); the OOD score is -log q(z) (its epistemic part).
The GDA is fitted in float64; as in the authors' code (`utils/gmm_utils.py`), the covariances are taken as they
are when every Cholesky factorisation succeeds, and otherwise `JITTERS` (0, the smallest normal float64,
1e-308, 1e-307, ..., 0.1) are tried in order, the first that makes all of them succeed added to every diagonal.

Class weights: pi_c = n_c / N, the training proportions of the paper's density q(z) = sum_y q(z | y) q(y). The
authors' code sums the class densities unweighted (logsumexp of the class log-densities, no log pi_c); with
balanced classes that differs by the constant log C, which changes no ranking metric. A class with fewer than 2
training examples has no covariance and is left out of the sum (the authors' code would fail on it).

The backbone is the run's, built with spectral normalisation (`uqbench.models.spectral`, one power-iteration step
per training step, conv weights bounded as reshaped matrices): residual for the ResNets (every convolution,
shortcut projections included, is normalised), residual hidden blocks for the MLP (as SNGP's), and the small CNN
normalised but without residual connections (it has none; the paper's sensitivity argument then holds only
through the bound). The authors bound the operator norm of each convolution instead, and use leaky ReLU with
average-pooled shortcuts (their `-mod`); uqbench keeps the run's architecture as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from uqbench.config import POSITIVE, Checked
from uqbench.errors import RunFailed
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import train_map_network
from uqbench.methods.vbll import features
from uqbench.models.network import Network
from uqbench.models.spectral import freeze_spectral_norm
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData

JITTERS = (0.0, torch.finfo(torch.float64).tiny, *(10.0**e for e in range(-308, 0)))


@dataclass(frozen=True)
class GaussianDiscriminant:
    """One full-covariance Gaussian per class over features, in float64.

    A class with fewer than 2 training examples has no sample covariance and gets no Gaussian (its weight n_c / N
    is left out of q, which then integrates to less than 1; a tiny split of a many-class task has such classes).

    Attributes:
        classes: the class index of each Gaussian, K of them (every class with at least 2 examples).
        means: mu_c [K, D].
        cholesky: lower Cholesky factors of Sigma_c + jitter I [K, D, D].
        log_weights: log pi_c [K].
        jitter: what was added to every covariance's diagonal (0.0: nothing).
    """

    classes: tuple[int, ...]
    means: Tensor
    cholesky: Tensor
    log_weights: Tensor
    jitter: float

    @classmethod
    def fit(cls, z: Tensor, y: Tensor, n_classes: int) -> GaussianDiscriminant:
        """Fit to features z [N, D] of class indices y [N] in 0..n_classes-1.

        Raises:
            RunFailed: no class with 2 examples, non-finite features, or covariances that no jitter in `JITTERS`
                makes positive definite.
        """
        z, y = z.double(), y.to(z.device)
        counts = torch.bincount(y, minlength=n_classes).tolist()
        classes = tuple(c for c in range(n_classes) if counts[c] >= 2)
        if not classes:
            raise RunFailed("ddu needs 2 training examples of a class to fit its Gaussian; no class has 2")
        if not bool(torch.isfinite(z).all()):
            raise RunFailed("ddu: the training features are not all finite")
        groups = [z[y == c] for c in classes]
        means = torch.stack([g.mean(0) for g in groups])
        covariances = torch.stack([(g - m).T @ (g - m) / (len(g) - 1) for g, m in zip(groups, means)])
        log_weights = torch.log(torch.tensor([counts[c] / len(y) for c in classes], dtype=z.dtype, device=z.device))
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        for jitter in JITTERS:
            chol, status = torch.linalg.cholesky_ex(covariances + jitter * eye)
            if not bool(status.any()):
                return cls(classes, means, chol, log_weights, jitter)
        raise RunFailed(f"ddu: the class covariances of the {z.shape[1]}-dimensional features are not positive "
                        f"definite even with jitter {JITTERS[-1]:g} on the diagonal")

    def class_log_densities(self, z: Tensor) -> Tensor:
        """log N(z; mu_c, Sigma_c) [N, K] (nats) for features z [N, D], one column per entry of `classes`."""
        z = z.double()
        dim = z.shape[1]
        log_det = 2 * self.cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # [K]
        mahalanobis = torch.stack([  # one class at a time: [D, N] in memory, not [N, K, D]
            torch.linalg.solve_triangular(chol, (z - mean).T, upper=False).square().sum(0)
            for mean, chol in zip(self.means, self.cholesky)
        ], dim=1)
        return -0.5 * (dim * math.log(2 * math.pi) + log_det + mahalanobis)

    def log_density(self, z: Tensor) -> Tensor:
        """log q(z) = logsumexp_c (log pi_c + log N(z; mu_c, Sigma_c)) [N] (nats) for features z [N, D]."""
        return torch.logsumexp(self.class_log_densities(z) + self.log_weights, dim=1)


class DDUPredictor:
    """The spectrally normalised network's softmax; OOD score -log q(f(x)) under the fitted GDA.

    Args:
        network: trained, in eval mode, spectral normalisation frozen.
        gda: fitted on the training features of `network`.
    """

    def __init__(self, network: Network, gda: GaussianDiscriminant):
        self.network = network
        self.gda = gda
        self.info: dict[str, Any] = {"ddu.jitter": gda.jitter, "ddu.feature_dim": int(gda.means.shape[1]),
                                     "ddu.classes_fitted": len(gda.classes)}

    def predict(self, x: Tensor) -> Prediction:
        return self.network.predictive(x)

    def ood_score(self, x: Tensor) -> Tensor:
        """-log q(z) [N] (nats, float64) of the features of x [N, ...]: higher = farther from the training data."""
        return -self.gda.log_density(self.network.features(x))


@methods.register("ddu")
class DDU(Method):
    """DDU: spectral-normalised softmax network + class-Gaussian feature density (Mukhoti et al. 2023)."""

    kinds = frozenset({"classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """DDU hyperparameters.

        Attributes:
            spec_norm_bound: c, the soft bound on the spectral norm of every hidden weight matrix (the authors'
                `--coeff`, 3 by default in their code).
        """

        spec_norm_bound: Annotated[float, POSITIVE] = 3.0

    def fit(self, data: TaskData, ctx: FitContext) -> DDUPredictor:
        network, _ = train_map_network(data, ctx, spectral_norm=self.config.spec_norm_bound)
        network = freeze_spectral_norm(network).eval()
        z = features(network.backbone, data.train.x, ctx.device)
        return DDUPredictor(network, GaussianDiscriminant.fit(z, data.train.y, data.out_dim))
