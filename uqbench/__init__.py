"""uqbench: a benchmark for predictive-uncertainty methods."""

__version__ = "0.1.0"
