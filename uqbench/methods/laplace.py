"""Last-layer Laplace approximation on a trained MAP network (Daxberger et al., "Laplace Redux", NeurIPS 2021).

Only the output layer theta = (W [C, H], b [C]) of the cached MAP network (`train_map_network`) is treated as
random. With features phi_n [H] of the training inputs and the output Hessians of the likelihood
Lambda_n = diag(p_n) - p_n p_n^T (softmax, classification) or diag(1 / sigma^2) (Gaussian, regression), the
generalised Gauss-Newton (GGN) curvature of the negative log-likelihood is

    G = sum_n J_n^T Lambda_n J_n,   J_n = d f_n / d theta = [I_C (x) phi_n^T, I_C],

and the posterior is N(theta_MAP, (G + delta I)^{-1}) for an isotropic Gaussian prior of precision delta.
Structures of G: `full` (dense), `kron` (K-FAC: weight block B (x) A with B = sum_n Lambda_n,
A = (1/N) sum_n phi_n phi_n^T, bias block B, weight-bias cross terms dropped) and `diag` (the diagonal of G).

The prior precision delta maximises the Laplace evidence (Immer et al. 2021, eq. 3)

    log p(D | delta) ~= log p(D | theta_MAP) - 1/2 [log det(G + delta I) - P log delta + delta ||theta_MAP||^2],

by Adam on log delta. Predictive (linearised, GLM): f ~ N(f_MAP(x), J Sigma J^T); classification uses the probit
approximation softmax(f_MAP / sqrt(1 + pi/8 var)), regression N(f_MAP, var + sigma^2). OOD score: the
evaluator's default on this predictive, or with `ood_score=variance` the mean of var over outputs.

Settings match laplace-torch 0.3 `Laplace(model, likelihood, subset_of_weights="last_layer",
hessian_structure=...)` with its default CurvlinopsGGN backend, followed by
`optimize_prior_precision(method="marglik", pred_type="glm", prior_structure="scalar")` and
`la(x, pred_type="glm", link_approx="probit")`; the test suite checks the equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor

from uqbench.config import AT_LEAST_ONE, POSITIVE, Checked
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import train_map_network
from uqbench.models.network import Network
from uqbench.prediction import Prediction
from uqbench.tasks.base import TaskData

Structure = Literal["full", "kron", "diag"]
_CHUNK = 1024  # rows per einsum when summing the full GGN


def _augment(phi: Tensor) -> Tensor:
    """[phi, 1]: [N, H] -> [N, H + 1], so that the bias is the last weight of every output row."""
    return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)


def _eye_like(matrix: Tensor) -> Tensor:
    return torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)


def _eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (clamped at 0, as laplace-torch does) and eigenvectors of a symmetric PSD matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return values.clamp_min(0.0), vectors


@dataclass(frozen=True)
class FullPosterior:
    """Dense posterior; keeps the diagonal blocks Sigma_cc [C, H + 1, H + 1] of the covariance."""

    blocks: Tensor

    def variance(self, phi: Tensor) -> Tensor:
        """Var f_c(x) = phi~^T Sigma_cc phi~ for features phi [N, H]: [N, C]."""
        phi1 = _augment(phi)
        return torch.einsum("nh,chg,ng->nc", phi1, self.blocks, phi1)


class FullGGN:
    """Dense GGN over theta = vec([W | b]) (row c holds W_c and b_c).

    Args:
        phi: training features [N, H] (float64).
        hessians: output Hessians Lambda_n [N, C, C].
    """

    def __init__(self, phi: Tensor, hessians: Tensor):
        phi1 = _augment(phi)
        c, h1 = hessians.shape[-1], phi1.shape[1]
        g = phi1.new_zeros(c, h1, c, h1)
        for i in range(0, phi1.shape[0], _CHUNK):
            s = slice(i, i + _CHUNK)
            g += torch.einsum("nck,nh,ng->chkg", hessians[s], phi1[s], phi1[s])
        self.shape = (c, h1)
        self.matrix = g.reshape(c * h1, c * h1)
        self.eigenvalues = _eigh(self.matrix)[0]

    def precision(self, delta: float) -> Tensor:
        """Posterior precision G + delta I [P, P], parameters in nn.Linear order (W row-major, then b)."""
        c, h1 = self.shape
        order = torch.arange(c * h1).reshape(c, h1)
        order = torch.cat([order[:, :-1].reshape(-1), order[:, -1]])
        p = self.matrix + delta * _eye_like(self.matrix)
        return p[order.to(p.device)][:, order.to(p.device)]

    def posterior(self, delta: float) -> FullPosterior:
        c, h1 = self.shape
        cov = torch.cholesky_inverse(torch.linalg.cholesky(self.matrix + delta * _eye_like(self.matrix)))
        cov = cov.reshape(c, h1, c, h1)
        return FullPosterior(torch.diagonal(cov, dim1=0, dim2=2).permute(2, 0, 1).contiguous())


@dataclass(frozen=True)
class KronPosterior:
    """K-FAC posterior in the eigenbases U of B and V of A.

    Attributes:
        b_vectors: U [C, C]; a_vectors: V [H, H].
        weight_inverse: 1 / (b_i a_j + delta) [C, H].
        bias_variance: Var b_c [C].
    """

    b_vectors: Tensor
    a_vectors: Tensor
    weight_inverse: Tensor
    bias_variance: Tensor

    def variance(self, phi: Tensor) -> Tensor:
        """Var f_c(x) = sum_ij U_ci^2 (V^T phi)_j^2 / (b_i a_j + delta) + Var b_c: [N, C]."""
        z = (phi @ self.a_vectors) ** 2
        return (z @ self.weight_inverse.T) @ (self.b_vectors**2).T + self.bias_variance


class KronGGN:
    """K-FAC GGN: weight block B (x) A, bias block B (B = sum_n Lambda_n, A = (1/N) sum_n phi_n phi_n^T)."""

    def __init__(self, phi: Tensor, hessians: Tensor):
        self.b_values, self.b_vectors = _eigh(hessians.sum(0))
        self.a_values, self.a_vectors = _eigh(phi.T @ phi / phi.shape[0])
        weight = torch.outer(self.b_values, self.a_values)
        self.eigenvalues = torch.cat([weight.reshape(-1), self.b_values])

    def precision(self, delta: float) -> Tensor:
        """Posterior precision [P, P], parameters in nn.Linear order (W row-major, then b)."""
        b = self.b_vectors @ torch.diag(self.b_values) @ self.b_vectors.T
        a = self.a_vectors @ torch.diag(self.a_values) @ self.a_vectors.T
        p = torch.block_diag(torch.kron(b, a), b)
        return p + delta * _eye_like(p)

    def posterior(self, delta: float) -> KronPosterior:
        weight_inverse = 1.0 / (torch.outer(self.b_values, self.a_values) + delta)
        bias_variance = (self.b_vectors**2 / (self.b_values + delta)).sum(1)
        return KronPosterior(self.b_vectors, self.a_vectors, weight_inverse, bias_variance)


@dataclass(frozen=True)
class DiagPosterior:
    """Diagonal posterior: variances of W [C, H] and of b [C]."""

    weight_variance: Tensor
    bias_variance: Tensor

    def variance(self, phi: Tensor) -> Tensor:
        """Var f_c(x) = sum_h phi_h^2 Var W_ch + Var b_c: [N, C]."""
        return phi**2 @ self.weight_variance.T + self.bias_variance


class DiagGGN:
    """Diagonal of the GGN: G_W[c, h] = sum_n Lambda_n[c, c] phi_nh^2, G_b[c] = sum_n Lambda_n[c, c]."""

    def __init__(self, phi: Tensor, hessians: Tensor):
        lam = torch.diagonal(hessians, dim1=1, dim2=2)
        self.weight = lam.T @ phi**2
        self.bias = lam.sum(0)
        self.eigenvalues = torch.cat([self.weight.reshape(-1), self.bias])

    def precision(self, delta: float) -> Tensor:
        """Posterior precision [P, P] (diagonal), parameters in nn.Linear order."""
        return torch.diag(self.eigenvalues + delta)

    def posterior(self, delta: float) -> DiagPosterior:
        return DiagPosterior(1.0 / (self.weight + delta), 1.0 / (self.bias + delta))


GGNS = {"full": FullGGN, "kron": KronGGN, "diag": DiagGGN}
Posterior = FullPosterior | KronPosterior | DiagPosterior


@dataclass(frozen=True)
class Evidence:
    """The Laplace approximation of the log marginal likelihood as a function of the prior precision.

    Attributes:
        log_likelihood: log p(D | theta_MAP), summed over the training set (nats).
        eigenvalues: [P] eigenvalues of the GGN (its structured approximation).
        map_sq_norm: ||theta_MAP||^2 of the last layer.
    """

    log_likelihood: Tensor
    eigenvalues: Tensor
    map_sq_norm: Tensor

    def __call__(self, delta: Tensor | float) -> Tensor:
        """log p(D | delta) (nats) for prior precision delta > 0; differentiable in delta."""
        delta = torch.as_tensor(delta, dtype=self.eigenvalues.dtype, device=self.eigenvalues.device)
        log_det_ratio = torch.log(self.eigenvalues + delta).sum() - self.eigenvalues.numel() * torch.log(delta)
        return self.log_likelihood - 0.5 * (log_det_ratio + delta * self.map_sq_norm)

    def maximise(self, steps: int, lr: float) -> float:
        """Prior precision after `steps` Adam steps (learning rate `lr`) on log delta from delta = 1."""
        log_delta = torch.zeros((), dtype=self.eigenvalues.dtype, device=self.eigenvalues.device, requires_grad=True)
        opt = torch.optim.Adam([log_delta], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            (-self(log_delta.exp())).backward()
            opt.step()
        return float(log_delta.detach().exp())


@dataclass(frozen=True)
class LastLayerFit:
    """Curvature and evidence of a network's last layer on a training set."""

    ggn: FullGGN | KronGGN | DiagGGN
    evidence: Evidence


