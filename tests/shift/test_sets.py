"""Shifted test sets: the generated cache, the CIFAR-10-C / CIFAR-100-C reader on tiny files in the published
on-disk format (one uint8 [5 * N, 32, 32, 3] `.npy` per corruption, `labels.npy`, optionally in the `.tar`), and
the image tasks' `shift` setting end to end."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from image_files import N, image_root as write_image_root, register_checksums, write_cifar10
from uqbench.errors import DataError
from uqbench.shift import sets
from uqbench.shift.corruptions import SEVERITIES, corrupt
from uqbench.spec import resolve
from uqbench.tasks import tasks


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def few_corruptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three cheap corruptions (one colour-only) stand for the 19: these tests are about the sets, not the
    corruptions (tests/shift/test_corruptions.py)."""
    monkeypatch.setattr(sets, "CORRUPTIONS", ("gaussian_noise", "contrast", "saturate"))


@pytest.fixture
def image_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_image_root(tmp_path / "data")
    register_checksums(monkeypatch, root)
    return root


def clean_images(n: int = 6, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def test_generated_sets_are_the_corruptions_in_hendrycks_layout_and_are_cached_by_content(cache):
    clean = clean_images()
    files = sets.generated(clean, torch.device("cpu"))
    assert set(files) == set(sets.corruption_names(3))
    name, path = next(iter(files.items()))
    array = np.load(path)
    assert array.shape == (5 * 6, 32, 32, 3) and array.dtype == np.uint8
    for s in SEVERITIES:  # severity s is the s-th block of N images, channels last, quantised like the published files
        expected = (corrupt(clean, name, s, sets.SEED) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(array[(s - 1) * 6 : s * 6], expected)
    mtime = path.stat().st_mtime_ns
    assert sets.generated(clean, torch.device("cpu")) == files and path.stat().st_mtime_ns == mtime  # not regenerated
    other = sets.generated(clean_images(n=5), torch.device("cpu"))
    assert other[name] != path  # other images, another file


def test_a_damaged_cached_file_is_generated_again(cache):
    clean = clean_images()
    files = sets.generated(clean, torch.device("cpu"))
    path = next(iter(files.values()))
    good = path.read_bytes()
    path.write_bytes(good[:100])
    sets.generated(clean, torch.device("cpu"))
    assert path.read_bytes() == good


def test_shifted_sets_take_the_first_n_images_of_each_severity_and_standardise_them(cache):
    clean = clean_images(n=6)
    files = sets.generated(clean, torch.device("cpu"))
    labels = torch.arange(6)
    shifted = sets.shifted_sets(files, 4, labels, lambda u8: torch.from_numpy(u8).float())
    assert len(shifted) == len(files) * 5 and [s.label for s in shifted[:2]] == [f"{next(iter(files))}.1", f"{next(iter(files))}.2"]
    first = shifted[1]  # the first corruption at severity 2
    array = np.load(files[first.name])
    expected = torch.from_numpy(array[6:10].transpose(0, 3, 1, 2).copy()).float()
    assert torch.equal(first.inputs(), expected) and torch.equal(first.y, labels[:4])


def write_published(root: Path, folder_name: str, labels: np.ndarray, channels: int = 3) -> Path:
    """Hendrycks's files for a test set with these labels: random uint8 [5 N, 32, 32, C] per corruption."""
    folder = root / folder_name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in sets.corruption_names(channels):
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (5 * len(labels), 32, 32, channels), dtype=np.uint8))
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))  # the published labels are uint8
    return folder


def cifar10_test_labels(root: Path) -> np.ndarray:
    return tasks.get("cifar10")(data_dir=root).decode("cifar10", {"t": root / "cifar-10-batches-py" / "test_batch"})[1]


def test_the_published_folder_is_read_and_checked_against_the_test_set(image_root):
    labels = cifar10_test_labels(image_root)
    folder = write_published(image_root, "CIFAR-10-C", labels)
    files = sets.published("CIFAR-10-C", image_root, labels, (32, 32, 3))
    assert files is not None and files["labels"] == folder / "labels.npy" and len(files) == len(sets.corruption_names(3)) + 1
    assert sets.published("CIFAR-100-C", image_root, labels, (32, 32, 3)) is None  # absent: generated instead
    with pytest.raises(DataError, match="not the labels of this test set"):
        sets.published("CIFAR-10-C", image_root, (labels + 1) % 10, (32, 32, 3))


@pytest.mark.parametrize("damage, message", [
    ("missing", "is missing"),
    ("float", "expected uint8"),
    ("shape", "expected uint8"),
    ("pickle", "not a .npy array"),
    ("link", "not a regular file"),
])
def test_a_malformed_published_file_is_refused_in_one_line(image_root, damage, message):
    labels = cifar10_test_labels(image_root)
    folder = write_published(image_root, "CIFAR-10-C", labels)
    victim = folder / f"{sets.corruption_names(3)[0]}.npy"
    if damage == "missing":
        victim.unlink()
    elif damage == "float":
        np.save(victim, np.zeros((5 * N, 32, 32, 3), dtype=np.float32))
    elif damage == "shape":
        np.save(victim, np.zeros((5 * N - 1, 32, 32, 3), dtype=np.uint8))
    elif damage == "pickle":  # an object array: np.load would unpickle it; it must not
        np.save(victim, np.array([print], dtype=object), allow_pickle=True)
    else:
        other = folder / "elsewhere.npy"
        victim.rename(other)
        victim.symlink_to(other)
    with pytest.raises(DataError, match=message):
        sets.published("CIFAR-10-C", image_root, labels, (32, 32, 3))


