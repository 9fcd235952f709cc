"""The Python API: `uqbench.run`, `uqbench.compare`, `uqbench.tasks.from_arrays`, `uqbench.evaluate` — the same
plans, runs and store as the command line, and arguments of the wrong type refused before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import uqbench
from uqbench.api import BadArgument
from uqbench.datasets import file_sha256
from uqbench.errors import BadConfig, DataError, UserError

WRONG = {
    "seeds float": ({"seeds": 2.0}, r"seeds must be int; got 2\.0"),
    "seeds bool": ({"seeds": True}, r"seeds must be int; got True"),
    "split text": ({"split": "0"}, r"split must be int; got '0'"),
    "split bool": ({"split": False}, r"split must be int; got False"),
    "settings None": ({"settings": None}, r"settings must be a list of 'KEY=VALUE' texts or a mapping; got None"),
    "settings one text": ({"settings": "epochs=1"}, r"settings must be a list of 'KEY=VALUE' texts or a mapping; got 'epochs=1'"),
    "settings of numbers": ({"settings": [1]}, r"each setting must be a 'KEY=VALUE' text; got 1"),
    "out number": ({"out": 5}, r"out must be str or Path; got 5"),
    "data_dir number": ({"data_dir": 1}, r"data_dir must be str or Path or None; got 1"),
    "config list": ({"config": ["a.toml"]}, r"config must be str or Path or None; got \['a\.toml'\]"),
    "device None": ({"device": None}, r"device must be str; got None"),
    "force text": ({"force": "yes"}, r"force must be bool; got 'yes'"),
}


@pytest.mark.parametrize("case", WRONG, ids=list(WRONG))
def test_an_argument_of_the_wrong_type_is_refused_with_one_message(tmp_path, case):
    arguments, message = WRONG[case]
    arguments = {"out": tmp_path / "out", **arguments}
    with pytest.raises(BadArgument, match=f"^uqbench.run: {message}$") as caught:
        uqbench.run("map", "two-moons", **arguments)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, UserError)
    assert not (tmp_path / "out").exists()


def test_a_name_that_is_not_text_is_refused(tmp_path):
    with pytest.raises(BadArgument, match="^uqbench.run: method must be str; got 3$"):
        uqbench.run(3, "two-moons", out=tmp_path)
    with pytest.raises(BadArgument, match="^uqbench.run: task must be a task name or a task from "
                                          "uqbench.tasks.from_arrays; got 3$"):
        uqbench.run("map", 3, out=tmp_path)


def test_settings_may_be_any_iterable_of_texts(tmp_path, torch_state):
    records = uqbench.run("map", "two-moons", settings=(s for s in ["epochs=1"]), out=tmp_path)
    assert [r.status for r in records] == ["ok"] and records[0].key.recipe["epochs"] == 1


def _moons(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(n, noise=0.1, random_state=seed)


def test_from_arrays_writes_one_file_named_by_the_arrays_content(tmp_path):
    X, y = _moons()
    first = uqbench.tasks.from_arrays(X, y, directory=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = uqbench.tasks.from_arrays(torch.as_tensor(X), list(y), directory=tmp_path)
    other = uqbench.tasks.from_arrays(X[:-1], y[:-1], directory=tmp_path)
    assert first == again and first.path.stat().st_mtime_ns == stamp and other.path != first.path
    assert first.path.parent == tmp_path / "arrays" and first.name == "npz"


BAD_ARRAYS = {
    "object targets": (dict(y=np.array([object()] * 120)), DataError, "from_arrays: y must hold numbers"),
    "short targets": (dict(y=np.zeros(5, dtype=int)), DataError, r"array 'y' must be \[N\] or \[N, D\] with N = 120"),
    "NaN input": (dict(X=np.full((120, 2), np.nan)), DataError, r"array 'X', row 0: a value that is not finite"),
    "one class": (dict(y=np.ones(120, dtype=int)), DataError, r"array 'y' holds one class only \('1'\)"),
    "bad kind": (dict(kind="ordinal"), BadConfig, "kind must be 'auto', 'regression' or 'classification'"),
    "bad OOD name": (dict(ood={"Far Away": np.zeros((3, 2))}), BadConfig, "OOD set name 'Far Away'"),
    "OOD of other width": (dict(ood={"far": np.zeros((3, 5))}), DataError, r"has inputs of shape \[5\]; 'X' has \[2\]"),
    "no rows": (dict(X=np.zeros((0, 2)), y=np.zeros(0)), DataError, r"from_arrays: X has no rows \(shape \[0, 2\]\)"),
    "ragged lists": (dict(X=[[1, 2], [3]], y=[0, 1]), DataError, r"from_arrays: X is not an array"),
    "ood a list": (dict(ood=[np.zeros((3, 2))]), BadConfig, r"ood must be a dict of OOD set name -> inputs; got list"),
    "directory bytes": (dict(directory=b"/tmp"), BadConfig, r"directory must be a str or Path; got b'/tmp'"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS, ids=list(BAD_ARRAYS))
def test_from_arrays_checks_the_arrays_at_once(tmp_path, case):
    X, y = _moons()
    changes, error, message = BAD_ARRAYS[case]
    arguments = {"X": X, "y": y, "directory": tmp_path, **changes}
    with pytest.raises(error, match=message):
        uqbench.tasks.from_arrays(**arguments)


def test_compare_on_arrays_runs_what_the_store_lacks_and_returns_the_leaderboard(tmp_path, torch_state):
    X, y = _moons()
    task = uqbench.tasks.from_arrays(X, y, ood={"far": X + 8}, directory=tmp_path)
    out = tmp_path / "out"
    board = uqbench.compare(task, methods=["map", "mc-dropout"], seeds=2, settings={"epochs": 2}, out=out)
    assert {(r.task, r.method, r.n_runs) for r in board.rows} == {("npz", "map", 2), ("npz", "mc-dropout", 2)}
    assert "ood.far.auroc" in board.columns("npz")
    records = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert len(records) == 4
    key = json.loads(next(iter(records.values())))["key"]
    assert key["task_config"]["path"] == str(task.path) and key["recipe"]["epochs"] == 2
    assert key["data"] == {str(task.path): file_sha256(task.path)}  # the arrays' bytes are in every run's key
    again = uqbench.compare(task, methods=["map", "mc-dropout"], seeds=2, settings={"epochs": 2}, out=out)
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == records  # nothing ran again
    assert again.to_json()["rows"] == board.to_json()["rows"]
    assert board.to_json()["provenance"]["store"] == str(out.resolve())
    (record,) = uqbench.run("map", task, settings=["epochs=2"], out=out)
    assert record.id in {name[:-5] for name in records}


def test_typed_settings_from_a_mapping_scope_like_set(tmp_path, torch_state):
    (record,) = uqbench.run("mc-dropout", "two-moons", settings={"epochs": 1, "mc-dropout.p": 0.2, "n_train": 64},
                            out=tmp_path)
    assert record.key.recipe["epochs"] == 1 and record.key.method_config["p"] == 0.2
    assert record.key.task_config["n_train"] == 64
    with pytest.raises(BadConfig, match=r"settings\['p'\]: 'p' of method 'mc-dropout' must be in \(0, 1\); got 5"):
        uqbench.run("mc-dropout", "two-moons", settings={"p": 5}, out=tmp_path)


def test_compare_refuses_two_array_tasks_and_wrong_types(tmp_path):
    X, y = _moons()
    a, b = (uqbench.tasks.from_arrays(X[:n], y[:n], directory=tmp_path) for n in (100, 110))
    with pytest.raises(BadConfig, match="one task from from_arrays per comparison"):
        uqbench.compare([a, b], out=tmp_path)
    with pytest.raises(BadArgument, match="uqbench.compare: jobs must be int; got '2'"):
        uqbench.compare(a, jobs="2", out=tmp_path)
    with pytest.raises(BadArgument, match="uqbench.compare: each of methods must be a name; got 1"):
        uqbench.compare(a, methods=[1], out=tmp_path)


def test_evaluate_scores_predictions_made_anywhere_as_every_run_is_scored():
    from uqbench.metrics import evaluate as evaluate_all

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50)
    y = rng.integers(0, 3, 50)
    prediction = uqbench.Categorical(torch.as_tensor(probs))
    ood = rng.uniform(size=20)
    ours = uqbench.evaluate(prediction, y, ood_scores={"far": ood})
    score = 1 - torch.as_tensor(probs).max(-1).values
    assert ours == evaluate_all(prediction, torch.as_tensor(y), score, {"far": torch.as_tensor(ood)})
    from sklearn.metrics import accuracy_score, log_loss

    assert ours["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))
    assert ours["nll"] == pytest.approx(log_loss(y, probs, labels=[0, 1, 2]))
    gaussian = uqbench.Gaussian(torch.zeros(50, 1), torch.ones(50, 1))
    metrics = uqbench.evaluate(gaussian, np.zeros((50, 1)))
    assert metrics["rmse"] == 0.0 and metrics["nll"] == pytest.approx(0.5 * np.log(2 * np.pi))


def test_from_arrays_into_a_directory_that_is_a_file_is_one_message(tmp_path):
    X, y = _moons()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="from_arrays: cannot write the arrays under"):
        uqbench.tasks.from_arrays(X, y, directory=tmp_path / "file")


@pytest.mark.parametrize("arguments", [{"methods": []}, {"methods": ""}, {"tasks": []}, {"metrics": []}],
                         ids=["methods []", "methods ''", "tasks []", "metrics []"])
def test_an_empty_selection_is_refused_not_read_as_the_default(tmp_path, arguments):
    arguments = {"tasks": "two-moons", **arguments}
    with pytest.raises(BadArgument, match="is empty; give"):
        uqbench.compare(out=tmp_path, **arguments)


def test_evaluate_refuses_fractional_class_targets_empty_sets_and_other_objects():
    prediction = uqbench.Categorical(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    with pytest.raises(ValueError, match="class targets must be whole numbers"):
        uqbench.evaluate(prediction, [0.5, 0.5])
    with pytest.raises(ValueError, match="no targets"):
        uqbench.evaluate(uqbench.Categorical(torch.zeros(0, 2)), [])
    with pytest.raises(TypeError, match="prediction must be uqbench.Categorical, Gaussian or GaussianMixture"):
        uqbench.evaluate("probs", [0, 1])
