"""Faults while a plan runs: a worker killed mid-plan, the driver interrupted (SIGINT), stopped (SIGTERM) or killed
(SIGKILL), two drivers on one store. Nothing finished is lost, no worker outlives its driver, a re-run completes
the plan, and the exit code says what happened."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from uqbench.driver import PlanDisplay, pending, run_specs
from uqbench.executors import ProcessPool, WorkerOptions
from uqbench.results import ResultStore
from uqbench.runner import RunOptions
from uqbench.spec import Plan, resolve

SEEDS = 6
EPOCHS = 120  # a few seconds a run on this machine


def _compare(out: Path, seeds: int = SEEDS, jobs: int = 2, epochs: int = EPOCHS) -> list[str]:
    return [sys.executable, "-m", "uqbench", "compare", "--tasks", "two-moons", "--methods", "map", "--seeds",
            str(seeds), "--epochs", str(epochs), "--jobs", str(jobs), "--out", str(out), "--quiet"]


def _load_benchmark():
    """benchmarks/ctrl_c_latency.py, whose `children` (live children of a pid, from /proc) this file reuses."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ctrl_c_latency.py"
    spec = importlib.util.spec_from_file_location("ctrl_c_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_children = _load_benchmark().children


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def _start_and_wait_for_a_record(out: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start `compare --jobs 2` and return once it has stored its first record, with its worker processes."""
    driver = subprocess.Popen(_compare(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")):
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no record within 120 s"
        time.sleep(0.1)
    return driver, _children(driver.pid)


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_compare_keeps_what_finished_stops_its_workers_and_resumes(tmp_path, sig, code):
    out = tmp_path / "out"
    driver, workers = _start_and_wait_for_a_record(out)
    assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
    sent = time.monotonic()
    driver.send_signal(sig)
    _, stderr = driver.communicate(timeout=30)
    took = time.monotonic() - sent
    assert driver.returncode == code, stderr
    kept = len(_records(out))
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert line.startswith(f"interrupted: {kept} run(s) finished now and kept in "), line
    assert f", {SEEDS - kept} not run;" in line
    assert "Traceback" not in stderr
    time.sleep(1.5)  # workers end with their driver
    assert not _alive(workers)
    assert took < 10, f"took {took:.1f} s to stop"  # generous: benchmarks/ctrl_c_latency.py measures it
    assert not list(out.glob(".*.tmp"))

    again = subprocess.run(_compare(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(_records(out)) == SEEDS


def test_workers_of_a_killed_driver_exit_by_themselves(tmp_path):
    out = tmp_path / "out"
    driver, workers = _start_and_wait_for_a_record(out)
    driver.kill()
    driver.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(workers), "workers outlived their SIGKILLed driver"
    assert all(r["status"] == "ok" for r in _records(out))  # every stored record is complete
    again = subprocess.run(_compare(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(_records(out)) == SEEDS


def test_a_killed_worker_loses_only_its_run(tmp_path):
    """Kill one worker while it runs: that run comes back as an 'error' (not stored), the rest finish; the next
    comparison runs only the lost one."""
    specs = [resolve("map", "two-moons", [f"epochs={EPOCHS}"], seed=s) for s in range(4)]
    the_plan, options = Plan(specs), RunOptions(out=tmp_path / "out")
    store = ResultStore(options.out)
    pool = ProcessPool(2, WorkerOptions(str(options.out)))

    def kill_one_worker_when_running() -> None:
        import multiprocessing

        while not list(options.out.glob("*.json")):  # one run has finished: the workers are running runs
            time.sleep(0.05)
        os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker_when_running, daemon=True)
    killer.start()
    records = run_specs(specs, pool, store, PlanDisplay(Console(file=io.StringIO()), quiet=True))  # type: ignore[arg-type]
    killer.join(timeout=1)
    statuses = sorted(r.status for r in records)
    assert statuses == ["error", "ok", "ok", "ok"], [(r.status, r.error) for r in records]
    (lost,) = [r for r in records if r.status == "error"]
    assert "died while running it (killed by SIGKILL" in lost.error["message"]
    assert [s.id for s in pending(the_plan, store, options)] == [lost.id]


def test_a_compare_whose_worker_died_exits_1(cli, tmp_path, monkeypatch):
    from uqbench import executors

    def dead(self, specs):
        yield executors.error_record(specs[0], executors.WorkerDied(-9))
        for spec in specs[1:]:
            yield executors.execute_spec(spec, self.options)

    monkeypatch.setattr(executors.ProcessPool, "run", dead)
    result = cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "2", "--epochs", "1",
                 "--jobs", "2", "--out", tmp_path)
    assert result.exit_code == 1
    assert "error (not stored; tried again next time) in worker: WorkerDied: the worker process died" in result.stderr
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_two_compares_on_one_store_give_one_consistent_store(tmp_path):
    out = tmp_path / "out"
    command = _compare(out, seeds=4, jobs=1, epochs=10)
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2))
    for proc in (first, second):
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    records = _records(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    again = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert "4 of 4 planned runs are in" in again.stderr and "running 0" in again.stderr
