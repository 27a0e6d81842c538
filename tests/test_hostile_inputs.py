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

import pytest

from resbook import cli
from resbook.data.download import Remote, download, extract
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
