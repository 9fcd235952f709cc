"""Per-run hyperparameter search: a grid over settings, a validation part carved from the run's training split,
selection by a validation metric, and a refit on the whole training split.

A search is part of a run's definition (its key): the grid, the metric and how the validation part is carved.
For every candidate (a point of the grid) the runner trains the method on the training split minus the
validation part and scores it there with the same `evaluate` every run uses; the best candidate (by the metric's
direction, or its distance from a nominal value) is trained again on the whole training split and evaluated on
the test set. The record stores the grid, every candidate's validation score and the choice (`info.search`).

It is generic: any setting of any part (method, task, recipe, backbone) can be a grid axis, and every method
gets the same machinery — the `[search]` table of an experiment file or a protocol:

    [search]
    metric = "nll"            # the validation metric (any metric key the task reports)
    validation = "tail"       # "tail": the last `fraction` of the training rows in their stored order (the
    fraction = 0.2            #   dropout repository's rule); "random": a random part drawn from the seed
    [search.grid]
    p = [0.005, 0.01, 0.05, 0.1]
    [search.grid.uci-boston]  # scoped axes, as in [set]
    tau = [0.1, 0.15, 0.2]
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from uqbench.config import PROBABILITY, Checked
from uqbench.errors import BadConfig

Rule = Literal["tail", "random"]


@dataclass(frozen=True)
class Holdout(Checked):
    """How a validation part is carved from a training split of n rows.

    Attributes:
        rule: 'tail' keeps the first int((1 - fraction) n) rows in their stored order and holds out the rest;
            'random' holds out a random part of the same size drawn from the run's seed.
        fraction: the share held out, in (0, 1).
    """

    rule: Rule = "tail"
    fraction: Annotated[float, PROBABILITY] = 0.2

    def rows(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(kept, held-out) row indices of a training split of n rows."""
        keep = int((1 - self.fraction) * n)
        order = np.arange(n) if self.rule == "tail" else np.random.default_rng([seed, 7]).permutation(n)
        if keep < 1 or keep >= n:
            raise BadConfig(f"a validation fraction of {self.fraction} leaves no rows on one side of {n} training rows")
        return order[:keep], order[keep:]

    def describe(self) -> str:
        where = "the last" if self.rule == "tail" else "a random"
        return f"{where} {self.fraction:g} of the training rows"


@dataclass(frozen=True)
class Search:
    """A resolved search of one run: the metric, the validation part and the grid axes.

    Attributes:
        metric: validation metric key.
        holdout: how the validation part is carved.
        grid: (part, key, values) for every axis, in a fixed order.
    """

    metric: str
    holdout: Holdout
    grid: tuple[tuple[str, str, tuple[Any, ...]], ...]

    def candidates(self) -> list[dict[tuple[str, str], Any]]:
        """Every point of the grid as {(part, key): value}, the first axis varying slowest."""
        axes = [[((part, key), v) for v in values] for part, key, values in self.grid]
        return [dict(point) for point in itertools.product(*axes)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "validation": {"rule": self.holdout.rule, "fraction": self.holdout.fraction},
            "grid": {f"{part}.{key}": list(values) for part, key, values in self.grid},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Search:
        grid = tuple((*name.split(".", 1), tuple(values)) for name, values in data["grid"].items())
        return cls(data["metric"], Holdout(**data["validation"]), grid)  # type: ignore[arg-type]


def best(scores: list[float], metric: str) -> int:
    """Index of the best validation score for `metric` (a non-finite score is the worst; ties: the first)."""
    from uqbench.metrics import metric_spec

    spec = metric_spec(metric)
    bad = [spec.badness(s) if s is not None and math.isfinite(s) else math.inf for s in scores]
    return min(range(len(bad)), key=lambda i: bad[i])


__all__ = ["Holdout", "Search", "best"]
