"""Executors: the same job gives the same record in-process, in a process pool and on Ray; failures stay local."""

from __future__ import annotations

import pytest

from uqbench.executors import InProcess, Job, ProcessPool, RayExecutor, WorkerOptions
from uqbench.runner import RunOptions, Runner, resolve


def _jobs(*extra: str) -> list[Job]:
    jobs = []
    for task in ("two-moons", "toy-regression"):
        spec = resolve("map", task, ["epochs=3", *extra])
        jobs += [Job.from_spec(spec, seed, 0) for seed in range(2)]
    return jobs


def _metrics(records) -> dict[str, dict]:
    return {r.id: (r.status, r.metrics) for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    return _metrics(InProcess(Runner(RunOptions(out=out))).run(_jobs()))


def test_job_round_trips_through_its_spec():
    job = _jobs("lr=0.01")[0]
    assert Job.from_spec(job.spec(), job.seed, job.split) == job


def test_process_pool_gives_bit_identical_records(reference, tmp_path):
    records = list(ProcessPool(2, WorkerOptions(str(tmp_path))).run(_jobs()))
    assert _metrics(records) == reference
    assert all(status == "ok" for status, _ in reference.values())


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
    jobs = _jobs()[:1] + [Job.from_spec(resolve("map", "two-moons", ["epochs=3", "lr=1e30"]), 0, 0)]
    records = {r.id: r for r in ProcessPool(2, WorkerOptions(str(tmp_path))).run(jobs)}
    assert records[jobs[0].key.id].status == "ok"
    failed = records[jobs[1].key.id]
    assert failed.status == "failed" and failed.error["type"] == "NonFiniteLoss"
