"""``resbook check-data`` and ``resbook fetch``: a report and exit 0, or one line on stderr and exit 1."""

import hashlib
import subprocess
import sys

import pytest

from resbook import cli
from resbook.data.download import Remote
from resbook.data.generated import FLOWER_CLASSES, make_flowers
from resbook.data.sources import SOURCES, Source


def _resbook(*args):
    return subprocess.run([sys.executable, "-m", "resbook.cli", *args], capture_output=True, text=True, timeout=120)


def test_check_data_lists_classes_with_counts(tmp_path):
    root = make_flowers(tmp_path / "flowers", n_per_class=2, seed=0)
    (root / "rose" / "broken.jpg").write_bytes(b"")
    out = _resbook("check-data", str(root))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{root}: 5 classes, 10 images"
    assert [line.split() for line in lines[1:6]] == [[cls, "2"] for cls in FLOWER_CLASSES]
    assert "skipped 1 unreadable image(s): rose/broken.jpg (empty file)" in out.stdout


@pytest.mark.parametrize("args, expected", [
    (("check-data", "{tmp}"), "has no class subfolders"),
    (("check-data", "{tmp}/nowhere"), "does not exist"),
    (("fetch", "flowerz"), "There is no source called 'flowerz': choose one of tf_flowers, oxford102, mnist"),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, args, expected):
    out = _resbook(*(a.format(tmp=tmp_path) for a in args))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("resbook: ") and out.stderr.strip().count("\n") == 0
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_fetch_prints_where_it_put_the_file(http_server, monkeypatch, tmp_path, capsys):
    http_server.routes["/w.h5"] = b"weights"
    remote = Remote(http_server.url + "/w.h5", "w.h5", "sha256", hashlib.sha256(b"weights").hexdigest())
    monkeypatch.setitem(SOURCES, "toy_weights", Source("toy weights", (remote,), path="w.h5"))
    assert cli.main(["fetch", "toy_weights", "--dest", str(tmp_path / "w")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "w" / "w.h5")
    assert (tmp_path / "w" / "w.h5").read_bytes() == b"weights"
