"""Verified, atomic downloads and safe archive extraction: what ``keras.utils.get_file`` does not give.

* A download is written beside the target, hashed as it arrives, and linked
  into place only if it verifies (:func:`resbook.files.atomic_write`): an
  interrupted one leaves nothing, and a file already at the target (the
  user's, or one placed meanwhile) is used if it verifies and never replaced.
* Failures are one sentence naming the URL, where the file should go and
  its size and hash, so it can be placed by hand.
* Archives are checked member by member before anything is written (tar with
  Python's ``data`` filter, PEP 706; zip, which has none, by hand) and
  unpacked into a folder renamed into place (:func:`resbook.files.atomic_folder`).
* :func:`check_weights_file` tells a wrong weights file (an HTML error page,
  a truncated download, another model's weights) in one sentence.

What is downloaded, and from where, is listed in :mod:`resbook.data.sources`.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path, PurePosixPath

from ..errors import ResbookError, as_path, brief, reason
from ..files import atomic_folder, atomic_write
from ..settings import display_path, progress_bar

CHUNK = 1 << 20
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Remote:
    """A file on the web: where it is, what it is called, and how to recognise it."""

    url: str
    filename: str
    hash_algorithm: str          # a hashlib name: "sha256", "md5", "sha512"
    hash_value: str              # hex digest
    size: int | None = None      # bytes, where the publisher states it

    def describe(self) -> str:
        """Size and hash in words, for a reader who places the file by hand."""
        size = f"{self.size:,} bytes, " if self.size else ""
        return f"{size}{self.hash_algorithm} {self.hash_value}"


def file_hash(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file with the hashlib ``algorithm``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(size: int, digest: str, remote: Remote) -> str | None:
    """None if ``size`` and ``digest`` are those of ``remote``, else a short reason why not."""
    if remote.size is not None and size != remote.size:
        return f"it has {size:,} bytes, not {remote.size:,}"
    return None if digest == remote.hash_value else f"its {remote.hash_algorithm} is {digest}, not {remote.hash_value}"


def verify(path: str | os.PathLike, remote: Remote) -> str | None:
    """None if ``path`` is the file ``remote`` describes, else a short reason why not."""
    return _mismatch(Path(path).stat().st_size, file_hash(path, remote.hash_algorithm), remote)


@contextmanager
def _new_folders(directory: Path) -> Iterator[None]:
    """Create ``directory`` and its missing parents; if the block fails, remove those this call made (if empty).

    One level at a time, from the highest missing folder down, and a folder
    counts as made here only when this call's mkdir() made it: one that
    another process made meanwhile is never removed as ours.
    """
    if directory.exists() and not directory.is_dir():
        raise ResbookError(f"{directory} is a file, not a folder: choose a folder to put the files in.")
    created: list[Path] = []
    try:
        for folder in reversed(list(takewhile(lambda f: not f.exists(), (directory, *directory.parents)))):
            try:
                folder.mkdir()
                created.insert(0, folder)
            except FileExistsError:  # made meanwhile by someone else: not ours to remove
                pass
    except OSError as exc:
        _remove_empty(created)
        raise _cannot_write(directory, exc) from None
    try:
        yield
    except BaseException:
        _remove_empty(created)
        raise


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders in ``created``, deepest first, as long as they are empty (rmdir refuses others)."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _cannot_write(folder: Path, exc: OSError) -> ResbookError:
    fix = ("free some space there, or choose a folder on another disk" if exc.errno == errno.ENOSPC
           else "choose a folder you can write to, or make this one writable")
    return ResbookError(f"Cannot write to {folder} ({reason(exc)}): {fix}.")


def _open(remote: Remote, target: Path, timeout: float):
    """The server's response for ``remote.url``; one sentence if there is no network or the server refuses."""
    try:
        return urllib.request.urlopen(remote.url, timeout=timeout)  # noqa: S310 - fixed https URLs
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ResbookError(f"Could not download {remote.url}: the server answered {exc.code} {exc.reason}; "
                           f"try again later, or put the file at {display_path(target)} by hand ({remote.describe()}).") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise ResbookError(
            f"Could not download {remote.url} ({brief(getattr(exc, 'reason', exc))}): with no network, "
            f"put the file at {display_path(target)} by hand ({remote.describe()}) and run again.") from None


