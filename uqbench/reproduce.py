"""`uqbench reproduce`: a protocol's runs set beside the numbers its paper printed (or its reference runner's).

For every (task, metric) of the reference: uqbench's mean ± standard error over the runs, the published mean ±
standard error (a printed standard deviation over n splits is divided by sqrt(n), and marked so), and the
difference measured in combined standard errors, z = d / sqrt(se_uqbench^2 + se_published^2). A cell is within
tolerance when |z| <= k (default 2) and every planned run of it (each split and seed, on both sides for a
reference runner) has the metric: a cell short of runs (not run yet, failed, or without the value) is not within,
whatever its z.

Printed numbers are rounded: "0.10 ± 0.00" stands for a mean in [0.095, 0.105] and a spread below 0.005. So d is
the distance from uqbench's mean to the nearest end of the printed mean's rounding interval (0 inside it), and
the published spread is taken at the top of its rounding interval; a number printed with no digits left to
round would otherwise make every difference infinitely significant.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from uqbench.protocols import Printed, Protocol, Reference
from uqbench.results import RunRecord, aggregate

DEFAULT_K = 2.0


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error over n runs (or splits)."""

    mean: float
    se: float
    n: int


@dataclass(frozen=True)
class Cell:
    """One (task, metric) of a reproduction.

    Attributes:
        ours: uqbench's runs; None when the store holds none.
        published: the reference (None for a metric shown without a verdict).
        from_sd: the published spread was a standard deviation, converted to a standard error.
        rounding: half-width of the published mean's rounding interval (0 for a reference runner).
        z: difference in combined standard errors (None without both sides); within: |z| <= k with every planned
            run in.
        shown: the reference as the table shows it: as printed, a standard deviation divided by sqrt(n).
        missing: planned runs without a value for it (ours, plus the reference runner's); any makes it not within.
    """

    task: str
    metric: str
    ours: Estimate | None
    published: Estimate | None
    from_sd: bool = False
    rounding: float = 0.0
    z: float | None = None
    within: bool | None = None
    shown: str | None = None
    missing: int = 0


def shown(printed: Printed, spread: str, n: int) -> str:
    """The printed mean ± standard error at the printed precision (a standard deviation over n divided by sqrt(n),
    with one more decimal, and marked so).

    >>> shown(Printed.parse("3.28 ± 1.00"), "sd", 20), shown(Printed.parse("2.97 ± 0.19"), "se", 20)
    ('3.28 ± 0.224 (sd→se)', '2.97 ± 0.19')
    """
    if spread == "se":
        return str(printed)
    digits = printed.decimals[1] + 1
    return f"{printed.mean:.{printed.decimals[0]}f} ± {printed.spread / math.sqrt(n):.{digits}f} (sd→se)"


def published(printed: Printed, spread: str, n: int) -> tuple[Estimate, float]:
    """The printed number as (mean ± standard error, the mean's rounding half-width).

    >>> est, half = published(Printed.parse("1.58 ± 0.48"), "sd", 20)
    >>> round(est.mean, 2), round(est.se, 4), half
    (1.58, 0.1084, 0.005)
    """
    half_mean, half_spread = (0.5 * 10.0 ** -d for d in printed.decimals)
    top = printed.spread + half_spread
    se = top / math.sqrt(n) if spread == "sd" else top
    return Estimate(printed.mean, se, n), half_mean


def difference(ours: Estimate, theirs: Estimate, rounding: float = 0.0) -> float:
    """z: the distance between the means beyond the rounding interval, in combined standard errors.

    >>> round(difference(Estimate(1.2, 0.03, 20), Estimate(1.11, 0.09, 20)), 3)
    0.949
    >>> difference(Estimate(0.1003, 0.001, 20), Estimate(0.10, 0.005, 20), rounding=0.005)
    0.0
    """
    distance = max(0.0, abs(ours.mean - theirs.mean) - rounding)
    combined = math.hypot(ours.se, theirs.se)
    sign = ours.mean - theirs.mean
    if combined == 0.0:
        return 0.0 if distance == 0.0 else math.copysign(math.inf, sign)
    return math.copysign(distance / combined, sign)


def estimates(records: list[RunRecord], method: str, task: str) -> dict[str, Estimate]:
    """Metric -> mean ± standard error over the successful records of (method, task)."""
    chosen = [r for r in records if r.key.method == method and r.key.task == task]
    return {key: Estimate(mean, se, n) for key, (mean, se, n) in aggregate(chosen).items()}


