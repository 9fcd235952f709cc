"""Time from SIGINT (Ctrl-C) to exit of a running `uqbench compare`, and whether its workers outlive it.

Starts `uqbench compare --jobs N` on a small plan in a fresh results folder, waits until it has stored its first
record (workers are then mid-run), sends SIGINT to the driver and measures until the process has exited; then
counts the driver's former children still alive a second later and checks the stored records against what the
driver said it kept. Target: <= 2 s, no worker left.

    python benchmarks/ctrl_c_latency.py [--jobs 2] [--repeats 3] [--signal INT|TERM]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pids: set[int]) -> int:
    """How many of `pids` still run (a zombie has ended: it only waits for its new parent to reap it)."""
    count = 0
    for pid in pids:
        try:
            count += (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
        except OSError:
            pass
    return count


def once(jobs: int, sig: signal.Signals, epochs: int) -> tuple[float, int, int, int]:
    """(seconds to exit, workers left alive, records kept per the driver, records on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "uqbench", "compare", "--tasks", "two-moons,toy-regression", "--methods",
                   "map,ensemble", "--seeds", "4", "--epochs", str(epochs), "--jobs", str(jobs), "--out", str(out),
                   "--quiet"]
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not list(out.glob("*.json")):
            if driver.poll() is not None:
                raise SystemExit(f"compare ended before it was interrupted: {driver.stderr.read()}")
            time.sleep(0.05)
        workers = children(driver.pid)
        sent = time.perf_counter()
        driver.send_signal(sig)
        _, stderr = driver.communicate()
        took = time.perf_counter() - sent
        time.sleep(1.0)
        said = re.search(r"interrupted: (\d+) run\(s\) finished now and kept", stderr)
        return took, alive(workers), int(said.group(1)) if said else -1, len(list(out.glob("*.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    parser.add_argument("--epochs", type=int, default=200, help="epochs per run (runs must outlast the wait)")
    args = parser.parse_args()
    sig = signal.Signals[f"SIG{args.signal}"]
    times = []
    for i in range(args.repeats):
        took, left, said, on_disk = once(args.jobs, sig, args.epochs)
        times.append(took)
        print(f"run {i + 1}: SIG{args.signal} -> exit {took:.2f} s; workers left alive {left}; "
              f"kept (said) {said}, records on disk {on_disk}" + ("" if said == on_disk else "  MISMATCH"))
    print(f"compare --jobs {args.jobs}: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          f"(target <= 2 s)")


if __name__ == "__main__":
    main()
