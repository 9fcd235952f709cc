"""The public task conformance check (uqbench.testing.check_task): every built-in task that needs no download
passes it, and a task that breaks one rule fails it with a message naming that rule."""

from __future__ import annotations

import csv
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from uqbench.config import Checked
from uqbench.models import BackboneConfig
from uqbench.tasks import Split, Task, TaskData, tasks
from uqbench.testing import check_task
from uqbench.training import TrainConfig


@pytest.mark.parametrize("name", ["toy-regression", "two-moons", "digits"])
def test_builtin_task_conforms(name: str, torch_state) -> None:
    check_task(tasks.get(name))


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def test_csv_task_conforms_for_both_kinds_and_its_ood_files(tmp_path, torch_state) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).round(3)
    rows = [[a, b, round(2 * a - b, 3), round(a + b, 3), int(a > 0)] for a, b in x]
    data = _write_csv(tmp_path / "data.csv", ["a", "b", "u", "v", "label"], rows)
    far = _write_csv(tmp_path / "far.csv", ["a", "b"], (x[:8] + 6).tolist())
    csv_task = tasks.get("csv")
    check_task(csv_task, csv_task.Config(path=str(data), target="u,v", features="a,b", ood=f"far={far}"))
    check_task(csv_task, csv_task.Config(path=str(data), target="label", features="a,b"))


def test_npz_task_conforms(tmp_path, torch_state) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    path = tmp_path / "arrays.npz"
    np.savez(path, X=x, y=(x[:, 0] > 0).astype(np.int64), X_ood_far=x[:6] + 5)
    npz_task = tasks.get("npz")
    check_task(npz_task, npz_task.Config(path=str(path)))


# -- deliberately broken tasks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineConfig(Checked):
    n: int = 40


class Line(Task):
    """A generated noisy line y = 2x (a task that keeps every rule; the broken ones below change one thing)."""

    kind = "regression"
    Config = LineConfig
    recipe = TrainConfig(epochs=1, batch_size=16)
    backbone = BackboneConfig(width=8, depth=1)
    ood_sets = ("far",)

    def load(self, seed: int, split: int) -> TaskData:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(self.config.n, 1, generator=g) * 2 - 1
        y = 2 * x + 0.1 * torch.randn(self.config.n, 1, generator=g)
        return TaskData("regression", Split(x[:30], y[:30]), Split(x[30:], y[30:]), out_dim=1, ood={"far": x[:5] + 5},
                        target_loc=torch.zeros(1), target_scale=torch.ones(1), data_sha256=self.fingerprint(split))


class Halves(Line):
    """Two classes, left and right of zero."""

    kind = "classification"

    def load(self, seed: int, split: int) -> TaskData:
        data = super().load(seed, split)
        labels = [Split(s.x, (s.x[:, 0] > 0).long()) for s in (data.train, data.test)]
        return dataclasses.replace(data, kind="classification", train=labels[0], test=labels[1], out_dim=2,
                                   target_loc=None, target_scale=None)


def test_the_unbroken_tasks_conform(torch_state) -> None:
    check_task(Line)
    check_task(Halves)


def _loading(base: type[Task], change: Callable[[TaskData], TaskData]) -> type[Task]:
    """`base` whose load passes its data through `change`."""

    class Changed(base):  # type: ignore[misc, valid-type]
        """A task that breaks one rule."""

        def load(self, seed: int, split: int) -> TaskData:
            return change(base.load(self, seed, split))

    return Changed


def _with(**attributes: Any) -> type[Task]:
    return type("Changed", (Line,), {"__doc__": "A task that breaks one rule.", **attributes})


def _train(data: TaskData, **changes: Any) -> TaskData:
    return dataclasses.replace(data, train=dataclasses.replace(data.train, **changes))


@dataclass(frozen=True)
class NoDefault(Checked):
    n: int


@dataclass(frozen=True)
class EpochsInData(Checked):
    epochs: int = 3


@dataclass(frozen=True)
class TupleConfig(Checked):
    sizes: tuple = (1, 2)


class NoLoad(Task):
    """A task without load."""

    kind = "regression"


_calls = itertools.count()

