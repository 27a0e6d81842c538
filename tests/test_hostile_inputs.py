"""The data layer tried as a hostile user would (issue 26): each bad input gets its one sentence.

Every test builds its inputs in ``tmp_path``, asserts the exact sentence the
user sees, and that nothing else under ``tmp_path`` changed (files, folders,
links, contents and permission bits). No network: a download that gets that
far talks to the local ``http_server`` fixture.
"""

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resbook import cli
from resbook.data.datasets import oxford10
from resbook.data.download import Remote, download, extract
from resbook.data.folders import decode_image, index_folder, load_images, split
from resbook.data.mnist import load_mnist_folder
from resbook.errors import ResbookError


def _state(root):
    """Every path under ``root`` with its kind, permission bits and content (links are not followed)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("folder", stat.S_IMODE(st.st_mode))
            else:
                with open(p, "rb") as f:
                    found[rel] = ("file", stat.S_IMODE(st.st_mode), f.read())
    return found


def _run(prefix, *args):
    """Run ``resbook ARGS`` in a fresh process, under the command ``prefix``."""
    return subprocess.run([*prefix, sys.executable, "-m", "resbook.cli", *args], capture_output=True, text=True,
                          timeout=120)


def _one_line_error(out, expected):
    """``out`` is a failed resbook run whose whole output is ``resbook: EXPECTED``."""
    assert (out.returncode, out.stdout, out.stderr) == (1, "", f"resbook: {expected}\n")


@pytest.fixture
def unprivileged(tmp_path):
    """A command prefix under which file permissions bind, even for root (which ignores them by default).

    As root that means dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH with
    ``setpriv``; the fixture first checks that a read-only folder really is
    read-only under it, and skips where that cannot be arranged.
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run without root's permission override")
    prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
              "--bounding-set=-dac_override,-dac_read_search"]
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    try:
        if subprocess.run([*prefix, "touch", str(probe / "x")], capture_output=True).returncode == 0:
            pytest.skip("setpriv could not drop root's permission override here")
    finally:
        shutil.rmtree(probe)
    return prefix


# ----------------------------------------------------------------------------- fetch, download, extract

def test_fetch_into_a_read_only_folder(tmp_path, unprivileged):
    """Case 1: the destination, or the folder it would be made in, is not writable."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "mine.txt").write_text("the user's file")
    ro.chmod(0o555)
    try:
        before = _state(tmp_path)
        _one_line_error(_run(unprivileged, "fetch", "mnist", "--dest", str(ro)),
                        f"Cannot write to {ro} (Permission denied): choose a folder you can write to, "
                        "or make this one writable.")
        _one_line_error(_run(unprivileged, "fetch", "mnist", "--dest", str(ro / "mnist")),
                        f"Cannot write to {ro / 'mnist'} (Permission denied): choose a folder you can write to, "
                        "or make this one writable.")
        assert _state(tmp_path) == before
    finally:
        ro.chmod(0o755)


def _tgz(path, members):
    """A .tar.gz of ``{name: bytes}``."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


EXTRACT = ("import sys\nfrom resbook.data.download import extract\nfrom resbook.errors import ResbookError\n"
           "try:\n    extract(sys.argv[1], sys.argv[2])\nexcept ResbookError as exc:\n    sys.exit(f'resbook: {exc}')\n")


def test_extract_into_a_read_only_folder(tmp_path, unprivileged):
    """Case 1, extract(): mkdtemp in a folder the user cannot write to."""
    archive = _tgz(tmp_path / "a.tgz", {"pkg/a.txt": b"a"})
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    try:
        before = _state(tmp_path)
        for destination, unwritable in ((ro / "out", ro), (ro / "sub" / "out", ro / "sub")):
            out = subprocess.run([*unprivileged, sys.executable, "-c", EXTRACT, str(archive), str(destination)],
                                 capture_output=True, text=True, timeout=120)
            _one_line_error(out, f"Cannot write to {unwritable} (Permission denied): choose a folder you can "
                                 "write to, or make this one writable.")
        assert _state(tmp_path) == before
    finally:
        ro.chmod(0o755)


WEIGHTS = ("import sys\nfrom resbook.data.download import check_weights_file\nfrom resbook.errors import ResbookError\n"
           "try:\n    check_weights_file(sys.argv[1])\nexcept ResbookError as exc:\n    sys.exit(f'resbook: {exc}')\n")


def test_an_unreadable_weights_file(tmp_path, unprivileged):
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n")
    weights.chmod(0o200)
    try:
        before = _state(tmp_path)
        out = subprocess.run([*unprivileged, sys.executable, "-c", WEIGHTS, str(weights)], capture_output=True,
                             text=True, timeout=120)
        _one_line_error(out, f"Weights file {weights} cannot be read (Permission denied): fix its permissions or "
                             "choose another file.")
        assert _state(tmp_path) == before
    finally:
        weights.chmod(0o644)


