"""Training-time overhead of VBLL over MAP, where the paper's claim lives and where it cannot: prints vbll / map.

The paper calls VBLL "(nearly) computationally free to add to standard architectures". Each problem trains `map`
and `vbll` variants on the same backbone, data, batches and number of optimiser steps; every fit is timed
`--repeats` times, alternating the methods so that machine load hits all alike, and the medians of wall and
process CPU time, their ratios and VBLL's extra milliseconds per step are printed. Every figure comes from one run.

- `resnet-small`, CIFAR-sized inputs (3 x 32 x 32, 10 classes; features d = 64) and `resnet18` (features d = 512,
  the ResNet-18 feature layer): D-VBLL with a dense covariance and G-VBLL (diagonal). The target is <= 1.10.
- The 8-50-1 MLP on 10,000 x 8 regression (d = 50) and the digits CNN: no target. A dense head costs about
  3 B K d^2 multiply-adds per step (forward, backward and the covariance's gradient), against about 3 B P for the
  backbone's forward and backward, P its multiply-adds per example; the ratio K d^2 / P is printed per problem.

    python benchmarks/vbll_overhead.py                       # every problem, 1 thread, 3 repeats
    python benchmarks/vbll_overhead.py --problems resnet-small --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import torch

from uqbench.methods import FitContext, methods
from uqbench.models import BackboneConfig, BackboneSpec, build_backbone
from uqbench.tasks import Split, TaskData, tasks
from uqbench.training import TrainConfig, seeded


@dataclass(frozen=True)
class Problem:
    """Data, a backbone, a recipe and the VBLL variants to time against `map`."""

    data: TaskData
    backbone: BackboneSpec
    recipe: TrainConfig
    variants: dict[str, dict]


def regression() -> Problem:
    """Standardised synthetic regression 10,000 x 8 -> 1 with the UCI-sized MLP (one hidden layer of 50)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g)) + 0.1 * torch.randn(10_000, 1, generator=g)
    y = (y - y.mean()) / y.std()
    data = TaskData(kind="regression", train=Split(x, y), test=Split(x[:100], y[:100]), out_dim=1,
                    target_loc=torch.zeros(1), target_scale=torch.ones(1))
    variants = {"vbll (dense)": {}, "vbll (diagonal)": {"parameterization": "diagonal"}}
    return Problem(data, BackboneSpec("mlp", (8,), 50, 1), TrainConfig(epochs=20, batch_size=128), variants)


def digits() -> Problem:
    task = tasks.get("digits")
    variants = {"vbll (dense)": {}, "vbll (diagonal)": {"parameterization": "diagonal"}}
    data = task().load(0, 0)
    return Problem(data, task.backbone.spec(data.in_shape), task.recipe, variants)


def images(arch: str, steps: int) -> Problem:
    """`steps` SGD steps of 128 CIFAR-shaped images with a class signal; D-VBLL dense and G-VBLL."""
    g = torch.Generator().manual_seed(0)
    n = 128 * steps
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g)
    x[:, 0] += y[:, None, None].float() / 10
    data = TaskData(kind="classification", train=Split(x, y), test=Split(x[:128], y[:128]), out_dim=10)
    recipe = TrainConfig(epochs=1, batch_size=128, lr=0.05, weight_decay=5e-4, optimizer="sgd")
    variants = {"D-VBLL (dense)": {}, "G-VBLL (diagonal)": {"head": "gen"}}
    return Problem(data, BackboneConfig(arch).spec((3, 32, 32)), recipe, variants)


def time_fit(method: str, settings: dict, problem: Problem) -> tuple[float, float]:
    """(wall, CPU) seconds of one `fit` (a fresh artifact cache, so `map` always trains)."""
    cls = methods.get(method)
    ctx = FitContext(recipe=problem.recipe, backbone=problem.backbone, seed=0)
    with seeded(0):
        wall, cpu = time.perf_counter(), time.process_time()
        cls(cls.Config(**settings)).fit(problem.data, ctx)
        return time.perf_counter() - wall, time.process_time() - cpu


def arithmetic(problem: Problem) -> float:
    """K d^2 / P: a dense head's multiply-adds per example over the backbone's (forward; the backward passes of
    both cost about twice their forward)."""
    net = build_backbone(problem.backbone)
    return problem.data.out_dim * net.out_features**2 / _macs(net, problem.backbone.in_shape)


def _macs(net: torch.nn.Module, in_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one input (convolutions and linear layers)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, *in_shape))
    for h in handles:
        h.remove()
    return total


def compare(name: str, problem: Problem, repeats: int) -> None:
    times: dict[str, list[tuple[float, float]]] = {"map": [], **{v: [] for v in problem.variants}}
    time_fit("map", {}, problem)  # warm-up: first-call allocations, lazy imports
    for _ in range(repeats):
        times["map"].append(time_fit("map", {}, problem))
        for label, settings in problem.variants.items():
            times[label].append(time_fit("vbll", settings, problem))
    medians = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    r = problem.recipe
    steps = r.epochs * math.ceil(len(problem.data.train) / r.batch_size)
    print(f"\n{name}: {len(problem.data.train)} examples, {steps} steps of {r.batch_size}; "
          f"dense head / backbone multiply-adds K d^2 / P = {arithmetic(problem):.3f}")
    print(f"  {'method':<18} {'wall (s)':>9} {'vbll/map':>9} {'CPU (s)':>9} {'vbll/map':>9} {'+ms/step':>9}")
    wall_map, cpu_map = medians["map"]
    for label, (wall, cpu) in medians.items():
        extra = "" if label == "map" else f"{1000 * (cpu - cpu_map) / steps:.3f}"
        ratios = ("", "") if label == "map" else (f"{wall / wall_map:.3f}", f"{cpu / cpu_map:.3f}")
        print(f"  {label:<18} {wall:>9.3f} {ratios[0]:>9} {cpu:>9.3f} {ratios[1]:>9} {extra:>9}", flush=True)


PROBLEMS = {
    "resnet-small": lambda a: images("resnet-small", a.steps),
    "resnet18": lambda a: images("resnet18", max(2, a.steps // 10)),
    "mlp": lambda a: regression(),
    "digits": lambda a: digits(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per method (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=40, help="steps of the resnet-small problem (resnet18: a tenth)")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated: {', '.join(PROBLEMS)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {args.repeats} repeats")
    for name in args.problems.split(","):
        compare(name, PROBLEMS[name](args), args.repeats)


if __name__ == "__main__":
    main()
