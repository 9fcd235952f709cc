"""Wall time of every corruption at every severity on a test set the size of fashion-mnist's (10000 x 1 x 28 x 28).

The issue's target: all applicable corruptions (18 on grey images) at severities 1-5 in <= 120 s on this
machine's CPUs. Reads the real fashion-mnist test images when present, else random uint8 pixels of that shape.
Each corruption is called once on two images before it is timed (torchvision's import, cached schedules). The
load average is printed before and after: on a busy machine, compare with `--baseline` in the same run.

    .venv/bin/python benchmarks/corruptions.py                 # 2 threads, the whole test set
    .venv/bin/python benchmarks/corruptions.py --n 2000 --baseline main   # and main's code, side by side
    .venv/bin/python benchmarks/corruptions.py --n 2000 --channels 3 --side 32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from uqbench.shift import filters
from uqbench.shift.corruptions import CORRUPTIONS, SEVERITIES, applies, corrupt

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")

Corrupt = Callable[[torch.Tensor, str, int, int], torch.Tensor]


def images(n: int, channels: int, side: int) -> tuple[torch.Tensor, str]:
    """[n, channels, side, side] float32 in [0, 1]: fashion-mnist's test images when they fit, else random."""
    if FASHION_TEST.is_file() and (channels, side) == (1, 28):
        from uqbench.tasks.fashion_mnist import read_idx

        pixels = torch.as_tensor(read_idx(FASHION_TEST)[:n].copy())[:, None]
        return pixels.float() / 255, str(FASHION_TEST)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, side, side), generator=g).float() / 255, "random uint8"


def baseline(rev: str) -> Corrupt:
    """`corrupt` of uqbench/shift/corruptions.py and filters.py as they are at git revision `rev`."""
    root = Path(__file__).resolve().parents[1]
    modules = {}
    for name in ("filters", "corruptions"):
        path = f"{rev}:uqbench/shift/{name}.py"
        source = subprocess.run(["git", "-C", str(root), "show", path], capture_output=True, text=True, check=True)
        modules[name] = types.ModuleType(f"baseline_{name}")
        exec(compile(source.stdout, path, "exec"), modules[name].__dict__)  # noqa: S102 - the repository's own code
    old = modules["corruptions"].__dict__
    old.update({key: modules["filters"] for key, value in old.items() if value is filters})  # its own filters
    return old["corrupt"]


def seconds(fn: Corrupt, x: torch.Tensor, name: str, severity: int) -> float:
    start = time.perf_counter()
    fn(x, name, severity, 0)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--side", type=int, default=28, help="height and width in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", metavar="REV", help="also time the corruptions at this git revision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, source = images(args.n, args.channels, args.side)
    x = x.to(args.device)
    old = baseline(args.baseline) if args.baseline else None
    load = "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{tuple(x.shape)} from {source}, {torch.get_num_threads()} threads, device {args.device}, {load}")
    extra = f" {args.baseline[:8]:>8s} {'ratio':>6s}" if old else ""
    print(f"{'corruption':18s} " + " ".join(f"{'sev ' + str(s):>7s}" for s in SEVERITIES) + f" {'total':>8s}" + extra)
    total = old_total = 0.0
    for name in CORRUPTIONS:
        if not applies(name, args.channels):
            continue
        times: list[float] = []
        old_times: list[float] = []
        for fn in (corrupt, old) if old else (corrupt,):
            fn(x[:2], name, 1, 0)
        for severity in SEVERITIES:  # old and new alternate, so that both see the same load
            times.append(seconds(corrupt, x, name, severity))
            if old:
                old_times.append(seconds(old, x, name, severity))
        total, old_total = total + sum(times), old_total + sum(old_times)
        extra = f" {sum(old_times):8.2f} {sum(old_times) / sum(times):6.1f}" if old else ""
        print(f"{name:18s} " + " ".join(f"{t:7.2f}" for t in times) + f" {sum(times):8.2f}" + extra)
    target = 120 * args.n / 10_000
    print(f"total {total:.1f} s (target <= {target:.0f} s for {args.n} images on 2 cores): {total / target:.2f} of it")
    if old:
        print(f"{args.baseline}: {old_total:.1f} s, {old_total / total:.1f} times as long")
    print("load average " + " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
