"""Executors: where jobs run. The driver plans jobs, hands them to an executor, and alone writes the store.

A `Job` is plain, picklable data (names and resolved config dicts), so the same job gives the same record in
this process, in a worker process or on a Ray worker — to the last bit when torch runs it on the same number of
threads (`env.threads` in the record): a convolution splits its sums by thread, so its last bits depend on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from uqbench import config as cfgmod
from uqbench.results import RunKey, RunRecord


@dataclass(frozen=True)
class Job:
    """One run to do: its key (method, task, resolved configs, seed, split) and where the task reads its files."""

    key: RunKey
    data_dir: str | None = None

    def spec(self):
        """Rebuild the method and task objects from the key's names and config dicts."""
        from uqbench.methods import methods
        from uqbench.runner import Spec
        from uqbench.tasks import tasks

        key = self.key
        method_cls, task_cls = methods.get(key.method), tasks.get(key.task)
        method = method_cls(cfgmod.build(method_cls.Config, key.method_config, f"method {key.method!r}"))
        task = task_cls(
            cfgmod.build(task_cls.Config, key.task_config, f"task {key.task!r}"),
            data_dir=Path(self.data_dir) if self.data_dir else None,
        )
        return Spec(method, task)

    def execute(self, runner) -> RunRecord:
        """Run this job with `runner` (a `uqbench.runner.Runner`) and return its record."""
        return runner.execute(self.spec(), self.key.seed, self.key.split)

    @classmethod
    def from_spec(cls, spec, seed: int, split: int) -> Job:
        data_dir = spec.task.data_dir
        return cls(spec.key(seed, split), str(data_dir) if data_dir else None)


class Executor(Protocol):
    """Runs jobs and yields their records as they finish (in any order); never writes the store."""

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]: ...


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker needs to run jobs (picklable; nothing here changes a run's result)."""

    out: str
    device: str = "auto"
    save_predictions: bool = False
    threads: int | None = None  # torch threads in the worker; None leaves torch's default


def execute_job(job: Job, options: WorkerOptions) -> RunRecord:
    """Run one job in the current process and return its record (the store is not touched)."""
    return job.execute(_worker_runner(options))


_RUNNERS: dict[WorkerOptions, Any] = {}


def _worker_runner(options: WorkerOptions):
    """One Runner per process and options, so its in-memory artifact cache is shared by the jobs it runs."""
    if options not in _RUNNERS:
        import torch

        from uqbench.runner import RunOptions, Runner

        if options.threads is not None:
            torch.set_num_threads(options.threads)
        _RUNNERS[options] = Runner(
            RunOptions(out=Path(options.out), device=options.device, save_predictions=options.save_predictions)
        )
    return _RUNNERS[options]


class InProcess:
    """Runs jobs one after the other in this process."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        for job in jobs:
            yield job.execute(self.runner)


class ProcessPool:
    """Runs jobs in N worker processes; each worker limits torch to its share of the cores, cores // N threads.

    The share is fixed, not adjusted to how many jobs are running: a run's arithmetic, hence its last bits,
    depends on its thread count (convolutions and large reductions split their work by thread), and a run must
    give the same record every time the same command runs it. Workers are started with 'spawn' (forking a
    process that has used torch's thread pool is not safe). If a worker dies, the jobs that had not finished
    are recorded as failed with the reason.
    """

    def __init__(self, n_jobs: int, options: WorkerOptions):
        self.n_jobs = n_jobs
        threads = options.threads or max(1, (os.cpu_count() or 1) // n_jobs)
        self.options = WorkerOptions(options.out, options.device, options.save_predictions, threads)

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(execute_job, job, self.options): job for job in jobs}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker died (BrokenProcessPool) or could not send the record
                    yield failed_record(futures[future], "worker", exc)
        finally:  # on Ctrl-C, do not wait for running jobs: their records would be discarded anyway
            pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    """Runs every job as a Ray task; records flow back to the driver.

    Args:
        options: worker options (the results directory must be reachable from the workers for artifacts and
            saved predictions; the records themselves are written by the driver).
        address: None starts a local Ray instance; 'auto' or 'HOST:PORT' joins an existing cluster.
        num_cpus: CPUs of a local instance (ignored when joining a cluster).
        cpus_per_job: CPUs each job asks for.
    """

    def __init__(self, options: WorkerOptions, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_job: int = 1):
        self.options = WorkerOptions(options.out, options.device, options.save_predictions, cpus_per_job)
        self.address, self.num_cpus, self.cpus_per_job = address, num_cpus, cpus_per_job

    def resources(self, job: Job) -> dict[str, float]:
        """What one job asks Ray for: its CPUs, and one GPU when running with --device cuda."""
        return {"num_cpus": self.cpus_per_job, "num_gpus": 1 if self.options.device == "cuda" else 0}

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        try:
            import ray
        except ImportError:
            from uqbench.errors import BadConfig

            raise BadConfig("--executor ray needs Ray: pip install 'uqbench[ray]'") from None
        if not ray.is_initialized():
            kwargs = {"num_cpus": self.num_cpus} if self.address is None else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **kwargs)
        remote = ray.remote(execute_job)
        pending = {remote.options(**self.resources(job)).remote(job, self.options): job for job in jobs}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died or the task was cancelled
                    yield failed_record(job, "worker", exc)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def failed_record(job: Job, phase: str, exc: BaseException) -> RunRecord:
    """The record of a job that did not come back from its worker."""
    return RunRecord(
        key=job.key, status="failed", error={"phase": phase, "type": type(exc).__name__, "message": str(exc)}
    )
