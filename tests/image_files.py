"""Tiny image datasets written in the real on-disk formats (CIFAR's pickled python batches, SVHN's .mat files,
IDX files for Fashion-MNIST and MNIST), for tests that run the real loading code offline."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from uqbench.tasks import fashion_mnist

N = 12  # images per file


def random_pixels(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def image_root(root: Path) -> Path:
    """`root` holding tiny CIFAR-10, CIFAR-100 and SVHN (every file cifar10 and cifar100 read)."""
    write_cifar10(root)
    write_cifar100(root)
    write_svhn(root)
    return root


def write_cifar10(root: Path, seed: int = 0) -> np.ndarray:
    """Five training batches and a test batch of N images each; returns the test pixels [N, 3, 32, 32]."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = random_pixels(rng, N, (3, 32, 32))
        entry = {"batch_label": name, "labels": [int(c) for c in rng.integers(0, 10, N)],
                 "data": pixels.reshape(N, 3072), "filenames": [f"{i}.png" for i in range(N)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
    return pixels


def write_cifar100(root: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        entry = {"fine_labels": [int(c) for c in rng.integers(0, 100, N)], "coarse_labels": [0] * N,
                 "data": random_pixels(rng, N, (3, 32, 32)).reshape(N, 3072)}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)


def write_svhn(root: Path, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """train/test .mat files as the SVHN site ships them (X [32, 32, 3, N], y [N, 1], 10 for the digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        pixels = random_pixels(rng, N, (3, 32, 32))
        y = rng.integers(1, 11, (N, 1)).astype(np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": pixels.transpose(2, 3, 1, 0), "y": y})
    return pixels, y


def write_idx(path: Path, array: np.ndarray) -> None:
    """uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, seed: int, gz: bool, splits: tuple[str, ...] = ("train", "test")) -> None:
    rng = np.random.default_rng(seed)
    for split in splits:
        images_name, labels_name = fashion_mnist.IDX_FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / (images_name + suffix), random_pixels(rng, N, (28, 28)))
        write_idx(folder / (labels_name + suffix), rng.integers(0, 10, N))
