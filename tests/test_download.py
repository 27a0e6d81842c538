"""Downloads against a local HTTP server, archive safety, and the weights-file check (no network)."""

import errno
import hashlib
import io
import os
import socket
import stat
import tarfile
import zipfile

import h5py
import numpy as np
import pytest

from resbook.data import download as download_module
from resbook.data.download import Remote, check_weights_file, download, extract
from resbook.errors import ResbookError

BODY = os.urandom(50_000)


def _tree(root):
    """Every path under ``root`` (files, folders, links), relative: to prove nothing else was written."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _remote(url, body=BODY, **changes):
    fields = dict(url=url, filename="data.bin", hash_algorithm="sha256",
                  hash_value=hashlib.sha256(body).hexdigest(), size=len(body))
    return Remote(**{**fields, **changes})


def test_good_download_is_verified_and_reused(http_server, tmp_path):
    http_server.routes["/data.bin"] = BODY
    target = download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    assert target.read_bytes() == BODY
    assert _tree(tmp_path) == ["dl", "dl/data.bin"]  # no .part file left beside it
    again = download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    assert again == target and http_server.hits == ["/data.bin"]  # the verified copy was reused


@pytest.mark.parametrize("case, remote_changes, expected", [
    ("wrong hash", {"hash_value": "0" * 64, "size": None}, "is not the expected one"),
    ("wrong size", {"size": len(BODY) + 1}, "is not the expected one"),
    ("truncated", {}, "broke off after 25,000 of 50,000 bytes"),
    ("not found", {}, "the server answered 404 Not Found; try again later, or put the file at"),
    ("refused", {}, "Could not download"),
])
def test_failed_downloads_leave_nothing_behind(http_server, tmp_path, one_sentence, case, remote_changes, expected):
    url = http_server.url + "/data.bin"
    if case == "truncated":
        http_server.routes["/data.bin"] = (BODY, "short")
    elif case == "refused":
        with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/data.bin"
    elif case != "not found":
        http_server.routes["/data.bin"] = BODY
    (tmp_path / "elsewhere").mkdir()
    before = _tree(tmp_path)
    with pytest.raises(ResbookError, match=expected) as err:
        download(_remote(url, **remote_changes), tmp_path / "dl", timeout=10, progress=False)
    one_sentence(str(err.value))
    assert url in str(err.value)
    assert _tree(tmp_path) == before  # no target, no .part file, not even the download folder it created


def test_a_failed_download_names_the_folder_as_the_reader_set_it(http_server, tmp_path, monkeypatch):
    """The sentence says where to put the file by hand as ``$RESBOOK_CACHE/...``, not as this machine's path."""
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ResbookError) as err:
        download(_remote(http_server.url + "/missing.bin"), tmp_path / "cache" / "weights", timeout=10, progress=False)
    assert "put the file at $RESBOOK_CACHE/weights/data.bin by hand" in str(err.value)
    assert str(tmp_path) not in str(err.value)


class _Response(io.BytesIO):
    """What urlopen returns, with the Content-Length header a server chose to send."""

    def __init__(self, body, length):
        super().__init__(body)
        self.headers = {"Content-Length": length}


@pytest.mark.parametrize("length", ["lots", "-1", "1e5", ""])
def test_a_malformed_content_length_is_an_unknown_size(tmp_path, monkeypatch, length):
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda url, timeout: _Response(BODY, length))
    target = download(_remote("https://example.invalid/data.bin"), tmp_path / "dl", progress=False)
    assert target.read_bytes() == BODY and _tree(tmp_path) == ["dl", "dl/data.bin"]  # verified by size and hash


def test_a_wrong_file_at_the_target_is_left_untouched(http_server, tmp_path, one_sentence):
    http_server.routes["/data.bin"] = BODY
    mine = tmp_path / "dl" / "data.bin"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's own file")
    with pytest.raises(ResbookError, match="exists but is not the expected file") as err:
        download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    one_sentence(str(err.value))
    assert mine.read_bytes() == b"the user's own file" and _tree(tmp_path) == ["dl", "dl/data.bin"]
    assert http_server.hits == []


def test_a_link_at_the_target_is_left_untouched(http_server, tmp_path, one_sentence):
    """A link the user placed where the file goes, to where it will be: the link is theirs, not replaced."""
    http_server.routes["/data.bin"] = BODY
    (tmp_path / "dl").mkdir()
    link = tmp_path / "dl" / "data.bin"
    link.symlink_to(tmp_path / "big_disk" / "data.bin")  # dangling: exists() is False
    with pytest.raises(ResbookError, match="exists but is not the expected file") as err:
        download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    assert f"it is a link to {tmp_path / 'big_disk' / 'data.bin'}, which does not exist" in one_sentence(str(err.value))
    assert os.readlink(link) == str(tmp_path / "big_disk" / "data.bin") and _tree(tmp_path) == ["dl", "dl/data.bin"]
    assert http_server.hits == []


