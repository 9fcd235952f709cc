"""Executors: where runs go. The driver plans `RunSpec`s, hands them to an executor, and alone writes the store.

A `RunSpec` is plain, picklable data (names and frozen config dataclasses), so the same spec gives the same
record in this process, in a worker process or on a Ray worker — to the last bit when torch runs it on the same
number of threads (`env.threads` in the record): a convolution splits its sums by thread, so its last bits
depend on it. An executor yields 'ok' and 'failed' records, which the driver stores, and 'error' records (the
environment failed: a worker died, data went missing), which it reports and never stores, so the next run of
the same command tries them again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from uqbench.results import RunRecord
from uqbench.spec import RunSpec


class Executor(Protocol):
    """Runs specs and yields their records as they finish (in any order); never writes the store."""

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]: ...


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker needs to run specs (picklable; nothing here changes a run's result)."""

    out: str
    device: str = "auto"
    data_dir: str | None = None
    save_predictions: bool = False
    threads: int | None = None  # torch threads in the worker; None leaves torch's default
    refresh_since: float | None = None  # retrain artifacts stored before this time (a forced run)

    def with_threads(self, threads: int | None) -> WorkerOptions:
        return WorkerOptions(self.out, self.device, self.data_dir, self.save_predictions, threads, self.refresh_since)


def execute_spec(spec: RunSpec, options: WorkerOptions) -> RunRecord:
    """Run one spec in the current process and return its record (the store is not touched)."""
    return _worker_runner(options).execute(spec)


_RUNNERS: dict[WorkerOptions, Any] = {}


def _worker_runner(options: WorkerOptions):
    """One Runner per process and options, so its in-memory artifact cache is shared by the runs it does."""
    if options not in _RUNNERS:
        import torch

        from uqbench.runner import RunOptions, Runner

        if options.threads is not None:
            torch.set_num_threads(options.threads)
        _RUNNERS[options] = Runner(RunOptions(
            out=Path(options.out), device=options.device, data_dir=Path(options.data_dir) if options.data_dir else None,
            save_predictions=options.save_predictions, force=options.refresh_since is not None,
            refresh_since=options.refresh_since,
        ))
    return _RUNNERS[options]


class InProcess:
    """Runs specs one after the other in this process, with the driver's runner."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]:
        for spec in specs:
            yield self.runner.execute(spec)


class ProcessPool:
    """Runs jobs in N worker processes; each worker limits torch to its share of the cores, cores // N threads.

    The share is fixed, not adjusted to how many jobs are running: a run's arithmetic, hence its last bits,
    depends on its thread count (convolutions and large reductions split their work by thread), and a run must
    give the same record every time the same command runs it. Workers are started with 'spawn' (forking a
    process that has used torch's thread pool is not safe). If a worker dies, the runs that had not finished
    come back as 'error' records with the reason.
    """

    def __init__(self, n_jobs: int, options: WorkerOptions):
        self.n_jobs = n_jobs
        self.options = options.with_threads(options.threads or max(1, (os.cpu_count() or 1) // n_jobs))

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(execute_spec, spec, self.options): spec for spec in specs}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker died (BrokenProcessPool) or could not send the record
                    yield error_record(futures[future], exc)
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
        self.options = options.with_threads(cpus_per_job)
        self.address, self.num_cpus, self.cpus_per_job = address, num_cpus, cpus_per_job

    def resources(self, spec: RunSpec) -> dict[str, float]:
        """What one job asks Ray for: its CPUs, and one GPU when running with --device cuda."""
        return {"num_cpus": self.cpus_per_job, "num_gpus": 1 if self.options.device == "cuda" else 0}

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]:
        try:
            import ray
        except ImportError:
            from uqbench.errors import BadConfig

            raise BadConfig("--executor ray needs Ray: pip install 'uqbench[ray]'") from None
        if not ray.is_initialized():
            kwargs = {"num_cpus": self.num_cpus} if self.address is None else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **kwargs)
        remote = ray.remote(execute_spec)
        pending = {remote.options(**self.resources(spec)).remote(spec, self.options): spec for spec in specs}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died or the task was cancelled
                    yield error_record(spec, exc)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def error_record(spec: RunSpec, exc: BaseException) -> RunRecord:
    """The record of a run that did not come back from its worker: an 'error', never stored."""
    return RunRecord(
        key=spec.key(), status="error", error={"phase": "worker", "type": type(exc).__name__, "message": str(exc)}
    )
