"""Tasks on a user's own files: `csv` and `npz` — kinds, split rules, scaling, OOD files, keys, and bad files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from uqbench.spec import method_names, resolve
from uqbench.tasks import tasks

N = 60


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _table(tmp_path: Path, name: str = "data.csv", n: int = N) -> Path:
    """Columns a, b (features), price (float target), label (text classes), split (train/test)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).round(3)
    rows = [[x[i, 0], x[i, 1], round(float(2 * x[i, 0] - x[i, 1] + 10), 4), ["cat", "dog"][int(x[i, 0] > 0)],
             "test" if i % 4 == 0 else "train"] for i in range(n)]
    return _write_csv(tmp_path / name, ["a", "b", "price", "label", "split"], rows)


def _task(name: str, **settings: object):
    spec = resolve("map", name, [f"{k}={v}" for k, v in settings.items()])
    return spec.make_task(), spec


def test_a_float_target_is_regression_in_standardised_units_with_the_original_scale_kept(tmp_path):
    path = _table(tmp_path)
    task, spec = _task("csv", path=path, target="price", features="a,b")
    data = task.load(0, 0)
    assert task.kind == data.kind == "regression" and data.out_dim == 1
    assert len(data.train) == 48 and len(data.test) == 12  # test_fraction 0.2 of 60 rows
    assert torch.allclose(data.train.x.mean(0), torch.zeros(2), atol=1e-5)  # standardised on the training rows
    assert torch.allclose(data.train.y.mean(), torch.tensor(0.0), atol=1e-5)
    assert abs(float(data.train.y.std(unbiased=False)) - 1) < 1e-4
    original = data.test.y * data.target_scale + data.target_loc
    prices = np.loadtxt(path, delimiter=",", skiprows=1, usecols=2)
    assert np.abs(original.numpy() - prices[None, :]).min(1).max() < 1e-3  # every test target is a file's price
    assert spec.data == {str(path): task.fingerprint(0)[str(path)]} and len(spec.data[str(path)]) == 64


def test_text_or_integer_targets_are_classes_in_sorted_order_and_every_class_is_trained_on(tmp_path):
    path = _table(tmp_path)
    task, _ = _task("csv", path=path, target="label", features="a,b")
    data = task.load(3, 0)
    assert task.kind == "classification" and data.out_dim == 2 and data.info["classes"] == ["cat", "dog"]
    assert set(data.train.y.tolist()) == {0, 1} and data.train.y.dtype == torch.int64
    ints = _write_csv(tmp_path / "ints.csv", ["x", "y"], [[i, [10, 2, 7][i % 3]] for i in range(30)])
    task, _ = _task("csv", path=ints, target="y")
    assert task.kind == "classification" and task.load(0, 0).info["classes"] == ["2", "7", "10"]  # numeric order
    task, _ = _task("csv", path=ints, target="y", kind="regression")
    assert task.kind == "regression"


def test_the_random_split_is_drawn_from_the_seed(tmp_path):
    task, _ = _task("csv", path=_table(tmp_path), target="price", features="a,b")
    first, again, other = task.load(0, 0), task.load(0, 0), task.load(1, 0)
    assert torch.equal(first.test.x, again.test.x) and not torch.equal(first.test.x, other.test.x)


def test_a_split_column_and_index_files_fix_the_split(tmp_path):
    path = _table(tmp_path)
    task, _ = _task("csv", path=path, target="price", split_column="split", features="a,b")
    assert task.n_splits() == 1 and len(task.load(0, 0).test) == 15 and len(task.load(1, 0).test) == 15
    for k in range(3):
        (tmp_path / f"train_{k}.txt").write_text("\n".join(str(i) for i in range(N) if i % 3 != k) + "\n")
        (tmp_path / f"test_{k}.txt").write_text("\n".join(str(i) for i in range(N) if i % 3 == k) + "\n")
    task, spec = _task("csv", path=path, target="price", features="a,b", train_index=tmp_path / "train_{split}.txt",
                       test_index=tmp_path / "test_{split}.txt")
    assert task.n_splits() == 3 and len(task.load(0, 2).test) == 20
    assert set(task.fingerprint(1)) == {str(path), str(tmp_path / "train_1.txt"), str(tmp_path / "test_1.txt")}