def test_fetch_into_a_file(tmp_path, capsys):
    """Case 2: --dest names an existing file, or a path below one."""
    mine = tmp_path / "some_file"
    mine.write_text("the user's file")
    before = _state(tmp_path)
    assert cli.main(["fetch", "mnist", "--dest", str(mine)]) == 1
    assert capsys.readouterr().err == f"resbook: {mine} is a file, not a folder: choose a folder to put the files in.\n"
    assert cli.main(["fetch", "mnist", "--dest", str(mine / "sub")]) == 1
    assert capsys.readouterr().err == (f"resbook: Cannot write to {mine / 'sub'} (Not a directory): choose a folder "
                                       "you can write to, or make this one writable.\n")
    assert _state(tmp_path) == before


def _remote(url, body):
    return Remote(url, "data.bin", "sha256", hashlib.sha256(body).hexdigest(), len(body))


def test_a_404_says_what_the_server_answered(http_server, tmp_path):
    url = http_server.url + "/gone.bin"
    remote = _remote(url, b"x" * 100)
    with pytest.raises(ResbookError) as err:
        download(remote, tmp_path / "dl", progress=False)
    assert str(err.value) == (f"Could not download {url}: the server answered 404 Not Found; try again later, "
                              f"or put the file at {tmp_path / 'dl' / 'data.bin'} by hand (100 bytes, sha256 "
                              f"{remote.hash_value}).")
    assert http_server.hits == ["/gone.bin"]


def test_a_failed_download_removes_the_folders_it_created_and_nothing_else(http_server, tmp_path):
    url = http_server.url + "/gone.bin"
    (tmp_path / "empty").mkdir()  # the user's empty folder: a failed download into it must keep it
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("the user's file")
    before = _state(tmp_path)
    for dest in (tmp_path / "new" / "deeper", tmp_path / "empty", tmp_path / "empty" / "new",
                 tmp_path / "full" / "new"):
        with pytest.raises(ResbookError):
            download(_remote(url, b"x"), dest, progress=False)
        assert _state(tmp_path) == before, dest


def test_a_failed_extract_removes_the_folders_it_created_and_nothing_else(tmp_path):
    damaged = tmp_path / "damaged.tgz"
    damaged.write_bytes(_tgz(tmp_path / "a.tgz", {"pkg/a.txt": os.urandom(100_000)}).read_bytes()[:-5000])
    (tmp_path / "empty").mkdir()  # the user's empty folder: a failed extraction into it must keep it
    before = _state(tmp_path)
    for destination in (tmp_path / "new" / "deeper" / "out", tmp_path / "empty" / "out",
                        tmp_path / "empty" / "new" / "out"):
        with pytest.raises(ResbookError, match="download it again"):
            extract(damaged, destination)
        assert _state(tmp_path) == before, destination


def test_a_folder_another_process_made_meanwhile_is_not_removed(http_server, tmp_path, monkeypatch):
    """Between finding the folders missing and making them, another process makes one: a failure keeps it."""
    theirs = tmp_path / "shared"
    mkdir = Path.mkdir

    def mkdir_losing_the_race(self, *args, **kwargs):
        if self == theirs and not theirs.exists():
            os.mkdir(theirs)  # the other process is first
        return mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", mkdir_losing_the_race)
    with pytest.raises(ResbookError, match="404 Not Found"):
        download(_remote(http_server.url + "/gone.bin", b"x"), theirs / "mine", progress=False)
    assert sorted(_state(tmp_path)) == ["shared"]  # theirs kept, only the folder this call made removed


def test_extracted_folders_get_the_users_usual_permissions(tmp_path):
    archive = _tgz(tmp_path / "a.tgz", {"pkg/a.txt": b"a"})
    umask = os.umask(0o022)  # the usual umask: a new folder is rwxr-xr-x (mkdtemp's would be rwx------)
    try:
        out = extract(archive, tmp_path / "work" / "out")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "pkg").stat().st_mode) == 0o755
    assert sorted(os.listdir(tmp_path / "work")) == ["out"]  # no temporary folder left beside it


# ----------------------------------------------------------------------------- image folders

