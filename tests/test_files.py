"""uqbench.files: atomic writes create their temporary file exclusively, never follow a planted link, honour the
umask and leave nothing behind on failure; reads follow no link."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from uqbench.errors import DataError
from uqbench.files import FILE_MODE, NotARegularFile, read_bytes, subdir, write_atomic


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "store" / "0123456789abcdef.npz"
    target.parent.mkdir()
    target.symlink_to(victim)
    write_atomic(target, b"new")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_bytes() == b"new"


def test_the_temporary_file_is_created_exclusively(tmp_path, monkeypatch):
    """A link planted at the temporary name the writer draws first is skipped, not written through."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    target = tmp_path / "record.json"
    (tmp_path / ".record.json.planted.tmp").symlink_to(victim)
    write_atomic(target, "{}")
    assert victim.read_text() == "precious" and target.read_text() == "{}"
    assert (tmp_path / ".record.json.planted.tmp").is_symlink()  # left as it was


def test_the_old_fixed_temporary_names_are_harmless(tmp_path, cli):
    """The names an older uqbench wrote through (`.tmp-<id>.npz`) are plain names now."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in (".tmp-", ".tmp-x.npz", ".tmp-x.json"):
        (out / name).symlink_to(victim)
    result = cli("run", "map", "--task", "two-moons", "--epochs", "1", "--save-predictions", "--out", out)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"


def test_files_get_the_users_umask_mode(tmp_path):
    target = tmp_path / "f"
    write_atomic(target, "x")
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE
    assert FILE_MODE == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_reads_do_not_follow_links_or_open_devices(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"abc")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert read_bytes(real) == b"abc"
    with pytest.raises(NotARegularFile, match="symbolic link"):
        read_bytes(link)
    with pytest.raises(NotARegularFile, match="not a regular file"):
        read_bytes(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="not a regular file"):
        read_bytes(fifo)  # returns at once: opened non-blocking, refused before reading
    with pytest.raises(NotARegularFile, match="more than the 2 expected"):
        read_bytes(real, limit=2)


def test_uqbench_does_not_write_through_a_linked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "artifacts").symlink_to(elsewhere)
    with pytest.raises(DataError, match="a symbolic link where uqbench keeps its own folder"):
        subdir(tmp_path / "store", "artifacts")
    assert subdir(tmp_path / "store", "plots", "two-moons").is_dir()


def test_a_folder_at_a_files_name_or_a_file_at_a_folders_name_is_refused(tmp_path):
    (tmp_path / "0123456789abcdef.npz").mkdir()
    with pytest.raises(DataError, match="a folder where uqbench writes a file"):
        write_atomic(tmp_path / "0123456789abcdef.npz", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0123456789abcdef.npz"]  # no temporary left
    (tmp_path / "artifacts").write_text("not a folder")
    with pytest.raises(DataError, match="a file where uqbench keeps its own folder"):
        subdir(tmp_path, "artifacts")
