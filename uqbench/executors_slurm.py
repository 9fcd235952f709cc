"""The SLURM executor: every run of a plan is one task of a single SLURM job array, submitted through submitit.

The driver submits the array, polls it, and writes each record as its task finishes (`uqbench.driver`), as it
does for the process pool and Ray. What submitit needs to hand work to the cluster lives in the job folder
`<out>/slurm/<UTC time>-<driver pid>/`, made fresh for each submission: submitit pickles each spec there with
the worker options (the task's input), and the task pickles its record there (the driver's input), beside
SLURM's logs of each task (`<job id>_0_log.out`, `..._log.err`). The driver reads back only the result files of
the jobs it submitted itself, in the folder it made for them: a folder from elsewhere (another store's
`slurm/`, an older submission) is never read as input. The folders are kept for their logs; delete
`<out>/slurm/` whenever no command is running.

A task that ends without a record (cancelled with scancel, killed at the time limit, a node failure, submitit's
own error) gives its run an 'error' record, which the driver reports and never stores, so the next run of the
same command runs it again; a run that fails in its method is a 'failed' record, stored, like everywhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator

from uqbench.errors import BadConfig
from uqbench.executors import WorkerOptions, error_record, execute_spec
from uqbench.results import RunRecord
from uqbench.spec import RunSpec

CLUSTERS = ("slurm", "local")
DEFAULT_TIME_MIN = 60


@dataclass(frozen=True)
class SlurmOptions:
    """The `--slurm-*` options; None means not given (the default applies).

    Attributes:
        partition: SLURM partition (`sbatch --partition`); None leaves it to SLURM.
        time_min: time limit of each run in minutes (`--time`); default 60.
        gpus: GPUs of each run (`--gpus-per-node`; each run is one task on one node); default 1 with
            `--device cuda`, else 0.
        cpus: CPUs of each run (`--cpus-per-task`), also its torch threads unless `--threads` says otherwise;
            default `--threads`, or 1.
        array_parallelism: how many runs of the array SLURM may run at a time (`--array=0-N%P`); default
            submitit's (256).
        cluster: 'slurm' (sbatch, the default) or 'local' (submitit's local executor: every run as a process on
            this machine, all started at once, for trying a setup without SLURM).
    """

    partition: str | None = None
    time_min: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    array_parallelism: int | None = None
    cluster: str | None = None

    FLAGS: ClassVar[dict[str, str]] = {
        "partition": "--slurm-partition", "time_min": "--slurm-time", "gpus": "--slurm-gpus", "cpus": "--slurm-cpus",
        "array_parallelism": "--slurm-array-parallelism", "cluster": "--slurm-cluster"}

    def given(self) -> list[str]:
        """The flags of the options given, in the order of `FLAGS`."""
        return [self.FLAGS[f.name] for f in fields(self) if getattr(self, f.name) is not None]


def check_slurm(options: SlurmOptions) -> None:
    """BadConfig for `--executor slurm` options that cannot run here: values out of range, submitit missing, or
    no `sbatch` on PATH for the 'slurm' cluster (checked before anything is planned or written)."""
    if options.cluster is not None and options.cluster not in CLUSTERS:
        raise BadConfig(f"--slurm-cluster {options.cluster!r}: expected one of {', '.join(CLUSTERS)}")
    for name, least in (("time_min", 1), ("gpus", 0), ("cpus", 1), ("array_parallelism", 1)):
        value = getattr(options, name)
        if value is not None and value < least:
            raise BadConfig(f"{SlurmOptions.FLAGS[name]} {value}: must be at least {least}")
    if options.partition is not None and not options.partition.strip():
        raise BadConfig("--slurm-partition '': expected a partition name")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise BadConfig("--executor slurm needs submitit: pip install 'uqbench[slurm]'") from None
    if (options.cluster or "slurm") == "slurm" and shutil.which("sbatch") is None:
        raise BadConfig("--executor slurm: sbatch was not found on PATH (is this a SLURM login node?); "
                        "--slurm-cluster local runs the job array on this machine")


class SlurmExecutor:
    """Runs every spec as one task of a single SLURM job array (submitit's `map_array`); yields the records as
    the tasks finish, in any order.

    Args:
        options: worker options; torch threads default to the CPUs each run asks for. `--out` must be on a file
            system the nodes share: the job folder, cached networks and saved predictions live there.
        slurm: the `--slurm-*` options.
        poll_s: seconds between two looks at the unfinished tasks (SLURM's own state is asked by submitit,
            which spaces its `sacct` calls out).
        grace_s: how long a task SLURM says has ended may take to show its result file (a shared file system
            can lag) before its run counts as lost; default 15 s on a cluster, 0 for 'local'.

    Ctrl-C (or the driver closing the stream) cancels the tasks not yet finished: one `scancel` of the array.
    """

    def __init__(self, options: WorkerOptions, slurm: SlurmOptions, poll_s: float = 1.0,
                 grace_s: float | None = None):
        self.slurm = slurm
        self.cluster = slurm.cluster or "slurm"
        self.cpus = slurm.cpus or options.threads or 1
        self.options = options.with_threads(options.threads or self.cpus)
        self.gpus = slurm.gpus if slurm.gpus is not None else int(options.device == "cuda")
        self.poll_s = poll_s
        self.grace_s = grace_s if grace_s is not None else (0.0 if self.cluster == "local" else 15.0)
        self.folder: Path | None = None  # the job folder of the last submission

    def parameters(self) -> dict[str, Any]:
        """submitit's parameters for the array (AutoExecutor names; `slurm_` ones apply to SLURM only)."""
        params: dict[str, Any] = {"name": "uqbench", "timeout_min": self.slurm.time_min or DEFAULT_TIME_MIN,
                                  "cpus_per_task": self.cpus, "gpus_per_node": self.gpus,
                                  "nodes": 1, "tasks_per_node": 1}
        if self.slurm.partition is not None:
            params["slurm_partition"] = self.slurm.partition
        if self.slurm.array_parallelism is not None:
            params["slurm_array_parallelism"] = self.slurm.array_parallelism
        return params

    def run(self, specs: list[RunSpec]) -> Iterator[RunRecord]:
        if not specs:
            return
        import submitit

        jobs = self._submit(submitit, specs)
        pending = dict(zip(jobs, specs))
        ended: dict[Any, float] = {}  # job -> when it was first seen ended without a result
        try:
            while pending:
                for job in list(pending):
                    record = self._collect(job, pending[job], ended)
                    if record is not None:
                        yield record
                        del pending[job]
                if pending:
                    time.sleep(self.poll_s)
        finally:
            if pending:
                _cancel(submitit, list(pending))

    def _submit(self, submitit, specs: list[RunSpec]) -> list:
        """Submit the array from a fresh job folder; a refused submission is one BadConfig line."""
        from uqbench.files import subdir

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.folder = subdir(Path(self.options.out), "slurm", f"{stamp}-{os.getpid()}")
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters())
        try:
            return executor.map_array(_run_task, specs, [self.options] * len(specs))
        except Exception as exc:  # sbatch's refusal (a bad partition, a time over the limit) comes as its stderr
            reason = " ".join(str(exc).split())[:300]
            raise BadConfig(f"--executor slurm: submitting the job array failed ({type(exc).__name__}: {reason})"
                            ) from None

    def _collect(self, job, spec: RunSpec, ended: dict[Any, float]) -> RunRecord | None:
        """The run's record once its task has ended: its own, or an 'error' one when the task left none."""
        if not job.done():
            return None
        if job.paths.result_pickle.exists():
            try:
                return job.result()
            except Exception:  # the task raised outside the run (uqbench missing on the node, say)
                return error_record(spec, JobLost(job, "failed outside the run"))
        first = ended.setdefault(job, time.monotonic())
        if time.monotonic() - first < self.grace_s:
            return None
        return error_record(spec, JobLost(job, f"ended without a result (state {job.state}): cancelled, out of "
                                               "time or memory, or its node failed?"))