@pytest.mark.parametrize("placed", [b"the user's own file", BODY])
def test_a_file_placed_during_the_download_is_left_untouched(http_server, tmp_path, monkeypatch, one_sentence,
                                                              placed):
    """A file copied to the target by hand (or by another download) while this one ran is never replaced."""
    http_server.routes["/data.bin"] = BODY
    mine = tmp_path / "dl" / "data.bin"
    receive = download_module._receive

    def receive_while_a_file_is_placed(*args, **kwargs):
        received = receive(*args, **kwargs)
        mine.write_bytes(placed)
        return received
    monkeypatch.setattr(download_module, "_receive", receive_while_a_file_is_placed)
    if placed == BODY:  # the expected file: used
        assert download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False) == mine
    else:
        with pytest.raises(ResbookError, match="exists but is not the expected file") as err:
            download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
        one_sentence(str(err.value))
    assert mine.read_bytes() == placed and _tree(tmp_path) == ["dl", "dl/data.bin"]  # no .part file either


def test_a_file_system_without_hard_links(http_server, tmp_path, monkeypatch):
    """FAT and some network shares refuse os.link: the verified file is renamed into place instead."""
    http_server.routes["/data.bin"] = BODY

    def no_link(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(download_module.os, "link", no_link)
    target = download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    assert target.read_bytes() == BODY and _tree(tmp_path) == ["dl", "dl/data.bin"]


class _FullDisk(io.FileIO):
    """A file on a full disk: writing, or else closing (which writes what was buffered), fails with ENOSPC."""

    fails_at = "write"

    def write(self, data):
        if self.fails_at == "write":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)

    def close(self):
        was_open = not self.closed
        super().close()
        if was_open and self.fails_at == "close":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fails_at", ["write", "close"])
def test_a_full_disk_is_not_a_broken_download(http_server, tmp_path, monkeypatch, fails_at):
    http_server.routes["/data.bin"] = BODY
    monkeypatch.setattr(_FullDisk, "fails_at", fails_at)
    monkeypatch.setattr(download_module.os, "fdopen", lambda fd, mode: _FullDisk(fd, mode))
    before = _tree(tmp_path)
    with pytest.raises(ResbookError) as err:
        download(_remote(http_server.url + "/data.bin"), tmp_path / "dl", progress=False)
    assert str(err.value) == (f"Cannot write to {tmp_path / 'dl'} (No space left on device): free some space "
                              "there, or choose a folder on another disk.")
    assert _tree(tmp_path) == before  # no .part file, no download folder


# ----------------------------------------------------------------------------- archives

def _tar(path, members):
    """A .tar.gz of ``members``: (name, kind, payload) with kind "file", "symlink", "hardlink" or "fifo"."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = payload
                tf.addfile(info)
    return path


def _zip(path, members):
    """A .zip of ``members``: (name, kind, payload) with kind "file" or "symlink"."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, payload in members:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                payload = payload.encode()
            zf.writestr(info, payload)
    return path


GOOD = [("pkg/a.txt", "file", b"a"), ("pkg/sub/b.txt", "file", b"b")]
UNSAFE = {
    "traversal": ("../evil.txt", "file", b"evil"),
    "absolute": ("/tmp/resbook-evil.txt", "file", b"evil"),
    "symlink out": ("pkg/link", "symlink", "../../outside"),
    "absolute symlink": ("pkg/link", "symlink", "/etc/passwd"),
    "hardlink out": ("pkg/sub/hard", "hardlink", "../outside.txt"),
    "fifo": ("pkg/pipe", "fifo", ""),
}


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_good_archives_extract_into_place(tmp_path, fmt):
    members = GOOD + ([("pkg/sub/same", "hardlink", "pkg/a.txt")] if fmt == "tar" else [])
    archive = (_tar if fmt == "tar" else _zip)(tmp_path / f"good.{fmt}", members)
    out = extract(archive, tmp_path / "work" / "good")
    assert (out / "pkg" / "sub" / "b.txt").read_bytes() == b"b"
    expected = ["good", "good/pkg", "good/pkg/a.txt", "good/pkg/sub", "good/pkg/sub/b.txt"]
    assert _tree(tmp_path / "work") == expected + (["good/pkg/sub/same"] if fmt == "tar" else [])
    if fmt == "tar":  # a hard link inside the archive is fine (its target is relative to the archive root)
        assert (out / "pkg" / "sub" / "same").read_bytes() == b"a"


