"""benchmarks/gpu_check.py runs end to end (here on the CPU, tiny; on a GPU it is the project's GPU check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_every_method_and_shows_precision_in_the_key():
    args = ["--device", "cpu", "--arch", "resnet-small", "--steps", "1", "--batch", "8", "--n-test", "8"]
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("precision in the key:") and lines[0].endswith("(all differ)")
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {"ddu", "ensemble", "laplace", "map", "mc-dropout", "sngp", "vbll"}
    assert all(line.endswith("yes") for line in rows.values())
