"""Wall time of `uqbench reproduce PROTOCOL` from an empty store: every run of the protocol, then the comparison.

Runs the command in a subprocess into a fresh results directory, prints its table (stdout) and the measured wall
time, and keeps the store for a later `--no-run` look. Every figure comes from this one run.

    python benchmarks/reproduce_wall_time.py gal2016 --data-dir ../shared/uci            # --jobs 2 by default
    python benchmarks/reproduce_wall_time.py lakshminarayanan2017 --data-dir ../shared/uci --format markdown
    python benchmarks/reproduce_wall_time.py gal2016 --data-dir ../shared/uci --datasets boston,yacht --splits 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=None, help="results directory (default: a new temporary one)")
    parser.add_argument("--format", default="table")
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--splits", type=int, default=None)
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix=f"reproduce-{args.protocol}-")
    command = [sys.executable, "-m", "uqbench", "reproduce", args.protocol, "--data-dir", args.data_dir,
               "--jobs", str(args.jobs), "--out", out, "--format", args.format, "--quiet"]
    command += ["--datasets", args.datasets] if args.datasets else []
    command += ["--splits", str(args.splits)] if args.splits else []
    print(" ".join(["uqbench", *command[3:]]), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    print(f"\nwall time {wall / 60:.1f} min ({wall:.0f} s) with --jobs {args.jobs} on {os.cpu_count()} cores; "
          f"exit code {result.returncode}; store {out}")


if __name__ == "__main__":
    main()
