"""Executors: where jobs run. The driver plans jobs, hands them to an executor, and alone writes the store.

A `Job` is plain, picklable data (names and resolved config dicts), so the same job gives the same record in
this process, in a worker process or on a Ray worker.
"""

from __future__ import annotations

import contextlib
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
    if _CORE_SHARE is None:
        return job.execute(_worker_runner(options))
    with _CORE_SHARE.running_job():
        return job.execute(_worker_runner(options))


class CoreShare:
    """Pool workers' share of the machine: a job gets cores // (jobs running now) torch threads.

    While every worker is busy each job runs on its own core; when workers fall idle (the tail of a plan, or
    one long job left), the jobs still running take the idle cores through torch's intra-op threads. It is the
    worker's training progress: the loop reports at the start of every fit and after every epoch, which is
    where the share is re-read.
    """

    def __init__(self, running: Any, cores: int):
        self.running = running  # multiprocessing.Value('i') shared by the pool's workers
        self.cores = cores

    @contextlib.contextmanager
    def running_job(self) -> Iterator[None]:
        with self.running.get_lock():
            self.running.value += 1
        try:
            self.rebalance()
            yield
        finally:
            with self.running.get_lock():
                self.running.value -= 1

    def rebalance(self) -> None:
        import torch

        threads = max(1, self.cores // max(1, self.running.value))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def start(self, description: str, total: int) -> None:
        self.rebalance()

    def advance(self, loss: float) -> None:
        self.rebalance()

    def stop(self) -> None:
        pass


_CORE_SHARE: CoreShare | None = None  # set in pool workers that share cores (see ProcessPool)


def _init_pool_worker(running: Any, cores: int) -> None:
    global _CORE_SHARE
    _CORE_SHARE = CoreShare(running, cores)


_RUNNERS: dict[WorkerOptions, Any] = {}


def _worker_runner(options: WorkerOptions):
    """One Runner per process and options, so its in-memory artifact cache is shared by the jobs it runs."""
    if options not in _RUNNERS:
        import torch

        from uqbench.runner import RunOptions, Runner

        if options.threads is not None:
            torch.set_num_threads(options.threads)
        run_options = RunOptions(out=Path(options.out), device=options.device, save_predictions=options.save_predictions)
        if _CORE_SHARE is not None and options.threads is None:
            run_options.progress = _CORE_SHARE
        _RUNNERS[options] = Runner(run_options)
    return _RUNNERS[options]


class InProcess:
    """Runs jobs one after the other in this process."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        for job in jobs:
            yield job.execute(self.runner)


class ProcessPool:
    """Runs jobs in N worker processes that share the machine's cores (see `CoreShare`).

    Workers are started with 'spawn' (forking a process that has used torch's thread pool is not safe). If a
    worker dies, the jobs that had not finished are recorded as failed with the reason. `options.threads`
    fixes every worker's torch threads instead of sharing.
    """

    def __init__(self, n_jobs: int, options: WorkerOptions, cores: int | None = None):
        self.n_jobs = n_jobs
        self.options = options
        self.cores = cores or os.cpu_count() or 1

    def run(self, jobs: list[Job]) -> Iterator[RunRecord]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=context, initializer=_init_pool_worker,
                                   initargs=(context.Value("i", 0), self.cores))
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
