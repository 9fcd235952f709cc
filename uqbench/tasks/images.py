"""Image classification: CIFAR-10, CIFAR-100 and SVHN with ResNets, read from torchvision's on-disk formats.

Files are found under a data root (`--data-dir DIR`, else `$UQBENCH_DATA`, else the user cache directory) in
torchvision's layout: `cifar-10-batches-py/` (CIFAR-10 python version), `cifar-100-python/`, and SVHN's
`train_32x32.mat` / `test_32x32.mat`. Without `--data-dir`, missing files are downloaded with torchvision's
dataset classes (which check the archives' md5); with it, nothing is downloaded. Either way, every file is checked
against the md5 torchvision publishes for it (`PUBLISHED_MD5`) before it is read: a file with another checksum is
refused (`DataError`), never parsed. The readers below then parse the formats directly, a pickled CIFAR batch with
a restricted unpickler (`uqbench.safe_pickle`) that admits only what rebuilds uint8 numpy arrays, so even a file
that passed the check cannot run code. The sha256 of every file a run reads is part of its key (`fingerprint`,
hashed when the run is planned) and stored in its record.

Pixels are scaled to [0, 1] and standardised per channel with the mean and standard deviation of the full
training set (on the real data these are the usual CIFAR/SVHN normalisation constants); OOD sets use the
in-distribution statistics. Training batches are augmented on their own device by `RandomCropFlip`.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, ClassVar, Iterable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from uqbench import safe_pickle
from uqbench.config import AT_LEAST_ONE, Checked
from uqbench.datasets import data_root, file_md5, file_sha256, tidy_on_failure
from uqbench.errors import DataError
from uqbench.models import BackboneConfig
from uqbench.shift import sets as shift_sets
from uqbench.tasks.base import Split, Task, TaskData, tasks
from uqbench.training import TrainConfig

DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError)


@dataclass(frozen=True)
class Source:
    """Where a dataset's files lie under a data root, how to read them and how to download them.

    Attributes:
        name: dataset name as used in task and OOD-set names.
        files: split ('train' / 'test') -> file paths relative to the data root (each with its md5 in
            `PUBLISHED_MD5`).
        read: file paths -> (uint8 pixels [N, C, H, W], int64 labels [N]).
        download: (data root, split) -> None; puts the split's files under the root (torchvision).
        hint: what a data root must hold and where to get it by hand (shown when files are missing).
    """

    name: str
    files: dict[str, tuple[str, ...]]
    read: Callable[[list[Path]], tuple[np.ndarray, np.ndarray]]
    download: Callable[[Path, str], object]
    hint: str


CIFAR_ERRORS = (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError)


def read_cifar(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR python-version batches (pickled dicts with 'data' [N, 3072] uint8 and 'labels' or 'fine_labels').

    The batches were pickled by Python 2 (protocol 2): they are read with encoding 'latin1', and with a restricted
    unpickler that admits only uint8 numpy arrays besides plain containers; keys may be str or bytes.
    """
    pixels, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                entry = safe_pickle.load_arrays(fh, dtypes=("u1",), encoding="latin1")
            if not isinstance(entry, dict):
                raise TypeError(f"it holds a {type(entry).__name__}, not a dict")
            entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
            pixels.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], dtype=np.int64))
        except safe_pickle.Refused as exc:
            raise DataError(f"{path}: not a CIFAR python batch: {exc}") from None
        except CIFAR_ERRORS as exc:
            raise DataError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    return np.concatenate(pixels), np.concatenate(labels)


