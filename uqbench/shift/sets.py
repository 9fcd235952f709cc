"""Shifted test sets of the image tasks: every corruption of Hendrycks & Dietterich (2019) at severities 1-5.

Two sources, one on-disk format — Hendrycks's: one `<corruption>.npy` per corruption, uint8 [5 * N, H, W, C], the N
test images at severity 1 first and at severity 5 last.

- Generated (every image task): `uqbench.shift.corruptions` applied to the task's test images with the fixed seed
  `SEED` (the same images for every method, seed and run), quantised to uint8 as the published files are, and
  cached content-addressed in `<data cache>/shift/<corruption>-<hash>.npy`, the hash naming the clean images, the
  corruption and `VERSION`. A cached file that is unreadable or of another shape is generated again.
- Published (CIFAR-10 and CIFAR-100): `CIFAR-10-C/` or `CIFAR-100-C/` under the data root, or the archive
  `CIFAR-10-C.tar` / `CIFAR-100-C.tar` there, which is checked against the md5 Zenodo publishes before anything
  in it is read, then unpacked (plain `.npy` members only) into the data cache. Zenodo publishes no checksum of the
  unpacked files: a folder is checked for its content instead — every file must be a plain uint8 array (read with
  `allow_pickle=False`, so no file can run code) of the expected shape, and `labels.npy` must equal the clean
  test set's labels five times over. The sha256 of every file read is part of the run's key either way.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from uqbench.datasets import data_root, file_md5, file_sha256
from uqbench.errors import DataError
from uqbench.files import subdir, write_atomic
from uqbench.shift.corruptions import CORRUPTIONS, SEVERITIES, applies, corrupt
from uqbench.tasks.base import SHIFT_DATA, ShiftedSet

VERSION = "2"  # of the generated sets: bump when a corruption's output changes (it is in every run's key)
SEED = 0
# Folder -> (archive, md5) as Zenodo lists them: records 2535967 (CIFAR-10-C) and 3555552 (CIFAR-100-C).
PUBLISHED: dict[str, tuple[str, str]] = {
    "CIFAR-10-C": ("CIFAR-10-C.tar", "56bf5dcef84df0e2308c6dcbcbbd8499"),
    "CIFAR-100-C": ("CIFAR-100-C.tar", "11f0ed0f1191edbf9fa23466ae6021d3"),
}
MAX_MEMBER_BYTES = 1 << 30  # a corruption of CIFAR's 10000 test images is 154 MB


def corruption_names(channels: int) -> tuple[str, ...]:
    """The corruptions that apply to images of `channels` channels (saturate needs colour)."""
    return tuple(name for name in CORRUPTIONS if applies(name, channels))


def labels(channels: int) -> tuple[str, ...]:
    """`<corruption>.<severity>` of every shifted set of images of `channels` channels (`ShiftedSet.label`)."""
    return tuple(f"{name}.{s}" for name in corruption_names(channels) for s in SEVERITIES)


def generated(clean: Tensor, device: torch.device | None = None) -> dict[str, Path]:
    """Corruption -> cached file of the corrupted `clean` images [N, C, H, W] (float, in [0, 1]), generating the
    files that are missing on `device` (default: CUDA when there is one, else the CPU)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    digest = hashlib.sha256(f"{VERSION}/{SEED}/{tuple(clean.shape)}/".encode())
    digest.update(clean.detach().cpu().float().contiguous().numpy().tobytes())
    folder = subdir(data_root(), "shift")
    files = {}
    for name in corruption_names(clean.shape[1]):
        path = folder / f"{name}-{digest.hexdigest()[:24]}.npy"
        if _cached(path, 5 * len(clean), clean.shape) is None:
            write_atomic(path, lambda fh, name=name: np.save(fh, _generate(clean, name, device), allow_pickle=False))
        files[name] = path
    return files


