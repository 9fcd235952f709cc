"""Fashion-MNIST: the CPU-scale real-image task, readable offline from Debian's `dataset-fashion-mnist` package.

The four standard IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each optionally gzipped) are looked for, in this order:
- with `--data-dir DIR`: `DIR/FashionMNIST/raw/` (torchvision's layout), `DIR/fashion-mnist/`, `DIR/`;
- without: `<cache>/FashionMNIST/raw/`, then `/usr/share/datasets/fashion-mnist/` (Debian), then a torchvision
  download into the cache (`$UQBENCH_DATA` or the user cache directory).
OOD sets: `mnist` (its test set, from `DIR/MNIST/raw/` or `DIR/mnist/`, or the cache / a download without
`--data-dir`; left out, and named in the record's `info`, when unavailable) and `digits` (scikit-learn's
bundled 8x8 digits, bilinearly resized to 28x28; always available).
"""

from __future__ import annotations

import contextlib
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from uqbench.datasets import data_root
from uqbench.errors import DataError
from uqbench.tasks.base import tasks
from uqbench.tasks.images import ImageConfig, ImageTask, Located, download, torchvision_download
from uqbench.training import TrainConfig

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file (LeCun's MNIST format; gzipped if the name ends in .gz) as a uint8 array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4 or raw[:3] != b"\0\0\x08":
        raise DataError(f"{path}: not a uint8 IDX file (magic number {raw[:4].hex()}, expected 000008xx)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says shape {shape} but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_idx(dirs: list[Path], split: str) -> list[Path] | None:
    """The split's two IDX files (plain or .gz) from the first directory holding both, or None."""
    for directory in dirs:
        found = [_plain_or_gz(directory / name) for name in IDX_FILES[split]]
        if all(p is not None for p in found):
            return found  # type: ignore[return-value]
    return None


def _plain_or_gz(path: Path) -> Path | None:
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def read_idx_images(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) IDX files -> (uint8 pixels [N, 1, H, W], int64 labels [N])."""
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataError(f"{paths[0].parent}: images {images.shape} and labels {labels.shape} do not match")
    return images[:, None].copy(), labels.astype(np.int64)


def digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits, bilinearly resized to 28x28 and quantised to uint8 (ink bright, as MNIST)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    large = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    pixels = (large * 255).round().to(torch.uint8).numpy()
    return pixels, digits.target.astype(np.int64)


@tasks.register("fashion-mnist")
class FashionMNIST(ImageTask):
    """Fashion-MNIST (Xiao et al. 2017): 28x28 greyscale clothing, 10 classes; small ResNet, trains on a CPU."""

    ood_sets = ("mnist", "digits")
    source = "Debian dataset-fashion-mnist, torchvision or --data-dir"
    dataset, classes, full_sizes, channels = "fashion-mnist", 10, (60000, 10000), 1

    recipe = TrainConfig(epochs=5, batch_size=128, lr=3e-3, weight_decay=1e-4, optimizer="adamw", schedule="cosine")

    @dataclass(frozen=True)
    class Config(ImageConfig):
        augment: bool = False

    def locate(self, dataset: str, split: str) -> Located:
        if dataset == "digits":
            return {"digits": "scikit-learn bundled"}
        paths = self._find(dataset, split)
        if paths is None:
            where = ", ".join(str(d) for d in self._dirs(dataset))
            download = "" if self.data_dir is not None else " and could not be downloaded"
            raise DataError(
                f"{dataset}: the IDX files {', '.join(IDX_FILES[split])} (or .gz) are not in {where}{download}; "
                f"pass --data-dir DIR holding them, or install Debian's package (apt-get install dataset-fashion-mnist)"
            )
        root = data_root(self.data_dir)
        return {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): p for p in paths}

    def decode(self, dataset: str, located: Located) -> tuple[np.ndarray, np.ndarray]:
        return digits_28() if dataset == "digits" else read_idx_images(list(located.values()))  # type: ignore[arg-type]

    def ood_parts(self) -> dict[str, tuple[str, str]]:
        """MNIST is an OOD set only where its files are (the record's `info` names it otherwise)."""
        parts = super().ood_parts()
        if self._find("mnist", "test") is None:
            del parts["mnist"]
        return parts

    def _dirs(self, dataset: str) -> list[Path]:
        root, folder = data_root(self.data_dir), TORCHVISION_FOLDERS[dataset]
        if self.data_dir is not None:
            return [root / folder / "raw", root / dataset] + ([root] if dataset == "fashion-mnist" else [])
        return [root / folder / "raw"] + ([DEBIAN_DIR] if dataset == "fashion-mnist" else [])

    def _find(self, dataset: str, split: str) -> list[Path] | None:
        """The split's two IDX files; without --data-dir a missing split is downloaded first. None: unavailable."""
        paths = find_idx(self._dirs(dataset), split)
        if paths is None and self.data_dir is None:
            root, folder = data_root(None), TORCHVISION_FOLDERS[dataset]
            with contextlib.suppress(DataError):
                download(dataset, root, lambda: torchvision_download(folder)(root, split), "the IDX files")
            paths = find_idx(self._dirs(dataset), split)
        return paths
