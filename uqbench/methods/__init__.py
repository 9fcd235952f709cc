"""Built-in methods; importing this package registers them (each module's decorator runs)."""

from uqbench.methods import ddu, ensemble, laplace, map, mc_dropout, sngp, temperature, vbll, vbll_package  # noqa: F401
from uqbench.methods.base import FitContext, Method, Predictor, methods

__all__ = ["FitContext", "Method", "Predictor", "methods"]