def _folder(root, counts, mode="RGB"):
    """An image folder with ``counts[cls]`` small distinct PNGs in each class folder."""
    for c, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            rgb = np.random.default_rng([c, i]).integers(0, 256, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(rgb).convert(mode).save(root / cls / f"{i}.png")
    return root


def test_a_stale_index(tmp_path, monkeypatch):
    """Case 3: an image deleted after index_folder, with and without the decode cache."""
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "data", {"a": 2, "b": 2})
    index = index_folder(root, progress=False)
    (root / "b" / "1.png").unlink()
    before = _state(tmp_path)
    for cache in (True, False):
        with pytest.raises(ResbookError) as err:
            load_images(index, size=8, cache=cache, progress=False)
        assert str(err.value) == (f"{root / 'b' / '1.png'} does not exist: check the path, or if it belongs to an "
                                  "indexed folder that changed since, run index_folder again.")
    assert _state(tmp_path) == before  # no cache file written


def test_16_bit_32_bit_and_float_images_are_scaled_to_8_bits(tmp_path, monkeypatch):
    """Case 4: grey images of more than 8 bits, with values across their whole range, decode to 0-255."""
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    ramp = np.linspace(0, 1, 256).reshape(16, 16)  # 0 at the top left, the largest value at the bottom right
    images = {"I;16": (ramp * 65535).round().astype(np.uint16), "I": (ramp * (2**31 - 1)).round().astype(np.int32),
              "F": ramp.astype(np.float32)}
    root = _folder(tmp_path / "data", {"a": 1, "b": 1})
    for mode, array in images.items():
        Image.fromarray(array).save(root / "a" / f"{mode.replace(';', '')}.tif")
        assert Image.open(root / "a" / f"{mode.replace(';', '')}.tif").mode == mode
    Image.fromarray(images["I;16"]).save(root / "b" / "I16.png")
    index = index_folder(root, progress=False)
    assert index.converted == {"F": 1, "I": 1, "I;16": 2}
    assert ("converted to RGB when loaded: 4 image(s) (F 1 scaled to 8 bits, I 1 scaled to 8 bits, "
            "I;16 2 scaled to 8 bits)") in index.report()
    x, _ = load_images(index, size=16, progress=False)
    expected = ramp * 255
    for name in ("a/F.tif", "a/I.tif", "a/I16.tif", "b/I16.png"):
        grey = x[index.files.index(name)].astype(float)
        assert (grey == grey[..., :1]).all(), name  # grey stays grey
        assert np.abs(grey[..., 0] - expected).max() <= 0.5 + 1e-9, name  # PIL's clip gave a mean of 254.6
        assert (grey.min(), grey.max(), round(grey.mean(), 1)) == (0, 255, 127.5), name


def test_a_16_bit_pgm_is_scaled_to_8_bits(tmp_path):
    """Pillow opens a 16-bit PGM as mode "I", as it does 32-bit images: its values span 0-65535, not 0-2**31-1."""
    ramp = np.linspace(0, 1, 256).reshape(16, 16)
    path = tmp_path / "ramp.pgm"
    Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(path)
    with Image.open(path) as img:
        assert (img.mode, img.getextrema()) == ("I", (0, 65535))
    before = _state(tmp_path)
    grey = decode_image(path, 16).astype(float)
    assert (grey == grey[..., :1]).all()  # grey stays grey
    assert np.abs(grey[..., 0] - ramp * 255).max() <= 0.5 + 1e-9  # scaled by 2**31 - 1 it was all black
    assert _state(tmp_path) == before


def test_too_few_images_to_split(tmp_path, capsys):
    """Case 6: a class with one image cannot be in training and validation; check-data warns."""
    root = _folder(tmp_path / "data", {"a": 1, "b": 3, "c": 1})
    index = index_folder(root, progress=False)
    before = _state(root)
    with pytest.raises(ResbookError) as err:
        split(index)
    assert str(err.value) == (f"Classes 'a' (1 image) and 'c' (1 image) in {root} have too few images to split "
                              "(each class needs at least 2, one for training and one for validation): add images "
                              "or remove them.")
    assert cli.main(["check-data", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("warning: too few images to split into training and "
                                                       "validation (split() needs at least 2 images per class): "
                                                       "a (1), c (1)")
    parts = split(index_folder(_folder(tmp_path / "two", {"a": 2, "b": 2}), progress=False))
    assert len(parts.train) == len(parts.val) == 2  # two images a class are enough
    assert _state(root) == before


def test_a_dangling_class_link_is_reported(tmp_path):
    root = _folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "ghost").symlink_to(tmp_path / "nowhere")
    before = _state(tmp_path)
    index = index_folder(root, progress=False)
    assert index.classes == ("a", "b")
    assert index.skipped == (("ghost/", f"cannot be read: it links to {tmp_path / 'nowhere'}, which does not exist"),)
    assert (f"skipped 1 unreadable image(s) or folder(s): ghost/ (cannot be read: it links to {tmp_path / 'nowhere'}, "
            "which does not exist)") in index.report()
    assert _state(tmp_path) == before


def test_an_unreadable_class_folder_or_subfolder(tmp_path, unprivileged):
    root = _folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "a" / "more").mkdir()
    for folder in (root / "a" / "more", root / "b"):
        folder.chmod(0)
    try:
        before = _state(tmp_path)
        _one_line_error(_run(unprivileged, "check-data", str(root)),
                        f"Class folder {root / 'b'} cannot be read (Permission denied): fix its permissions or "
                        f"move it out of {root}.")
        (root / "b").chmod(0o755)
        out = _run(unprivileged, "check-data", str(root))
        assert out.returncode == 0 and out.stderr == ""
        assert "skipped 1 unreadable image(s) or folder(s): a/more/ (cannot be read: Permission denied)" in out.stdout
        assert _state(tmp_path) == {**before, "data/b": ("folder", 0o755)}
    finally:
        for folder in (root / "a" / "more", root / "b"):
            folder.chmod(0o755)


