"""The GPU paths in one short run: every built-in method trains a ResNet-18 on CIFAR-shaped tensors made here (no
download), in mixed precision, for a few hundred steps; prints images per second, peak GPU memory and whether the
predictions are finite. Also shows that the numeric precision is part of a run's key. Meant to finish in under
5 minutes on one GPU; run it whenever a GPU machine is at hand and put its table in the README.

    python benchmarks/gpu_check.py                          # cuda, resnet18, bf16, 300 steps of 128 images
    python benchmarks/gpu_check.py --precision fp16 --steps 100
    python benchmarks/gpu_check.py --device cpu --arch resnet-small --steps 2 --batch 16 --n-test 32  # on a CPU
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from uqbench.artifacts import ArtifactCache
from uqbench.methods import FitContext, methods
from uqbench.models import BackboneConfig
from uqbench.runner import predict_all, resolve_device
from uqbench.spec import method_names, resolve
from uqbench.tasks import Split, TaskData
from uqbench.training import TrainConfig, seeded

CLASSES, SHAPE = 10, (3, 32, 32)


def cifar_shaped(n_train: int, n_test: int) -> TaskData:
    """Random images [N, 3, 32, 32] whose class shifts the mean of one channel, so training has a signal."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        x = torch.randn(n, *SHAPE, generator=g)
        x[:, y % 3] += (y[:, None, None].float() / CLASSES - 0.5)
        return Split(x, y)  # on the CPU, as tasks hand data over; training moves it to the device

    ood = torch.rand(n_test, *SHAPE, generator=g) * 4 - 2
    return TaskData(kind="classification", train=split(n_train), test=split(n_test), out_dim=CLASSES, ood={"noise": ood})


def run_method(name: str, data: TaskData, recipe: TrainConfig, backbone: BackboneConfig, device: torch.device) -> dict:
    """Fit and predict one method; its throughput, peak memory and whether its outputs are finite."""
    ctx = FitContext(recipe=recipe, backbone=backbone.spec(SHAPE), seed=0, device=device, artifacts=ArtifactCache())
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with seeded(0):
        t0 = time.perf_counter()
        predictor = methods.get(name)().fit(data, ctx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = predict_all(predictor, data, device)
        predict = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    finite = bool(torch.isfinite(outputs.test.probs).all() and torch.isfinite(outputs.score).all())
    accuracy = float((outputs.test.probs.argmax(1) == outputs.targets).float().mean())
    return {"fit": fit, "predict": predict, "images/s": len(data.train) * recipe.epochs / fit, "peak": peak,
            "finite": finite, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per method (one epoch)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n-test", type=int, default=1000, help="test and OOD images")
    parser.add_argument("--methods", default=",".join(method_names("all")), help="default: every method")
    args = parser.parse_args()
    device = resolve_device(args.device)

    keys = {p: resolve("map", "two-moons", [f"precision={p}"]).id for p in ("fp32", "bf16", "fp16")}
    print(f"precision in the key: run ids fp32 {keys['fp32']}, bf16 {keys['bf16']}, fp16 {keys['fp16']} "
          f"({'all differ' if len(set(keys.values())) == 3 else 'NOT DISTINCT'})")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; {args.arch}, {args.precision}, {args.steps} steps of {args.batch}")

    data = cifar_shaped(args.steps * args.batch, args.n_test)
    recipe = TrainConfig(epochs=1, batch_size=args.batch, lr=0.1, weight_decay=5e-4, optimizer="sgd",
                         schedule="cosine", precision=args.precision)
    print(f"{'method':<12}{'fit s':>8}{'images/s':>11}{'predict s':>11}{'peak MiB':>10}{'accuracy':>10}  finite")
    for method in args.methods.split(","):
        r = run_method(method, data, recipe, BackboneConfig(args.arch), device)
        peak = "-" if math.isnan(r["peak"]) else f"{r['peak']:.0f}"
        print(f"{method:<12}{r['fit']:>8.1f}{r['images/s']:>11.0f}{r['predict']:>11.2f}{peak:>10}"
              f"{r['accuracy']:>10.3f}  {'yes' if r['finite'] else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
