"""Tasks on a user's own data files, no package needed: `csv` (a table with a header) and `npz` (arrays).

    uqbench run ensemble --task csv --set path=data.csv --set target=price
    uqbench compare --tasks npz --set path=data.npz --methods all

**Kind.** `kind=auto` (the default) infers it from the target: a CSV target whose every value is an integer, or
any text, is a class label (classification); numbers with a fraction or an exponent are regression targets. In an
`.npz`, an integer, boolean or text `y` is classification, a float one regression. `kind=regression` or
`kind=classification` says it outright. Class labels are numbered in sorted order (numerically for integers).

**Splits** (one rule, by precedence): index files (`train_index`, `test_index`: 0-based data-row numbers, one per
line, as the UCI split files; a `{split}` in both names gives splits 0, 1, ... while both files exist), a split
column (`split_column`: `train` or `test` per row, CSV only), a fixed test set (`X_test`, `y_test` in an `.npz`),
else a random `test_fraction` of the rows drawn from the run's seed (stratified by class for classification, so
every class is trained on). Inputs are standardised with the training rows' mean and standard deviation (constant
columns are left unscaled) unless `standardize=false`; regression targets always are, and metrics are reported in
the original units.

**OOD sets**: a CSV task reads them from other files with the same feature columns (`ood=shifted=b.csv,far=c.csv`);
an `.npz` holds them as `X_ood_<name>` arrays. Every file read is in the run's key by its sha256.

A bad file — missing, binary, not UTF-8, a missing column, a non-numeric or non-finite value, one class only, a
constant target, too few rows — stops the command before any run with one line naming the file, and the column
and line (CSV) or array and row (`.npz`) where it matters.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from uqbench import npz
from uqbench.config import PROBABILITY, Checked
from uqbench.datasets import file_sha256
from uqbench.errors import BadConfig, DataError
from uqbench.tasks.base import Split, Task, TaskData, tasks
from uqbench.tasks.scaling import input_scaling

MAX_FILE_BYTES = 4 << 30  # a data file larger than this is refused rather than read into memory
MAX_SPLITS = 1000  # index files `train_{split}` are looked for up to this many splits
MIN_TRAIN, MIN_TEST = 2, 1
INTEGER = re.compile(r"[+-]?\d+")
SPLIT_VALUES = ("train", "test")
OOD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class OwnDataConfig(Checked):
    """The settings every own-data task has.

    Attributes:
        path: the data file (required).
        kind: 'auto' (inferred from the target), 'regression' or 'classification'.
        test_fraction: share of the rows held out for testing by the random rule, in (0, 1).
        train_index, test_index: files of 0-based data-row numbers (both or neither); `{split}` numbers splits.
        standardize: standardise the inputs with the training rows' statistics.
    """

    path: str = ""
    kind: Literal["auto", "regression", "classification"] = "auto"
    test_fraction: Annotated[float, PROBABILITY] = 0.2
    train_index: str = ""
    test_index: str = ""
    standardize: bool = True


@dataclass(frozen=True)
class CsvConfig(OwnDataConfig):
    """A CSV task's settings: the common ones, and

    Attributes:
        target: the target column (several, comma-separated, for multi-output regression); required.
        features: comma-separated feature columns; default every column but the target and the split column.
        split_column: a column of 'train' / 'test' per row: the split (one split).
        ood: OOD sets from other CSV files with the feature columns: 'name=path[,name=path...]'.
        delimiter: the field separator, one character.
    """

    target: str = ""
    features: str = ""
    split_column: str = ""
    ood: str = ""
    delimiter: str = ","

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.delimiter) != 1 or self.delimiter in "\r\n\"":
            raise BadConfig(f"'delimiter' of task 'csv' must be one character other than a quote or a line break; "
                            f"got {self.delimiter!r}")


@dataclass(frozen=True)
class Table:
    """A data file read and checked, before splitting.

    Attributes:
        x: inputs [N, *in_shape], float64, original units.
        y: regression targets [N, D] float64, or class indices [N] int64.
        kind: 'regression' or 'classification'.
        classes: the class labels in index order (classification).
        test_rows: a fixed split (split column, or an `.npz`'s X_test appended after X): True for test rows.
        ood: OOD set name -> inputs [M, *in_shape], float64.
    """

    x: np.ndarray
    y: np.ndarray
    kind: str
    classes: tuple[str, ...] = ()
    test_rows: np.ndarray | None = None
    ood: dict[str, np.ndarray] = field(default_factory=dict)


class OwnDataTask(Task):
    """The file-reading, splitting and scaling both own-data tasks share; subclasses read their format."""

    Config = OwnDataConfig
    source = "your file (--set path=...)"

    # -- what the base class asks, decided by the file ------------------------------------------------------
    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.config.kind if self.config.kind != "auto" else self.table().kind

    @property
    def ood_sets(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.table().ood)

    def n_splits(self) -> int:
        if not self._indexed():
            return 1
        if "{split}" not in self.config.train_index:
            return 1
        n = 0
        while n < MAX_SPLITS and all(Path(self._index_path(name, n)).is_file() for name in ("train", "test")):
            n += 1
        if n == 0:
            raise DataError(f"{self._index_path('train', 0)}: no such file (train_index of task {self.name!r})")
        return n

    def size(self) -> str:
        return "from the file"

    def fingerprint(self, split: int) -> dict[str, str]:
        """sha256 of every file the split reads: the data file, its index files, the OOD files."""
        return {path: _sha256(path, what) for path, what in self._files(split)}

    def prepare(self, splits: list[int]) -> None:
        """Read and check the file and every split's parts (sizes and classes do not depend on the seed) before any
        run starts."""
        table = self.table()
        for split in splits:
            self._check_parts(table, *self._parts(table, 0, split), split)

    def load(self, seed: int, split: int) -> TaskData:
        table = self.table()
        train, test = self._parts(table, seed, split)
        self._check_parts(table, train, test, split)
        x_loc, x_scale = input_scaling(table.x[train]) if self.config.standardize else (0.0, 1.0)

        def inputs(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor((x - x_loc) / x_scale, dtype=torch.float32)

        ood = {name: inputs(x) for name, x in table.ood.items()}
        fingerprint = self.fingerprint(split)
        if table.kind == "classification":
            y = torch.as_tensor(table.y, dtype=torch.int64)
            return TaskData("classification", Split(inputs(table.x[train]), y[train]), Split(inputs(table.x[test]), y[test]),
                            out_dim=len(table.classes), ood=ood, data_sha256=fingerprint,
                            info={"classes": list(table.classes)})
        y_loc, y_scale = table.y[train].mean(0), table.y[train].std(0)
        scaling = ({"input_loc": torch.as_tensor(x_loc, dtype=torch.float32),
                    "input_scale": torch.as_tensor(x_scale, dtype=torch.float32)} if self.config.standardize else {})

        def targets(rows: np.ndarray) -> torch.Tensor:
            return torch.as_tensor((table.y[rows] - y_loc) / y_scale, dtype=torch.float32)

        return TaskData("regression", Split(inputs(table.x[train]), targets(train)), Split(inputs(table.x[test]), targets(test)),
                        out_dim=table.y.shape[1], ood=ood, target_loc=torch.as_tensor(y_loc, dtype=torch.float32),
                        target_scale=torch.as_tensor(y_scale, dtype=torch.float32), data_sha256=fingerprint,
                        **scaling)

    # -- reading --------------------------------------------------------------------------------------------
    def table(self) -> Table:
        """The file read and checked (remembered in this process while its bytes stay the same)."""
        path = self._path()
        key = (type(self).__name__, path, _sha256(path, "data file"), self._reading_config())
        if key not in _TABLES:
            if len(_TABLES) >= 4:
                _TABLES.pop(next(iter(_TABLES)))
            _TABLES[key] = self._read(path)
        return _TABLES[key]

    def _read(self, path: str) -> Table:
        raise NotImplementedError

    def _reading_config(self) -> tuple[Any, ...]:
        """The settings that change what `_read` returns."""
        return (self.config.kind,)

    def _path(self) -> str:
        if not self.config.path:
            raise BadConfig(f"task {self.name!r} needs its data file: --set path=FILE")
        return self.config.path

    def _files(self, split: int) -> list[tuple[str, str]]:
        files = [(self._path(), "data file")]
        if self._indexed():
            files += [(self._index_path(name, split), f"{name}_index") for name in ("train", "test")]
        return files

    # -- splitting ------------------------------------------------------------------------------------------
    def _indexed(self) -> bool:
        train, test = self.config.train_index, self.config.test_index
        if bool(train) != bool(test):
            raise BadConfig(f"task {self.name!r}: give both train_index and test_index, or neither")
        if train and ("{split}" in train) != ("{split}" in test):
            raise BadConfig(f"task {self.name!r}: '{{split}}' must be in both train_index and test_index, or neither")
        return bool(train)

    def _index_path(self, name: str, split: int) -> str:
        text = self.config.train_index if name == "train" else self.config.test_index
        return text.replace("{split}", str(split))

    def _parts(self, table: Table, seed: int, split: int) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, test rows) of (seed, split) by the first rule that applies (see the module docstring)."""
        n = len(table.x)
        if self._indexed():
            train, test = (_index_file(self._index_path(name, split), n) for name in ("train", "test"))
            both = np.intersect1d(train, test)
            if both.size:
                raise DataError(f"{self._index_path('test', split)}: row {int(both[0])} is also in "
                                f"{self._index_path('train', split)}")
            return train, test
        if table.test_rows is not None:
            return np.flatnonzero(~table.test_rows), np.flatnonzero(table.test_rows)
        return _random_parts(table, self.config.test_fraction, seed)

    def _check_parts(self, table: Table, train: np.ndarray, test: np.ndarray, split: int) -> None:
        where = f"{self._path()} (split {split})"
        if len(train) < MIN_TRAIN or len(test) < MIN_TEST:
            raise DataError(f"{where}: {len(train)} training and {len(test)} test rows; at least {MIN_TRAIN} and "
                            f"{MIN_TEST} are needed")
        if table.kind == "classification":
            trained = np.unique(table.y[train])
            if len(trained) < 2:
                raise DataError(f"{where}: the training rows hold one class only ({table.classes[int(trained[0])]!r})")
            unseen = np.setdiff1d(np.unique(table.y[test]), trained)
            if unseen.size:
                raise DataError(f"{where}: the test rows hold class {table.classes[int(unseen[0])]!r}, which no training "
                                "row has")
        arrays = [("inputs", table.x[train])] + ([("targets", table.y[train])] if table.kind == "regression" else [])
        for what, values in arrays:
            with np.errstate(over="ignore", invalid="ignore"):
                too_big = not np.isfinite(np.square(values)).all()
            if too_big or (what == "inputs" and not self.config.standardize
                           and np.abs(values).max(initial=0.0) > np.finfo(np.float32).max):
                raise DataError(f"{where}: {what} too large to standardise or to hold in float32 (their squares "
                                "overflow a float64)")
        if table.kind == "regression":
            constant = np.flatnonzero(table.y[train].std(0) == 0)
            if constant.size:
                raise DataError(f"{where}: target {int(constant[0])} is constant on the training rows")


_TABLES: dict[tuple[Any, ...], Table] = {}


@tasks.register("csv")
class CsvTask(OwnDataTask):
    """Your CSV file: --set path=data.csv --set target=COLUMN (kind inferred, or --set kind=)."""

    Config = CsvConfig

    def _reading_config(self) -> tuple[Any, ...]:
        c = self.config
        return (c.kind, c.target, c.features, c.split_column, c.ood, c.delimiter)

    def _files(self, split: int) -> list[tuple[str, str]]:
        return super()._files(split) + [(path, f"OOD set {name!r}") for name, path in _ood_files(self.config.ood)]

    def _read(self, path: str) -> Table:
        c = self.config
        if not c.target:
            raise BadConfig(f"task 'csv' needs its target column: --set target=COLUMN ({path})")
        header, rows, lines = _csv_rows(path, c.delimiter)
        targets = _names(c.target)
        split_column = c.split_column or None
        features = _names(c.features) if c.features else [h for h in header if h not in targets and h != split_column]
        for name in [*targets, *features, *([split_column] if split_column else [])]:
            if name not in header:
                raise DataError(f"{path}: no column {name!r}; the header has: {', '.join(header)}")
        if not features:
            raise DataError(f"{path}: no feature column left besides the target")
        if set(targets) & set(features):
            raise BadConfig(f"task 'csv': column {sorted(set(targets) & set(features))[0]!r} is both a target and a "
                            "feature")
        column = {name: i for i, name in enumerate(header)}
        x = _numbers(path, rows, lines, [column[f] for f in features], features)
        kind = c.kind if c.kind != "auto" else _inferred_kind(path, [r[column[targets[0]]] for r in rows], lines,
                                                              targets[0])
        if kind == "classification":
            if len(targets) > 1:
                raise BadConfig(f"task 'csv': a classification target is one column; got {c.target!r}")
            y, classes = _labels(path, [r[column[targets[0]]] for r in rows], lines, targets[0])
        else:
            y, classes = _numbers(path, rows, lines, [column[t] for t in targets], targets), ()
        test_rows = None
        if split_column:
            test_rows = _split_column(path, [r[column[split_column]] for r in rows], lines, split_column)
        ood = {name: _ood_table(name, other, features, c.delimiter) for name, other in _ood_files(c.ood)}
        return Table(x, y, kind, classes, test_rows, ood)


@tasks.register("npz")
class NpzTask(OwnDataTask):
    """Your .npz arrays: --set path=data.npz with X [N, ...], y [N] (optional X_test, y_test, X_ood_<name>)."""

    def _read(self, path: str) -> Table:
        arrays = _npz_arrays(path)
        for name in ("X", "y"):
            if name not in arrays:
                raise DataError(f"{path}: no array {name!r}; it holds: {', '.join(sorted(arrays)) or 'nothing'}")
        unknown = sorted(set(arrays) - {"X", "y", "X_test", "y_test"} - {k for k in arrays if k.startswith("X_ood_")})
        if unknown:
            raise DataError(f"{path}: unexpected array {unknown[0]!r}; expected X, y, X_test, y_test, X_ood_<name>")
        if ("X_test" in arrays) != ("y_test" in arrays):
            raise DataError(f"{path}: X_test and y_test come together")
        xs, ys = [arrays["X"]], [arrays["y"]]
        if "X_test" in arrays:
            xs.append(arrays["X_test"])
            ys.append(arrays["y_test"])
        for (xname, x), (yname, y) in zip(zip(("X", "X_test"), xs), zip(("y", "y_test"), ys)):
            _check_inputs(path, xname, x, arrays["X"].shape[1:])
            if y.ndim not in (1, 2) or len(y) != len(x):
                raise DataError(f"{path}: array {yname!r} must be [N] or [N, D] with N = {len(x)} rows of {xname!r}; "
                                f"got shape {list(y.shape)}")
        x = np.concatenate(xs).astype(np.float64)
        raw = np.concatenate(ys)
        if raw.dtype.kind not in "biufU":
            raise DataError(f"{path}: array 'y' must hold numbers, booleans or text; got dtype {raw.dtype}")
        kind = self.config.kind if self.config.kind != "auto" else (
            "regression" if raw.dtype.kind == "f" else "classification")
        if kind == "classification":
            if raw.ndim != 1:
                raise DataError(f"{path}: class labels 'y' must be [N]; got shape {list(raw.shape)}")
            if raw.dtype.kind == "f" and not np.isfinite(raw).all():
                raise DataError(f"{path}: array 'y', row {int(np.flatnonzero(~np.isfinite(raw))[0])}: not a finite label")
            values, y = np.unique(raw, return_inverse=True)
            classes = tuple(str(v) for v in values)
            if len(classes) < 2:
                raise DataError(f"{path}: array 'y' holds one class only ({classes[0]!r})")
        else:
            if raw.dtype.kind not in "iuf":
                raise DataError(f"{path}: regression targets 'y' must be numbers; got dtype {raw.dtype}")
            y = raw.astype(np.float64).reshape(len(raw), -1)
            bad = np.flatnonzero(~np.isfinite(y).all(1))
            if bad.size:
                raise DataError(f"{path}: array 'y', row {int(bad[0])}: not finite")
            classes = ()
        test_rows = None
        if "X_test" in arrays:
            test_rows = np.arange(len(x)) >= len(arrays["X"])
        ood = {}
        for name in sorted(k for k in arrays if k.startswith("X_ood_")):
            if not OOD_NAME.fullmatch(name[len("X_ood_"):]):
                raise DataError(f"{path}: array {name!r}: an OOD set name must be lower-case letters, digits, - or _")
            _check_inputs(path, name, arrays[name], arrays["X"].shape[1:], allow_empty=False)
            ood[name[len("X_ood_"):]] = arrays[name].astype(np.float64)
        return Table(x, y.astype(np.int64) if kind == "classification" else y, kind, classes, test_rows, ood)


@dataclass(frozen=True)
class ArrayTask:
    """A task made from arrays in memory (`from_arrays`): the `npz` task on a file named by the arrays' content.

    Pass it where the Python API takes a task name (`uqbench.run`, `uqbench.compare`).
    """

    path: Path
    kind: str = "auto"
    name: str = "npz"

    def settings(self) -> dict[str, str]:
        """The task settings that select these arrays."""
        return {"path": str(self.path), "kind": self.kind}


def from_arrays(X: Any, y: Any, *, X_test: Any = None, y_test: Any = None, ood: dict[str, Any] | None = None,
                kind: str = "auto", directory: str | Path | None = None) -> ArrayTask:
    """A task from arrays (numpy, torch or nested lists), checked now as an `npz` file would be.

    Args:
        X: training inputs [N, ...] (all rows, when no X_test is given: a random test_fraction is held out per seed).
        y: targets [N] (integers, booleans or text: classes; floats: regression) or [N, D] (regression).
        X_test, y_test: a fixed test set (both or neither).
        ood: OOD set name -> inputs [M, ...] of X's shape.
        kind: 'auto', 'regression' or 'classification'.
        directory: where the arrays are written as `arrays-<content hash>.npz` (default: uqbench's data cache,
            `$UQBENCH_DATA` or the user cache directory). The same arrays give the same file, hence the same runs.

    Raises:
        DataError: arrays an `npz` file could not hold (the message names the array and row).
        BadConfig: an unknown kind or OOD set name.
    """
    from uqbench.datasets import data_root
    from uqbench.files import subdir, write_atomic

    if kind not in ("auto", "regression", "classification"):
        raise BadConfig(f"from_arrays: kind must be 'auto', 'regression' or 'classification'; got {kind!r}")
    arrays = {"X": X, "y": y}
    if X_test is not None or y_test is not None:
        arrays.update(X_test=X_test, y_test=y_test)
    if ood is not None and not isinstance(ood, dict):
        raise BadConfig(f"from_arrays: ood must be a dict of OOD set name -> inputs; got {type(ood).__name__}")
    if directory is not None and not isinstance(directory, (str, Path)):
        raise BadConfig(f"from_arrays: directory must be a str or Path; got {directory!r}")
    for name, inputs in (ood or {}).items():
        if not isinstance(name, str) or not OOD_NAME.fullmatch(name):
            raise BadConfig(f"from_arrays: OOD set name {name!r} must be lower-case letters, digits, - or _")
        arrays[f"X_ood_{name}"] = inputs
    plain = {name: _plain_array(name, a) for name, a in arrays.items()}
    digest = hashlib.sha256()
    for name, a in sorted(plain.items()):
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    root = Path(directory) if directory is not None else data_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = subdir(root, "arrays") / f"arrays-{digest.hexdigest()[:16]}.npz"
        if not path.is_file():
            buffer = io.BytesIO()
            np.savez(buffer, **plain)
            write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise DataError(f"from_arrays: cannot write the arrays under {str(root)!r} ({exc.strerror or exc})") from None
    task = ArrayTask(path, kind)
    NpzTask(OwnDataConfig(path=str(path), kind=kind)).prepare([0])  # the file's checks, now
    return task


def _plain_array(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, say
        raise DataError(f"from_arrays: {name} is not an array ({' '.join(str(exc).split())[:120]})") from None
    if a.dtype.kind not in "biufU":
        raise DataError(f"from_arrays: {name} must hold numbers, booleans or text; got dtype {a.dtype}")
    if a.ndim == 0 or len(a) == 0:
        raise DataError(f"from_arrays: {name} has no rows (shape {list(a.shape)})")
    return a


# -- CSV ----------------------------------------------------------------------------------------------------
def _text_of(path: str) -> str:
    """A text file's contents; DataError for a missing, binary, non-UTF-8 or oversized one."""
    data = _bytes_of(path, "data file")
    if b"\x00" in data[:65536]:
        raise DataError(f"{path}: a binary file, not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text (line {line}, byte {exc.start})") from None


def _csv_rows(path: str, delimiter: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, the file line each row starts on); blank lines are skipped."""
    reader = csv.reader(io.StringIO(_text_of(path), newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header or header == [""]:
            raise DataError(f"{path}: empty (a header line of column names comes first)")
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise DataError(f"{path}: column {duplicated[0]!r} appears twice in the header")
        if "" in header:
            raise DataError(f"{path}: column {header.index('') + 1} of the header has no name")
        rows, lines = [], []
        start = reader.line_num + 1
        for row in reader:
            if row and any(cell.strip() for cell in row):
                if len(row) != len(header):
                    raise DataError(f"{path}: line {start}: {len(row)} fields; the header has {len(header)}")
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return header, rows, lines


def _numbers(path: str, rows: list[list[str]], lines: list[int], columns: list[int], names: list[str]) -> np.ndarray:
    """The cells of these columns as finite floats [N, len(columns)]; DataError naming the column and line."""
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    for j, (col, name) in enumerate(zip(columns, names)):
        for i, row in enumerate(rows):
            text = row[col].strip()
            try:
                value = float(text)
            except ValueError:
                what = "empty" if not text else f"{text[:40]!r} is not a number"
                raise DataError(f"{path}: column {name!r}, line {lines[i]}: {what}") from None
            if not math.isfinite(value):
                raise DataError(f"{path}: column {name!r}, line {lines[i]}: {text!r} is not finite")
            out[i, j] = value
    return out


def _inferred_kind(path: str, values: list[str], lines: list[int], name: str) -> str:
    """'classification' when every value is an integer, or none is a number (text labels); 'regression' when every
    value is a number; a column of numbers with some text is a bad cell (DataError naming the first), never a
    silent switch to classification."""
    texts = [v.strip() for v in values]
    if all(INTEGER.fullmatch(t) for t in texts):
        return "classification"
    numbers = [_is_float(t) for t in texts]
    if all(numbers):
        return "regression"
    if any(numbers):
        i = numbers.index(False)
        raise DataError(f"{path}: column {name!r}, line {lines[i]}: {texts[i][:40]!r} is not a number, but other "
                        "values are (set kind=classification if the column holds labels)")
    return "classification"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels(path: str, values: list[str], lines: list[int], name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices [N] and the labels in index order (integers numerically, else as text)."""
    texts = [v.strip() for v in values]
    for text, line in zip(texts, lines):
        if not text:
            raise DataError(f"{path}: column {name!r}, line {line}: empty class label")
    if all(INTEGER.fullmatch(t) for t in texts):  # integers are labels by value: '01' and '1' are one class
        texts = [str(int(t)) for t in texts]
        classes = tuple(sorted(set(texts), key=int))
    else:
        classes = tuple(sorted(set(texts)))
    if len(classes) < 2:
        raise DataError(f"{path}: column {name!r} holds one class only ({classes[0]!r})")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[t] for t in texts], dtype=np.int64), classes


