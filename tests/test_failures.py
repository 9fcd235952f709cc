"""Failures are not results: an environment failure ('error') is never stored and is tried again; a run's own
failure ('failed') is stored and tried again by default; the same for every executor."""

from __future__ import annotations

import io

import json
import shutil

import pytest
from rich.console import Console
from image_files import write_mnist_like

from uqbench.driver import PlanDisplay, pending, run_specs
from uqbench.executors import InProcess, ProcessPool, RayExecutor, WorkerOptions
from uqbench.results import ResultStore
from uqbench.runner import Runner, RunOptions
from uqbench.spec import Plan, resolve

CHEAP = ["arch=mlp", "width=8", "epochs=1", "n_test=4", "batch_size=16"]


def _executor(name: str, options: RunOptions):
    worker = WorkerOptions(str(options.out), data_dir=str(options.data_dir))
    if name == "in-process":
        return InProcess(Runner(options))
    if name == "pool":
        return ProcessPool(2, worker)
    pytest.importorskip("ray")
    return RayExecutor(worker, num_cpus=2)


@pytest.mark.parametrize("executor", ["in-process", "pool", "ray"])
def test_errors_are_not_stored_and_failures_are_retried(tmp_path, executor):
    """One table for `--jobs 1`, `--jobs 2` and Ray: a file that vanished after planning gives an 'error' record
    that is not stored (the run is tried again once the file is back); a NaN loss gives a stored 'failed' record
    that the next comparison tries again unless retrying is off."""
    root = tmp_path / "data"
    write_mnist_like(root / "fashion-mnist", seed=0, gz=False)
    specs = [resolve("map", "fashion-mnist", CHEAP, data_dir=root),
             resolve("map", "fashion-mnist", [*CHEAP, "lr=1e30"], data_dir=root)]
    the_plan = Plan(specs)
    options = RunOptions(out=tmp_path / "out", data_dir=root)
    store = ResultStore(options.out)
    display = PlanDisplay(Console(file=io.StringIO()), quiet=True)
    test_images = root / "fashion-mnist" / "t10k-images-idx3-ubyte"
    hidden = tmp_path / "hidden"
    shutil.move(test_images, hidden)  # the test set, gone after planning
    try:
        records = {r.id: r for r in run_specs(specs, _executor(executor, options), store, display)}
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    assert {r.status for r in records.values()} == {"error"}
    assert all(r.error["type"] == "DataError" and "t10k-images" in r.error["message"] for r in records.values())
    assert not list(options.out.glob("*.json")) and pending(the_plan, store, options) == specs

    shutil.move(hidden, test_images)
    records = {r.id: r for r in run_specs(specs, InProcess(Runner(options)), store, display)}
    assert [records[s.id].status for s in specs] == ["ok", "failed"]
    assert [store.load(s.id).status for s in specs] == ["ok", "failed"]  # both are results, both stored
    assert pending(the_plan, store, options) == specs[1:]  # the failed run is tried again by default
    assert pending(the_plan, store, RunOptions(out=options.out, retry=False)) == []
    assert pending(the_plan, store, RunOptions(out=options.out, force=True)) == specs


def test_compare_exits_1_when_a_run_failed_and_retries_it_next_time(cli, tmp_path):
    args = ("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", "--epochs", "1",
            "--set", "lr=1e30", "--out", tmp_path)
    first = cli(*args)
    assert first.exit_code == 1 and "failed in fit: NonFiniteLoss" in first.stderr
    again = cli(*args)
    assert again.exit_code == 1 and "1 of 1 planned runs are in" in again.stderr
    assert "(running again: 1 failed); running 1" in again.stderr
    kept = cli(*args, "--no-retry")
    assert kept.exit_code == 0 and "running 0" in kept.stderr
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["status"] == "failed"


def test_force_retrains_the_cached_network_the_run_used(cli, tmp_path):
    args = ("run", "laplace", "--task", "two-moons", "--epochs", "2", "--out", tmp_path, "-q")
    assert cli(*args).exit_code == 0
    (artifact,) = (tmp_path / "artifacts").glob("map-*.pt")
    stamp = artifact.stat().st_mtime_ns
    assert cli(*args).exit_code == 0 and artifact.stat().st_mtime_ns == stamp  # stored: nothing retrained
    assert cli("run", "map", "--task", "two-moons", "--epochs", "2", "--out", tmp_path, "-q").exit_code == 0
    assert artifact.stat().st_mtime_ns == stamp  # map reuses the network laplace trained
    assert cli(*args, "--force").exit_code == 0 and artifact.stat().st_mtime_ns != stamp


def test_missing_data_is_refused_before_any_worker_starts(cli, tmp_path):
    """With `--jobs 2` as with `--jobs 1`: one line, exit 2, nothing stored."""
    for jobs in ("1", "2"):
        result = cli("compare", "--tasks", "uci-yacht", "--methods", "map", "--splits", "1", "--jobs", jobs,
                     "--data-dir", tmp_path / "nothing", "--out", tmp_path / "out")
        assert result.exit_code == 2 and result.stderr.startswith("error: uci-yacht: file not found")
        assert result.stderr.count("\n") == 1
    assert not list((tmp_path / "out").glob("*.json"))


def test_an_older_record_format_is_noted_and_not_reused(cli, tmp_path):
    old = {"schema": "uqbench.run/1", "id": "0123456789abcdef", "key": {"method": "map"}, "status": "ok"}
    (tmp_path / "0123456789abcdef.json").write_text(json.dumps(old))
    result = cli("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "1", "--epochs", "1",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "older record format 'uqbench.run/1', not reused" in result.stderr
    assert (tmp_path / "0123456789abcdef.json").exists()  # kept on disk
