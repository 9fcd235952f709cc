"""What mid-run checkpoints cost: the time a run spends writing them with `--checkpoint-every 1` and `10`, against
its fit time with them off, measured in one run, in this process, each variant in a fresh results directory.

Every checkpoint write is timed where it happens (`Checkpoint.write`: wall and CPU seconds), so the overhead is
measured directly rather than as the small difference of two noisy fit times; the fit times are printed too.
On a machine busy with other work the CPU seconds are the steadier figure (a write's wall time includes its
fsync). Also printed: the size of one checkpoint file.

    python benchmarks/checkpoint_overhead.py                              # map on toy-regression, ensemble on digits
    python benchmarks/checkpoint_overhead.py --runs map:two-moons,sngp:digits
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from uqbench.checkpoints import Checkpoint
from uqbench.runner import Runner, RunOptions
from uqbench.spec import resolve

EVERY = (0, 10, 1)


class Timed:
    """Wraps `Checkpoint.write` to add up its wall and CPU seconds and the bytes it wrote."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.writes = self.size = 0
        self._write = Checkpoint.write

    def __call__(self, checkpoint: Checkpoint, state, done: bool) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self._write(checkpoint, state, done)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.writes, self.size = self.writes + 1, checkpoint.path.stat().st_size


def measure(method: str, task: str, every: int) -> tuple[float, float, Timed, int]:
    """(fit wall seconds, the run's CPU seconds, the writes' timings, epochs) of one run with checkpoints every
    `every` epochs."""
    spec = resolve(method, task, [], seed=0)
    timed = Timed()
    Checkpoint.write = lambda checkpoint, state, done: timed(checkpoint, state, done)  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            cpu = time.process_time()
            record = Runner(RunOptions(out=Path(out), checkpoint_every=every)).execute(spec)
            cpu = time.process_time() - cpu
    finally:
        Checkpoint.write = timed._write  # type: ignore[method-assign]
    assert record.status == "ok", record.error
    return record.timings_s["fit"], cpu, timed, spec.recipe.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="map:toy-regression,ensemble:digits", help="METHOD:TASK,...")
    ns = parser.parse_args()
    for run in ns.runs.split(","):
        method, task = run.split(":")
        results = {every: measure(method, task, every) for every in EVERY}
        off, off_cpu, _, epochs = results[0]
        print(f"{method} on {task} ({epochs} epochs) without checkpoints: fit {off:.2f} s wall, run {off_cpu:.2f} s CPU")
        for every in EVERY[1:]:
            fit, cpu, timed, _ = results[every]
            print(f"  every {every:>2}: {timed.writes} writes of {timed.size / 1024:.0f} KiB, "
                  f"{1000 * timed.wall / timed.writes:.1f} ms wall / {1000 * timed.cpu / timed.writes:.1f} ms CPU each: "
                  f"{100 * timed.wall / off:.1f} % of the fit's wall time, {100 * timed.cpu / off_cpu:.1f} % of the "
                  f"run's CPU time (fit {fit:.2f} s wall, run {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
