"""Temperature scaling (Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017), and
its regression analogue, variance scaling, on a MAP network.

Classification: the predictive is softmax(z / T) for the network's logits z [N, C], with one scalar T > 0 chosen to
minimise the negative log-likelihood of a validation part (Guo et al., section 4.2):

    T* = argmin_T  -1/N_val sum_n log softmax(z_n / T)_{y_n}.

As a function of beta = 1 / T the NLL is convex (log-sum-exp of beta z minus the linear beta z_y), so in t = log T
it is unimodal; t is found by a golden-section search on the bracket T in [1e-2, 1e2] with a fixed number of
steps (`GOLDEN_STEPS`, leaving a bracket narrower than 1e-9 in log T): deterministic and gradient-free. A
minimiser outside the bracket (a validation part the network fits with ever larger margins has its infimum at
T -> 0) returns the bracket's end, and the record says so (`temperature.at_bound`). T = 1 is the MAP network's own
predictive, bit for bit. Accuracy never changes: dividing by T > 0 keeps the argmax.

Regression: the network's Gaussian predictive N(mu, v) (homoscedastic or heteroscedastic) becomes N(mu, s^2 v),
with the closed-form minimiser of the validation Gaussian NLL (standardised target units)

    s^2 = 1 / (N_val D) sum_{n, d} (y_nd - mu_nd)^2 / v_nd,

the analogue Guo et al. do not give (the "std scaling" of Levi, Gispan, Giladi & Fetaya, Sensors 2022, squared).

The validation part is the task's `data.val` when it has one (the MAP network is then `map`'s own, early-stopped on
that part where the recipe says so). Otherwise `val_fraction` of the training rows is held out, drawn from the run's
seed (`uqbench.search.Holdout`'s random rows, reordered so that each class is held out in proportion to its size for
classification), and the MAP network trains on the remaining 1 - val_fraction only: a cached artifact of its own,
whose key names the holdout. Comparing `temperature` with `map` then compares a calibrated network trained on fewer
rows with one trained on all of them; `--set temperature=1` (or `variance_scale=1`) is the same network unscaled,
the like-for-like baseline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from uqbench.config import POSITIVE, PROBABILITY, Checked
from uqbench.likelihoods import Categorical
from uqbench.methods.base import FitContext, Method, methods
from uqbench.methods.map import train_map_network
from uqbench.models.network import Network
from uqbench.prediction import Gaussian, Prediction
from uqbench.search import Holdout
from uqbench.tasks.base import Split, TaskData, TaskKind

LOG_T_BRACKET = (math.log(1e-2), math.log(1e2))  # the search range of t = log T
GOLDEN_STEPS = 50  # bracket width 9.2 * 0.618^50 = 3e-10 in log T
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def holdout_rows(kind: TaskKind, y: Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) row indices of a training split with targets y [N]: `Holdout(rule='random')`'s rows (the
    same count, int((1 - fraction) N) kept, from the same seeded permutation); for classification the permutation
    is reordered by each row's rank within its class, so that every class is held out in proportion to its size
    (to within two rows).

    Raises:
        BadConfig: a fraction that leaves no rows on one side.
    """
    keep, held = Holdout("random", fraction).rows(len(y), seed)
    if kind != "classification":
        return keep, held
    order = np.concatenate([keep, held])
    labels = y.cpu().numpy()[order]
    rank = np.zeros(len(order))
    for c in np.unique(labels):
        members = labels == c
        rank[members] = (np.arange(members.sum()) + 0.5) / members.sum()  # quantile of the row within its class
    order = order[np.argsort(rank, kind="stable")]
    return order[: len(keep)], order[len(keep):]


def golden_section(f: Callable[[float], float], low: float, high: float, steps: int) -> float:
    """The midpoint of the bracket left after `steps` golden-section steps on a unimodal f over [low, high]."""
    c, d = high - _INV_PHI * (high - low), low + _INV_PHI * (high - low)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc <= fd:
            high, d, fd = d, c, fc
            c = high - _INV_PHI * (high - low)
            fc = f(c)
        else:
            low, c, fc = c, d, fd
            d = low + _INV_PHI * (high - low)
            fd = f(d)
    return (low + high) / 2


def categorical_nll(logits: Tensor, y: Tensor, temperature: float) -> float:
    """Mean -log softmax(logits / T)_y over examples (nats per example): logits [N, C], class indices y [N]."""
    return float(F.cross_entropy(logits / temperature, y))


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """T minimising `categorical_nll` on (logits [N, C], y [N]), searched in log T over `LOG_T_BRACKET`."""
    logits = logits.double()
    t = golden_section(lambda t: categorical_nll(logits, y, math.exp(t)), *LOG_T_BRACKET, GOLDEN_STEPS)
    return math.exp(t)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """Mean over examples of -log N(y; mean, diag(var)), summed over outputs (nats per example, the units of y):
    mean, var (broadcastable), y [N, D]."""
    return float((0.5 * torch.log(2 * math.pi * var) + 0.5 * (y - mean) ** 2 / var).sum(-1).mean())


