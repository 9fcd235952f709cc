"""Executors: the same spec gives the same record in-process, in a process pool and on Ray; failures stay local."""

from __future__ import annotations

import pytest

from uqbench.executors import InProcess, ProcessPool, RayExecutor, WorkerOptions
from uqbench.runner import RunOptions, Runner
from uqbench.spec import RunSpec, resolve


METHODS = ("map", "vbll", "mc-dropout", "ensemble", "sngp", "laplace")


def _jobs(*extra: str) -> list[RunSpec]:
    """Every built-in method on a classification and a regression task (MLPs), and map on a second seed."""
    return [resolve(method, task, ["epochs=3", *extra], seed=0) for task in ("two-moons", "toy-regression")
            for method in METHODS] + [resolve("map", "two-moons", ["epochs=3", *extra], seed=1)]


def _metrics(records) -> dict[str, dict]:
    return {r.id: (r.status, r.metrics) for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    return _metrics(InProcess(Runner(RunOptions(out=out))).run(_jobs()))


def test_spec_round_trips_through_its_key():
    spec = _jobs("lr=0.01")[0]
    assert RunSpec.from_key(spec.key()) == spec


def test_process_pool_gives_bit_identical_records(reference, tmp_path):
    records = list(ProcessPool(2, WorkerOptions(str(tmp_path))).run(_jobs()))
    assert _metrics(records) == reference
    assert all(status == "ok" for status, _ in reference.values())


def test_every_method_gives_the_same_record_on_one_and_two_threads(reference, tmp_path):
    """A run's record does not depend on torch's thread count for the MLP tasks: each method's result is the
    same to the last bit in a worker on 1 thread and on 2 (SNGP's random-feature QR runs on one thread)."""
    one = _metrics(ProcessPool(1, WorkerOptions(str(tmp_path / "one"), threads=1)).run(_jobs()))
    two = _metrics(ProcessPool(1, WorkerOptions(str(tmp_path / "two"), threads=2)).run(_jobs()))
    assert one == two == reference


def test_a_convolutional_run_repeats_bit_for_bit_at_the_pools_thread_count(tmp_path, torch_state):
    """Convolutions split their sums by thread, so a digits run is compared at the pool workers' fixed share
    (2 workers on 2 cores: 1 thread), which is also what its record says."""
    import os

    import torch

    jobs = [resolve("map", "digits", ["epochs=2"])]
    threads = max(1, (os.cpu_count() or 1) // 2)
    torch.set_num_threads(threads)
    reference = _metrics(InProcess(Runner(RunOptions(out=tmp_path / "in"))).run(jobs))
    records = list(ProcessPool(2, WorkerOptions(str(tmp_path / "pool"))).run(jobs))
    assert _metrics(records) == reference
    assert records[0].env["threads"] == threads


def test_ray_gives_bit_identical_records(reference, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        records = list(RayExecutor(WorkerOptions(str(tmp_path)), num_cpus=2).run(_jobs()))
    finally:
        ray.shutdown()
    assert _metrics(records) == reference


def test_ray_asks_for_a_gpu_only_with_cuda():
    job = _jobs()[0]
    assert RayExecutor(WorkerOptions("r")).resources(job) == {"num_cpus": 1, "num_gpus": 0}
    assert RayExecutor(WorkerOptions("r", device="cuda"), cpus_per_job=4).resources(job) == {"num_cpus": 4, "num_gpus": 1}


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    jobs = _jobs()[:1] + [resolve("map", "two-moons", ["epochs=3", "lr=1e30"])]
    records = {r.id: r for r in ProcessPool(2, WorkerOptions(str(tmp_path))).run(jobs)}
    assert records[jobs[0].id].status == "ok"
    failed = records[jobs[1].id]
    assert failed.status == "failed" and failed.error["type"] == "NonFiniteLoss"


def test_compare_with_two_workers_matches_one_and_resumes_after_a_kill(tmp_path):
    """`compare --jobs 2` gives the records `--jobs 1` gives; SIGINT keeps finished runs and a re-run does the rest."""
    import json
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "uqbench", "compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "4",
            "--epochs", "25", "--quiet", "--format", "json"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--jobs", "2", "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list(killed.glob("*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) in (0, 130)
    before = {p.name: p.stat().st_mtime_ns for p in killed.glob("*.json")}
    assert before, "no run finished before the interrupt"
    resumed = subprocess.run([*args, "--jobs", "2", "--out", str(killed)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in killed.glob("*.json") if p.name in before} == before
    serial = subprocess.run([*args, "--jobs", "1", "--out", str(tmp_path / "serial")], capture_output=True, text=True, timeout=600)
    board = lambda text: {(r["method"], r["task"]): r["metrics"] for r in json.loads(text)["rows"]}  # noqa: E731
    assert board(resumed.stdout) == board(serial.stdout)
    assert len(list(killed.glob("*.json"))) == 4


def test_a_local_ray_run_starts_its_own_instance_beside_a_running_one(tmp_path, monkeypatch):
    """`--executor ray` without `--address` never joins (or trips over) a Ray instance already running here."""
    import os
    import shutil
    import signal
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    ray = pytest.importorskip("ray")
    if shutil.which("ray") is None:
        pytest.skip("the ray command is not installed")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    short = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # what made ray.init join it (and refuse num_cpus)
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                             "--include-dashboard=false"],
                            env={**os.environ, "RAY_TMPDIR": str(short)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(short.glob("**/session_latest")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert head.poll() is None, "ray start failed"
        records = list(RayExecutor(WorkerOptions(str(tmp_path / "out")), num_cpus=1).run(_jobs()[:1]))
    finally:
        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(short, ignore_errors=True)
    assert [r.status for r in records] == ["ok"]


def test_a_ray_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from uqbench.errors import BadConfig

    def refuse(**kwargs):
        raise RuntimeError("Failed to start the GCS server.\nSee the log.")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(BadConfig, match=r"^--executor ray: starting a local Ray instance failed \(RuntimeError: "
                                        r"Failed to start the GCS server\. See the log\.\)$"):
        list(RayExecutor(WorkerOptions(str(tmp_path))).run(_jobs()[:1]))
