"""Image tasks: the on-disk readers, normalisation, augmentation, offline errors and end-to-end runs.

Every test writes a tiny dataset in the real formats (CIFAR's pickled python batches, SVHN's .mat files, IDX
files for Fashion-MNIST and MNIST) into tmp_path and passes it as --data-dir, so the real loading code runs
offline; the tiny CIFAR / SVHN files' md5s are registered in place of the published ones, so they pass through
the real checksum check. Downloads are replaced by a function that fails as an offline machine does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import pickletools
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from image_files import N, image_root as write_image_root, random_pixels as _pixels, register_checksums, write_batch, write_cifar10, write_cifar100, write_idx, write_mnist_like, write_svhn
from uqbench.cli import app
from uqbench.datasets import file_md5, file_sha256
from uqbench.errors import BadConfig, DataError
from uqbench.methods import methods
from uqbench.spec import resolve
from uqbench.tasks import fashion_mnist, tasks
from uqbench.tasks import images
from uqbench.tasks.images import PUBLISHED_MD5, SOURCES, Normaliser, RandomCropFlip, locate_files


def _read(name: str, split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels) of one split of a dataset, through the task code's own locate and read."""
    return SOURCES[name].read(list(locate_files(SOURCES[name], split, root).values()))


@pytest.fixture
def image_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with tiny CIFAR-10, CIFAR-100 and SVHN, their md5s registered."""
    root = write_image_root(tmp_path / "data")
    register_checksums(monkeypatch, root)
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An empty cache and downloads that fail as on a machine without network; returns the names attempted."""
    attempts: list[str] = []
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "cache"))

    def fail(name: str):
        def download(*args, **kwargs):
            attempts.append(name)
            raise urllib.error.URLError("[Errno -2] Name or service not known")

        return download

    for name, source in SOURCES.items():
        monkeypatch.setitem(SOURCES, name, dataclasses.replace(source, download=fail(name)))
    monkeypatch.setattr(fashion_mnist, "torchvision_download", fail)
    return attempts


def test_cifar_reader_keeps_the_channel_first_layout(tmp_path, monkeypatch):
    test_pixels = write_cifar10(tmp_path)
    register_checksums(monkeypatch, tmp_path)
    np.testing.assert_array_equal(_read("cifar10", "test", tmp_path)[0], test_pixels)
    pixels, labels = _read("cifar10", "train", tmp_path)
    assert pixels.shape == (5 * N, 3, 32, 32) and labels.dtype == np.int64


def test_cifar100_uses_fine_labels_and_svhn_maps_10_to_0(tmp_path, monkeypatch):
    write_cifar100(tmp_path)
    pixels, y = write_svhn(tmp_path)
    register_checksums(monkeypatch, tmp_path)
    assert _read("cifar100", "test", tmp_path)[1].max() < 100
    test_pixels, test_labels = _read("svhn", "test", tmp_path)
    np.testing.assert_array_equal(test_pixels, pixels)
    np.testing.assert_array_equal(test_labels, y[:, 0] % 10)
    assert set(test_labels) <= set(range(10))