def _read(response, remote: Remote, target: Path) -> bytes:
    """The next chunk of ``response``; one sentence if the connection breaks off."""
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise ResbookError(f"The download of {remote.url} broke off ({brief(exc)}); run again "
                           f"to retry (nothing was written to {target}).") from None


def _announced(response) -> int:
    """The size the server announced (Content-Length), or 0 for none or a malformed one: unknown."""
    try:
        return max(0, int(response.headers.get("Content-Length") or 0))
    except ValueError:
        return 0


def _receive(remote: Remote, out, target: Path, timeout: float, progress: bool) -> tuple[int, str]:
    """Copy ``remote.url`` into the open file ``out``: ``(bytes received, their hex digest)``.

    One sentence if the server or the connection fails; an OSError from
    writing (a full disk) is not the network's, and is left to the caller.
    """
    h, received = hashlib.new(remote.hash_algorithm), 0
    with _open(remote, target, timeout) as response:
        announced = _announced(response)
        with progress_bar(total=announced or remote.size, show=progress, unit="B", unit_scale=True,
                          desc=remote.filename, leave=False) as bar:
            for chunk in iter(lambda: _read(response, remote, target), b""):
                out.write(chunk)
                h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if announced and received != announced:  # the server closed the connection early
        raise ResbookError(f"The download of {remote.url} broke off after {received:,} of "
                           f"{announced:,} bytes; run again to retry (nothing was written to {target}).")
    return received, h.hexdigest()


def _existing(target: Path, remote: Remote) -> Path:
    """``target`` if it is the file ``remote`` describes; otherwise one sentence, and the file is left alone."""
    try:
        if target.is_symlink() and not target.exists():
            problem = f"it is a link to {os.readlink(target)}, which does not exist"
        else:
            problem = verify(target, remote) if target.is_file() else "it is not a file"
    except OSError as exc:
        problem = f"it cannot be read: {reason(exc)}"
    if problem is None:
        return target
    raise ResbookError(f"{target} exists but is not the expected file ({problem}): "
                       f"move it away so it can be downloaded again, or replace it with the file from {remote.url}.")


def download(remote: Remote, directory: str | os.PathLike, timeout: float = 60,
             progress: bool = True) -> Path:
    """Return ``directory/remote.filename``, downloading and verifying it first if needed.

    The file is received into a temporary file beside the target, hashed as
    it arrives, and given the target's name only if it verifies; a file at
    the target, also one placed there meanwhile, is never replaced (see
    :func:`resbook.files.atomic_write`). A failed download leaves nothing
    behind: no target, no ``.part`` file, none of the folders it created.
    """
    directory = as_path(directory, "the download folder")
    target = directory / remote.filename
    if target.exists() or target.is_symlink():  # a link to a missing file is the user's too
        return _existing(target, remote)
    with _new_folders(directory):
        try:
            with atomic_write(target, "wb", replace=False) as out:
                problem = _mismatch(*_receive(remote, out, target, timeout, progress), remote)
                if problem is not None:
                    raise ResbookError(f"The file downloaded from {remote.url} is not the expected one ({problem}); "
                                       f"nothing was written to {target}: try again later or place the file by hand.")
        except FileExistsError:  # a file appeared at the target during the download: it is the user's
            return _existing(target, remote)
        except OSError as exc:  # making, writing or closing the temporary file: a full disk, a quota
            raise _cannot_write(directory, exc) from None
    return target


def _check_tar(tf: tarfile.TarFile, archive: Path, destination: Path) -> None:
    """Refuse ``archive`` if Python's ``data`` filter (PEP 706) refuses any member, before anything is written."""
    for member in tf.getmembers():
        try:  # the filter would quietly strip a leading '/': an absolute name is refused too
            kept = tarfile.data_filter(member, os.fspath(destination))
            problem = None if kept.name == member.name else f"member {member.name!r} has an absolute path"
        except tarfile.FilterError as exc:
            problem = brief(exc)
        if problem:
            raise ResbookError(f"Refusing to extract {archive}: {problem}; the archive is unsafe or damaged.")


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    # zipfile has no extraction filter: it silently rewrites absolute and '..' names, and writes a link as a file.
    for info in zf.infolist():
        name = info.filename
        problem = (f"member {name!r} is a symbolic link" if stat.S_ISLNK(info.external_attr >> 16)
                   else f"member {name!r} has an absolute path" if name.startswith(("/", "\\")) or name[1:2] == ":"
                   else f"member {name!r} climbs out with '..'" if ".." in PurePosixPath(name).parts
                   else None)
        if problem:
            raise ResbookError(f"Refusing to extract {archive}: {problem}; the archive is unsafe or damaged.")