class JobLost(RuntimeError):
    """A task of the array ended without handing back its run's record."""

    def __init__(self, job, how: str):
        super().__init__(f"job {job.job_id} {how}; see {job.paths.stderr}")


class TimeLimit(BaseException):
    """SLURM's time limit reached the run. A BaseException, so that the runner does not record the run as
    failed: running out of the time asked for says nothing about the method."""

    def __init__(self) -> None:
        super().__init__("the time limit came before the run ended (--slurm-time asks for more minutes)")


def _run_task(spec: RunSpec, options: WorkerOptions) -> RunRecord:
    """One task of the array, on its node: the run's record, or an 'error' record when the time limit hit it.

    submitit's signal handler (installed before this runs) raises UncompletedJobError when a run that cannot be
    checkpointed reaches its time limit, which the runner would store as a failure; it is turned into
    TimeLimit here. On preemption the handler requeues the task and exits (SystemExit), which passes through.
    """
    import signal

    import submitit
    from submitit.core.utils import UncompletedJobError

    number = submitit.JobEnvironment._usr_sig()  # the signal submitit asks SLURM for (USR2 unless configured)
    handler = signal.getsignal(number)

    def on_signal(signum, frame):
        try:
            handler(signum, frame)
        except UncompletedJobError:
            raise TimeLimit() from None

    if callable(handler):
        signal.signal(number, on_signal)
    try:
        return execute_spec(spec, options)
    except TimeLimit as exc:
        return error_record(spec, exc)


def _cancel(submitit, jobs: list) -> None:
    """Cancel unfinished tasks: a SLURM array with one `scancel` of its id, local tasks one by one."""
    arrays = sorted({job.job_id.split("_")[0] for job in jobs if isinstance(job, submitit.SlurmJob)})
    if arrays:
        subprocess.call(["scancel", *arrays], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for job in jobs:
        if not isinstance(job, submitit.SlurmJob):
            job.cancel(check=False)


__all__ = ["SlurmExecutor", "SlurmOptions", "check_slurm"]
