"""Executors: where jobs run. The driver plans jobs, hands them to an executor, and alone writes the store.

A `Job` is plain, picklable data (names and resolved config dicts), so the same job gives the same record in
this process, in a worker process or on a Ray worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from uqbench import config as cfgmod
from uqbench.results import RunKey, RunRecord


@dataclass(frozen=True)
class Job:
    """One (method, task, seed, split) run with resolved configs."""

    method: str
    method_config: dict[str, Any]
    task: str
    task_config: dict[str, Any]
    seed: int
    split: int
    data_dir: str | None = None

    @property
    def key(self) -> RunKey:
        return RunKey(self.method, self.method_config, self.task, self.task_config, self.seed, self.split)

    def spec(self):
        """Rebuild the method and task objects from names and config dicts."""
        from uqbench.methods import methods
        from uqbench.runner import Spec
        from uqbench.tasks import tasks

        method_cls, task_cls = methods.get(self.method), tasks.get(self.task)
        method = method_cls(cfgmod.build(method_cls.Config, self.method_config, f"method {self.method!r}"))
        task = task_cls(
            cfgmod.build(task_cls.Config, self.task_config, f"task {self.task!r}"),
            data_dir=Path(self.data_dir) if self.data_dir else None,
        )
        return Spec(method, task)

    @classmethod
    def from_spec(cls, spec, seed: int, split: int) -> Job:
        key = spec.key(seed, split)
        data_dir = spec.task.data_dir
        return cls(key.method, key.method_config, key.task, key.task_config, seed, split, str(data_dir) if data_dir else None)


class Executor(Protocol):
    """Runs jobs and yields their records as they finish (in any order); never writes the store."""

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]: ...


class InProcess:
    """Runs jobs one after the other in this process."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        for job in jobs:
            yield self.runner.execute(job.spec(), job.seed, job.split)
