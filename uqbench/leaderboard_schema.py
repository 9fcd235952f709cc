"""The `uqbench.leaderboard/1` JSON schema and its validating reader, for baselines that `check` trusts.

A document is what `Leaderboard.to_json` writes, field for field: every field present, none unknown, each of its
JSON type (a boolean is `true`/`false`, never the string "false"; numbers finite, so no NaN, Infinity or 1e400;
counts non-negative integers, never booleans; no key twice in one object), every metric of a row in the
`metrics` header with the direction and nominal value uqbench's metric table gives it, at least one row, one row
per (task, method, config_id), each with at least one run, and each cell's `n` from 1 to its row's `n_runs`.
The free-form configs (`method_config`, `task_config`, `recipe`, `backbone`) may hold any JSON but a non-finite
number. `provenance` (what made the document) is the one optional field, absent from older documents: an object
or null, free-form like the configs, and never part of a verdict. Every refusal is a DataError naming the place (`rows[3].metrics.nll.mean`), what was expected and what
was found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uqbench.errors import DataError

SCHEMA = "uqbench.leaderboard/1"


@dataclass(frozen=True)
class Kind:
    """A JSON type with a condition, and its name in error messages."""

    expected: str
    test: Callable[[Any], bool]

    def or_null(self) -> Kind:
        return Kind(f"{self.expected} or null", lambda v: v is None or self.test(v))


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond the float range
        return False


NAME = Kind("a non-empty printable string", lambda v: isinstance(v, str) and v != "" and v.isprintable())
TEXT = Kind("a string", lambda v: isinstance(v, str))
FLAG = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
ARRAY = Kind("an array", lambda v: isinstance(v, list))
NUMBER = Kind("a finite number", _finite)
POSITIVE = Kind("a finite number >= 0", lambda v: _finite(v) and v >= 0)
RANK = Kind("a finite number >= 1", lambda v: _finite(v) and v >= 1)
PROBABILITY = Kind("a number in [0, 1]", lambda v: _finite(v) and 0 <= v <= 1)
COUNT = Kind("a non-negative integer", lambda v: isinstance(v, int) and _finite(v) and v >= 0)

DOCUMENT = {"schema": NAME, "metrics": OBJECT, "rank_by": OBJECT, "rows": ARRAY, "provenance": OBJECT.or_null()}
OPTIONAL = ("provenance",)  # fields a document may lack (older uqbench versions did not write them)
HEADER = {"higher_is_better": FLAG, "ideal": NUMBER.or_null(), "unit": TEXT, "doc": TEXT}
ROW = {
    "task": NAME, "method": NAME, "config_id": NAME, "method_config": OBJECT, "task_config": OBJECT,
    "recipe": OBJECT, "backbone": OBJECT, "n_runs": COUNT, "n_failed": COUNT, "n_missing": COUNT,
    "metrics": OBJECT, "cost": OBJECT, "rank": RANK.or_null(), "avg_rank": RANK.or_null(),
}
CELL = {"mean": NUMBER, "se": POSITIVE, "n": COUNT, "best": FLAG, "within_noise": FLAG.or_null(),
        "p_value": PROBABILITY.or_null()}
COST = {"fit_s": POSITIVE.or_null(), "predict_s": POSITIVE.or_null(), "n_params": POSITIVE.or_null()}  # stated: any number
FREE_FORM = ("method_config", "task_config", "recipe", "backbone")


class _Object(dict):
    """A parsed JSON object that had `duplicate` as a key more than once (the last value is kept)."""

    duplicate: str


def parse(text: str) -> Any:
    """JSON text -> Python value; an object with a repeated key is marked for `validate` to refuse by place."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) == len(items):
            return out
        marked, seen = _Object(out), set()
        for key, _ in items:
            if key in seen:
                marked.duplicate = key
                return marked
            seen.add(key)
        return marked

    return json.loads(text, object_pairs_hook=pairs)


