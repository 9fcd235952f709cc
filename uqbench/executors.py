"""Executors: where runs go. The driver plans `RunSpec`s, hands them to an executor, and alone writes the store.

A `RunSpec` is plain, picklable data (names and frozen config dataclasses), so the same spec gives the same
record in this process, in a worker process or on a Ray worker — to the last bit when torch runs it on the same
number of threads (`env.threads` in the record): a convolution splits its sums by thread, so its last bits
depend on it. An executor yields 'ok' and 'failed' records, which the driver stores, and 'error' records (the
environment failed: a worker died, data went missing), which it reports and never stores, so the next run of
the same command tries them again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from uqbench.checkpoints import DEFAULT_EVERY
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
    checkpoint_every: int = DEFAULT_EVERY  # epochs between training checkpoints; 0: none

    def with_threads(self, threads: int | None) -> WorkerOptions:
        return dataclasses.replace(self, threads=threads)


def execute_spec(spec: RunSpec, options: WorkerOptions) -> RunRecord:
    """Run one spec in the current process and return its record (the store is not touched)."""
    return _worker_runner(options).execute(spec)


_RUNNERS: dict[WorkerOptions, Any] = {}


def _worker_runner(options: WorkerOptions):
    """One Runner per process and options, so its in-memory artifact cache is shared by the runs it does."""
    if options not in _RUNNERS:
        import torch

        from uqbench.runner import RunOptions, Runner
        from uqbench.tasks import task_files

        task_files.register_env()  # the driver's task files (--include-path), already checked there

        if options.threads is not None:
            torch.set_num_threads(options.threads)
        _RUNNERS[options] = Runner(RunOptions(
            out=Path(options.out), device=options.device, data_dir=Path(options.data_dir) if options.data_dir else None,
            save_predictions=options.save_predictions, force=options.refresh_since is not None,
            refresh_since=options.refresh_since, checkpoint_every=options.checkpoint_every,
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
    """Runs specs in N worker processes, one spec at a time each; a worker limits torch to cores // N threads.

    The share is fixed, not adjusted to how many jobs are running: a run's arithmetic, hence its last bits,
    depends on its thread count (convolutions and large reductions split their work by thread), and a run must
    give the same record every time the same command runs it. Workers are started with 'spawn' (forking a
    process that has used torch's thread pool is not safe), ignore SIGINT (the driver alone handles Ctrl-C) and
    exit by themselves within a second when the driver is gone, however it ended (SIGKILL included).

    The driver knows which spec each worker holds: when a worker dies (killed, out of memory, a crash in native
    code), that run alone comes back as an 'error' record naming the exit code; a new worker takes its place and
    the other runs go on. On Ctrl-C the records that workers have already sent are still handed over, then the
    workers are killed at once.
    """

    def __init__(self, n_jobs: int, options: WorkerOptions):
        self.n_jobs = n_jobs
        self.options = options.with_threads(options.threads or max(1, (os.cpu_count() or 1) // n_jobs))

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]:
        from multiprocessing.connection import wait

        queue, busy, idle = list(reversed(specs)), {}, []  # busy: worker -> the spec it runs
        try:
            while queue or busy:
                while queue and len(busy) < self.n_jobs:
                    worker = idle.pop() if idle else _Worker(self.options)
                    spec = queue.pop()
                    worker.send(spec)
                    busy[worker] = spec
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in [w for w in busy if w.done()]:
                    spec = busy.pop(worker)
                    record = worker.receive()
                    if record is None:  # it died: only its run is lost; the others go on
                        yield error_record(spec, WorkerDied(worker.process.exitcode))
                    else:
                        idle.append(worker)
                        yield record
        except KeyboardInterrupt:
            for worker in [w for w in busy if w.done()]:  # finished while Ctrl-C was pressed: keep them
                record = worker.receive()
                if record is not None:
                    yield record
            raise
        finally:
            _Worker.stop_all([*busy, *idle])


class WorkerDied(RuntimeError):
    """A worker process ended while it ran a spec."""

    def __init__(self, exitcode: int | None):
        import signal

        how = f"killed by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        super().__init__(f"the worker process died while running it ({how}; out of memory?)")


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, options: WorkerOptions):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, options, os.getpid()), daemon=True)
        self.process.start()
        child.close()

    def send(self, spec: RunSpec) -> None:
        self.conn.send(spec)

    def done(self) -> bool:
        """Whether a record is waiting or the process has ended."""
        return self.conn.poll() or not self.process.is_alive()

    def receive(self) -> RunRecord | None:
        """The worker's record, or None when it died (the worker is then gone)."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.process.join(timeout=1)
        return None

    @staticmethod
    def stop_all(workers: list[_Worker]) -> None:
        """Kill the workers now (a running spec is abandoned: its record would not be kept anyway)."""
        for worker in workers:
            worker.process.kill()
        for worker in workers:
            worker.process.join(timeout=2)
            worker.conn.close()


def _serve(conn, options: WorkerOptions, driver: int) -> None:
    """A worker's loop: receive a spec, send back its record, until the pipe closes or the driver is gone."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(driver,), daemon=True).start()
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        try:
            record = execute_spec(spec, options)
        except BaseException as exc:  # a plugin's SystemExit, say: this run fails, the worker goes on
            record = error_record(spec, exc)
        try:
            conn.send(record)
        except OSError:  # the driver is gone (killed): nobody to tell, and nothing to print
            return


def _exit_without(driver: int, every_s: float = 0.5) -> None:
    """End this process when its parent `driver` is gone (re-parented: getppid changes)."""
    import time

    while os.getppid() == driver:
        time.sleep(every_s)
    os._exit(1)


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
            self._init(ray)
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


    def _init(self, ray) -> None:
        """Start a local instance of our own (never joining one already running on this machine, nor a stale
        session's: `address="local"`), or join `address`; any failure is one BadConfig line."""
        from uqbench.errors import BadConfig

        local = self.address is None
        kwargs = {"num_cpus": self.num_cpus} if local else {}
        try:
            ray.init(address="local" if local else self.address, include_dashboard=False, log_to_driver=False,
                     **kwargs)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError, its own errors...
            where = "starting a local Ray instance" if local else f"joining the Ray cluster at {self.address!r}"
            reason = " ".join(str(exc).split())[:300]
            raise BadConfig(f"--executor ray: {where} failed ({type(exc).__name__}: {reason})") from None


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str) -> None:
    """BadConfig unless something listens at a Ray `HOST:PORT` (or `ray://HOST:PORT`): Ray itself retries an
    unreachable address for minutes, and floods the terminal while it does."""
    import socket

    from uqbench.errors import BadConfig

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise BadConfig(f"--address {address!r}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError, OverflowError) as exc:
        raise BadConfig(f"--address {address!r}: no Ray cluster answers there ({exc.strerror or exc})") from None


def error_record(spec: RunSpec, exc: BaseException) -> RunRecord:
    """The record of a run that did not come back from its worker: an 'error', never stored."""
    return RunRecord(
        key=spec.key(), status="error", error={"phase": "worker", "type": type(exc).__name__, "message": str(exc)}
    )
