"""Per-run hyperparameter search: the grid, the validation part, the choice, the refit and what the record keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uqbench.errors import BadConfig
from uqbench.search import Holdout, Search, best

SEARCH = """
[plan]
methods = ["map"]
tasks = ["toy-regression"]
[set]
lr = 0.01
[search]
metric = "rmse"
validation = "tail"
fraction = 0.25
[search.grid]
epochs = [1, 40]
"""


def test_holdout_rows():
    keep, held = Holdout("tail", 0.2).rows(10, seed=0)
    assert keep.tolist() == list(range(8)) and held.tolist() == [8, 9]
    keep, held = Holdout("random", 0.3).rows(10, seed=1)
    assert sorted([*keep, *held]) == list(range(10)) and len(held) == 3
    assert np.array_equal(Holdout("random", 0.3).rows(10, seed=1)[1], held)  # drawn from the seed
    with pytest.raises(BadConfig, match="'fraction' must be in \\(0, 1\\); got 1.5"):
        Holdout("tail", 1.5)


def test_best_follows_the_metric_direction_and_failed_candidates_lose():
    assert best([0.5, 0.3, None, float("nan")], "nll") == 1
    assert best([0.5, 0.9, None], "accuracy") == 1
    assert best([0.80, 0.99, 0.93], "coverage90") == 2  # the nominal 0.90 is best
    grid = Search("nll", Holdout(), (("method", "p", (0.1, 0.2)), ("recipe", "lr", (1.0, 2.0))))
    assert grid.candidates()[1] == {("method", "p"): 0.1, ("recipe", "lr"): 2.0} and len(grid.candidates()) == 4
    assert Search.from_dict(grid.to_dict()) == grid


def test_search_picks_the_best_validation_score_refits_and_records_every_candidate(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(SEARCH)
    result = cli("run", "--config", path, "--out", tmp_path / "out", "--json", "-q")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    search = record["info"]["search"]
    assert search["grid"] == {"recipe.epochs": [1, 40]} and search["metric"] == "rmse"
    assert (search["n_train"], search["n_validation"]) == (300, 100)
    scores = [c["score"] for c in search["candidates"]]
    assert [c["settings"] for c in search["candidates"]] == [{"recipe.epochs": 1}, {"recipe.epochs": 40}]
    assert scores[1] < scores[0] and search["chosen"] == {"recipe.epochs": 40}
    assert record["key"]["search"] == {"metric": "rmse", "validation": {"rule": "tail", "fraction": 0.25},
                                       "grid": {"recipe.epochs": [1, 40]}}
    # the refit is the chosen setting trained on the whole training split: the same numbers as that plain run
    plain = json.loads(cli("run", "map", "--task", "toy-regression", "--set", "lr=0.01", "--epochs", "40",
                           "--out", tmp_path / "out", "--json", "-q").stdout)[0]
    assert plain["metrics"] == record["metrics"] and plain["id"] != record["id"]


def test_grid_axes_are_scoped_checked_and_typed(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(SEARCH.replace("epochs = [1, 40]", "epochs = [1, 0]"))
    result = cli("run", "--config", path, "--dry-run", "--json")
    assert result.exit_code == 2 and "search.grid.epochs: 'epochs' of the training recipe must be at least 1; got 0" in result.stderr
    path.write_text(SEARCH.replace("epochs = [1, 40]", "epochz = [1, 40]"))
    result = cli("run", "--config", path, "--dry-run", "--json")
    assert result.exit_code == 2 and "search.grid.epochz: no planned run has a key 'epochz'" in result.stderr
    path.write_text(SEARCH.replace('metric = "rmse"', 'metric = "rmsee"'))
    result = cli("run", "--config", path, "--dry-run", "--json")
    assert result.exit_code == 2 and "search.metric: unknown metric 'rmsee'. Did you mean 'rmse'?" in result.stderr
    path.write_text(SEARCH.replace('metric = "rmse"', 'metric = "accuracy"'))
    result = cli("run", "--config", path, "--dry-run", "--json")
    assert result.exit_code == 2 and ("search.metric: task 'toy-regression' (regression) does not report 'accuracy'; "
                                      "it reports: rmse") in result.stderr


def test_a_validation_part_that_leaves_no_rows_is_refused_before_any_run(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(SEARCH.replace("lr = 0.01", "lr = 0.01\nn_train = 3").replace("fraction = 0.25", "fraction = 0.9"))
    result = cli("run", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: {path}: search.fraction: a validation fraction of 0.9 leaves no rows on one side "
                             "of 3 training rows (task 'toy-regression', split 0, seed 0)\n")
    assert not list((tmp_path / "out").glob("*.json"))


def test_compare_gives_every_method_the_grid_it_can_take(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(SEARCH.replace('methods = ["map"]', 'methods = ["map", "mc-dropout"]')
                    + "[search.grid.mc-dropout]\np = [0.05, 0.1]\n")
    keys = {k["key"]["method"]: k["key"]["search"]["grid"]
            for k in json.loads(cli("compare", "--config", path, "--dry-run", "--format", "json").stdout)}
    assert keys == {"map": {"recipe.epochs": [1, 40]}, "mc-dropout": {"method.p": [0.05, 0.1], "recipe.epochs": [1, 40]}}


def test_a_holdout_carved_from_tensors_when_the_task_cannot_restandardise():
    from uqbench.tasks import tasks

    task = tasks.get("two-moons")()
    whole, cut = task.load(0, 0), task.load_holdout(0, 0, Holdout("tail", 0.25))
    assert torch.equal(cut.train.x, whole.train.x[:600]) and torch.equal(cut.test.y, whole.train.y[600:])
    assert cut.val is None and cut.ood == {}