def validate(data: Any) -> None:
    """Raise DataError, naming the place, unless `data` is a well-formed `uqbench.leaderboard/1` document."""
    expected = f"expected a {SCHEMA} document (from `uqbench compare --format json`)"
    if not isinstance(data, dict):
        raise DataError(f"{expected}; got {_show(data)}")
    if "schema" not in data:
        raise DataError(f"{expected}; got no schema")
    schema = data["schema"]
    if schema != SCHEMA:
        found = repr(schema[:40]) if isinstance(schema, str) else _show(schema)
        raise DataError(f"{expected}; got schema {found}")
    _fields(data, DOCUMENT, "", OPTIONAL)
    _plain(data.get("provenance"), "provenance")
    if not data["rows"]:
        raise DataError("rows: empty, so there is nothing to compare; expected the rows `uqbench compare` writes")
    for key, entry in data["metrics"].items():
        _header(key, entry, _join("metrics", key))
    seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(data["rows"]):
        _row(row, f"rows[{i}]", data["metrics"])
        ident = (row["task"], row["method"], row["config_id"])
        if ident in seen:
            raise DataError(f"rows[{i}]: the same task, method and config_id as rows[{seen[ident]}]; "
                            "expected one row per (task, method, config)")
        seen[ident] = i
    tasks = {row["task"] for row in data["rows"]}
    for task, key in data["rank_by"].items():
        if not isinstance(key, str) or key not in data["metrics"]:
            raise DataError(f"{_join('rank_by', task)}: expected a metric of the 'metrics' header; got {_show(key)}")
        if task not in tasks:
            raise DataError(f"{_join('rank_by', task)}: expected a task of the rows; no row has task {task!r}")
        if not any(key in row["metrics"] for row in data["rows"] if row["task"] == task):
            raise DataError(f"{_join('rank_by', task)}: {key!r} is a metric no row of task {task!r} has")


def _header(key: str, entry: Any, where: str) -> None:
    from uqbench.metrics import metric_spec

    _fields(entry, HEADER, where)
    try:
        spec = metric_spec(key)
    except KeyError as exc:
        raise DataError(f"{where}: {exc.args[0]}") from None
    if (entry["higher_is_better"], entry["ideal"]) != (spec.higher_is_better, spec.ideal):
        raise DataError(
            f"{where}: expected higher_is_better {_show(spec.higher_is_better)} and ideal {_show(spec.ideal)} "
            f"(uqbench's {key!r}); got {_show(entry['higher_is_better'])} and {_show(entry['ideal'])}"
        )


def _row(row: Any, where: str, header: dict[str, Any]) -> None:
    _fields(row, ROW, where)
    if row["n_runs"] + row["n_failed"] == 0:
        raise DataError(f"{where}: expected at least one run (n_runs + n_failed >= 1); got none")
    _fields(row["cost"], COST, f"{where}.cost")
    for name in FREE_FORM:
        _plain(row[name], f"{where}.{name}")
    for key, cell in row["metrics"].items():
        place = _join(f"{where}.metrics", key)
        if key not in header:
            raise DataError(f"{place}: expected an entry for {key!r} in the 'metrics' header; there is none")
        _fields(cell, CELL, place)
        if not 1 <= cell["n"] <= row["n_runs"]:
            raise DataError(f"{place}.n: expected 1 to the row's n_runs ({row['n_runs']}); got {cell['n']}")


def _fields(value: Any, fields: dict[str, Kind], where: str, optional: tuple[str, ...] = ()) -> None:
    """`value` is an object with exactly these fields (those named `optional` may be absent), each of its kind."""
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected an object; got {_show(value)}")
    _unique(value, where)
    for key in value:
        if key not in fields:
            raise DataError(f"{_join(where, key)}: unknown field; expected only: {', '.join(fields)}")
    for key, kind in fields.items():
        if key not in value and key in optional:
            continue
        if key not in value:
            raise DataError(f"{_join(where, key)}: missing field; expected {kind.expected}")
        if not kind.test(value[key]):
            raise DataError(f"{_join(where, key)}: expected {kind.expected}; got {_show(value[key])}")
    for key in fields:
        if isinstance(value.get(key), dict):
            _unique(value[key], _join(where, key))


def _plain(value: Any, where: str) -> None:
    """Free-form JSON: no non-finite number and no repeated key at any depth (walked without recursion)."""
    stack = [(value, where)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{where}: expected a finite number; got {_show(value)}")
        if isinstance(value, dict):
            _unique(value, where)
            stack += [(v, _join(where, k)) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _unique(value: dict[str, Any], where: str) -> None:
    if isinstance(value, _Object):
        key = json.dumps(value.duplicate)[:60]
        raise DataError(f"{where or 'the document'}: the key {key} appears more than once; expected each key once")


def _join(where: str, key: str) -> str:
    """The place of `key` in the object at `where`: `rows[0].n_runs`, `rows[0].metrics["ood.far.auroc"]`."""
    if key.isidentifier() and len(key) <= 40:
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key)[:60]}]"


def _show(v: Any) -> str:
    """A found value as the JSON it was, briefly, with its type when that is the problem."""
    if isinstance(v, str):
        text = json.dumps(v)
        return f"the string {text if len(text) <= 40 else text[:39] + '…'}"
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int) and not _finite(v):
        return "an integer beyond the float range"
    if isinstance(v, float) and math.isinf(v):
        return f"{json.dumps(v)} (or a number beyond the float range, such as 1e400)"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return "an object" if isinstance(v, dict) else "an array" if isinstance(v, list) else type(v).__name__


__all__ = ["SCHEMA", "parse", "validate"]
