"""Shifted test sets: the image corruptions of Hendrycks & Dietterich (2019) in `uqbench.shift.corruptions`."""