def read_svhn(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits .mat files ('X' [32, 32, 3, N] uint8, 'y' [N, 1] with label 10 for the digit 0)."""
    from scipy.io import loadmat

    (path,) = paths
    try:
        mat = loadmat(path)
        pixels = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        labels = mat["y"].astype(np.int64).reshape(-1) % 10
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not an SVHN .mat file ({type(exc).__name__}: {exc})") from None
    return pixels, labels


def torchvision_download(cls_name: str) -> Callable[[Path, str], object]:
    """(root, split) -> downloads (and md5-checks) a split with torchvision's dataset class `cls_name` (train=...)."""

    def download(root: Path, split: str) -> object:
        import torchvision.datasets

        return getattr(torchvision.datasets, cls_name)(root, train=split == "train", download=True)

    return download


def _svhn_download(root: Path, split: str) -> object:
    from torchvision.datasets import SVHN

    return SVHN(root, split=split, download=True)


CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
# File name relative to the data root -> md5, as torchvision 0.29 publishes them: torchvision/datasets/cifar.py
# (`CIFAR10.train_list` / `test_list`, `CIFAR100.train_list` / `test_list`) and svhn.py (`SVHN.split_list`).
PUBLISHED_MD5: dict[str, str] = {
    f"{CIFAR10_DIR}/data_batch_1": "c99cafc152244af753f735de768cd75f",
    f"{CIFAR10_DIR}/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    f"{CIFAR10_DIR}/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    f"{CIFAR10_DIR}/data_batch_4": "634d18415352ddfa80567beed471001a",
    f"{CIFAR10_DIR}/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    f"{CIFAR10_DIR}/test_batch": "40351d587109b95175f43aff81a1287e",
    f"{CIFAR100_DIR}/train": "16019d7e3df5f24257cddd939b257f8d",
    f"{CIFAR100_DIR}/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        "cifar10",
        {"train": tuple(f"{CIFAR10_DIR}/data_batch_{i}" for i in range(1, 6)), "test": (f"{CIFAR10_DIR}/test_batch",)},
        read_cifar,
        torchvision_download("CIFAR10"),
        f"{CIFAR10_DIR}/ (data_batch_1..5, test_batch; unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)",
    ),
    "cifar100": Source(
        "cifar100",
        {"train": (f"{CIFAR100_DIR}/train",), "test": (f"{CIFAR100_DIR}/test",)},
        read_cifar,
        torchvision_download("CIFAR100"),
        f"{CIFAR100_DIR}/ (train, test; unpack https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz)",
    ),
    "svhn": Source(
        "svhn",
        {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
        read_svhn,
        _svhn_download,
        "train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/",
    ),
}


def locate_files(source: Source, split: str, data_dir: Path | None) -> dict[str, Path]:
    """The files of one split of a dataset (name relative to the data root -> path), downloading them first when
    they are missing and no `data_dir` is given, each checked against its `PUBLISHED_MD5` before it is returned.

    Raises:
        DataError: files missing from `data_dir`, a failed download, or a file whose md5 is not the published one.
    """
    root = data_root(data_dir)
    paths = {name: root / name for name in source.files[split]}
    if data_dir is None and not all(p.is_file() for p in paths.values()):
        download(source.name, root, lambda: source.download(root, split), source.hint)
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"{source.name}: file not found: {missing[0]}; --data-dir must hold {source.hint}, "
            f"or omit --data-dir to download it"
        )
    for name, path in paths.items():
        verify(source, name, path, data_dir)
    return paths


def verify(source: Source, name: str, path: Path, data_dir: Path | None) -> None:
    """Refuse (DataError) the file `path` of `source` (`name` relative to the data root) unless its md5 is the one
    torchvision publishes; the file is not read beyond hashing it."""
    actual, expected = file_md5(path), PUBLISHED_MD5[name]
    if actual != expected:
        fix = (f"--data-dir must hold {source.hint}, or omit --data-dir to download it" if data_dir is not None
               else f"delete it to download it again, or pass --data-dir DIR holding {source.hint}")
        raise DataError(
            f"{source.name}: {path} has md5 {actual[:12]}..., expected {expected[:12]}... (torchvision's published "
            f"checksum); refusing a corrupt or different file unread; {fix}"
        )


def download(name: str, root: Path, fetch: Callable[[], object], hint: str) -> None:
    """Run a torchvision download into `root`; a network or checksum failure becomes one DataError line.

    `hint` says what a data root must hold and where to get it (see `Source.hint`).
    """
    try:
        with tidy_on_failure(root):
            fetch()
    except DOWNLOAD_ERRORS as exc:
        reason = str(getattr(exc, "reason", "") or exc).strip().splitlines()[0]
        raise DataError(
            f"{name}: not in {root} and the download failed ({type(exc).__name__}: {reason}); "
            f"pass --data-dir DIR holding {hint}, or connect to the network once"
        ) from None


