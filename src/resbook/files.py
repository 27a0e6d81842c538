"""Writing files so that a reader never finds half of one: the one atomic-write helper.

Everything the book writes (a download, a decoded-image cache, a run record, a
checkpoint, a generated dataset, an unpacked notebook) is written to a
temporary name beside its target and renamed into place only when it is
complete, so an interrupted run leaves either the old file or the new one,
never a broken one, and never a stray temporary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, replace: bool = True) -> Iterator:
    """Open a temporary file beside ``path`` for writing; it becomes ``path`` when the block ends without error.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8). With ``replace=False`` an
    existing ``path`` is never replaced (the temporary is hard-linked to it,
    which fails if anything appeared there meanwhile) and
    :class:`FileExistsError` is raised instead. On any error the temporary is
    removed and ``path`` is untouched. The parent folder must exist.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes with mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the user's usual permissions
        if replace:
            os.replace(tmp, path)
        else:
            _place_new(Path(tmp), path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _place_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless something is there already (then FileExistsError)."""
    try:
        os.link(tmp, path)  # unlike a rename, fails if a file appeared at the target meanwhile
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some network shares): look, then rename
        if path.exists() or path.is_symlink():
            raise FileExistsError(path) from None
        os.replace(tmp, path)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it is renamed to ``path`` when the block ends without error.

    ``path`` must not exist (:class:`FileExistsError` otherwise: a folder is
    never written into or replaced). On any error the temporary folder and
    everything in it are removed.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(path)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".incomplete", dir=path.parent))
    try:
        out = holder / path.name  # a plain mkdir: the user's usual permissions, not mkdtemp's 0700
        out.mkdir()
        yield out
        out.rename(path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