def fit_last_layer(
    network: Network, x: Tensor, y: Tensor, structure: Structure, batch_size: int = 1024
) -> LastLayerFit:
    """GGN and evidence of `network`'s output layer on training data, in float64 on the network's device.

    Args:
        network: a trained network with a linear head whose likelihood has an output Hessian (Categorical, or a
            homoscedastic Gaussian).
        x: training inputs [N, *in_shape]; y: class indices [N] or standardised targets [N, D].
        structure: 'full', 'kron' or 'diag'.
    """
    phi, out = network.features_and_outputs(x, batch_size)
    y = y.to(out.device)
    likelihood, params = network.likelihood, {k: v.detach() for k, v in network.likelihood_params().items()}
    hessians = likelihood.output_hessian(out, params)
    log_lik = likelihood.log_likelihood(out, y, params)
    theta = torch.cat([network.head.weight.reshape(-1), network.head.bias]).detach().double()
    ggn = GGNS[structure](phi, hessians)
    return LastLayerFit(ggn, Evidence(log_lik, ggn.eigenvalues, theta @ theta))


class LaplacePredictor:
    """Linearised (GLM) predictive of the MAP network with a Gaussian posterior over its output layer.

    Args:
        network: the trained MAP network.
        posterior: the output layer's posterior.
        variance_score: OOD score = mean epistemic variance of the outputs (else the evaluator's default).
        info: facts for the run record.
    """

    def __init__(
        self, network: Network, posterior: Posterior, variance_score: bool = False, info: dict | None = None
    ):
        self.network = network
        self.posterior = posterior
        self.variance_score = variance_score
        self.info = info or {}

    def output_variance(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Linearised output mean [N, C] and epistemic variance [N, C] (no observation noise)."""
        phi = self.network.features(x)
        mean = self.network.head(phi)
        return mean, self.posterior.variance(phi.double()).to(mean.dtype).clamp_min(0.0)

    def predict(self, x: Tensor) -> Prediction:
        mean, var = self.output_variance(x)
        return self.network.likelihood.marginal(mean, var, self.network.likelihood_params())

    def ood_score(self, x: Tensor) -> Tensor | None:
        return self.output_variance(x)[1].mean(-1) if self.variance_score else None


@methods.register("laplace")
class LastLayerLaplace(Method):
    """Last-layer Laplace on the MAP network: GGN curvature, evidence-tuned prior (Daxberger et al. 2021)."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """Last-layer Laplace hyperparameters.

        Attributes:
            hessian_structure: GGN structure of the output layer: 'full', 'kron' (K-FAC) or 'diag'.
            prior_precision: fixed isotropic prior precision delta; None tunes it by the marginal likelihood.
            marglik_steps: Adam steps on log delta when tuning.
            marglik_lr: Adam learning rate when tuning.
            ood_score: 'max-prob' leaves the evaluator's default (1 - max probability; total variance for
                regression); 'variance' scores inputs by the mean epistemic variance of the linearised outputs.
        """

        hessian_structure: Structure = "full"
        prior_precision: Annotated[float | None, POSITIVE] = None
        marglik_steps: Annotated[int, AT_LEAST_ONE] = 100
        marglik_lr: Annotated[float, POSITIVE] = 0.1
        ood_score: Literal["max-prob", "variance"] = "max-prob"

    def fit(self, data: TaskData, ctx: FitContext) -> LaplacePredictor:
        cfg = self.config
        network, _ = train_map_network(data, ctx)
        fit = fit_last_layer(network, data.train.x, data.train.y, cfg.hessian_structure)
        delta = cfg.prior_precision
        if delta is None:
            delta = fit.evidence.maximise(cfg.marglik_steps, cfg.marglik_lr)
        info = {"laplace.prior_precision": delta, "laplace.log_marginal_likelihood": float(fit.evidence(delta))}
        return LaplacePredictor(network, fit.ggn.posterior(delta), cfg.ood_score == "variance", info)