def fit_variance_scale(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """s^2 = mean over examples and outputs of (y - mean)^2 / var, the minimiser of `gaussian_nll(mean, s^2 var, y)`:
    mean, var (broadcastable), y [N, D]."""
    return float(((y - mean) ** 2 / var).mean())


class TemperaturePredictor:
    """The MAP network's predictive with its logits divided by T, or its variances multiplied by s^2.

    Args:
        network: the trained MAP network.
        temperature: T (classification); 1 for regression.
        variance_scale: s^2 (regression); 1 for classification.
        info: facts for the run record.
    """

    def __init__(self, network: Network, temperature: float = 1.0, variance_scale: float = 1.0,
                 info: dict[str, Any] | None = None):
        self.network = network
        self.temperature = temperature
        self.variance_scale = variance_scale
        self.info = info or {}

    def predict(self, x: Tensor) -> Prediction:
        likelihood = self.network.likelihood
        if isinstance(likelihood, Categorical):
            return likelihood.predictive(self.network(x) / self.temperature, {})
        pred = self.network.predictive(x)
        return Gaussian(pred.mean, pred.var * self.variance_scale)


def validation_part(data: TaskData, fraction: float, seed: int) -> tuple[TaskData, Split, dict[str, Any] | None]:
    """(the data the MAP network trains on, the validation part, the holdout's description for the artifact key):
    the task's own validation split, or `fraction` of the training rows held out (`holdout_rows`)."""
    if data.val is not None:
        return data, data.val, None
    keep, held = (torch.as_tensor(rows) for rows in holdout_rows(data.kind, data.train.y, fraction, seed))
    x, y = data.train.x, data.train.y
    rule = "stratified" if data.kind == "classification" else "random"
    return (dataclasses.replace(data, train=Split(x[keep], y[keep])), Split(x[held], y[held]),
            {"rule": rule, "fraction": fraction, "seed": seed})


@methods.register("temperature")
class TemperatureScaling(Method):
    """Temperature scaling of the MAP network on held-out data (Guo et al. 2017); regression: variance scaling."""

    kinds = frozenset({"regression", "classification"})

    @dataclass(frozen=True)
    class Config(Checked):
        """Temperature-scaling hyperparameters.

        Attributes:
            val_fraction: share of the training rows held out to fit the scale when the task has no validation
                split (the MAP network trains on the rest); 0.1 is Guo et al.'s share (5,000 of CIFAR's 50,000).
            temperature: classification: a fixed T instead of the fitted one (1 = the unscaled network).
            variance_scale: regression: a fixed s^2 instead of the fitted one (1 = the unscaled network).
        """

        val_fraction: Annotated[float, PROBABILITY] = 0.1
        temperature: Annotated[float | None, POSITIVE] = None
        variance_scale: Annotated[float | None, POSITIVE] = None

    def supports(self, kind: TaskKind) -> str | None:
        if kind == "regression" and self.config.temperature is not None:
            return "with temperature set is for classification only (regression scales the variance)"
        if kind == "classification" and self.config.variance_scale is not None:
            return "with variance_scale set is for regression only (classification scales the logits)"
        return super().supports(kind)

    def fit(self, data: TaskData, ctx: FitContext) -> TemperaturePredictor:
        self.check_kind(data.kind)
        train_data, val, holdout = validation_part(data, self.config.val_fraction, ctx.seed)
        network, _ = train_map_network(train_data, ctx, holdout)
        _, out = network.features_and_outputs(val.x, ctx.recipe.batch_size)
        y = val.y.to(out.device)
        info: dict[str, Any] = {"temperature.validation": "task" if holdout is None else "held-out",
                                "temperature.val_rows": len(val), "temperature.map_train_rows": len(train_data.train)}
        if data.kind == "classification":
            return self._scale_logits(network, out, y, info)
        return self._scale_variance(network, out, y.double(), info)

    def _scale_logits(self, network: Network, logits: Tensor, y: Tensor, info: dict[str, Any]) -> TemperaturePredictor:
        fixed = self.config.temperature
        t = fit_temperature(logits, y) if fixed is None else fixed
        info.update({"temperature.temperature": t, "temperature.val_nll_before": categorical_nll(logits, y, 1.0),
                     "temperature.val_nll_after": categorical_nll(logits, y, t),
                     "temperature.at_bound": fixed is None and min(abs(math.log(t) - b) for b in LOG_T_BRACKET) < 1e-6})
        return TemperaturePredictor(network, temperature=t, info=info)

    def _scale_variance(self, network: Network, out: Tensor, y: Tensor, info: dict[str, Any]) -> TemperaturePredictor:
        params = {k: v.detach().double() for k, v in network.likelihood_params().items()}
        mean, var = network.likelihood.mean_var(out, params)
        fixed = self.config.variance_scale
        s2 = fit_variance_scale(mean, var, y) if fixed is None else fixed
        info.update({"temperature.variance_scale": s2, "temperature.val_nll_before": gaussian_nll(mean, var, y),
                     "temperature.val_nll_after": gaussian_nll(mean, s2 * var, y)})
        return TemperaturePredictor(network, variance_scale=s2, info=info)
