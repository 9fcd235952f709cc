"""Run records: schema, content-hash ids, atomic writes, loading and aggregation over seeds.

One JSON file `<id>.json` per run; `id` is the first 16 hex digits of the sha256 of the canonical JSON of the
run's key (`uqbench.spec.RunSpec.key`: method and task with their resolved configs, training recipe, backbone,
seed, split, data fingerprint and code versions), so a changed default, data file or version gives a new id and
a stale result is never reused. Every field is always present (null when not applicable).

Records of the older format `uqbench.run/1` (whose keys lack the recipe, backbone, data and code) are never
reused: the store lists them in `problems` and leaves them on disk.
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

SCHEMA = "uqbench.run/2"
OLD_SCHEMAS = ("uqbench.run/1",)


@dataclass(frozen=True)
class RunKey:
    """What identifies a run (plain JSON data); its hash is the record id."""

    method: str
    method_config: dict[str, Any]
    task: str
    task_config: dict[str, Any]
    seed: int
    split: int
    recipe: dict[str, Any] = field(default_factory=dict)  # the training recipe (TrainConfig)
    backbone: dict[str, Any] = field(default_factory=dict)  # the BackboneConfig
    data: dict[str, str] = field(default_factory=dict)  # the task's fingerprint of the split's data
    code: dict[str, str] = field(default_factory=dict)  # uqbench version, method and task origins
    search: dict[str, Any] | None = None  # a per-run grid search (uqbench.search.Search.to_dict), or None

    @property
    def id(self) -> str:
        return content_hash(asdict(self))

    @property
    def config_id(self) -> str:
        """16 hex digits identifying the runs that belong together on a leaderboard: the key without seed, split,
        data fingerprint (each split reads its own index files) and code versions (a new release re-runs a config,
        but its runs still compare with a baseline's). Of two records of one config, seed and split that differ
        only there, the leaderboard takes the newer."""
        key = asdict(self)
        for name in ("seed", "split", "data", "code"):
            del key[name]
        return content_hash(key)


@dataclass
class RunRecord:
    """One run's result (the JSON schema `uqbench.run/2`)."""

    key: RunKey
    status: str  # "ok"; "failed" (the run's own failure: NaN loss, a crash in the method); "error" (never stored)
    error: dict[str, str] | None = None  # {"phase", "type", "message"} unless ok
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
    """A directory of run records.

    `records()` reads every record; files it cannot use (another format, unreadable, named for another id) are
    listed in `problems` as "path: reason" and left on disk.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.problems: list[str] = []

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def has(self, key: RunKey) -> bool:
        return self.path(key.id).exists()

    def write(self, record: RunRecord) -> Path:
        if record.status not in ("ok", "failed"):
            raise ValueError(f"a {record.status!r} record is not a result and is never stored")
        path = self.path(record.id)
        write_atomic(path, json.dumps(record.to_json(), indent=2, allow_nan=False) + "\n")
        return path

    def load(self, run_id: str) -> RunRecord:
        return RunRecord.from_json(json.loads(self.path(run_id).read_text()))

    def records(self) -> list[RunRecord]:
        """Every usable record in the store, sorted by (task, method, seed, split)."""
        out, self.problems = [], []
        for path in sorted(self.root.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(data, dict) or "schema" not in data:
                continue
            if data["schema"] in OLD_SCHEMAS:
                self.problems.append(f"{path}: older record format {data['schema']!r}, not reused (re-run it)")
                continue
            if data["schema"] != SCHEMA:
                continue
            record = RunRecord.from_json(data)
            if path.stem != record.id:
                self.problems.append(f"{path}: holds the record {record.id}, not {path.stem}; ignored")
                continue
            out.append(record)
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
