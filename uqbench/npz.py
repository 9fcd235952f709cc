"""Reading `.npz` archives that came from elsewhere: plain numeric arrays only, never unpickled, sized from their
headers before any is read (saved predictions, a user's own data files)."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
from numpy.lib import format as npy


class NotAnArchive(ValueError):
    """Bytes that are not an `.npz` archive of plain arrays within the size limit; the message says why."""


def parse(data: bytes, limit: int) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` archive's bytes (`allow_pickle=False`); NotAnArchive naming the problem.

    An object array is refused unread, and so is an archive whose arrays would take more than `limit` bytes or
    whose headers claim more data than it holds.
    """
    try:
        problem = _archive_problem(data, limit)
        if problem is None:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise NotAnArchive(f"{type(exc).__name__}: {exc}") from None
    raise NotAnArchive(problem)


def _archive_problem(data: bytes, limit: int) -> str | None:
    """What makes `data` no `.npz` archive of plain arrays of at most `limit` bytes (read from the array headers,
    so a header that claims 8 TB allocates nothing), or None."""
    if not data.startswith(b"PK"):
        return "not an .npz (zip) archive"
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.infolist():
            with archive.open(member) as fh:
                version = npy.read_magic(fh)
                read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, _, dtype = read_header(fh)
            if dtype.hasobject:
                return f"{member.filename}: an array of Python objects (never unpickled)"
            size = math.prod(shape) * dtype.itemsize
            if size > member.file_size:
                return f"{member.filename}: its header declares more data than the archive holds"
            total += size
            if total > limit:
                return f"arrays of more than {limit} bytes"
    return None


__all__ = ["NotAnArchive", "parse"]
