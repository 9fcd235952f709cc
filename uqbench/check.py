"""`uqbench check`: compare the store's aggregated metrics with a baseline leaderboard, for CI.

Per (task, method, config, metric) of the baseline, with d = how much worse the store's mean is than the
baseline's (in the metric's direction; for a metric with a nominal value, such as interval coverage, the growth
of its distance from it) and s = sqrt(se_baseline^2 + se_store^2):
regressed when d > max(tolerance, k * s), improved when -d > max(tolerance, k * s), unchanged otherwise.
A metric the store no longer reports, more successful runs without a value of it (a non-finite result) than the
baseline had, and more failed runs than the baseline had, count as regressions.
Defaults: tolerance 0.001 (absolute, in the metric's unit) and k = 2; both can be set per metric, and a pattern
that matches no metric of the baseline is refused (BadConfig).

A baseline row of which the store holds fewer runs (successful + failed) than the baseline was computed from is
not compared: it is one 'missing' finding, a failure of its own (the store is incomplete); when the store holds no
run of any baseline row, nothing was compared. The baseline itself is validated field by field, rows included
(`uqbench.leaderboard_schema`).
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

from uqbench.errors import BadConfig, DataError
from uqbench.files import MAX_TEXT_BYTES, read_bytes
from uqbench.leaderboard import Leaderboard, Row, badness, build
from uqbench.leaderboard_schema import SCHEMA, parse
from uqbench.results import RunRecord

DEFAULT_TOLERANCE = 1e-3
DEFAULT_K = 2.0
FAILED = "failed runs"
RUNS = "runs"  # the pseudo-metric of a 'missing' finding: runs in the baseline vs in the store
VERDICTS = ("regressed", "missing", "improved", "unchanged")  # the order findings are listed in
HINT = ("run the comparison that made the baseline first (a changed default changes the config id: then make a new "
        "baseline)")


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
    """One compared (task, method, config, metric): values, how much worse (+) or better (-), and the verdict.

    A 'missing' finding has metric RUNS, the baseline row's number of runs and the store's (worse_by None).
    """

    task: str
    method: str
    config_id: str
    metric: str
    baseline: float
    current: float | None  # None: the store no longer reports it
    worse_by: float | None
    allowed: float
    verdict: str  # one of VERDICTS


def load_baseline(path: Path) -> Leaderboard:
    """Read a baseline written by `uqbench compare --format json`.

    Raises DataError, naming the file (and the place in it), when it cannot be read, is not UTF-8 JSON, is not a
    valid `uqbench.leaderboard/1` document (`uqbench.leaderboard_schema`; it has rows).
    """
    name = f"baseline {str(path)!r}"
    try:
        raw = read_bytes(Path(path), MAX_TEXT_BYTES, follow=True)
    except OSError as exc:
        raise DataError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = parse(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        utf16 = " (UTF-16, as Windows PowerShell's `>` writes it)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{name}: not UTF-8 text{utf16}: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
                        "expected the JSON that `uqbench compare --format json` prints") from None
    except RecursionError:
        raise DataError(f"{name}: not a {SCHEMA} document: nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer of more than 4300 digits
        raise DataError(f"{name}: not valid JSON ({exc})") from None
    try:
        return Leaderboard.from_json(data)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None


def check(baseline: Leaderboard, records: list[RunRecord], thresholds: Thresholds) -> list[Finding]:
    """Every finding, in VERDICTS order (regressions first).

    A baseline row of which the store holds fewer runs (n_runs + n_failed) than the baseline has is one
    'missing' finding, not compared. BadConfig when a `--tolerance`/`--k` pattern matches no metric of the
    baseline.
    """
    _check_patterns(baseline, thresholds)
    current = {(r.task, r.method, r.config_id): r for r in build(records, all_metrics=True).rows}
    findings = []
    for base in baseline.rows:
        now = current.get((base.task, base.method, base.config_id))
        if now is None or _runs(now) < _runs(base):
            findings.append(_missing(base, now))
            continue
        for key in base.metrics:
            findings += _compare(baseline, base, now, key, thresholds)
        findings.append(_failures(base, now))
    return sorted(findings, key=lambda f: VERDICTS.index(f.verdict))


def _check_patterns(baseline: Leaderboard, thresholds: Thresholds) -> None:
    keys = sorted({k for row in baseline.rows for k in row.metrics})
    for option, overrides in (("--tolerance", thresholds.tolerances), ("--k", thresholds.ks)):
        for pattern, _ in overrides:
            if not any(fnmatch.fnmatchcase(k, pattern) for k in keys):
                close = difflib.get_close_matches(pattern, keys, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise BadConfig(f"{option} {pattern!r}: no metric of the baseline matches it.{hint} "
                                f"The baseline's metrics: {', '.join(keys) or 'none'}")


def _runs(row: Row) -> int:
    return row.n_runs + row.n_failed


def _missing(base: Row, now: Row | None) -> Finding:
    held = 0 if now is None else _runs(now)
    return Finding(base.task, base.method, base.config_id, RUNS, _runs(base), held, None, 0.0, "missing")


def _compare(baseline: Leaderboard, base: Row, now: Row, key: str, thresholds: Thresholds) -> list[Finding]:
    """The metric's finding, and one on its successful runs without a value when either side has some."""
    b = base.metrics[key]
    c = now.metrics.get(key)
    if c is None:
        return [Finding(base.task, base.method, base.config_id, key, b.mean, None, None, 0.0, "regressed")]
    header = baseline.metrics[key]
    worse_by = badness(header, c.mean) - badness(header, b.mean)
    allowed = thresholds.allowed(key, math.hypot(b.se, c.se))
    verdict = "regressed" if worse_by > allowed else "improved" if -worse_by > allowed else "unchanged"
    out = [Finding(base.task, base.method, base.config_id, key, b.mean, c.mean, worse_by, allowed, verdict)]
    before, after = base.n_runs - b.n, now.n_runs - c.n
    if before or after:
        out.append(_counted(base, f"runs without {key}", before, after))
    return out


