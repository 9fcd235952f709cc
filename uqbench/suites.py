"""Named comparisons: which tasks, which methods, how many seeds and splits (`uqbench compare --suite NAME`).

A suite names its methods as `all` (every registered method, plugins included), a shell pattern, or a list,
minus `exclude`; they are looked up when a comparison is planned, so a new built-in or plugin method appears in
every `all` suite without an edit here. Pairs a method cannot handle (e.g. `vbll --set head=gen` on a
regression task) are left out of the plan and reported. A suite's `settings` are the layer between the tasks'
defaults and the user's config file and `--set` (see `uqbench.spec`).
"""

from __future__ import annotations

from dataclasses import dataclass

from uqbench.registry import Registry

UCI_TASKS = tuple(
    f"uci-{name}" for name in ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht")
)


@dataclass(frozen=True)
class Suite:
    """One named comparison.

    Attributes:
        description: one line for `uqbench compare --help` and the README.
        tasks: task names, in the order their leaderboards are printed.
        methods: 'all', a shell pattern, or method names in the order of the leaderboard rows.
        exclude: method names left out of `methods`.
        seeds: seeds 0 .. seeds-1 for every split.
        splits: splits 0 .. splits-1 of every task (capped at the task's number of splits); None: all of them.
        settings: `[SCOPE.][PART.]KEY=VALUE` settings (the text form of `--set`), below the user's own.
        needs_gpu: planned for a CUDA device; `--device auto` without one is refused.
    """

    description: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...] | str = "all"
    exclude: tuple[str, ...] = ()
    seeds: int = 3
    splits: int | None = 1
    settings: tuple[str, ...] = ()
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
        description="CIFAR-10 and CIFAR-100 with WRN-28-10 in bf16 mixed precision, 3 seeds; needs a GPU",
        tasks=("cifar10", "cifar100"),
        settings=("arch=wrn-28-10", "precision=bf16"),
        needs_gpu=True,
    )
)

__all__ = ["Suite", "suites"]