def _split_column(path: str, values: list[str], lines: list[int], name: str) -> np.ndarray:
    out = np.empty(len(values), dtype=bool)
    for i, (value, line) in enumerate(zip(values, lines)):
        text = value.strip().lower()
        if text not in SPLIT_VALUES:
            raise DataError(f"{path}: column {name!r}, line {line}: {value[:40]!r} is neither 'train' nor 'test'")
        out[i] = text == "test"
    return out


def _ood_files(text: str) -> list[tuple[str, str]]:
    """'a=x.csv,b=y.csv' -> [('a', 'x.csv'), ('b', 'y.csv')]."""
    out: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, path = (s.strip() for s in item.partition("="))
        if not sep or not name or not path:
            raise BadConfig(f"'ood' of task 'csv': expected NAME=FILE[,NAME=FILE...]; got {item!r}")
        if not OOD_NAME.fullmatch(name):
            raise BadConfig(f"'ood' of task 'csv': OOD set name {name!r} must be lower-case letters, digits, - or _")
        if name in dict(out):
            raise BadConfig(f"'ood' of task 'csv': OOD set {name!r} given twice")
        out.append((name, path))
    return out


def _ood_table(name: str, path: str, features: list[str], delimiter: str) -> np.ndarray:
    header, rows, lines = _csv_rows(path, delimiter)
    missing = [f for f in features if f not in header]
    if missing:
        raise DataError(f"{path}: OOD set {name!r} has no column {missing[0]!r}; the features are: {', '.join(features)}")
    column = {h: i for i, h in enumerate(header)}
    return _numbers(path, rows, lines, [column[f] for f in features], features)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


