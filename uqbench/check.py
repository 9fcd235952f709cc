"""`uqbench check`: compare the store's aggregated metrics with a baseline leaderboard, for CI.

Per (task, method, config, metric) of the baseline, with d = how much worse the store's mean is than the
baseline's (in the metric's direction; for a metric with a nominal value, such as interval coverage, the growth
of its distance from it) and s = sqrt(se_baseline^2 + se_store^2):
regressed when d > max(tolerance, k * s), improved when -d > max(tolerance, k * s), unchanged otherwise.
A metric the store no longer reports, and more failed runs than the baseline had, count as regressions.
Defaults: tolerance 0.001 (absolute, in the metric's unit) and k = 2; both can be set per metric.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

from uqbench.errors import BadConfig, DataError
from uqbench.leaderboard import Leaderboard, Row, badness, build
from uqbench.results import RunRecord

DEFAULT_TOLERANCE = 1e-3
DEFAULT_K = 2.0
FAILED = "failed runs"


@dataclass(frozen=True)
class Thresholds:
    """The default tolerance and k, and per-metric overrides as (metric pattern, value), last match wins."""

    tolerance: float = DEFAULT_TOLERANCE
    k: float = DEFAULT_K
    tolerances: tuple[tuple[str, float], ...] = ()
    ks: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, tolerances: list[str], ks: list[str]) -> Thresholds:
        """From `--tolerance` / `--k` texts: 'VALUE' sets the default, 'METRIC=VALUE' one metric (or pattern)."""
        tol, tols = _parse("--tolerance", tolerances, DEFAULT_TOLERANCE)
        k, k_over = _parse("--k", ks, DEFAULT_K)
        return cls(tol, k, tols, k_over)

    def allowed(self, metric: str, se_combined: float) -> float:
        """max(tolerance, k * combined standard error) for `metric`."""
        return max(_lookup(self.tolerances, metric, self.tolerance), _lookup(self.ks, metric, self.k) * se_combined)


def _parse(option: str, texts: list[str], default: float) -> tuple[float, tuple[tuple[str, float], ...]]:
    overrides = []
    for text in texts:
        pattern, sep, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or (sep and not pattern):
            raise BadConfig(f"{option} {text!r}: expected a non-negative number or METRIC=NUMBER")
        if sep:
            overrides.append((pattern, number))
        else:
            default = number
    return default, tuple(overrides)


def _lookup(overrides: tuple[tuple[str, float], ...], metric: str, default: float) -> float:
    for pattern, value in reversed(overrides):
        if fnmatch.fnmatchcase(metric, pattern):
            return value
    return default


@dataclass(frozen=True)
class Finding:
    """One compared (task, method, metric): values, how much worse (+) or better (-), and the verdict."""

    task: str
    method: str
    metric: str
    baseline: float
    current: float | None  # None: the store no longer reports it
    worse_by: float | None
    allowed: float
    verdict: str  # 'regressed', 'improved' or 'unchanged'


def load_baseline(path: Path) -> Leaderboard:
    """Read a baseline written by `uqbench compare --format json`; DataError when missing or malformed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DataError(f"baseline {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"baseline {str(path)!r}: not valid JSON ({exc})") from None
    try:
        return Leaderboard.from_json(data)
    except DataError as exc:
        raise DataError(f"baseline {str(path)!r}: {exc}") from None


def check(baseline: Leaderboard, records: list[RunRecord], thresholds: Thresholds) -> list[Finding]:
    """Every finding, regressions first; DataError naming the baseline rows whose runs the store lacks."""
    current = {(r.task, r.method, r.config_id): r for r in build(records, all_metrics=True).rows}
    missing = [b for b in baseline.rows if (b.task, b.method, b.config_id) not in current]
    if missing:
        names = ", ".join(f"{b.method} on {b.task} (config {b.config_id})" for b in missing)
        raise DataError(
            f"the store has no runs for {len(missing)} baseline row(s): {names}; run the comparison that made "
            "the baseline first (a changed default changes the config id: then make a new baseline)"
        )
    findings = []
    for base in baseline.rows:
        now = current[base.task, base.method, base.config_id]
        findings += [_compare(baseline, base, now, key, thresholds) for key in base.metrics]
        findings.append(_failures(base, now))
    order = {"regressed": 0, "improved": 1, "unchanged": 2}
    return sorted(findings, key=lambda f: order[f.verdict])


def _compare(baseline: Leaderboard, base: Row, now: Row, key: str, thresholds: Thresholds) -> Finding:
    b = base.metrics[key]
    c = now.metrics.get(key)
    if c is None:
        return Finding(base.task, base.method, key, b.mean, None, None, 0.0, "regressed")
    header = _header(baseline, key)
    worse_by = badness(header, c.mean) - badness(header, b.mean)
    allowed = thresholds.allowed(key, math.hypot(b.se, c.se))
    verdict = "regressed" if worse_by > allowed else "improved" if -worse_by > allowed else "unchanged"
    return Finding(base.task, base.method, key, b.mean, c.mean, worse_by, allowed, verdict)


def _failures(base: Row, now: Row) -> Finding:
    worse_by = now.n_failed - base.n_failed
    verdict = "regressed" if worse_by > 0 else "improved" if worse_by < 0 else "unchanged"
    return Finding(base.task, base.method, FAILED, base.n_failed, now.n_failed, worse_by, 0.0, verdict)


def _header(baseline: Leaderboard, key: str) -> dict:
    spec = baseline.metrics.get(key)
    if spec is None or "higher_is_better" not in spec:
        raise DataError(f"baseline: metric {key!r} has no direction in the baseline's 'metrics' header")
    return spec


def finding_rows(findings: list[Finding]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the regressions and improvements (unchanged metrics are left out)."""
    rows = []
    for f in findings:
        if f.verdict == "unchanged":
            continue
        current = "—" if f.current is None else _fmt(f.current)
        worse = "—" if f.worse_by is None else f"{f.worse_by:+.4g}"
        rows.append([f.task, f.method, f.metric, _fmt(f.baseline), current, worse, _fmt(f.allowed), f.verdict])
    return ["task", "method", "metric", "baseline", "current", "worse by", "allowed", "verdict"], rows


def _fmt(x: float) -> str:
    return f"{x:.4g}"


__all__ = ["DEFAULT_K", "DEFAULT_TOLERANCE", "Finding", "Thresholds", "check", "finding_rows", "load_baseline"]
