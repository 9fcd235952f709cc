"""uqbench: a benchmark for predictive-uncertainty methods.

The public Python names, imported on first use so that `import uqbench` stays light:

- `uqbench.run(method, task, ...)`, `uqbench.compare(tasks, ...)`: the Python forms of `uqbench run` and
  `uqbench compare` (see `uqbench.api`); `uqbench.evaluate(prediction, targets, ...)`: every metric, for
  predictions made anywhere.
- `uqbench.tasks.from_arrays(X, y, ...)`: a task from arrays in memory; `uqbench.tasks.tasks`, the registry.
- `uqbench.Categorical`, `uqbench.Gaussian`, `uqbench.GaussianMixture`: the predictive distributions.
- `uqbench.Method`, `uqbench.Task`: the plugin interfaces; `uqbench.testing`: their conformance checks.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "run": "uqbench.api",
    "compare": "uqbench.api",
    "evaluate": "uqbench.api",
    "Categorical": "uqbench.prediction",
    "Gaussian": "uqbench.prediction",
    "GaussianMixture": "uqbench.prediction",
    "Method": "uqbench.methods.base",
    "Task": "uqbench.tasks.base",
}
_MODULES = ("tasks", "methods", "metrics", "testing")


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"uqbench.{name}")
    raise AttributeError(f"module 'uqbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC, *_MODULES])


__all__ = ["__version__", *_PUBLIC, *_MODULES]
