"""Files uqbench writes and reads in a results directory: atomic, exclusive writes; reads that follow no links.

Every file uqbench writes (records, saved predictions, cached networks, figures) goes through `write_atomic`:
the content is written to a temporary file created exclusively (`O_CREAT | O_EXCL`: an unpredictable name, in
the target's directory, never an existing file or a planted link), flushed to disk, given the mode the user's
umask allows, and renamed over the target. A reader sees the old file or the new one, never a partial one; a
link planted at the target's name is replaced, not followed; a failed write leaves nothing behind.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from uqbench.errors import BadConfig, DataError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (read once: os.umask cannot be read safely later)


def write_atomic(path: Path, content: str | bytes | Callable[[IO[bytes]], object]) -> None:
    """Write `path` atomically: `content` is text (UTF-8), bytes, or a function that writes to a binary file.

    The parent directory is created if needed. Raises whatever the write raises, after removing the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise DataError(f"{path}: a folder where uqbench writes a file (remove or rename it)")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode() if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NotARegularFile(OSError):
    """A path that is a symbolic link, a directory or a device where a plain file was expected."""


MAX_TEXT_BYTES = 64 << 20  # a config file, protocol or baseline larger than this is not one


def read_bytes(path: Path, limit: int | None = None, follow: bool = False) -> bytes:
    """The bytes of a regular file, without following a symbolic link at `path` (NotARegularFile) unless `follow`
    (a file the user named: a config file, a baseline). A FIFO, a device or a directory is refused unread.

    Args:
        limit: refuse (NotARegularFile) a file larger than this many bytes; None reads any size.
    """
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        if not follow and Path(path).is_symlink():
            raise NotARegularFile(f"{path}: a symbolic link (not followed)") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (limit is not None and info.st_size > limit):
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"{info.st_size} bytes, more than the {limit} expected"
        refused = NotARegularFile(f"{path}: {what}")
        refused.strerror = os.strerror(errno.EISDIR) if stat.S_ISDIR(info.st_mode) else what  # for callers that name the file
        raise refused
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def subdir(root: Path, *parts: str) -> Path:
    """`root/parts...`, created as needed; DataError when one of the parts is a link, a file or cannot be made (a store from
    elsewhere could hold `artifacts -> /somewhere`, and uqbench writes only inside the directories it was given)."""
    path = Path(root)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise DataError(f"{path}: a symbolic link where uqbench keeps its own folder; not followed (remove it)")
        if path.exists() and not path.is_dir():
            raise DataError(f"{path}: a file where uqbench keeps its own folder (remove or rename it)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{path}: cannot create this folder ({exc.strerror or exc})") from None
    return path


def reader(path: Path, limit: int | None = None) -> io.BytesIO:
    """`read_bytes` as a seekable binary file object (for parsers that take one, such as `numpy.load`)."""
    return io.BytesIO(read_bytes(path, limit))


def read_weights(path: Path) -> Any:
    """What `torch.save` wrote to `path`, read onto the CPU with `weights_only=True` (a file holding anything but
    tensors and plain data, a pickled callable say, is refused unread) and without following a link; None when it
    is absent, unreadable, truncated, a link or not plain weights."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about a foreign file's pickle protocol: it is refused anyway
            warnings.simplefilter("ignore")
            return torch.load(reader(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None


def ensure_writable(directory: Path) -> None:
    """Create `directory` if needed and prove it is writable; BadConfig naming it (as `--out`) otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BadConfig(f"--out {str(directory)!r}: not a writable directory ({exc.strerror or exc})") from None


__all__ = ["FILE_MODE", "MAX_TEXT_BYTES", "NotARegularFile", "ensure_writable", "read_bytes", "read_weights", "reader", "subdir", "write_atomic"]