# Zip has no hard links; a zip symlink is refused whatever it points at.
@pytest.mark.parametrize("fmt, case", [("tar", c) for c in UNSAFE]
                         + [("zip", c) for c in ("traversal", "absolute", "symlink out", "absolute symlink")]
                         + [("zip", "symlink in")])
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, one_sentence, fmt, case):
    member = ("pkg/link", "symlink", "a.txt") if case == "symlink in" else UNSAFE[case]
    archive = (_tar if fmt == "tar" else _zip)(tmp_path / f"bad.{fmt}", GOOD + [member])
    (tmp_path / "work").mkdir()
    before = _tree(tmp_path)
    with pytest.raises(ResbookError, match="Refusing to extract") as err:
        extract(archive, tmp_path / "work" / "out")
    one_sentence(str(err.value))
    assert _tree(tmp_path) == before  # no destination, no .incomplete folder, nothing outside
    assert not os.path.exists("/tmp/resbook-evil.txt")


def test_damaged_archive_is_one_sentence(tmp_path, one_sentence):
    good = _tar(tmp_path / "good.tar.gz", [("big.bin", "file", os.urandom(200_000))])
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(good.read_bytes()[:-5000])
    (tmp_path / "work").mkdir()
    for archive in (damaged, tmp_path / "missing.tgz"):
        with pytest.raises(ResbookError, match="download it again") as err:
            extract(archive, tmp_path / "work" / "out")
        one_sentence(str(err.value))
    assert _tree(tmp_path / "work") == []


def test_extract_never_writes_into_an_existing_folder(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", GOOD)
    (tmp_path / "out").mkdir()
    with pytest.raises(ResbookError, match="already exists"):
        extract(archive, tmp_path / "out")
    assert _tree(tmp_path / "out") == []


def test_a_folder_made_at_the_destination_during_extraction_is_left_untouched(tmp_path, monkeypatch, one_sentence):
    archive = _tar(tmp_path / "good.tar.gz", GOOD)
    destination = tmp_path / "work" / "out"
    extractall = tarfile.TarFile.extractall

    def extract_while_the_user_fills_the_destination(self, *args, **kwargs):
        extractall(self, *args, **kwargs)
        destination.mkdir(parents=True)
        (destination / "mine.txt").write_text("the user's file")
    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_while_the_user_fills_the_destination)
    with pytest.raises(ResbookError, match="already exists") as err:
        extract(archive, destination)
    one_sentence(str(err.value))
    assert _tree(tmp_path / "work") == ["out", "out/mine.txt"]  # no .incomplete folder left beside it
    assert (destination / "mine.txt").read_text() == "the user's file"


# ----------------------------------------------------------------------------- weights files

def _h5(path, seed):
    with h5py.File(path, "w") as f:
        f.create_dataset("conv1/kernel", data=np.random.default_rng(seed).random((64, 64), dtype=np.float32))
    return path


@pytest.fixture
def weights(tmp_path):
    """A valid HDF5 'weights' file and the Remote that describes it."""
    path = _h5(tmp_path / "good.h5", seed=0)
    remote = Remote("https://example.org/good.h5", "good.h5", "md5", hashlib.md5(path.read_bytes()).hexdigest())
    return path, remote


def test_the_expected_weights_pass(weights):
    path, remote = weights
    assert check_weights_file(path, remote) == path
    assert check_weights_file(path) == path  # a readable HDF5 file with no known hash


@pytest.mark.parametrize("case, expected", [
    ("html", "HTML or XML page"),
    ("empty", "it is empty"),
    ("truncated", "truncated or damaged HDF5"),
    ("other model", "another model's weights"),
    ("torch zip", "zip archive"),
])
def test_wrong_weights_files_get_one_sentence(weights, tmp_path, one_sentence, case, expected):
    good, remote = weights
    bad = tmp_path / "bad.h5"
    if case == "html":
        bad.write_text("<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1></body></html>\n")
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "other model":
        _h5(bad, seed=1)
    else:
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("archive/data.pkl", b"not keras")
    content = bad.read_bytes()
    with pytest.raises(ResbookError, match=expected) as err:
        check_weights_file(bad, remote)
    message = one_sentence(str(err.value))
    assert str(bad) in message and remote.hash_value in message and remote.url in message
    if case != "other model":  # without a known hash, only an unreadable file is refused
        with pytest.raises(ResbookError, match="not a readable HDF5 weights file") as err:
            check_weights_file(bad)
        one_sentence(str(err.value))
    assert bad.read_bytes() == content  # never modified


def test_missing_weights_file(tmp_path, weights, one_sentence):
    _, remote = weights
    with pytest.raises(ResbookError, match="does not exist") as err:
        check_weights_file(tmp_path / "nowhere.h5", remote)
    assert remote.url in one_sentence(str(err.value))


def test_a_folder_as_weights_file(tmp_path, weights):
    _, remote = weights
    folder = tmp_path / "weights"
    folder.mkdir()
    for known, expected in ((remote, f"{folder} is a folder, not a weights file: pass the path of the file itself "
                                     "(good.h5)."),
                            (None, f"{folder} is a folder, not a weights file: pass the path of the file itself.")):
        with pytest.raises(ResbookError) as err:
            check_weights_file(folder, known)
        assert str(err.value) == expected