def compare(reference: Reference, records: list[RunRecord], tasks: list[str], k: float = DEFAULT_K,
            planned: dict[tuple[str, str], int] | None = None) -> list[Cell]:
    """Every cell of the comparison, task by task in `tasks` order: the reference's metrics, then `also`.

    `planned`: (task, method) -> the number of runs the plan has (`Plan.expected()`); a cell with fewer values on
    a side is not within tolerance. None: whatever runs `records` hold.
    """
    cells = []

    def missing(task: str, metric: str, sides: list[tuple[str, dict[str, Estimate]]]) -> int:
        if planned is None:
            return 0
        return sum(max(0, planned.get((task, method), 0) - (e.n if (e := values.get(metric)) else 0))
                   for method, values in sides)

    for task in tasks:
        ours = estimates(records, reference.method, task)
        sides = [(reference.method, ours)]
        if reference.runner is not None:
            runner = estimates(records, reference.runner, task)
            sides.append((reference.runner, runner))
            theirs = {m: (e, 0.0) for m, e in runner.items()}
            display = {m: _estimate(e) for m, (e, _) in theirs.items()}
            metrics = [m for m in ("rmse", "nll") if m in theirs or m in ours]
        else:
            printed = reference.values.get(task, {})
            theirs = {m: published(p, reference.spread, reference.splits[task]) for m, p in printed.items()}
            display = {m: shown(p, reference.spread, reference.splits[task]) for m, p in printed.items()}
            metrics = list(printed)
        for metric in metrics:
            mine, ref = ours.get(metric), theirs.get(metric)
            cell = Cell(task, metric, mine, ref[0] if ref else None, reference.spread == "sd" and reference.runner is None,
                        ref[1] if ref else 0.0, shown=display.get(metric), missing=missing(task, metric, sides))
            if mine is not None and ref is not None:
                z = difference(mine, ref[0], ref[1])
                cell = replace(cell, z=z, within=abs(z) <= k and not cell.missing)
            cells.append(cell)
        cells += [Cell(task, m, ours.get(m), None, missing=missing(task, m, sides[:1])) for m in reference.also]
    return cells


def verdict(cells: list[Cell]) -> bool:
    """True when every compared cell is within tolerance and none is missing."""
    compared = [c for c in cells if c.published is not None]
    return bool(compared) and all(c.within for c in compared)


def table(protocol: Protocol, cells: list[Cell], fmt: str, k: float, subset: str = "") -> tuple[list[str], list[list[str]], str]:
    """(columns, rows, title) for `report.emit`: one row per (task, metric)."""
    reference = protocol.reference
    other = "published" if reference.runner is None else reference.runner
    columns = ["dataset", "metric", f"uqbench {reference.method}", other, "diff (s.e.)", f"within {k:g} s.e."]
    rows = []
    for c in cells:
        mine = "—" if c.ours is None else _estimate(c.ours)
        theirs = c.shown or "—"
        z = "—" if c.z is None else ("∞" if math.isinf(c.z) else f"{c.z:+.1f}")
        mark = "" if c.within is None else ("✓" if c.within else "✗")
        mark += f" ({c.missing} run{'s' * (c.missing > 1)} missing)" if c.missing else ""
        rows.append([c.task, c.metric, mine, theirs, z, mark])
    compared = [c for c in cells if c.within is not None]
    passed = sum(bool(c.within) for c in compared)
    title = (f"{protocol.name} (v{protocol.version}): {passed} of {len(compared)} cells within {k:g} combined s.e."
             f"{subset}")
    return columns, rows, title


def _estimate(e: Estimate) -> str:
    digits = max(2, 3 - int(math.floor(math.log10(abs(e.mean))))) if e.mean else 3
    digits = min(digits, 6)
    return f"{e.mean:.{digits}f} ± {e.se:.{digits}f}" + ("" if e.n > 1 else " (1 run)")


def to_json(protocol: Protocol, cells: list[Cell], k: float, subset: str) -> dict[str, Any]:
    return {
        "schema": "uqbench.reproduction/1",
        "protocol": protocol.name,
        "version": protocol.version,
        "source": protocol.reference.source,
        "k": k,
        "subset": subset.strip(" ;()") or None,
        "within": verdict(cells),
        "cells": [asdict(c) for c in cells],
    }


__all__ = ["Cell", "Estimate", "compare", "difference", "published", "shown", "table", "to_json", "verdict"]