def test_a_listable_but_unsearchable_image_folder(tmp_path, unprivileged):
    """An image folder with r--: its names can be listed, but whether each is a folder cannot be looked up."""
    root = _folder(tmp_path / "data", {"a": 2, "b": 2})
    root.chmod(0o444)
    try:
        before = _state(tmp_path)
        _one_line_error(_run(unprivileged, "check-data", str(root)),
                        f"Image folder {root} cannot be read (Permission denied): fix its permissions or point at "
                        "another folder.")
        assert _state(tmp_path) == before
    finally:
        root.chmod(0o755)


# ----------------------------------------------------------------------------- argument mistakes

def test_an_empty_path_is_not_the_current_folder(tmp_path, monkeypatch, capsys):
    _folder(tmp_path, {"a": 2, "b": 2})  # the current folder is a valid image folder: it must not be used
    monkeypatch.chdir(tmp_path)
    before = _state(tmp_path)
    assert cli.main(["check-data", ""]) == 1
    assert capsys.readouterr() == ("", "resbook: The path of an image folder is empty: give its path (use '.' for "
                                       "the current folder).\n")
    assert cli.main(["fetch", "mnist", "--dest", ""]) == 1
    assert capsys.readouterr() == ("", "resbook: The path of the destination folder is empty: give its path (use "
                                       "'.' for the current folder).\n")
    assert _state(tmp_path) == before


@pytest.fixture
def small_index(tmp_path):
    return index_folder(_folder(tmp_path / "data", {"a": 2, "b": 2}), progress=False)


@pytest.mark.parametrize("call, expected", [
    (lambda ix: index_folder(None), "The path of an image folder must be a str or pathlib.Path, not None: pass the "
                                    "path of an image folder."),
    (lambda ix: load_images(ix, size=0), "size=0 is not an image size: use a whole number of pixels from 1 up, "
                                         "e.g. 64."),
    (lambda ix: load_images(ix, size=12.5), "size=12.5 is not an image size: use a whole number of pixels from 1 "
                                            "up, e.g. 64."),
    (lambda ix: load_images(ix, size=True), "size=True is not an image size: use a whole number of pixels from 1 "
                                            "up, e.g. 64."),
    (lambda ix: split(ix, val_fraction=True), "val_fraction=True is not a fraction: use a number between 0 and 1, "
                                              "e.g. 0.2."),
    (lambda ix: load_images(str(ix.root)), "load_images() needs the FolderIndex that index_folder() returns, not "
                                           "str: call index_folder(path) first."),
    (lambda ix: split(ix, val_fraction="0.2"), "val_fraction='0.2' is not a fraction: use a number between 0 and 1, "
                                               "e.g. 0.2."),
    (lambda ix: split(ix, seed=-1), "seed=-1 is not a valid seed: use a whole number from 0 up, e.g. 0."),
    (lambda ix: oxford10(""), "The path of the Oxford 102 folder is empty: give its path (use '.' for the current "
                              "folder)."),
    (lambda ix: extract(ix.root / "a" / "0.png", None), "The path of the destination folder must be a str or "
                                                        "pathlib.Path, not None: pass the path of the destination "
                                                        "folder."),
])
def test_argument_mistakes_say_what_is_valid(small_index, tmp_path, call, expected):
    before = _state(tmp_path)
    with pytest.raises(ResbookError) as err:
        call(small_index)
    assert str(err.value) == expected
    assert _state(tmp_path) == before


# ----------------------------------------------------------------------------- MNIST

def test_mnist_folder_that_is_a_file(tmp_path):
    mine = tmp_path / "mnist.gz"
    mine.write_bytes(b"not a folder")
    before = _state(tmp_path)
    with pytest.raises(ResbookError) as err:
        load_mnist_folder(mine)
    assert str(err.value) == f"{mine} is a file, not a folder: point at the folder that holds the four MNIST idx files."
    assert _state(tmp_path) == before