def _generate(clean: Tensor, name: str, device: torch.device) -> np.ndarray:
    """uint8 [5 * N, H, W, C]: the corruption at each severity, in Hendrycks's layout."""
    x = clean.to(device, torch.float32)
    out = [(corrupt(x, name, s, SEED) * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu() for s in SEVERITIES]
    return torch.cat(out).numpy()


def _cached(path: Path, rows: int, shape: torch.Size) -> np.ndarray | None:
    try:
        return read_array(path, (rows, shape[2], shape[3], shape[1]))
    except DataError:
        return None


def read_array(path: Path, shape: tuple[int, ...], integers: bool = False) -> np.ndarray:
    """A `.npy` file holding exactly `shape` uint8 values (memory-mapped), or integers of any width with
    `integers` (labels); never unpickles (DataError for anything else)."""
    if path.is_symlink() or not path.is_file():
        raise DataError(f"{path}: missing, or not a regular file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a .npy array ({type(exc).__name__}: {exc})") from None
    if (array.dtype.kind not in "iu" if integers else array.dtype != np.uint8) or array.shape != shape:
        expected = "integers" if integers else "uint8"
        raise DataError(f"{path}: a {array.dtype} array of shape {list(array.shape)}; expected {expected} {list(shape)}")
    return array


def published(folder_name: str, data_dir: Path | None, test_labels: np.ndarray, image_shape: tuple[int, int, int]
              ) -> dict[str, Path] | None:
    """Corruption -> file of the published set `folder_name` ('CIFAR-10-C') for a clean test set with these labels
    [N] and images (H, W, C), checked as the module docstring says; None when neither the folder nor its archive is
    under the data root.

    Raises:
        DataError: an archive with another md5, or a folder whose files are missing, malformed, or not of this
            test set.
    """
    root = data_root(data_dir)
    folder = root / folder_name
    archive, md5 = PUBLISHED[folder_name]
    if not folder.is_dir() and (root / archive).is_file():
        folder = _unpack(root / archive, md5, folder_name)
    if not folder.is_dir():
        return None
    n = len(test_labels)
    stacked = read_array(folder / "labels.npy", (5 * n,), integers=True)
    if not np.array_equal(np.asarray(stacked, dtype=np.int64), np.tile(test_labels, 5)):
        raise DataError(f"{folder / 'labels.npy'}: not the labels of this test set at five severities; "
                        f"{folder} is not {folder_name} of these files")
    files = {name: folder / f"{name}.npy" for name in corruption_names(image_shape[2])}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"{folder_name}: {path} is missing; the folder must hold every corruption of {folder_name}")
        read_array(path, (5 * n, *image_shape))
    return {**files, "labels": folder / "labels.npy"}


def _unpack(archive: Path, md5: str, folder_name: str) -> Path:
    """The archive's `.npy` members unpacked into `<data cache>/<folder_name>/` after its md5 is checked; only plain
    files named `<folder_name>/<name>.npy` are taken (no links, no other paths)."""
    actual = file_md5(archive)
    if actual != md5:
        raise DataError(f"{archive}: md5 {actual[:12]}..., expected {md5[:12]}... (Zenodo's published checksum); "
                        f"refusing a corrupt or different archive unread")
    target = data_root() / folder_name
    if target.is_dir():
        return target
    staging = subdir(data_root(), f".{folder_name}.unpacking")
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not (member.isfile() and len(parts) == 2 and parts[0] == folder_name and parts[1].endswith(".npy")):
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(f"{archive}: member {member.name} has {member.size} bytes; not {folder_name}")
                source = tar.extractfile(member)
                assert source is not None
                write_atomic(staging / parts[1], source.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: not a readable tar archive ({type(exc).__name__}: {exc})") from None
    staging.rename(target)
    return target


def fingerprint(files: dict[str, Path] | None) -> dict[str, str]:
    """What a run's shifted sets are made of, for its key: 'shift/<folder>/<file>' -> sha256 of each file of a
    published set, or the generator's version ('shift' -> 'generated/<VERSION>') for generated sets (None)."""
    if not files:
        return {SHIFT_DATA: f"generated/{VERSION}"}
    return {f"{SHIFT_DATA}/{p.parent.name}/{p.name}": file_sha256(p) for p in files.values()}


def shifted_sets(files: dict[str, Path], n: int, test_labels: Tensor,
                 normalise: Callable[[np.ndarray], Tensor]) -> tuple[ShiftedSet, ...]:
    """A ShiftedSet per (corruption, severity) of these files (Hendrycks's layout: N_file images per severity), for
    the first `n` test images; the inputs are read from the memory-mapped file and standardised by `normalise`
    (uint8 [n, C, H, W] -> the task's units) only when the evaluator asks for them."""
    out = []
    for name, path in files.items():
        if name == "labels":
            continue
        for s in SEVERITIES:
            def inputs(path: Path = path, s: int = s) -> Tensor:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                per_severity = len(array) // len(SEVERITIES)
                rows = array[(s - 1) * per_severity : (s - 1) * per_severity + n]
                return normalise(np.array(rows.transpose(0, 3, 1, 2)))  # a copy: the map is read-only
            out.append(ShiftedSet(name, s, test_labels[:n], inputs))
    return tuple(out)


__all__ = ["PUBLISHED", "SEED", "VERSION", "corruption_names", "fingerprint", "generated", "labels", "published",
           "read_array", "shifted_sets"]
