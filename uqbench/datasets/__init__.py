"""Dataset cards and checksummed data files: where a dataset's files come from and where they are kept.

A *card* is a TOML file shipped in this package (`uqbench/datasets/<name>.toml`). It names the dataset, its
licence and citation, the URL its files are downloaded from, the folder they live in, and the sha256 of every
file uqbench reads; any further tables (shape, protocol, ...) are kept as `facts`.

A *data root* is a directory holding `<card.folder>/<file>` for every dataset. `fetch` finds a file in one of:

1. `--data-dir DIR` (argument `data_dir`): read from disk only, never downloaded;
2. the cache `$UQBENCH_DATA`, or the user cache directory (`~/.cache/uqbench` on Linux) when it is unset:
   a file missing there is downloaded with pooch.

Every file is checked against the card's sha256 before use; a file whose checksum differs is refused
(`DataError`), never used. Missing files give one line naming the file, where it was looked for, and how to
supply it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from uqbench.errors import DataError

ENV_VAR = "UQBENCH_DATA"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class DatasetCard:
    """What a dataset card says.

    Attributes:
        name: card name, e.g. 'uci-boston' (the card file is `<name>.toml`).
        title: human-readable dataset name.
        folder: the files' folder inside a data root, e.g. 'bostonHousing/data'.
        base_url: URL of that folder at the source (ends with '/'); a file's URL is base_url + file name.
        files: file name (relative to `folder`) -> expected sha256 (64 hex digits).
        licence: licence of the data and of the files as distributed.
        citation: reference(s) to cite.
        homepage: where to read about the dataset.
        facts: every other table of the card (e.g. 'shape', 'protocol'), as parsed.
    """

    name: str
    title: str
    folder: str
    base_url: str
    files: dict[str, str]
    licence: str
    citation: str
    homepage: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def url(self, filename: str) -> str:
        return self.base_url + filename


def card_names() -> list[str]:
    """Names of every card shipped with uqbench, sorted."""
    here = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in here.iterdir() if p.name.endswith(".toml"))


@functools.lru_cache(maxsize=None)
def load_card(name: str) -> DatasetCard:
    """Read the card `uqbench/datasets/<name>.toml`; DataError if it is absent or lacks a required key."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    source = resources.files(__name__) / f"{name}.toml"
    if not source.is_file():
        raise DataError(f"no dataset card {name!r}; available: {', '.join(card_names())}")
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    try:
        origin = data.pop("source")
        card = DatasetCard(
            name=data.pop("name"),
            title=data.pop("title"),
            folder=origin["folder"],
            base_url=origin["base_url"],
            files=dict(data.pop("files")),
            licence=data.pop("licence"),
            citation=data.pop("citation"),
            homepage=data.pop("homepage", ""),
            facts=data,
        )
    except KeyError as exc:
        raise DataError(f"dataset card {name!r} lacks the key {exc.args[0]!r}") from None
    if card.name != name:
        raise DataError(f"dataset card {name}.toml names itself {card.name!r}")
    return card


def data_root(data_dir: Path | None = None) -> Path:
    """The data root: `data_dir` if given, else $UQBENCH_DATA if set, else the user cache directory."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    import pooch

    return Path(pooch.os_cache("uqbench"))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes; remembered in this process while the file's size, mtime and inode stay."""
    return _file_digest(path, "sha256")


def file_md5(path: Path) -> str:
    """Hex md5 of a file's bytes, for files whose publisher gives only an md5 (torchvision's datasets); remembered
    like `file_sha256`."""
    return _file_digest(path, "md5")


def _file_digest(path: Path, algorithm: str) -> str:
    stat = os.stat(path)
    return _digest_of(os.path.realpath(path), algorithm, stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=512)
def _digest_of(path: str, algorithm: str, size: int, mtime_ns: int, inode: int) -> str:
    # FIPS builds refuse md5 unless flagged, as torchvision does: it only matches a file to a published digest
    digest = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(card: DatasetCard, filename: str, data_dir: Path | None = None) -> Path:
    """Path of a verified local copy of one of the card's files.

    Args:
        card: the dataset card; `filename` must be one of `card.files`.
        filename: path relative to `card.folder`, e.g. 'data.txt'.
        data_dir: read `data_dir/<folder>/<filename>` and never download; None: use the cache, downloading
            into it what is missing.

    Raises:
        DataError: the file is missing (and could not be downloaded) or its sha256 differs from the card's.
    """
    if filename not in card.files:
        raise ValueError(f"{filename!r} is not listed in dataset card {card.name!r}")
    if data_dir is None:
        return _download(card, filename, data_root())
    path = Path(data_dir) / card.folder / filename
    if not path.is_file():
        raise DataError(
            f"{card.name}: file not found: {path} (--data-dir must hold <dir>/{card.folder}/{filename}; "
            f"source: {card.url(filename)}; or omit --data-dir to download it)"
        )
    _verify(card, filename, path)
    return path


def _verify(card: DatasetCard, filename: str, path: Path) -> None:
    actual = file_sha256(path)
    if actual != card.files[filename]:
        raise DataError(
            f"{card.name}: {path} has sha256 {actual[:12]}..., expected {card.files[filename][:12]}...; "
            f"refusing a corrupt or different file (replace it with {card.url(filename)})"
        )


@contextlib.contextmanager
def tidy_on_failure(folder: Path) -> Iterator[None]:
    """If the body raises, remove the folders on the way to `folder` that it created and left empty (a failed
    download must not leave an empty cache tree behind)."""
    folder = Path(folder).absolute()
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in missing:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise


def _download(card: DatasetCard, filename: str, root: Path) -> Path:
    import pooch

    folder = root / card.folder
    try:
        with _quiet(pooch.get_logger()), tidy_on_failure(folder):
            path = pooch.retrieve(
                card.url(filename),
                known_hash=f"sha256:{card.files[filename]}",
                fname=filename,
                path=folder,
                progressbar=False,
                downloader=pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S),
            )
    except (OSError, ValueError, RuntimeError) as exc:  # network: OSError; checksum: ValueError; a link loop: RuntimeError
        state = "has a different sha256" if (folder / filename).is_file() else "is missing"
        raise DataError(
            f"{card.name}: {folder / filename} {state} and downloading {card.url(filename)} failed "
            f"({_reason(exc)}); put the file there, set {ENV_VAR} to a directory holding "
            f"{card.folder}/{filename}, or pass --data-dir DIR"
        ) from None
    return Path(path)


def _reason(exc: Exception) -> str:
    """A short reason for a failed download: requests' own messages run to several hundred characters."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.RequestException):
        return type(exc).__name__
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Silence pooch's 'Downloading ...' log lines: stderr belongs to uqbench's progress and errors."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


__all__ = ["DatasetCard", "card_names", "data_root", "fetch", "file_md5", "file_sha256", "load_card"]