# rule -> (the broken task, the message check_task gives)
BROKEN: dict[str, tuple[type, str]] = {
    "not-a-task": (type("Thing", (), {}), r"fails the registry's checks: .* is not a subclass of uqbench.tasks.base.Task"),
    "kind": (_with(kind="ranking"), r"fails the registry's checks: Changed.kind must be one of"),
    "config-not-checked": (_with(Config=dataclass(frozen=True)(type("Plain", (), {}))), r"extending uqbench.config.Checked"),
    "config-without-default": (_with(Config=NoDefault), r"Config fields must all have defaults; without one: n$"),
    "config-repeats-the-recipe": (_with(Config=EpochsInData), r"repeats recipe or backbone fields: epochs"),
    "recipe-type": (_with(recipe={"epochs": 1}), r"recipe must be a TrainConfig"),
    "abstract": (NoLoad, r"NoLoad leaves abstract load unimplemented"),
    "no-summary": (type("Quiet", (Line,), {"__doc__": None}), r"Quiet has no docstring summary"),
    "config-json": (_with(Config=TupleConfig), r"Config does not round-trip through JSON"),
    "n-splits": (_with(n_splits=lambda self: 0), r"n_splits\(\) must be an int >= 1; got 0"),
    "fingerprint-type": (_with(fingerprint=lambda self, split: {"line": 1}), r"fingerprint\(0\) must be a dict\[str, str\]"),
    "fingerprint-stable": (_with(fingerprint=lambda self, split: {"line": str(next(_calls))}),
                           r"fingerprint\(0\) differs between two calls"),
    "returns-task-data": (_loading(Line, lambda d: (d.train, d.test)), r"load\(0, 0\) must return a TaskData; got tuple"),
    "kind-of-the-data": (_loading(Line, lambda d: dataclasses.replace(d, kind="classification")),
                         r"load\(0, 0\).kind is 'classification' but the task's kind is 'regression'"),
    "float-inputs": (_loading(Line, lambda d: _train(d, x=d.train.x.long())), r"train.x must be a float tensor; got torch.int64"),
    "input-shape": (_loading(Line, lambda d: dataclasses.replace(d, test=Split(d.test.x[:, None], d.test.y))),
                    r"test.x must be \[N, \*in_shape\] = \[N, 1\] with N >= 1; got \[10, 1, 1\]"),
    "finite-inputs": (_loading(Line, lambda d: _train(d, x=d.train.x / 0)), r"train.x has non-finite values"),
    "class-dtype": (_loading(Halves, lambda d: _train(d, y=d.train.y.float())), r"train.y must be class indices \[N\] = \[30\] int64"),
    "class-range": (_loading(Halves, lambda d: _train(d, y=d.train.y + 1)), r"train.y must lie in \[0, out_dim\) = \[0, 2\); got 1..2"),
    "regression-target-shape": (_loading(Line, lambda d: _train(d, y=d.train.y[:, 0])), r"train.y must be standardised targets \[N, D\]"),
    "out-dim": (_loading(Line, lambda d: dataclasses.replace(d, out_dim=2)), r"train.y has D = 1 targets but out_dim is 2"),
    "target-scale-present": (_loading(Line, lambda d: dataclasses.replace(d, target_scale=None)),
                             r"target_scale must be a float tensor \[D\] = \[1\] for regression; got NoneType"),
    "target-scale-positive": (_loading(Line, lambda d: dataclasses.replace(d, target_scale=torch.zeros(1))),
                              r"target_scale must be > 0"),
    "target-loc-finite": (_loading(Line, lambda d: dataclasses.replace(d, target_loc=torch.full((1,), float("nan")))),
                          r"target_loc has non-finite values"),
    "ood-present": (_loading(Line, lambda d: dataclasses.replace(d, ood={})), r"ood lacks the OOD set 'far' that the task's ood_sets names"),
    "ood-shape": (_loading(Line, lambda d: dataclasses.replace(d, ood={"far": torch.ones(5, 2)})),
                  r"ood\['far'\] must be \[N, \*in_shape\] = \[N, 1\] with N >= 1; got \[5, 2\]"),
    "data-sha256": (_loading(Line, lambda d: dataclasses.replace(d, data_sha256={})), r"data_sha256 must equal fingerprint\(0\)"),
    "pure-load": (_loading(Line, lambda d: _train(d, x=d.train.x + torch.rand(1))),
                  r"load\(0, 0\) is not a pure function of \(config, seed, split\): two calls differ in train"),
    "holdout-sizes": (_with(load_holdout=lambda self, seed, split, holdout: dataclasses.replace(self.load(seed, split), ood={})),
                      r"must cut the 30 training rows into 24 kept and 6 held out; got 30 and 10"),
    "holdout-no-ood": (_with(load_holdout=lambda self, seed, split, holdout: self.load(seed, split)),
                       r"load_holdout\(0, 0, Holdout\(\)\) must have no validation and no OOD sets"),
    "holdout-rows": (_with(load_holdout=lambda self, seed, split, holdout: _reversed(Line.load_holdout(self, seed, split, holdout))),
                     r"train and test must be the kept and held-out training rows \(x differs\)"),
    "end-to-end": (_loading(Line, lambda d: dataclasses.replace(d, train_transform=lambda x, g: x[:, :0])),
                   r"one epoch of 'map' on Changed fails: RuntimeError"),
}


def _reversed(data: TaskData) -> TaskData:
    """The held-out rows swapped with the last kept ones: the right sizes, the wrong rows."""
    x = torch.cat([data.train.x, data.test.x]).flip(0)
    y = torch.cat([data.train.y, data.test.y]).flip(0)
    n = len(data.train)
    return dataclasses.replace(data, train=Split(x[:n], y[:n]), test=Split(x[n:], y[n:]))


@pytest.mark.parametrize("rule", list(BROKEN))
def test_a_task_that_breaks_a_rule_fails_naming_it(rule: str, torch_state) -> None:
    task_cls, message = BROKEN[rule]
    with pytest.raises(AssertionError, match=message):
        check_task(task_cls)