def test_normaliser_matches_numpy_statistics():
    pixels = _pixels(np.random.default_rng(0), 20, (3, 8, 8))
    norm = Normaliser.fit(pixels)
    x = pixels.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, x.mean((0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.std, x.std((0, 2, 3)), rtol=1e-6)
    out = norm(pixels)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_cifar10_task_data(image_root):
    cifar10 = tasks.get("cifar10")
    task = cifar10(cifar10.Config(n_train=40, n_test=10), data_dir=image_root)
    data = task.load(seed=0, split=0)
    assert data.train.x.shape == (40, 3, 32, 32) and data.test.x.shape == (10, 3, 32, 32)
    assert data.out_dim == 10 and data.in_shape == (3, 32, 32)
    assert list(data.ood) == ["svhn", "cifar100"] and all(v.shape == (10, 3, 32, 32) for v in data.ood.values())
    assert isinstance(data.train_transform, RandomCropFlip) and data.train_transform.flip
    assert len(data.data_sha256) == 5 + 1 + 1 + 1 and not data.info
    test_batch = "cifar-10-batches-py/test_batch"
    assert data.data_sha256[test_batch] == file_sha256(image_root / test_batch)
    assert task.fingerprint(0) == data.data_sha256  # the run's key names exactly the files it reads
    assert task.size() == "40 / 10"


def test_svhn_task_crops_without_flipping_and_augment_can_be_off(image_root):
    svhn = tasks.get("svhn")
    assert svhn(data_dir=image_root).load(0, 0).train_transform == RandomCropFlip(4, flip=False)
    assert svhn(svhn.Config(augment=False), data_dir=image_root).load(0, 0).train_transform is None


def test_random_crop_flip_is_a_padded_crop_drawn_from_the_generator():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    augment = RandomCropFlip(padding=2)
    out = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(-1)) for w in windows)
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x, torch.Generator()), x)


def test_random_crop_flip_draws_uniform_shifts_and_fair_flips():
    x = torch.zeros(4000, 1, 3, 3)
    x[:, :, 1, 1] = 1.0  # a mark in the centre: a shift (dy, dx) in {0, 1, 2}^2 moves it to (2 - dy, 2 - dx)
    shifted = RandomCropFlip(padding=1, flip=False)(x, torch.Generator().manual_seed(0))
    frequency = torch.bincount(shifted.flatten(1).argmax(1), minlength=9).float() / len(x)
    assert ((frequency > 0.08) & (frequency < 0.14)).all()
    x = torch.zeros(4000, 1, 1, 3)
    x[..., 0] = 1.0
    flipped = RandomCropFlip(padding=0, flip=True)(x, torch.Generator().manual_seed(0))[:, 0, 0, 2] == 1
    assert 0.45 < flipped.float().mean() < 0.55


def test_config_validation():
    with pytest.raises(BadConfig, match="'n_train' must be at least 1; got 0"):
        tasks.get("cifar10").Config(n_train=0)


def test_a_gpu_changes_where_a_run_goes_not_what_it_is(monkeypatch, image_root):
    """The default backbone and precision never read the machine, so the run id is the same with and without a GPU."""
    ids = []
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        spec = resolve("map", "cifar100", data_dir=image_root)
        assert (spec.backbone.arch, spec.recipe.precision) == ("resnet-small", "fp32")
        ids.append(spec.id)
    assert ids[0] == ids[1]
    assert resolve("map", "cifar100", ["precision=bf16"], data_dir=image_root).id != ids[0]  # precision is in the key


def test_missing_file_in_data_dir_names_it_and_never_downloads(tmp_path, offline, monkeypatch):
    write_cifar10(tmp_path)  # but no SVHN, which is an OOD set of cifar10
    register_checksums(monkeypatch, tmp_path)
    with pytest.raises(DataError, match=r"svhn: file not found: .*test_32x32.mat; --data-dir must hold"):
        tasks.get("cifar10")(data_dir=tmp_path).load(0, 0)
    assert offline == []