def test_the_archive_is_checked_against_its_published_md5_then_unpacked(image_root, cache, monkeypatch):
    labels = cifar10_test_labels(image_root)
    staged = write_published(image_root / "staging", "CIFAR-10-C", labels)
    archive = image_root / "CIFAR-10-C.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(staged, arcname="CIFAR-10-C")
        evil = tarfile.TarInfo("../evil.npy")  # a path outside the folder: never written
        payload = io.BytesIO(b"x" * 10)
        evil.size = 10
        tar.addfile(evil, payload)
    with pytest.raises(DataError, match="Zenodo's published checksum"):
        sets.published("CIFAR-10-C", image_root, labels, (32, 32, 3))
    assert not (cache / "CIFAR-10-C").exists()
    from uqbench.datasets import file_md5

    monkeypatch.setitem(sets.PUBLISHED, "CIFAR-10-C", ("CIFAR-10-C.tar", file_md5(archive)))
    files = sets.published("CIFAR-10-C", image_root, labels, (32, 32, 3))
    assert files is not None and all(p.parent == cache / "CIFAR-10-C" for p in files.values())
    assert not (cache / "evil.npy").exists() and not (cache.parent / "evil.npy").exists()
    name = sets.corruption_names(3)[0]
    assert (cache / "CIFAR-10-C" / f"{name}.npy").read_bytes() == (staged / f"{name}.npy").read_bytes()


def test_cifar10_with_shift_reads_the_published_files_and_names_them_in_its_key(image_root):
    labels = cifar10_test_labels(image_root)
    folder = write_published(image_root, "CIFAR-10-C", labels)
    spec = resolve("map", "cifar10", ["shift=true", "n_test=5"], data_dir=image_root)
    assert "shift/CIFAR-10-C/labels.npy" in spec.data and "shift" not in spec.data
    task = spec.make_task(image_root)
    data = task.load(0, 0)
    assert data.data_sha256 == spec.data
    assert [s.label for s in data.shifted] == list(task.shifted_labels())
    fog = next(s for s in data.shifted if s.label == f"{sets.corruption_names(3)[0]}.3")
    raw = np.load(folder / f"{fog.name}.npy")[2 * N : 2 * N + 5].transpose(0, 3, 1, 2)
    from uqbench.tasks.images import Normaliser

    train = task.decode("cifar10", task.located()["train"][1])[0]
    assert torch.equal(fog.inputs(), Normaliser.fit(train)(raw)) and len(fog.y) == 5


@pytest.mark.parametrize("task_name", ["cifar10", "svhn", "fashion-mnist"])
def test_image_tasks_generate_their_shifted_sets_without_published_files(image_root, task_name, tmp_path, monkeypatch):
    if task_name == "fashion-mnist":
        from image_files import write_mnist_like

        write_mnist_like(image_root / "FashionMNIST" / "raw", seed=3, gz=False)
    spec = resolve("map", task_name, ["shift=true"], data_dir=image_root)
    assert spec.data["shift"] == f"generated/{sets.VERSION}"
    task = spec.make_task(image_root)
    data = task.load(0, 0)
    channels = data.in_shape[0]
    assert [s.label for s in data.shifted] == list(sets.labels(channels)) == list(task.shifted_labels())
    assert all(s.inputs().shape == data.test.x.shape for s in data.shifted[:5])
    assert ("saturate" in {s.name for s in data.shifted}) == (channels == 3)


def test_digits_shift_is_in_the_key_and_off_by_default():
    plain, shifted = resolve("map", "digits"), resolve("map", "digits", ["shift=true"])
    assert "shift" not in plain.data and plain.make_task().load(0, 0).shifted == ()
    assert shifted.id != plain.id and shifted.data["shift"] == f"generated/{sets.VERSION}"


def test_asking_for_shift_metrics_reuses_the_cached_network(tmp_path):
    """`shift` changes what a run is evaluated on, not what it trains: the MAP network is shared, and the clean
    metrics are bit-identical."""
    from uqbench.runner import RunOptions, Runner

    runner = Runner(RunOptions(out=tmp_path / "out"))
    plain, shifted = (resolve("map", "digits", [*extra, "epochs=2", "n_test=40"]) for extra in ([], ["shift=true"]))
    assert plain.shared_key() == shifted.shared_key() and plain.id != shifted.id
    first, _ = runner.run(plain)
    runner.artifacts._memory.clear()  # read it back from the store's file, as a later command would
    second, _ = runner.run(shifted)
    assert second.artifacts["backbone"] == first.artifacts["backbone"] and runner.artifacts.used[first.artifacts["backbone"]] == "loaded"
    assert {k: v for k, v in second.metrics.items() if not k.startswith("shift.")} == first.metrics
