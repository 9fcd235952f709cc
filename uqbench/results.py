"""Run records: schema, content-hash ids, atomic writes, loading and aggregation over seeds.

One JSON file `<id>.json` per run; `id` is the first 16 hex digits of the sha256 of the canonical JSON of the
run's key (method, resolved method config, task, resolved task config, seed, split), so a changed default
gives a new id and a stale result is never reused. Every field is always present (null when not applicable).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uqbench.config import content_hash

SCHEMA = "uqbench.run/1"


@dataclass(frozen=True)
class RunKey:
    """What identifies a run; its hash is the record id."""

    method: str
    method_config: dict[str, Any]
    task: str
    task_config: dict[str, Any]
    seed: int
    split: int

    @property
    def id(self) -> str:
        return content_hash(asdict(self))


@dataclass
class RunRecord:
    """One run's result (the JSON schema `uqbench.run/1`)."""

    key: RunKey
    status: str  # "ok" or "failed"
    error: dict[str, str] | None = None  # {"phase", "type", "message"} when failed
    metrics: dict[str, float | None] = field(default_factory=dict)  # flat keys; null for a non-finite value
    warnings: list[str] = field(default_factory=list)  # e.g. which metric was non-finite
    n: dict[str, int] = field(default_factory=dict)  # examples per split and OOD set
    timings_s: dict[str, float] = field(default_factory=dict)  # fit, predict, evaluate seconds
    artifacts: dict[str, str | None] = field(default_factory=lambda: {"backbone": None})  # cached networks used
    method_source: str = "builtin"  # "builtin" or "dist==version" of the plugin
    data_sha256: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # task facts (protocol) and method facts (estimators)
    env: dict[str, Any] = field(default_factory=dict)  # versions, device, threads, platform, git commit
    created_at: str = ""
    predictions: str | None = None  # file name of the saved predictions (.npz) beside the record
    schema: str = SCHEMA

    @property
    def id(self) -> str:
        return self.key.id

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["id"] = self.id
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data.pop("id", None)
        data["key"] = RunKey(**data["key"])
        return cls(**data)


def clean_metrics(metrics: dict[str, float]) -> tuple[dict[str, float | None], list[str]]:
    """Replace non-finite values by None (NaN is not JSON) and say which."""
    cleaned: dict[str, float | None] = {}
    warnings = []
    for key, value in metrics.items():
        if math.isfinite(value):
            cleaned[key] = float(value)
        else:
            cleaned[key] = None
            warnings.append(f"metric {key!r} was {value}")
    return cleaned, warnings


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a file so that readers see either the old content or the new, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """A directory of run records."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def has(self, key: RunKey) -> bool:
        return self.path(key.id).exists()

    def write(self, record: RunRecord) -> Path:
        path = self.path(record.id)
        write_atomic(path, json.dumps(record.to_json(), indent=2, allow_nan=False) + "\n")
        return path

    def load(self, run_id: str) -> RunRecord:
        return RunRecord.from_json(json.loads(self.path(run_id).read_text()))

    def records(self) -> list[RunRecord]:
        """Every readable record in the store, sorted by (task, method, seed, split)."""
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and data.get("schema") == SCHEMA:
                out.append(RunRecord.from_json(data))
        return sorted(out, key=lambda r: (r.key.task, r.key.method, r.key.seed, r.key.split))


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / sqrt(n); 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(records: list[RunRecord]) -> dict[str, tuple[float, float, int]]:
    """Metric key -> (mean, standard error, number of runs with a value) over the successful records."""
    values: dict[str, list[float]] = {}
    for rec in records:
        if rec.status != "ok":
            continue
        for key, value in rec.metrics.items():
            if value is not None:
                values.setdefault(key, []).append(value)
    return {key: (*mean_se(vals), len(vals)) for key, vals in values.items()}