def _unpack(archive: Path, out: Path, destination: Path) -> None:
    """Check every member of ``archive``, then extract it into ``out``; one sentence if it is unreadable."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                zf.extractall(out)
        else:
            with tarfile.open(archive) as tf:
                # Both: the check refuses the whole archive before anything is written (the filter alone stops
                # midway), and filter="data" applies the filter's own changes (modes, no set-uid bits) as it writes.
                _check_tar(tf, archive, destination)
                tf.extractall(out, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ResbookError(f"{archive} is not a readable tar or zip archive or is damaged ({brief(exc)}); "
                           "download it again.") from None


def _already_exists(destination: Path) -> ResbookError:
    return ResbookError(f"{destination} already exists: extract() never writes into an existing folder; "
                        "remove it or choose another destination.")


def extract(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``destination`` (which must not exist yet).

    Every member is checked before anything is written; the archive is
    unpacked into a temporary sibling folder that is renamed to
    ``destination`` only when extraction finished (:func:`resbook.files.atomic_folder`).
    A failure leaves nothing behind, not even the parent folders this call
    created. A file or a folder with files that appears at ``destination``
    meanwhile is left alone; an *empty* folder made there meanwhile cannot
    be protected, since rename() replaces it (Python has no RENAME_NOREPLACE).
    """
    archive, destination = as_path(archive, "the archive"), as_path(destination, "the destination folder")
    if destination.exists() or destination.is_symlink():
        raise _already_exists(destination)
    with _new_folders(destination.parent):
        try:
            with atomic_folder(destination) as out:
                _unpack(archive, out, destination)
        except OSError as exc:  # making the temporary folder, or renaming it when something appeared meanwhile
            raise (_already_exists(destination) if destination.exists() or destination.is_symlink()
                   else _cannot_write(destination.parent, exc)) from None
    return destination


def _hdf5_problem(path: Path) -> str | None:
    """None if ``path`` is a readable HDF5 file, else a few words on what it seems to be."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "it is empty"
    if head.lstrip()[:1] == b"<":
        return "it is an HTML or XML page, likely an error page saved in place of the file"
    if not head.startswith(HDF5_SIGNATURE):
        return ("it is a zip archive (PyTorch weights or a .keras file), not HDF5" if zipfile.is_zipfile(path)
                else "it is not an HDF5 file")
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py comes with TensorFlow
        return None
    try:
        with h5py.File(path, "r") as f:
            f.visit(lambda name: None)  # walk every group: a damaged file fails here, not later
    except Exception:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError or RuntimeError on damage
        return "it is a truncated or damaged HDF5 file"
    return None


def check_weights_file(path: str | os.PathLike, remote: Remote | None = None) -> Path:
    """Return ``path`` if it holds the weights ``remote`` describes, else raise a one-sentence error.

    With a ``remote`` the file's size and hash decide; without one (a reader's
    own weights, whose hash nobody knows) the file must be a readable HDF5
    file, the format Keras weights are saved in. The error names the file,
    what it looks like (empty, an HTML error page, truncated HDF5, another
    model's weights) and the expected hash; the file itself is never touched.
    """
    path = as_path(path, "a weights file")
    try:
        if path.is_dir():
            raise ResbookError(f"{path} is a folder, not a weights file: pass the path of the file itself"
                               + (f" ({remote.filename})." if remote else "."))
        if not path.is_file():
            raise ResbookError(f"Weights file {path} does not exist: check the path"
                               + (f" or download it from {remote.url}." if remote else "."))
        if remote is not None and verify(path, remote) is None:
            return path
        what = _hdf5_problem(path)
    except OSError as exc:
        raise ResbookError(f"Weights file {path} cannot be read ({reason(exc)}): fix its "
                           "permissions or choose another file.") from None
    if remote is not None:
        what = what or "it is a readable HDF5 file, so probably another model's weights"
        raise ResbookError(f"{path} is not the weights file {remote.filename} ({what}, and it does not match "
                           f"the expected {remote.describe()}): delete it and download {remote.url} again.")
    if what is not None:
        raise ResbookError(f"{path} is not a readable HDF5 weights file ({what}): save or download the weights again.")
    return path