# -- npz and index files --------------------------------------------------------------------------------------
def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        return npz.parse(_bytes_of(path, "data file"), MAX_FILE_BYTES)
    except npz.NotAnArchive as exc:
        raise DataError(f"{path}: not an .npz file of arrays ({exc})") from None


def _check_inputs(path: str, name: str, x: np.ndarray, shape: tuple[int, ...], allow_empty: bool = True) -> None:
    if x.dtype.kind not in "iufb" or x.ndim < 2 or (x.ndim >= 2 and math.prod(x.shape[1:]) == 0):
        raise DataError(f"{path}: array {name!r} must be numeric inputs [N, features...]; got {x.dtype} of shape "
                        f"{list(x.shape)}")
    if x.shape[1:] != shape:
        raise DataError(f"{path}: array {name!r} has inputs of shape {list(x.shape[1:])}; 'X' has {list(shape)}")
    if not allow_empty and len(x) == 0:
        raise DataError(f"{path}: array {name!r} is empty")
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1).astype(np.float64)).all(1)) if x.size else []
    if len(bad):
        raise DataError(f"{path}: array {name!r}, row {int(bad[0])}: a value that is not finite")


def _index_file(path: str, n: int) -> np.ndarray:
    """0-based data-row numbers, one per line; DataError for text, out-of-range or repeated rows."""
    rows = []
    for line, text in enumerate(_text_of(path).splitlines(), start=1):
        text = text.strip()
        if not text:
            continue
        if not INTEGER.fullmatch(text) or not 0 <= int(text) < n:
            raise DataError(f"{path}: line {line}: {text[:40]!r} is not a row number in 0 .. {n - 1}")
        rows.append(int(text))
    out = np.asarray(rows, dtype=np.int64)
    values, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: row {int(values[counts > 1][0])} is listed twice")
    return out


def _random_parts(table: Table, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows: a random `fraction` held out, drawn from the seed; per class for classification (each
    class keeps at least one training row)."""
    rng = np.random.default_rng([seed, 0x0DA7A])
    n = len(table.x)
    if table.kind != "classification":
        order = rng.permutation(n)
        n_test = min(max(1, round(fraction * n)), n - 1)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    train, test = [], []
    for c in range(len(table.classes)):
        rows = rng.permutation(np.flatnonzero(table.y == c))
        n_test = min(round(fraction * len(rows)), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _regular(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: {'no such file' if not p.exists() else 'not a regular file'} ({what})")
    return p


def _bytes_of(path: str, what: str) -> bytes:
    try:
        p = _regular(path, what)
        if p.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: larger than {MAX_FILE_BYTES} bytes ({what})")
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}) ({what})") from None


def _sha256(path: str, what: str) -> str:
    try:
        return file_sha256(_regular(path, what))
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}) ({what})") from None


__all__ = ["ArrayTask", "CsvConfig", "CsvTask", "NpzTask", "OwnDataConfig", "OwnDataTask", "Table", "from_arrays"]