@dataclass(frozen=True)
class Normaliser:
    """Scales uint8 pixels [N, C, H, W] to float32 (x / 255 - mean_c) / std_c with per-channel statistics."""

    mean: np.ndarray  # [C]
    std: np.ndarray  # [C]

    @classmethod
    def fit(cls, pixels: np.ndarray) -> Normaliser:
        """Per-channel mean and standard deviation of `pixels` [N, C, H, W] in [0, 1] units (exact, from counts)."""
        counts = np.stack([np.bincount(pixels[:, c].ravel(), minlength=256) for c in range(pixels.shape[1])])
        p, values = counts / counts.sum(1, keepdims=True), np.arange(256) / 255
        mean = p @ values
        std = np.sqrt(p @ values**2 - mean**2)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def __call__(self, pixels: np.ndarray) -> Tensor:
        """uint8 [N, C, H, W] -> standardised float32 [N, C, H, W]."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255)
        return x.sub_(torch.from_numpy(self.mean)[:, None, None]).div_(torch.from_numpy(self.std)[:, None, None])


@dataclass(frozen=True)
class RandomCropFlip:
    """Training augmentation of a batch x [B, C, H, W]: a random H x W crop of x zero-padded by `padding` pixels
    on every side, then (if `flip`) a horizontal flip with probability 1/2.

    Randomness is drawn from the generator the training loop passes (on the CPU, so runs are reproducible);
    the crop itself runs on the batch's device. Padding is 0 in standardised units, i.e. the mean colour.
    """

    padding: int = 4
    flip: bool = True

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, _, h, w = x.shape
        shifts = torch.randint(0, 2 * self.padding + 1, (2, b), generator=generator).to(x.device)
        rows = torch.arange(h, device=x.device) + shifts[0, :, None]  # [B, H]
        cols = torch.arange(w, device=x.device) + shifts[1, :, None]  # [B, W]
        if self.flip:
            flipped = (torch.rand(b, generator=generator) < 0.5).to(x.device)
            cols = torch.where(flipped[:, None], cols.flip(1), cols)
        padded = F.pad(x, (self.padding,) * 4)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class ImageConfig(Checked):
    """Data settings of the image tasks.

    Attributes:
        augment: random crop with 4-pixel padding (and horizontal flips where the task allows them).
        n_train: use only the first n training images (None: all).
        n_test: use only the first n images of the test set and of every OOD set (None: all).
        shift: also evaluate on the test images under every corruption of Hendrycks & Dietterich (2019) at
            severities 1-5 (`uqbench.shift.sets`: the published CIFAR-10-C / CIFAR-100-C files where they are under
            the data root, else generated once and cached); metrics `shift.*`.
    """

    augment: bool = True
    n_train: Annotated[int | None, AT_LEAST_ONE] = None
    n_test: Annotated[int | None, AT_LEAST_ONE] = None
    shift: bool = False


Located = dict[str, "Path | str"]  # file name relative to the data root -> path (or set name -> identity text)


class ImageTask(Task):
    """Base of the image classification tasks: subclasses name their dataset, OOD sets and sizes.

    The standard train/test split is used for every seed (one split); a seed changes the initialisation, the
    batch order and the augmentation draws only. Default recipe: the usual CIFAR one (SGD with Nesterov momentum,
    lr 0.1, weight decay 5e-4, cosine decay, 200 epochs of 128) on the CPU-sized `resnet-small`, whatever the
    machine (the `cifar` suite asks for `wrn-28-10` in bf16).
    """

    kind = "classification"
    Config: ClassVar[type] = ImageConfig
    recipe = TrainConfig(epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, optimizer="sgd", schedule="cosine")
    backbone = BackboneConfig("resnet-small")
    dataset: ClassVar[str]
    classes: ClassVar[int]
    full_sizes: ClassVar[tuple[int, int]]  # (train, test) images in the full dataset
    flip: ClassVar[bool] = True
    channels: ClassVar[int] = 3
    evaluated_only = ("shift",)
    published_shift: ClassVar[str | None] = None  # the folder of Hendrycks's files of this test set, if any

    def size(self) -> str:
        n_train, n_test = self.full_sizes
        return f"{min(self.config.n_train or n_train, n_train)} / {min(self.config.n_test or n_test, n_test)}"

    def locate(self, dataset: str, split: str) -> Located:
        """Files of one split of a dataset (name relative to the data root -> path), downloaded when allowed.
        Hook for datasets that are not in `SOURCES`; a set built in memory maps its name to its identity text."""
        return locate_files(SOURCES[dataset], split, self.data_dir)

    def decode(self, dataset: str, located: Located) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 pixels [N, C, H, W], int64 labels [N]) of what `locate` found (hook, like `locate`)."""
        return SOURCES[dataset].read(list(located.values()))  # type: ignore[arg-type]

    def ood_parts(self) -> dict[str, tuple[str, str]]:
        """OOD set name -> (dataset, split) it reads. Hook: an optional OOD set whose files are absent is left out
        (every OOD set is required here)."""
        return {name: (name, "test") for name in self.ood_sets}

    def located(self) -> dict[str, tuple[str, Located]]:
        """What a run reads, located (the dataset's own splits first): part -> (dataset, files)."""
        found = {split: (self.dataset, self.locate(self.dataset, split)) for split in ("train", "test")}
        found.update({name: (dataset, self.locate(dataset, split)) for name, (dataset, split) in self.ood_parts().items()})
        return found

    def shifted_labels(self) -> tuple[str, ...]:
        return shift_sets.labels(self.channels) if self.config.shift else ()

    def fingerprint(self, split: int) -> dict[str, str]:
        """The sha256 of every file a run reads, hashed now (downloading what is missing when allowed)."""
        located = self.located()
        shifted = {}
        if self.config.shift:
            published = self._published_shift(lambda: self.decode(*located["test"])[1])
            shifted = shift_sets.fingerprint(published)
        return {**_sha256(files for _, files in located.values()), **shifted}

    def _published_shift(self, test_labels: Callable[[], np.ndarray]) -> dict[str, Path] | None:
        """The published corrupted test sets of this task (`shift_sets.published`) where they are under the data
        root, else None: the sets are generated. `test_labels` gives the clean test set's labels [N]."""
        if self.published_shift is None:
            return None
        return shift_sets.published(self.published_shift, self.data_dir, test_labels(), (32, 32, self.channels))

    def load(self, seed: int, split: int) -> TaskData:
        cfg = self.config
        located = self.located()
        images = {part: self.decode(dataset, files) for part, (dataset, files) in located.items()}
        (train_pixels, train_labels), (test_pixels, test_labels) = images.pop("train"), images.pop("test")
        normalise = Normaliser.fit(train_pixels)
        first = slice(None, cfg.n_test)
        x_train = normalise(train_pixels[: cfg.n_train])
        missing = [name for name in self.ood_sets if name not in images]
        shifted, fingerprint = (), _sha256(files for _, files in located.values())
        if cfg.shift:
            published = self._published_shift(lambda: test_labels)
            files = published or shift_sets.generated(torch.from_numpy(test_pixels[first]).float() / 255)
            shifted = shift_sets.shifted_sets(files, len(test_labels[first]), torch.from_numpy(test_labels), normalise)
            fingerprint.update(shift_sets.fingerprint(published))
        return TaskData(
            kind="classification",
            train=Split(x_train, torch.from_numpy(train_labels[: cfg.n_train])),
            test=Split(normalise(test_pixels[first]), torch.from_numpy(test_labels[first])),
            out_dim=self.classes,
            ood={name: normalise(pixels[first]) for name, (pixels, _) in images.items()},
            shifted=shifted,
            train_transform=RandomCropFlip(4, self.flip) if cfg.augment else None,
            data_sha256=fingerprint,
            info={"ood_unavailable": missing} if missing else {},
        )


