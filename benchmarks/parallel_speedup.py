"""Wall-time speed-up of `uqbench compare --jobs 2` over `--jobs 1` on the same plan, measured in one run.

Each variant runs in a fresh results directory (nothing cached), as a subprocess, so start-up costs count.
Default plan: the whole `quick` suite (three tasks, six methods, 3 seeds). A third run, `--jobs 1` with torch
limited to one thread, shows how much of the machine `--jobs 1` already uses through torch's intra-op threads.

    python benchmarks/parallel_speedup.py                      # prints the wall times and the ratios
    python benchmarks/parallel_speedup.py --methods map --seeds 2 --epochs 20
    python benchmarks/parallel_speedup.py --suite uci --splits 2 --seeds 1 --data-dir ../shared/uci
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def wall_time(args: list[str], jobs: int, one_thread: bool = False) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if one_thread else None
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "uqbench", "compare", *args, "--jobs", str(jobs), "--out", out, "--quiet"],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=None, help="a named suite instead of --tasks")
    parser.add_argument("--tasks", default="toy-regression,two-moons,digits")
    parser.add_argument("--methods", default="map,vbll,mc-dropout,ensemble,sngp,laplace")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--splits", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--jobs", type=int, default=2)
    ns = parser.parse_args()
    args = ["--suite", ns.suite] if ns.suite else ["--tasks", ns.tasks]
    args += ["--methods", ns.methods, "--seeds", str(ns.seeds)]
    for flag, value in (("--splits", ns.splits), ("--epochs", ns.epochs), ("--data-dir", ns.data_dir)):
        if value is not None:
            args += [flag, str(value)]
    serial = wall_time(args, 1)
    serial_one_thread = wall_time(args, 1, one_thread=True)
    parallel = wall_time(args, ns.jobs)
    print(f"plan: {' '.join(args)}")
    print(f"--jobs 1: {serial:.1f} s")
    print(f"--jobs 1, one torch thread: {serial_one_thread:.1f} s")
    print(f"--jobs {ns.jobs}: {parallel:.1f} s")
    print(f"speed-up over --jobs 1: {serial / parallel:.2f}x (target >= 1.7x on 2 cores)")
    print(f"speed-up over one thread: {serial_one_thread / parallel:.2f}x")


if __name__ == "__main__":
    main()
