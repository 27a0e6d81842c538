"""The one atomic-write helper: a file or folder appears whole or not at all."""

import os

import pytest

from resbook.files import atomic_folder, atomic_write


def test_atomic_write_replaces_only_when_complete(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.json"]
    with atomic_write(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["record.json"]


def test_atomic_write_without_replace_never_overwrites(tmp_path):
    target = tmp_path / "data.bin"
    with atomic_write(target, replace=False) as f:
        f.write(b"first")
    with pytest.raises(FileExistsError):
        with atomic_write(target, replace=False) as f:
            f.write(b"second")
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_write_gives_usual_permissions(tmp_path):
    with atomic_write(tmp_path / "a.txt", "w") as f:
        f.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_folder(tmp_path):
    target = tmp_path / "flowers"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as out:
            (out / "a.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic_folder(target) as out:
        (out / "a.txt").write_text("x")
    assert (target / "a.txt").read_text() == "x"
    assert os.listdir(tmp_path) == ["flowers"]
    with pytest.raises(FileExistsError):
        with atomic_folder(target):
            pass