def _sha256(located: Iterable[Located]) -> dict[str, str]:
    """name -> sha256 of every located file (or the identity text of a set built in memory)."""
    return {name: file_sha256(p) if isinstance(p, Path) else p for found in located for name, p in found.items()}


@tasks.register("cifar10")
class CIFAR10(ImageTask):
    """CIFAR-10 (Krizhevsky 2009): 32x32 colour photographs, 10 classes; ResNet, crop + flip augmentation."""

    ood_sets = ("svhn", "cifar100")
    source = "torchvision (download or --data-dir)"
    dataset, classes, full_sizes = "cifar10", 10, (50000, 10000)
    published_shift = "CIFAR-10-C"


@tasks.register("cifar100")
class CIFAR100(ImageTask):
    """CIFAR-100 (Krizhevsky 2009): 32x32 colour photographs, 100 classes; ResNet, crop + flip augmentation."""

    ood_sets = ("svhn", "cifar10")
    source = "torchvision (download or --data-dir)"
    dataset, classes, full_sizes = "cifar100", 100, (50000, 10000)
    published_shift = "CIFAR-100-C"


@tasks.register("svhn")
class SVHN(ImageTask):
    """SVHN (Netzer et al. 2011): 32x32 house-number digits, 10 classes; ResNet, crop augmentation (no flips)."""

    ood_sets = ("cifar10", "cifar100")
    source = "torchvision (download or --data-dir)"
    dataset, classes, full_sizes, flip = "svhn", 10, (73257, 26032), False
