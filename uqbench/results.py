"""Run records: schema, content-hash ids, atomic writes, loading and aggregation over seeds.

One JSON file `<id>.json` per run; `id` is the first 16 hex digits of the sha256 of the canonical JSON of the
run's key (`uqbench.spec.RunSpec.key`: method and task with their resolved configs, training recipe, backbone,
seed, split, data fingerprint and code versions), so a changed default, data file or version gives a new id and
a stale result is never reused. Every field is always present (null when not applicable).

Records of the older format `uqbench.run/1` (whose keys lack the recipe, backbone, data and code) are never
reused: the store lists them in `problems` (see `ResultStore` for what it does with unusable files).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uqbench.checkpoints import discard
from uqbench.config import content_hash
from uqbench.errors import DataError
from uqbench.files import NotARegularFile, read_bytes, subdir, write_atomic

SCHEMA = "uqbench.run/2"
OLD_SCHEMAS = ("uqbench.run/1",)
RECORD_NAME = re.compile(r"[0-9a-f]{16}\.json")  # `<id>.json`: the files a store reads as records
MAX_RECORD_BYTES = 16 << 20  # a record is a few kB; a larger file is not one
QUARANTINE = "quarantine"


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
    curves: list[dict[str, Any]] = field(default_factory=list)  # per fit: {"stage", "train": [loss per epoch], "val"}
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


class Unreadable(ValueError):
    """A file in a results directory that is not a usable record of this format (the message says why)."""


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _dict_of(check) -> Any:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _optional(check) -> Any:
    return lambda v: v is None or check(v)


_ANY_DICT = _dict_of(lambda _: True)
KEY_FIELDS = {
    "method": _is_str, "method_config": _ANY_DICT, "task": _is_str, "task_config": _ANY_DICT, "seed": _is_int,
    "split": _is_int, "recipe": _ANY_DICT, "backbone": _ANY_DICT, "data": _dict_of(_is_str),
    "code": _dict_of(_is_str), "search": _optional(_ANY_DICT),
}
RECORD_FIELDS = {
    "key": _ANY_DICT, "status": lambda v: v in ("ok", "failed"), "error": _optional(_dict_of(_is_str)),
    "metrics": _dict_of(_optional(_is_number)), "warnings": lambda v: isinstance(v, list) and all(map(_is_str, v)),
    "n": _dict_of(_is_int), "timings_s": _dict_of(_is_number), "artifacts": _dict_of(_optional(_is_str)),
    "method_source": _is_str, "data_sha256": _dict_of(_is_str), "info": _ANY_DICT, "env": _ANY_DICT,
    "created_at": lambda v: _is_str(v) and (v == "" or _is_timestamp(v)), "predictions": _optional(_is_str),
    "curves": lambda v: isinstance(v, list) and all(map(_is_curve, v)), "schema": _is_str,
}
OPTIONAL_FIELDS = {"curves": list}  # fields records written before them lack: name -> the default's factory


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FUTURE_SLACK_S = 86_400  # clocks disagree; a record dated more than a day ahead was not made by a run


def _is_timestamp(text: str) -> bool:
    """A UTC time as the runner writes it ('2026-12-01T20:01:46Z'), not in the future."""
    if not TIMESTAMP.fullmatch(text):
        return False
    try:
        when = _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return False
    return when.timestamp() <= time.time() + FUTURE_SLACK_S


def _is_curve(value: Any) -> bool:
    """{"stage": str, "train": [number | null], "val": [number | null] | null} (nothing else)."""
    def losses(v: Any) -> bool:
        return isinstance(v, list) and all(x is None or _is_number(x) for x in v)

    return (isinstance(value, dict) and set(value) == {"stage", "train", "val"} and _is_str(value["stage"])
            and losses(value["train"]) and (value["val"] is None or losses(value["val"])))


def _check_fields(data: dict[str, Any], fields: dict[str, Any], where: str,
                  optional: dict[str, Any] | None = None) -> None:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Unreadable(f"unknown field {where}{unknown[0]!r}")
    for name, default in (optional or {}).items():
        data.setdefault(name, default())
    for name, check in fields.items():
        if name not in data:
            raise Unreadable(f"no field {where}{name!r}")
        if not check(data[name]):
            raise Unreadable(f"field {where}{name!r} has a wrong type or value ({str(data[name])[:40]!r})")


def parse_record(text: str) -> RunRecord:
    """A record from its JSON text, validated field by field against the schema; Unreadable says what is wrong.

    Refused: invalid JSON (NaN and Infinity are not JSON), another schema, a missing, unknown or mistyped field, a
    non-finite metric, an `id` that is not the hash of the key, a predictions file other than `<id>.npz`.
    """
    def no_constants(name: str) -> None:
        raise Unreadable(f"{name} is not JSON")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise Unreadable(f"the key {k[:40]!r} appears twice in one object")
            out[k] = v
        return out

    try:
        data = json.loads(text, parse_constant=no_constants, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise Unreadable("nested too deeply") from None
    except Unreadable:
        raise
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise Unreadable(f"not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(data), "number")
        raise Unreadable(f"a JSON {kind}, not a record")
    schema = data.get("schema")
    if schema in OLD_SCHEMAS:
        raise Unreadable(f"older record format {schema!r}, not reused (re-run it)")
    if schema != SCHEMA:
        raise Unreadable(f"schema {str(schema)[:40]!r}, expected {SCHEMA!r}")
    stated = data.pop("id", None)
    _check_fields(data, RECORD_FIELDS, "", OPTIONAL_FIELDS)
    _check_fields(data["key"], KEY_FIELDS, "key.")
    if (data["status"] == "ok") != (data["error"] is None):
        raise Unreadable(f"status {data['status']!r} with {'no ' if data['error'] is None else 'an '}error")
    record = RunRecord.from_json(data)
    if stated is not None and stated != record.id:
        raise Unreadable(f"its id {str(stated)[:20]!r} is not the hash of its key ({record.id})")
    if record.predictions not in (None, f"{record.id}.npz"):
        raise Unreadable(f"predictions {record.predictions[:40]!r}: expected {record.id}.npz beside the record")
    return record


class ResultStore:
    """A directory of run records, `<id>.json` each.

    A file named like a record that cannot be used (truncated, not a record of this format, mistyped fields, named
    for another id, a link) is reported in `problems` as "path: reason". A store opened with `quarantine=True`
    (by the commands that run) moves such a file into `<root>/quarantine/` when a planned run asks for it (`get`),
    never deleting it: the run is then missing and runs again (a file that cannot be moved there stops the command
    with a DataError instead of being overwritten). Reading the whole store (`records`), and the read-only commands
    (`check`, `plot`, `--no-run`), only report.
    Other `.json` files (a baseline kept beside the records, say) are not records and are left alone.
    """

    def __init__(self, root: Path, quarantine: bool = False):
        self.root = Path(root)
        self.quarantine = quarantine
        self.problems: list[str] = []

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def has(self, key: RunKey) -> bool:
        return self.get(key.id) is not None

    def write(self, record: RunRecord) -> Path:
        if record.status not in ("ok", "failed"):
            raise ValueError(f"a {record.status!r} record is not a result and is never stored")
        path = self.path(record.id)
        write_atomic(path, json.dumps(record.to_json(), indent=2, allow_nan=False) + "\n")
        discard(self.root / "artifacts", record.id)  # its training checkpoints were only for resuming it
        return path

    def load(self, run_id: str) -> RunRecord:
        """The record `run_id`; Unreadable (or OSError when absent) otherwise."""
        path = self.path(run_id)
        try:
            text = read_bytes(path, MAX_RECORD_BYTES).decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("not UTF-8 text") from None
        except NotARegularFile as exc:
            raise Unreadable(str(exc).removeprefix(f"{path}: ")) from None
        record = parse_record(text)
        if record.id != run_id:
            raise Unreadable(f"holds the record {record.id}, not {run_id}")
        return record

    def get(self, run_id: str, set_aside: bool = True) -> RunRecord | None:
        """The record `run_id`, or None when it is absent or unusable (then reported, and with `quarantine` and
        `set_aside` moved into the quarantine folder: the run is missing, and runs again). DataError when such a
        file cannot be moved there (its run would replace it)."""
        path = self.path(run_id)
        if not os.path.lexists(path):
            return None
        try:
            return self.load(run_id)
        except (Unreadable, OSError) as exc:
            self._problem(path, exc, set_aside and self.quarantine)
            return None

    def records(self) -> list[RunRecord]:
        """Every usable record in the store, sorted by (task, method, seed, split); `problems` lists the rest
        (each file once, however often the store is read)."""
        out = []
        for path in sorted(self.root.glob("*.json")):
            if not RECORD_NAME.fullmatch(path.name):
                continue
            record = self.get(path.stem, set_aside=False)
            if record is not None:
                out.append(record)
        return sorted(out, key=lambda r: (r.key.task, r.key.method, r.key.seed, r.key.split))

    def _problem(self, path: Path, exc: Exception, set_aside: bool) -> None:
        reason = str(exc).removeprefix(f"{path}: ") if isinstance(exc, Unreadable) else (
            f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")
        if not set_aside:
            line = f"{path}: {reason}; ignored"
        else:
            try:
                aside = self._set_aside(path)
            except (OSError, DataError) as err:
                why = getattr(err, "strerror", None) or str(err)
                raise DataError(f"{path}: {reason}; its run would replace it, and it cannot be moved into "
                                f"{self.root / QUARANTINE} ({why}): move it away, then run again") from None
            line = f"{path}: {reason}; moved to {aside}, its run runs again"
        if line not in self.problems:
            self.problems.append(line)

    def _set_aside(self, path: Path) -> Path:
        """Move `path` into `<root>/quarantine/` under a new, unique name; OSError or DataError (a link where the
        folder should be) if it cannot be moved, leaving nothing in the quarantine folder."""
        target = None
        try:
            folder = subdir(self.root, QUARANTINE)
            if stat.S_ISDIR(os.lstat(path).st_mode):  # a directory can only replace an empty directory
                target = tempfile.mkdtemp(dir=folder, prefix=f"{path.stem}.", suffix=".json")
            else:
                fd, target = tempfile.mkstemp(dir=folder, prefix=f"{path.stem}.", suffix=".json")
                os.close(fd)
            os.replace(path, target)  # a link is moved as a link, never followed
        except (OSError, DataError):
            if target is not None:
                with contextlib.suppress(OSError):
                    (os.rmdir if os.path.isdir(target) else os.unlink)(target)
            raise
        return Path(target)


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
