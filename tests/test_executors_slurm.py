"""The SLURM executor: one job array per plan, the in-process records, lost tasks as errors, the option checks.

The runs themselves go through submitit's local executor (each task a process on this machine). The SLURM side
(the sbatch file, sacct's states, scancel) is tested with stand-in `sbatch`, `srun`, `sacct` and `scancel`
commands on PATH that record how they were called.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console

submitit = pytest.importorskip("submitit")

from uqbench import executors_slurm  # noqa: E402
from uqbench.driver import PlanDisplay, run_specs  # noqa: E402
from uqbench.executors import InProcess, WorkerOptions  # noqa: E402
from uqbench.executors_slurm import SlurmExecutor, SlurmOptions  # noqa: E402
from uqbench.results import ResultStore  # noqa: E402
from uqbench.runner import RunOptions, Runner  # noqa: E402
from uqbench.spec import resolve  # noqa: E402

LOCAL = SlurmOptions(cluster="local")


def _same(records) -> dict:
    return {r.id: (r.status, r.metrics, r.env.get("threads"), (r.error or {}).get("type")) for r in records}


def _display() -> PlanDisplay:
    return PlanDisplay(Console(file=io.StringIO()), quiet=True)


def test_one_local_array_gives_the_in_process_records_and_stores_a_failed_run(tmp_path, monkeypatch):
    specs = [resolve("map", "two-moons", ["epochs=2"]), resolve("map", "toy-regression", ["epochs=2"]),
             resolve("map", "two-moons", ["epochs=2", "lr=1e30"])]  # its loss overflows: a 'failed' run
    submitted = []
    original = submitit.AutoExecutor.map_array
    monkeypatch.setattr(submitit.AutoExecutor, "map_array",
                        lambda self, fn, *args: submitted.append(len(args[0])) or original(self, fn, *args))
    store = ResultStore(tmp_path / "slurm-out")
    executor = SlurmExecutor(WorkerOptions(str(store.root)), LOCAL, poll_s=0.2)
    records = run_specs(specs, executor, store, _display())

    reference = InProcess(Runner(RunOptions(out=tmp_path / "in", threads=1))).run(specs)
    assert _same(records) == _same(reference)
    assert [store.get(spec.id).status for spec in specs] == ["ok", "ok", "failed"]
    assert submitted == [3]  # one job array for the whole plan
    (folder,) = (tmp_path / "slurm-out" / "slurm").iterdir()
    assert folder == executor.folder and len(list(folder.glob("*_submitted.pkl"))) == 3
    assert len(list(folder.glob("*_0_result.pkl"))) == 3


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_a_task_killed_or_out_of_time_is_an_error_and_run_again_next_time(tmp_path):
    """SIGKILL of a task's process (the OOM killer, say) and SLURM's time-limit signal each give their run an
    'error' record that is not stored, so the next command runs it; the run that finished is kept."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc/PID/task/PID/children to find the task processes")
    short = resolve("map", "two-moons", ["epochs=2"])
    long = [resolve("map", "two-moons", ["epochs=100000"], seed=seed) for seed in (1, 2)]
    store = ResultStore(tmp_path)
    # with a 10-minute limit, submitit counts any USR2 as the time limit (it keeps a 10-minute margin)
    executor = SlurmExecutor(WorkerOptions(str(tmp_path)), SlurmOptions(cluster="local", time_min=10), poll_s=0.2)
    stream = executor.run([short, *long])
    first = next(stream)
    assert (first.id, first.status) == (short.id, "ok"), first.error
    store.write(first)
    running = [int(p.name.split("_")[0]) for p in executor.folder.glob("*_submitted.pkl")
               if not (executor.folder / p.name.replace("submitted", "0_result")).exists()]
    assert len(running) == 2
    (killed,), (stopped,) = (_children(pid) for pid in running)
    os.kill(killed, signal.SIGKILL)
    os.kill(stopped, signal.SIGUSR2)  # what SLURM sends before the time limit (submitit asks for USR2)
    rest = {r.id: r for r in stream}
    assert set(rest) == {spec.id for spec in long} and all(r.status == "error" for r in rest.values())
    messages = sorted(r.error["message"] for r in rest.values())
    assert any("ended without a result" in m for m in messages), messages
    assert any(m.startswith("the time limit came before the run ended") for m in messages), messages
    assert {r.error["type"] for r in rest.values()} == {"JobLost", "TimeLimit"}
    assert all(store.get(spec.id) is None for spec in long)  # nothing stored: the next command runs them


@pytest.mark.slow
def test_compare_on_a_local_array_matches_the_local_executor(cli, tmp_path):
    args = ["compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "2", "--epochs", "2", "--threads", "1",
            "--format", "json", "--quiet"]
    on_slurm = cli(*args, "--executor", "slurm", "--slurm-cluster", "local", "--out", tmp_path / "slurm")
    here = cli(*args, "--out", tmp_path / "local")
    assert on_slurm.exit_code == 0 and here.exit_code == 0, on_slurm.stderr
    board = lambda text: {(r["method"], r["task"]): r["metrics"] for r in __import__("json").loads(text)["rows"]}  # noqa: E731
    assert board(on_slurm.stdout) == board(here.stdout)
    again = cli(*args, "--executor", "slurm", "--slurm-cluster", "local", "--out", tmp_path / "slurm")
    assert again.exit_code == 0 and len(list((tmp_path / "slurm" / "slurm").iterdir())) == 1  # nothing to submit


# -- the SLURM side, with stand-in commands ------------------------------------------------------------------

