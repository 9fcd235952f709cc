"""uqbench: a benchmark for predictive-uncertainty methods.

`uqbench.run(method, task, ...)` is the Python form of `uqbench run` (see `uqbench.api`); it is imported on first
use, so `import uqbench` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "run":
        from uqbench.api import run

        return run
    raise AttributeError(f"module 'uqbench' has no attribute {name!r}")
