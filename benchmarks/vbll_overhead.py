"""Training-time overhead of VBLL over MAP: the same backbone, data, epochs and batches; prints vbll / map.

Two problems: regression on 10,000 x 8 synthetic inputs with the UCI-sized MLP (one hidden layer of 50 ReLU
units, batch 128), and classification on `digits` (its small CNN and training settings). Each method's `fit`
is timed `--repeats` times, alternating the methods so that machine load hits both alike; the medians of wall
time and of process CPU time (the steadier figure on a shared machine), their ratios, and VBLL's extra CPU
milliseconds per training step are printed. Every figure comes from this one run.

    python benchmarks/vbll_overhead.py                    # both problems, default (dense) and diagonal heads
    python benchmarks/vbll_overhead.py --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from uqbench.methods import methods
from uqbench.methods.base import FitContext
from uqbench.models import BackboneSpec
from uqbench.tasks import Split, TaskData, tasks
from uqbench.training import TrainConfig, seeded


def regression_problem(n: int = 10_000, dim: int = 8) -> tuple[TaskData, TrainConfig]:
    """Standardised synthetic regression data [n, dim] -> [n, 1] and a UCI-like training budget."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    y = torch.sin(x @ torch.randn(dim, 1, generator=g)) + 0.1 * torch.randn(n, 1, generator=g)
    y = (y - y.mean()) / y.std()
    data = TaskData(
        kind="regression", train=Split(x, y), test=Split(x[:100], y[:100]), out_dim=1,
        backbone=BackboneSpec("mlp", (dim,), width=50, depth=1), target_loc=torch.zeros(1), target_scale=torch.ones(1),
    )
    return data, TrainConfig(epochs=20, batch_size=128, lr=1e-3)


def digits_problem() -> tuple[TaskData, TrainConfig]:
    task = tasks.get("digits")()
    return task.load(0, 0), task.config


def time_fit(method_name: str, settings: dict, data: TaskData, train_config: TrainConfig) -> tuple[float, float]:
    """(wall, CPU) seconds of one `fit` (a fresh artifact cache, so `map` always trains)."""
    cls = methods.get(method_name)
    method = cls(cls.Config(**settings))
    ctx = FitContext(train_config=train_config, backbone=data.backbone, seed=0)
    with seeded(0):
        wall, cpu = time.perf_counter(), time.process_time()
        method.fit(data, ctx)
        return time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, data: TaskData, train_config: TrainConfig, variants: dict[str, dict], repeats: int) -> None:
    times: dict[str, list[tuple[float, float]]] = {"map": [], **{v: [] for v in variants}}
    for _ in range(repeats):
        times["map"].append(time_fit("map", {}, data, train_config))
        for label, settings in variants.items():
            times[label].append(time_fit("vbll", settings, data, train_config))
    medians = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    steps = train_config.epochs * math.ceil(len(data.train) / train_config.batch_size)
    print(f"\n{name}: {len(data.train)} training examples, {train_config.epochs} epochs = {steps} steps")
    print(f"  {'method':<18} {'wall (s)':>9} {'vbll/map':>9} {'CPU (s)':>9} {'vbll/map':>9} {'+ms/step':>9}")
    (wall_map, cpu_map) = medians["map"]
    for label, (wall, cpu) in medians.items():
        extra = "" if label == "map" else f"{1000 * (cpu - cpu_map) / steps:.3f}"
        ratios = ("", "") if label == "map" else (f"{wall / wall_map:.3f}", f"{cpu / cpu_map:.3f}")
        print(f"  {label:<18} {wall:>9.3f} {ratios[0]:>9} {cpu:>9.3f} {ratios[1]:>9} {extra:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed fits per method (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {args.repeats} repeats")
    variants = {"vbll (dense)": {}, "vbll (diagonal)": {"parameterization": "diagonal"}}
    compare("regression (MLP 8-50-1)", *regression_problem(), variants, args.repeats)
    compare("classification (digits, CNN)", *digits_problem(), variants, args.repeats)


if __name__ == "__main__":
    main()
