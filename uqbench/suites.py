"""Named comparisons: which tasks, which methods, how many seeds and splits (`uqbench compare --suite NAME`).

A suite only names things; the methods and tasks it names are looked up when a comparison is planned, so a
suite may name a method that is not installed, and planning it then fails with `UnknownName`. Pairs a method
cannot handle (e.g. `sngp` on a regression task) are left out of the plan and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uqbench.registry import Registry

ALL_METHODS = ("map", "vbll", "mc-dropout", "ensemble", "sngp", "laplace")
UCI_TASKS = tuple(
    f"uci-{name}" for name in ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht")
)


@dataclass(frozen=True)
class Suite:
    """One named comparison.

    Attributes:
        description: one line for `uqbench compare --help` and the README.
        tasks: task names, in the order their leaderboards are printed.
        methods: method names, in the order of the leaderboard rows.
        seeds: seeds 0 .. seeds-1 for every split.
        splits: splits 0 .. splits-1 of every task (capped at the task's number of splits); None: all of them.
        settings: task name -> `key=value` assignments applied before the user's `--set` (which win).
        needs_gpu: planned for a CUDA device; `--device auto` without one is refused.
    """

    description: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...] = ALL_METHODS
    seeds: int = 3
    splits: int | None = 1
    settings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    needs_gpu: bool = False


suites: Registry[Suite] = Registry("suite")

suites.register("quick")(
    Suite(
        description="toy-regression, two-moons and digits; every method, 3 seeds; minutes on a laptop CPU",
        tasks=("toy-regression", "two-moons", "digits"),
    )
)
suites.register("uci")(
    Suite(
        description="the nine UCI regression data sets, every standard split, one seed per split",
        tasks=UCI_TASKS,
        seeds=1,
        splits=None,
    )
)
suites.register("cifar")(
    Suite(
        description="CIFAR-10 and CIFAR-100 with ResNets, 3 seeds; needs a GPU",
        tasks=("cifar10", "cifar100"),
        needs_gpu=True,
    )
)

__all__ = ["Suite", "suites"]
