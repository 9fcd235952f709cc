"""Wall time of every corruption at every severity on a test set the size of fashion-mnist's (10000 x 1 x 28 x 28).

The issue's target: all applicable corruptions (18 on grey images) at severities 1-5 in <= 120 s on this
machine's CPUs. Reads the real fashion-mnist test images when present, else random uint8 pixels of that shape.

    .venv/bin/python benchmarks/corruptions.py                 # 2 threads, the whole test set
    .venv/bin/python benchmarks/corruptions.py --n 2000 --channels 3 --side 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from uqbench.shift.corruptions import CORRUPTIONS, SEVERITIES, applies, corrupt

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def images(n: int, channels: int, side: int) -> tuple[torch.Tensor, str]:
    """[n, channels, side, side] float32 in [0, 1]: fashion-mnist's test images when they fit, else random."""
    if FASHION_TEST.is_file() and (channels, side) == (1, 28):
        from uqbench.tasks.fashion_mnist import read_idx

        pixels = torch.as_tensor(read_idx(FASHION_TEST)[:n].copy())[:, None]
        return pixels.float() / 255, str(FASHION_TEST)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, side, side), generator=g).float() / 255, "random uint8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--side", type=int, default=28, help="height and width in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, source = images(args.n, args.channels, args.side)
    x = x.to(args.device)
    print(f"{tuple(x.shape)} from {source}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"{'corruption':18s} " + " ".join(f"{'sev ' + str(s):>7s}" for s in SEVERITIES) + f" {'total':>8s}")
    total = 0.0
    for name in CORRUPTIONS:
        if not applies(name, args.channels):
            continue
        times = []
        for severity in SEVERITIES:
            start = time.perf_counter()
            corrupt(x, name, severity, seed=0)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        total += sum(times)
        print(f"{name:18s} " + " ".join(f"{t:7.2f}" for t in times) + f" {sum(times):8.2f}")
    print(f"total {total:.1f} s (target <= 120 s for fashion-mnist on 2 cores): ratio {total / 120:.2f} of the target")


if __name__ == "__main__":
    main()