def _failures(base: Row, now: Row) -> Finding:
    return _counted(base, FAILED, base.n_failed, now.n_failed)


def _counted(base: Row, what: str, before: int, after: int) -> Finding:
    """A count that must not grow: regressed when it did, improved when it shrank."""
    verdict = "regressed" if after > before else "improved" if after < before else "unchanged"
    return Finding(base.task, base.method, base.config_id, what, before, after, after - before, 0.0, verdict)


def summary(findings: list[Finding], n_rows: int, results: Path) -> tuple[list[str], int]:
    """The lines for stderr and the exit code: 1 when a finding regressed or runs are missing, else 0.

    Lines: one per baseline row with runs missing (or one 'nothing compared' when the store holds no run of any
    of the `n_rows` baseline rows), then 'N regressed, N improved, N unchanged (N compared)', with '; runs missing
    in N of M baseline row(s)' when any are.
    """
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    compared = len(findings) - counts["missing"]
    line = f"{counts['regressed']} regressed, {counts['improved']} improved, {counts['unchanged']} unchanged"
    line += f" ({compared} compared)"
    missing = [f for f in findings if f.verdict == "missing"]
    if not missing:
        return [line], int(counts["regressed"] > 0)
    line += f"; runs missing in {len(missing)} of {n_rows} baseline row(s); {HINT}"
    if len(missing) == n_rows and all(f.current == 0 for f in missing):
        return [f"nothing compared: {str(results)!r} holds no run of any of the baseline's {n_rows} row(s)", line], 1
    lines = [
        f"runs missing: {f.method} on {f.task} (config {f.config_id}): the baseline has {f.baseline:g} run(s), "
        f"the store {f.current:g}"
        for f in missing
    ]
    return [*lines, line], 1


def finding_rows(findings: list[Finding]) -> tuple[list[str], list[list[str]], str]:
    """(columns, rows, title) of the regressions, runs missing and improvements (unchanged ones are left out)."""
    rows = []
    for f in findings:
        if f.verdict == "unchanged":
            continue
        current = "—" if f.current is None else _fmt(f.current)
        worse = "—" if f.worse_by is None else f"{f.worse_by:+.4g}"
        rows.append([f.task, f.method, f.metric, _fmt(f.baseline), current, worse, _fmt(f.allowed), f.verdict])
    title = "changes beyond tolerance" + (", runs missing" if any(f.verdict == "missing" for f in findings) else "")
    return ["task", "method", "metric", "baseline", "current", "worse by", "allowed", "verdict"], rows, title


def _fmt(x: float) -> str:
    return f"{x:.4g}"


__all__ = [
    "DEFAULT_K", "DEFAULT_TOLERANCE", "VERDICTS", "Finding", "Thresholds", "check", "finding_rows", "load_baseline",
    "summary",
]