def test_ood_sets_come_from_other_files_with_the_feature_columns_and_the_training_scaling(tmp_path):
    path = _table(tmp_path)
    far = _write_csv(tmp_path / "far.csv", ["b", "a"], [[100.0, 100.0]] * 5)
    task, spec = _task("csv", path=path, target="price", features="a,b", ood=f"far={far}")
    data = task.load(0, 0)
    assert task.ood_sets == ("far",) and data.ood["far"].shape == (5, 2) and bool((data.ood["far"] > 10).all())
    assert str(far) in spec.data


def test_npz_arrays_with_a_fixed_test_set_and_ood_arrays(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "data.npz"
    np.savez(path, X=rng.normal(size=(40, 3)), y=rng.integers(0, 3, 40), X_test=rng.normal(size=(10, 3)),
             y_test=rng.integers(0, 3, 10), X_ood_far=rng.normal(size=(7, 3)) + 9)
    task, _ = _task("npz", path=path)
    data = task.load(0, 0)
    assert task.kind == "classification" and task.ood_sets == ("far",) and data.out_dim == 3
    assert (len(data.train), len(data.test), len(data.ood["far"])) == (40, 10, 7)
    np.savez(path, X=rng.normal(size=(40, 3)), y=rng.normal(size=40))
    task, _ = _task("npz", path=path)
    assert task.kind == "regression" and task.load(0, 0).out_dim == 1


def test_the_key_changes_with_the_files_bytes(tmp_path):
    path = _table(tmp_path)
    _, before = _task("csv", path=path, target="price", features="a,b")
    path.write_text(path.read_text().replace("train", "TRAIN", 1))
    _, after = _task("csv", path=path, target="price", features="a,b")
    assert before.id != after.id


def test_every_method_runs_on_a_csv_file_in_one_command(cli, tmp_path, torch_state):
    path = _table(tmp_path)
    result = cli("compare", "--tasks", "csv", "--set", f"path={path}", "--set", "target=label", "--set",
                 "features=a,b", "--epochs", "2", "--seeds", "1", "--out", tmp_path / "out", "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {r["method"] for r in rows} == set(method_names("all"))  # every registered method, both kinds
    assert all(r["n_runs"] == 1 and r["n_failed"] == 0 for r in rows)


def test_list_tasks_says_the_file_decides_kind_and_ood_sets(cli):
    rows = {r["task"]: r for r in json.loads(cli("list", "tasks", "--format", "json").stdout)}
    assert rows["csv"]["kind"] == rows["npz"]["kind"] == rows["csv"]["OOD sets"] == "from the file"


# -- bad files: one line naming the file (and the column and line, or array and row), exit 2 -------------------
def _csv_text(text: str | bytes):
    def make(tmp: Path) -> Path:
        (tmp / "bad.csv").write_bytes(text.encode() if isinstance(text, str) else text)
        return tmp / "bad.csv"
    return make


GOOD_ROWS = "".join(f"{i},{i % 3},{i * 0.5 + 0.25}\n" for i in range(20))
BAD_CSV = {
    "missing file": (lambda tmp: tmp / "nope.csv", ("target=y",), r"{f}: no such file \(data file\)"),
    "a directory": (lambda tmp: tmp, ("target=y",), r"{f}: not a regular file \(data file\)"),
    "binary": (_csv_text(b"\x89PNG\r\n\x1a\n\x00\x00"), ("target=y",), r"{f}: a binary file, not CSV text"),
    "not UTF-8": (_csv_text(b"a,y\n1,\xff\n"), ("target=y",), r"{f}: not UTF-8 text \(line 2, byte 6\)"),
    "empty": (_csv_text(""), ("target=y",), r"{f}: empty \(a header line of column names comes first\)"),
    "header only": (_csv_text("a,y\n"), ("target=y",), r"{f}: no data rows after the header"),
    "duplicate column": (_csv_text("a,a,y\n1,2,3\n"), ("target=y",), r"{f}: column 'a' appears twice in the header"),
    "missing target column": (_csv_text("a,b,y\n" + GOOD_ROWS), ("target=price",),
                              r"{f}: no column 'price'; the header has: a, b, y"),
    "missing feature column": (_csv_text("a,b,y\n" + GOOD_ROWS), ("target=y", "features=a,z"),
                               r"{f}: no column 'z'; the header has: a, b, y"),
    "short row": (_csv_text("a,b,y\n1,2,3\n4,5\n"), ("target=y",), r"{f}: line 3: 2 fields; the header has 3"),
    "text feature": (_csv_text("a,b,y\n1,2,3.5\n4,five,6.5\n"), ("target=y",),
                     r"{f}: column 'b', line 3: 'five' is not a number"),
    "empty feature": (_csv_text("a,b,y\n1,2,3.5\n4,,6.5\n"), ("target=y",), r"{f}: column 'b', line 3: empty"),
    "NaN feature": (_csv_text("a,b,y\n1,2,3.5\n4,nan,6.5\n"), ("target=y",), r"{f}: column 'b', line 3: 'nan' is not finite"),
    "inf target": (_csv_text("a,b,y\n1,2,3.5\n4,1,inf\n"), ("target=y",), r"{f}: column 'y', line 3: 'inf' is not finite"),
    "one class": (_csv_text("a,y\n" + "".join(f"{i},dog\n" for i in range(9))), ("target=y",),
                  r"{f}: column 'y' holds one class only \('dog'\)"),
    "empty label": (_csv_text("a,y\n1,dog\n2,\n3,cat\n"), ("target=y",), r"{f}: column 'y', line 3: empty class label"),
    "too few rows": (_csv_text("a,y\n1,0.5\n2,1.5\n"), ("target=y",),
                     r"{f} \(split 0\): 1 training and 1 test rows; at least 2 and 1 are needed"),
    "constant target": (_csv_text("a,y\n" + "".join(f"{i},2.5\n" for i in range(10))), ("target=y",),
                        r"{f} \(split 0\): target 0 is constant on the training rows"),
    "text target as regression": (_csv_text("a,y\n1,dog\n2,cat\n3,cat\n"), ("target=y", "kind=regression"),
                                  r"{f}: column 'y', line 2: 'dog' is not a number"),
    "bad split value": (_csv_text("a,y,s\n" + "".join(f"{i},{i}.5,{'train' if i else 'val'}\n" for i in range(9))),
                        ("target=y", "split_column=s"), r"{f}: column 's', line 2: 'val' is neither 'train' nor 'test'"),
    "split column with no test row": (_csv_text("a,y,s\n" + "".join(f"{i},{i}.5,train\n" for i in range(9))),
                                      ("target=y", "split_column=s"),
                                      r"{f} \(split 0\): 9 training and 0 test rows; at least 2 and 1 are needed"),
    "a number column with one text cell": (_csv_text("a,y\n" + "".join(f"{i},{i}.5\n" for i in range(9)) + "9,n/a\n"),
                                           ("target=y",), r"{f}: column 'y', line 11: 'n/a' is not a number, but "
                                                          r"other values are \(set kind=classification if .*\)"),
    "a quote left open": (_csv_text('a,y\n1,"2.5\n3,4.5\n'), ("target=y",), r"{f}: line \d+: not valid CSV \(.+\)"),
    "no target given": (_csv_text("a,y\n1,2\n"), (), r"task 'csv' needs its target column: --set target=COLUMN \({f}\)"),
}


@pytest.mark.parametrize("case", BAD_CSV, ids=list(BAD_CSV))
def test_a_bad_csv_file_is_one_line_naming_the_file_column_and_line(cli, tmp_path, case):
    make, settings, message = BAD_CSV[case]
    path = make(tmp_path)
    args = [a for setting in settings for a in ("--set", setting)]
    result = cli("run", "map", "--task", "csv", "--set", f"path={path}", *args, "--epochs", "1", "--out",
                 tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert re.fullmatch("error: " + message.format(f=re.escape(str(path))), result.stderr.strip()), result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def test_no_path_given_names_the_setting(cli, tmp_path):
    result = cli("run", "map", "--task", "npz", "--out", tmp_path)
    assert result.exit_code == 2 and result.stderr == "error: task 'npz' needs its data file: --set path=FILE\n"


def _npz(**arrays):
    def make(tmp: Path) -> Path:
        np.savez(tmp / "bad.npz", **arrays)
        return tmp / "bad.npz"
    return make


X, Y = np.arange(60.0).reshape(20, 3), np.arange(20) % 2
BAD_NPZ = {
    "not an archive": (_csv_text("a,y\n1,2\n"), r"{f}: not an \.npz file of arrays \(not an \.npz \(zip\) archive\)"),
    "object array": (_npz(X=X, y=np.array([{"a": 1}] * 20, dtype=object)),
                     r"{f}: not an \.npz file of arrays \(y\.npy: an array of Python objects \(never unpickled\)\)"),
    "no X": (_npz(y=Y), r"{f}: no array 'X'; it holds: y"),
    "unknown array": (_npz(X=X, y=Y, Z=Y), r"{f}: unexpected array 'Z'; expected X, y, X_test, y_test, X_ood_<name>"),
    "y of other length": (_npz(X=X, y=Y[:5]), r"{f}: array 'y' must be \[N\] or \[N, D\] with N = 20 rows of 'X'; got shape \[5\]"),
    "X of one dimension": (_npz(X=Y.astype(float), y=Y), r"{f}: array 'X' must be numeric inputs \[N, features\.\.\.\]; .*"),
    "NaN input": (_npz(X=np.where(X == 7, np.nan, X), y=Y), r"{f}: array 'X', row 2: a value that is not finite"),
    "one class": (_npz(X=X, y=np.zeros(20, dtype=int)), r"{f}: array 'y' holds one class only \('0'\)"),
    "X_test alone": (_npz(X=X, y=Y, X_test=X), r"{f}: X_test and y_test come together"),
    "OOD of other width": (_npz(X=X, y=Y, X_ood_far=np.ones((4, 2))),
                           r"{f}: array 'X_ood_far' has inputs of shape \[2\]; 'X' has \[3\]"),
    "targets whose squares overflow": (_npz(X=X, y=np.arange(20.0) * 1e300),
                                       r"{f} \(split 0\): targets too large to standardise or to hold in float32 .*"),
    "inputs whose squares overflow": (_npz(X=X * 1e300, y=Y),
                                      r"{f} \(split 0\): inputs too large to standardise or to hold in float32 .*"),
    "no features": (_npz(X=np.zeros((20, 0)), y=Y),
                    r"{f}: array 'X' must be numeric inputs \[N, features\.\.\.\]; got float64 of shape \[20, 0\]"),
    "a test class no training row has": (_npz(X=X, y=Y, X_test=X[:4], y_test=np.array([0, 1, 5, 6])),
                                         r"{f} \(split 0\): the test rows hold class '5', which no training row has"),
    "an OOD name with a dot": (_npz(X=X, y=Y, **{"X_ood_a.b": X}),
                               r"{f}: array 'X_ood_a\.b': an OOD set name must be lower-case letters, digits, - or _"),
    "complex labels": (_npz(X=X, y=Y + 1j), r"{f}: array 'y' must hold numbers, booleans or text; got dtype complex128"),
    "text regression targets": (_npz(X=X, y=np.array(["a"] * 20)), r"{f}: array 'y' holds one class only \('a'\)"),
}


@pytest.mark.parametrize("case", BAD_NPZ, ids=list(BAD_NPZ))
def test_a_bad_npz_file_is_one_line_naming_the_file_array_and_row(cli, tmp_path, case):
    make, message = BAD_NPZ[case]
    path = make(tmp_path)
    result = cli("run", "map", "--task", "npz", "--set", f"path={path}", "--epochs", "1", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert re.fullmatch("error: " + message.format(f=re.escape(str(path))), result.stderr.strip()), result.stderr


def test_index_files_that_are_wrong_are_one_line(cli, tmp_path):
    path = _table(tmp_path)
    base = ("run", "map", "--task", "csv", "--set", f"path={path}", "--set", "target=price", "--set", "features=a,b",
            "--out", tmp_path / "out")
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    cases = {
        "out of range": ("0\n1\n2\n", "3\n600\n", rf"{test}: line 2: '600' is not a row number in 0 \.\. 59"),
        "twice": ("0\n1\n1\n", "3\n", rf"{train}: row 1 is listed twice"),
        "overlap": ("0\n1\n2\n", "2\n3\n", rf"{test}: row 2 is also in {train}"),
        "text": ("0\nx\n", "3\n", rf"{train}: line 2: 'x' is not a row number in 0 \.\. 59"),
    }
    for name, (train_text, test_text, message) in cases.items():
        train.write_text(train_text)
        test.write_text(test_text)
        result = cli(*base, "--set", f"train_index={train}", "--set", f"test_index={test}")
        assert result.exit_code == 2 and re.fullmatch(f"error: {message}", result.stderr.strip()), (name, result.stderr)
    result = cli(*base, "--set", f"train_index={train}")
    assert result.exit_code == 2 and "give both train_index and test_index, or neither" in result.stderr
    assert tasks.get("csv").Config().test_fraction == 0.2


def test_integer_labels_are_classes_by_value(tmp_path):
    path = _write_csv(tmp_path / "labels.csv", ["x", "y"], [[i, ["1", "01", "2"][i % 3]] for i in range(30)])
    task, _ = _task("csv", path=path, target="y")
    data = task.load(0, 0)
    assert data.info["classes"] == ["1", "2"] and data.out_dim == 2
