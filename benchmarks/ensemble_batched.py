"""Wall time of a batched deep ensemble against one `map` run on the same data and epochs.

The issue's target: (5-member batched ensemble) / (one map run) <= 2.5 for an MLP on 10k x 8 regression on a
CPU. Both fits go through the same training loop with the same budget; each is timed `--repeats` times,
alternating, and the fastest time of each is kept (the least disturbed by other load on the machine).

    .venv/bin/python benchmarks/ensemble_batched.py   # MLP 1 x 50 (as the UCI tasks), 20 epochs, batch 128
    .venv/bin/python benchmarks/ensemble_batched.py --threads 1 --members 10
"""

from __future__ import annotations

import argparse
import time

import torch

from uqbench.artifacts import ArtifactCache
from uqbench.methods.base import FitContext, Method
from uqbench.methods.ensemble import DeepEnsemble
from uqbench.methods.map import MAP
from uqbench.models import BackboneSpec
from uqbench.tasks.base import Split, TaskData
from uqbench.training import TrainConfig, seeded


def regression_data(n: int, dim: int, seed: int = 0) -> TaskData:
    """n x dim standard normal inputs, one standardised target y = sum_j sin(x_j) / sqrt(dim) + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = torch.sin(x).sum(-1, keepdim=True) / dim**0.5 + 0.1 * torch.randn(n, 1, generator=g)
    y = (y - y.mean()) / y.std()
    return TaskData(
        kind="regression", train=Split(x, y), test=Split(x[:100], y[:100]), out_dim=1,
        target_loc=torch.zeros(1), target_scale=torch.ones(1),
    )


def time_fit(method: Method, data: TaskData, cfg: TrainConfig, backbone: BackboneSpec) -> float:
    """Seconds for one `fit` with a fresh artifact cache (nothing reused)."""
    ctx = FitContext(recipe=cfg, backbone=backbone, artifacts=ArtifactCache())
    with seeded(0):
        start = time.perf_counter()
        method.fit(data, ctx)
        return time.perf_counter() - start


def _seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="training examples")
    parser.add_argument("--dim", type=int, default=8, help="input features")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--width", type=int, default=50, help="MLP hidden units")
    parser.add_argument("--depth", type=int, default=1, help="MLP hidden layers")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = regression_data(args.n, args.dim)
    backbone = BackboneSpec("mlp", (args.dim,), width=args.width, depth=args.depth)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3)
    ensemble = DeepEnsemble(DeepEnsemble.Config(members=args.members))
    time_fit(MAP(), data, cfg, backbone)  # warm-up (first-call allocations, lazy imports)
    map_times, ens_times = [], []
    for _ in range(args.repeats):
        map_times.append(time_fit(MAP(), data, cfg, backbone))
        ens_times.append(time_fit(ensemble, data, cfg, backbone))
    t_map, t_ens = min(map_times), min(ens_times)
    print(f"data {args.n} x {args.dim}, MLP {args.depth} x {args.width}, {args.epochs} epochs, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"map (1 network):          {t_map:7.2f} s   runs: {_seconds(map_times)}")
    print(f"ensemble ({args.members} members):    {t_ens:7.2f} s   runs: {_seconds(ens_times)}")
    print(f"ratio ensemble / map:     {t_ens / t_map:7.2f}   (target <= 2.5; {args.members} separate runs: {args.members})")


if __name__ == "__main__":
    main()