FAKE = {
    "sbatch": 'cp "$1" "$LOG/sbatch.sh"; echo "sbatch $*" >> "$LOG/calls"; echo "Submitted batch job $JOB"',
    "srun": "exit 1",
    "sacct": 'echo "JobID|State|NodeList"; printf "%s\\n" $STATES',
    "scancel": 'echo "scancel $*" >> "$LOG/calls"',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Stand-in SLURM commands on PATH; `set(job, states)` picks the job id sbatch prints and what sacct says."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, body in FAKE.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOG", str(log))

    def set_(job: str, states: list[str]) -> Path:
        monkeypatch.setenv("JOB", job)
        monkeypatch.setenv("STATES", " ".join(states))
        return log

    return set_


def _specs(n: int):
    return [resolve("map", "two-moons", ["epochs=2"], seed=seed) for seed in range(n)]


def test_the_array_asks_slurm_for_the_options_and_lost_tasks_are_errors(tmp_path, fake_slurm):
    log = fake_slurm("4242", ["4242_0|NODE_FAIL|n1", "4242_1|TIMEOUT|n1", "4242_2|CANCELLED|n1"])
    options = SlurmOptions(partition="gpu", time_min=30, gpus=1, cpus=3, array_parallelism=2)
    executor = SlurmExecutor(WorkerOptions(str(tmp_path / "out")), options, poll_s=0.01, grace_s=0)
    records = list(executor.run(_specs(3)))

    assert (log / "calls").read_text().count("sbatch ") == 1
    script = (log / "sbatch.sh").read_text()
    for line in ("--job-name=uqbench", "--array=0-2%2", "--partition=gpu", "--time=30", "--gpus-per-node=1", "--cpus-per-task=3",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in script
    assert executor.options.threads == 3
    assert str(executor.folder).startswith(str(tmp_path / "out" / "slurm"))
    states = sorted(r.error["message"].split("state ")[1].split(")")[0] for r in records)
    assert [r.status for r in records] == ["error"] * 3 and states == ["CANCELLED", "NODE_FAIL", "TIMEOUT"]
    assert all(r.error["phase"] == "worker" and "4242_" in r.error["message"] for r in records)


def test_each_run_asks_for_a_gpu_with_cuda_unless_told():
    assert SlurmExecutor(WorkerOptions("r"), SlurmOptions()).parameters()["gpus_per_node"] == 0
    assert SlurmExecutor(WorkerOptions("r", device="cuda"), SlurmOptions()).parameters()["gpus_per_node"] == 1
    assert SlurmExecutor(WorkerOptions("r", device="cuda"), SlurmOptions(gpus=2)).parameters()["gpus_per_node"] == 2
    threads = SlurmExecutor(WorkerOptions("r", threads=4), SlurmOptions())
    assert threads.cpus == 4 and threads.options.threads == 4


def test_ctrl_c_cancels_the_array_with_one_scancel(tmp_path, fake_slurm, monkeypatch):
    log = fake_slurm("4343", ["4343_0|RUNNING|n1", "4343_1|PENDING|", "4343_2|PENDING|"])

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors_slurm.time, "sleep", interrupt)
    executor = SlurmExecutor(WorkerOptions(str(tmp_path)), SlurmOptions(), poll_s=0.01)
    with pytest.raises(KeyboardInterrupt):
        list(executor.run(_specs(3)))
    assert (log / "calls").read_text().splitlines()[1:] == ["scancel 4343"]


def test_a_refused_submission_is_one_line(tmp_path, fake_slurm):
    fake_slurm("x", [])
    (Path(os.environ["LOG"]).parent / "bin" / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    from uqbench.errors import BadConfig

    executor = SlurmExecutor(WorkerOptions(str(tmp_path)), SlurmOptions(partition="nope"))
    refused = r"^--executor slurm: submitting the job array failed \(.*invalid partition"
    with pytest.raises(BadConfig, match=refused) as info:
        list(executor.run(_specs(2)))
    assert "\n" not in str(info.value)


# -- the options -----------------------------------------------------------------------------------------------

TINY = ("--tasks", "two-moons", "--methods", "map", "--seeds", "1")


@pytest.mark.parametrize("args, message", [
    (("--slurm-partition", "gpu", "--slurm-gpus", "1"), "--slurm-partition, --slurm-gpus: only for --executor slurm"),
    (("--executor", "ray", "--slurm-time", "5"), "--slurm-time: only for --executor slurm"),
    (("--executor", "slurm"), "--executor slurm: sbatch was not found on PATH"),
    (("--executor", "slurm", "--slurm-cluster", "debug"), "--slurm-cluster 'debug': expected one of slurm, local"),
    (("--executor", "slurm", "--slurm-cluster", "local", "--jobs", "2"), "--jobs 2: not for --executor slurm"),
    (("--executor", "slurm", "--slurm-cluster", "local", "--slurm-time", "0"), "--slurm-time 0: must be at least 1"),
    (("--executor", "slurm", "--slurm-cluster", "local", "--slurm-gpus", "-1"), "--slurm-gpus -1: must be at least 0"),
    (("--executor", "slurm", "--slurm-cluster", "local", "--no-run"), "--no-run runs nothing, so --executor"),
])
def test_bad_slurm_options_exit_2_with_one_line_and_write_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    result = cli("compare", *TINY, *args, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_reproduce_checks_the_slurm_options_too(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("reproduce", "gal2016", "--executor", "slurm", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "sbatch was not found on PATH" in result.stderr
    assert not (tmp_path / "out").exists()


def test_slurm_without_submitit_says_which_extra_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` now raises ImportError
    result = cli("compare", *TINY, "--executor", "slurm", "--slurm-cluster", "local", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == "error: --executor slurm needs submitit: pip install 'uqbench[slurm]'\n"
