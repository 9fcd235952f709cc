"""Tiny image datasets written in the real on-disk formats (CIFAR's pickled python batches, SVHN's .mat files,
IDX files for Fashion-MNIST and MNIST), for tests that run the real loading code offline.

The tiny files do not have the md5s torchvision publishes, so a test registers theirs (`register_checksums`)
and the files still pass through the real checksum check before they are read.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from uqbench.datasets import file_md5
from uqbench.tasks import fashion_mnist, images

N = 12  # images per file


def random_pixels(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def image_root(root: Path) -> Path:
    """`root` holding tiny CIFAR-10, CIFAR-100 and SVHN (every file cifar10 and cifar100 read)."""
    write_cifar10(root)
    write_cifar100(root)
    write_svhn(root)
    return root


class Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes a pickle as Python 2's cPickle wrote the CIFAR batches (protocol 2, numpy 1.x): every str and bytes
    as a Python 2 `str` (SHORT_BINSTRING / BINSTRING) and numpy's array rebuilder by its numpy 1.x name."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is np.empty(0).__reduce__()[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_batch(path: Path, entry: dict) -> None:
    """A CIFAR python batch as the published files hold it (see `Python2Pickler`)."""
    with open(path, "wb") as fh:
        Python2Pickler(fh, protocol=2).dump(entry)


def write_cifar10(root: Path, seed: int = 0) -> np.ndarray:
    """Five training batches and a test batch of N images each; returns the test pixels [N, 3, 32, 32]."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = random_pixels(rng, N, (3, 32, 32))
        entry = {"batch_label": name, "labels": [int(c) for c in rng.integers(0, 10, N)],
                 "data": pixels.reshape(N, 3072), "filenames": [f"{i}.png" for i in range(N)]}
        write_batch(folder / name, entry)
    return pixels


def write_cifar100(root: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        entry = {"fine_labels": [int(c) for c in rng.integers(0, 100, N)], "coarse_labels": [0] * N,
                 "data": random_pixels(rng, N, (3, 32, 32)).reshape(N, 3072)}
        write_batch(folder / name, entry)


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


def checksums(root: Path) -> dict[str, str]:
    """The md5 of every CIFAR / SVHN file under `root`, keyed like `images.PUBLISHED_MD5` (name relative to root)."""
    return {name: file_md5(root / name) for name in images.PUBLISHED_MD5 if (root / name).is_file()}


def register_checksums(monkeypatch: pytest.MonkeyPatch, root: Path) -> dict[str, str]:
    """Make the checksum check of this process accept the files now under `root` (in place of the published md5s
    of the same names) until the test ends; returns what was registered. (Worker processes read the published
    table: tests that need workers use the Fashion-MNIST IDX files, which carry no published checksum.)"""
    table = checksums(root)
    for name, md5 in table.items():
        monkeypatch.setitem(images.PUBLISHED_MD5, name, md5)
    return table