def test_offline_without_data_dir_is_one_line_and_exit_2(tmp_path, offline):
    result = CliRunner().invoke(app, ["run", "map", "--task", "cifar10", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cifar10: not in ") and "download failed" in lines[0]
    assert "--data-dir DIR holding cifar-10-batches-py/" in lines[0] and "Traceback" not in result.output
    assert result.stdout == "" and offline == ["cifar10"]


def test_corrupt_file_is_refused_by_its_checksum_and_by_the_reader(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    register_checksums(monkeypatch, tmp_path)
    expected = file_md5(tmp_path / "cifar-10-batches-py/test_batch")
    (tmp_path / "cifar-10-batches-py/test_batch").write_bytes(b"not a pickle")
    actual = hashlib.md5(b"not a pickle").hexdigest()
    with pytest.raises(DataError, match=rf"cifar10: .*test_batch has md5 {actual[:12]}\.\.\., expected "
                                        rf"{expected[:12]}\.\.\. \(torchvision's published checksum\); refusing"):
        _read("cifar10", "test", tmp_path)
    register_checksums(monkeypatch, tmp_path)  # as if that were the published file: the reader refuses it
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        _read("cifar10", "test", tmp_path)


# -- files from elsewhere: checked against the published md5, then parsed without running code ------------------
class Payload:
    """Unpickling this runs `call(*args)`: a harmless stand-in for an attacker's code (it creates `marker`)."""

    def __init__(self, call, marker: Path):
        self.call, self.marker = call, marker

    def __reduce__(self):
        if self.call is exec:
            return exec, (f"open({str(self.marker)!r}, 'w').close()",)
        return os.system, (f"touch '{self.marker}'",)


def _plant(root: Path, call, marker: Path) -> Path:
    """Replace cifar10's data_batch_1 with a batch whose 'data' is a payload; returns its path."""
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": Payload(call, marker), "labels": [0] * N}, protocol=2))
    return batch


@pytest.mark.parametrize("call", [exec, os.system], ids=["exec", "system"])
def test_a_crafted_batch_is_refused_by_its_checksum_before_it_is_read(image_root, tmp_path, monkeypatch, call):
    marker = tmp_path / "pwned"
    expected = PUBLISHED_MD5["cifar-10-batches-py/data_batch_1"]  # the registered md5 of the tiny batch it replaces
    batch = _plant(image_root, call, marker)
    monkeypatch.setattr(images.safe_pickle, "load_arrays", lambda *a, **k: pytest.fail("a batch was parsed"))
    with pytest.raises(DataError) as caught:
        tasks.get("cifar10")(data_dir=image_root).load(0, 0)
    message = str(caught.value)
    assert message == (
        f"cifar10: {batch} has md5 {file_md5(batch)[:12]}..., expected {expected[:12]}... (torchvision's published "
        f"checksum); refusing a corrupt or different file unread; --data-dir must hold {SOURCES['cifar10'].hint}, "
        f"or omit --data-dir to download it"
    )
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message and not marker.exists()


@pytest.mark.parametrize("call", [exec, os.system], ids=["exec", "system"])
def test_a_crafted_batch_with_a_matching_checksum_is_refused_by_the_unpickler(image_root, tmp_path, monkeypatch, call):
    """As if the md5 collided or the table were tampered with: the restricted unpickler still runs nothing."""
    marker = tmp_path / "pwned"
    batch = _plant(image_root, call, marker)
    register_checksums(monkeypatch, image_root)
    asked = "__builtin__.exec" if call is exec else f"{os.system.__module__}.system"  # as protocol 2 names them
    with pytest.raises(DataError) as caught:
        tasks.get("cifar10")(data_dir=image_root).load(0, 0)
    assert str(caught.value) == f"{batch}: not a CIFAR python batch: it asks for {asked}"
    assert not marker.exists()
    pickle.loads(batch.read_bytes())  # the payload is live: plain pickle runs it
    assert marker.exists()


def test_an_object_array_in_a_batch_is_refused(image_root, monkeypatch):
    batch = image_root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": [0, 1]}, protocol=2))
    register_checksums(monkeypatch, image_root)
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR python batch: it asks for an array of dtype 'O8'$"):
        _read("cifar10", "train", image_root)


def test_the_published_format_and_python3_pickles_load(tmp_path, monkeypatch):
    """The published batches: Python 2's protocol 2 (str as BINSTRING, numpy 1.x's `numpy.core.multiarray`),
    read with latin1; a Python 3 pickle with bytes keys (numpy 2's `numpy._core`) reads the same."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    pixels = _pixels(np.random.default_rng(0), N, (3, 32, 32))
    labels = [i % 10 for i in range(N)]
    write_batch(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels,
                                        "data": pixels.reshape(N, 3072), "filenames": [f"{i}.png" for i in range(N)]})
    ops = list(pickletools.genops((folder / "test_batch").read_bytes()))
    assert "BINSTRING" in {op.name for op, _, _ in ops} and not {op.name for op, _, _ in ops} & {"BINUNICODE", "BINBYTES"}
    assert [arg for op, arg, _ in ops if op.name == "GLOBAL"] == ["numpy.core.multiarray _reconstruct", "numpy ndarray",
                                                                  "numpy dtype"]
    register_checksums(monkeypatch, tmp_path)
    got_pixels, got_labels = _read("cifar10", "test", tmp_path)
    np.testing.assert_array_equal(got_pixels, pixels)
    np.testing.assert_array_equal(got_labels, labels)
    for protocol in (2, 4):
        with open(folder / "test_batch", "wb") as fh:
            pickle.dump({b"labels": labels, b"data": pixels.reshape(N, 3072), b"batch_label": b"x"}, fh, protocol)
        register_checksums(monkeypatch, tmp_path)
        np.testing.assert_array_equal(_read("cifar10", "test", tmp_path)[0], pixels)


def test_the_checksum_table_is_torchvisions(monkeypatch):
    datasets = pytest.importorskip("torchvision.datasets")
    published = {f"{cls.base_folder}/{name}": md5 for cls in (datasets.CIFAR10, datasets.CIFAR100)
                 for name, md5 in cls.train_list + cls.test_list}
    published.update({name: md5 for split, (_, name, md5) in datasets.SVHN.split_list.items() if split != "extra"})
    assert PUBLISHED_MD5 == published
    assert set(PUBLISHED_MD5) == {name for s in SOURCES.values() for files in s.files.values() for name in files}


def test_a_changed_file_in_the_cache_is_refused_with_how_to_replace_it(tmp_path, offline, monkeypatch):
    cache = Path(os.environ["UQBENCH_DATA"])
    write_svhn(cache)
    register_checksums(monkeypatch, cache)
    (cache / "test_32x32.mat").write_bytes(b"changed")
    with pytest.raises(DataError, match=r"svhn: .*test_32x32.mat has md5 .*; delete it to download it again, or "
                                        r"pass --data-dir DIR holding train_32x32.mat and test_32x32.mat from http"):
        locate_files(SOURCES["svhn"], "test", None)
    assert offline == []  # present files are never downloaded over


def test_md5_helper_streams_and_notices_a_changed_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert file_md5(path) == hashlib.md5(b"abc" * 1000).hexdigest()
    path.write_bytes(b"abd" * 1001)
    assert file_md5(path) == hashlib.md5(b"abd" * 1001).hexdigest()


@pytest.mark.parametrize("registered", [False, True], ids=["checksum", "unpickler"])
def test_cli_run_on_a_crafted_batch_is_one_line_and_exit_2(image_root, tmp_path, monkeypatch, registered):
    marker, out = tmp_path / "pwned", tmp_path / "out"
    batch = _plant(image_root, exec, marker)
    if registered:
        register_checksums(monkeypatch, image_root)
    args = ["run", "map", "--task", "cifar10", "--data-dir", str(image_root), "--out", str(out),
            "--set", "n_train=12", "--set", "epochs=1", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    refusal = f"{batch}: not a CIFAR python batch: it asks for __builtin__.exec" if registered else \
        f"cifar10: {batch} has md5 "
    assert len(lines) == 1 and lines[0].startswith(f"error: {refusal}"), result.stderr
    assert result.stdout == "" and not marker.exists() and not list(out.glob("**/*.json"))


@pytest.mark.parametrize("method", ["map", "vbll"])
def test_run_end_to_end_on_a_tiny_cifar10(image_root, tmp_path, method):
    if method not in methods.names():
        pytest.skip(f"method {method!r} is not registered yet")
    backbone = "resnet-small" if method == "map" else "cnn"  # the ResNet path once; the other run kept cheap
    args = ["run", method, "--task", "cifar10", "--data-dir", str(image_root), "--out", str(tmp_path / "out"),
            "--epochs", "1", "--set", f"arch={backbone}", "--set", "batch_size=16", "--set", "n_test=8",
            "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["status"] == "ok"
    assert record["n"] == {"train": 5 * N, "val": 0, "test": 8, "ood.svhn": 8, "ood.cifar100": 8}
    assert {"accuracy", "nll", "ece", "ood.svhn.auroc", "ood.cifar100.auroc"} <= set(record["metrics"])
    assert record["key"]["backbone"]["arch"] == backbone
    assert "cifar-10-batches-py/data_batch_1" in record["data_sha256"]


def test_idx_reader_plain_and_gzipped(tmp_path):
    array = _pixels(np.random.default_rng(0), 3, (28, 28))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / name), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        fashion_mnist.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "a-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(DataError, match="IDX header says shape"):
        fashion_mnist.read_idx(tmp_path / "short")


def test_fashion_mnist_from_a_flat_data_dir_with_mnist(tmp_path, offline):
    write_mnist_like(tmp_path, seed=0, gz=False)
    write_mnist_like(tmp_path / "MNIST" / "raw", seed=1, gz=True, splits=("test",))
    data = tasks.get("fashion-mnist")(data_dir=tmp_path).load(0, 0)
    assert data.train.x.shape == (N, 1, 28, 28)
    assert list(data.ood) == ["mnist", "digits"]
    assert data.ood["mnist"].shape == (N, 1, 28, 28) and data.ood["digits"].shape == (1797, 1, 28, 28)
    assert data.train_transform is None and not data.info
    assert "MNIST/raw/t10k-images-idx3-ubyte.gz" in data.data_sha256 and offline == []


def test_fashion_mnist_without_mnist_names_the_missing_ood_set(tmp_path, offline):
    write_mnist_like(tmp_path / "FashionMNIST" / "raw", seed=0, gz=True)
    data = tasks.get("fashion-mnist")(data_dir=tmp_path).load(0, 0)
    assert list(data.ood) == ["digits"] and data.info == {"ood_unavailable": ["mnist"]}


def test_fashion_mnist_missing_everywhere_offline(monkeypatch, tmp_path, offline):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    expected = r"could not be downloaded; pass --data-dir DIR holding them, or install Debian.s package \(apt-get"
    with pytest.raises(DataError, match=expected):
        tasks.get("fashion-mnist")().load(0, 0)
    assert offline == ["FashionMNIST"]


@pytest.mark.data
@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package(offline):
    task = tasks.get("fashion-mnist")(tasks.get("fashion-mnist").Config(n_test=100))
    data = task.load(0, 0)
    assert data.train.x.shape == (60000, 1, 28, 28) and data.test.x.shape == (100, 1, 28, 28)
    assert torch.bincount(data.train.y).tolist() == [6000] * 10
    assert data.info == {"ood_unavailable": ["mnist"]} and offline == ["MNIST"]
    assert set(data.data_sha256) >= {str(fashion_mnist.DEBIAN_DIR / "train-images-idx3-ubyte.gz"), "digits"}


def test_list_tasks_shows_the_image_tasks():
    result = CliRunner().invoke(app, ["list", "tasks", "--format", "csv"])
    rows = {line.split(",")[0]: line for line in result.stdout.splitlines()}
    assert rows["cifar10"].startswith("cifar10,classification,50000 / 10000,1,\"svhn, cifar100\"")
    assert rows["cifar100"].startswith("cifar100,classification,50000 / 10000,1,\"svhn, cifar10\"")
    assert rows["svhn"].startswith("svhn,classification,73257 / 26032,1,")
    assert rows["fashion-mnist"].startswith("fashion-mnist,classification,60000 / 10000,1,\"mnist, digits\"")


@pytest.mark.gpu
def test_cuda_run_with_mixed_precision(image_root, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    args = ["run", "map", "--task", "cifar10", "--data-dir", str(image_root), "--out", str(tmp_path / "out"),
            "--epochs", "2", "--set", "arch=resnet18", "--set", "precision=bf16", "--device", "cuda", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["status"] == "ok" and record["env"]["device"] == "cuda" and record["key"]["recipe"]["precision"] == "bf16"

