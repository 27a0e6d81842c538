"""book/run_notebooks.py: executes notebooks as the recorded runs do, packs them, and unpacks them safely."""

import io
import json
import tarfile
from pathlib import Path

import nbformat
import pytest


@pytest.fixture(scope="module")
def runner(book_script):
    return book_script("run_notebooks")


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def add(tar: tarfile.TarFile, name: str, data: bytes = b"{}", kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_runs_in_place_packs_new_records_and_goes_on_after_a_failure(runner, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "20200101T000000_00_old_run.json").write_text("{}")  # written before this run: not packed
    monkeypatch.setenv("RESBOOK_RUNS", str(runs))
    for key, value in runner.NOTEBOOK_ENV.items():  # run() sets them for its kernels; undone after the test
        monkeypatch.setenv(key, value)
    ok = notebook(tmp_path / "notebooks" / "01_ok.ipynb",
                  "import os, pathlib\n"
                  "pathlib.Path(os.environ['RESBOOK_RUNS'], '20990101T000000_01_ok_run.json').write_text('{}')\n"
                  "print(os.environ['TQDM_DISABLE'], 6 * 7)")
    bad = notebook(tmp_path / "notebooks" / "02_bad.ipynb", "1 / 0", "print('not reached')")
    archive = tmp_path / "out" / "full-run.tar.gz"

    assert runner.run([bad, ok], archive, timeout=60, root=tmp_path) == 1  # a failure is reported, the rest runs

    assert nbformat.read(ok, 4).cells[0].outputs[0]["text"] == "1 42\n"  # saved in place, with the kernel env
    assert nbformat.read(bad, 4).cells[0].outputs[0]["ename"] == "ZeroDivisionError"  # saved even though it failed
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("full-run.json"))
    assert names == {"notebooks/01_ok.ipynb", "notebooks/02_bad.ipynb", "full-run.json",
                     "book/records/20990101T000000_01_ok_run.json"}
    assert summary["notebooks"]["01_ok.ipynb"]["ok"] and not summary["notebooks"]["02_bad.ipynb"]["ok"]
    assert "ZeroDivisionError" in summary["notebooks"]["02_bad.ipynb"]["error"]


def test_collect_replaces_the_chapters_records_and_keeps_the_others(runner, tmp_path):
    records = tmp_path / "book" / "records"
    records.mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    (records / "20261101T000000_02_resnet50_keras_article-recipe.json").write_text("old")
    (records / "20261101T000000_05_pytorch_resnet_tensorboard_article-resnet.json").write_text("other chapter")
    archive = tmp_path / "full-run.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, "notebooks/02_resnet50_keras.ipynb", b"executed")
        add(tar, "book/records/20261124T000000_02_resnet50_keras_better-recipe-seed0.json", b"new")
        add(tar, "full-run.json")

    assert runner.collect(archive, root=tmp_path) == 0

    assert sorted(p.name for p in records.iterdir()) == [
        "20261101T000000_05_pytorch_resnet_tensorboard_article-resnet.json",
        "20261124T000000_02_resnet50_keras_better-recipe-seed0.json"]
    assert (tmp_path / "notebooks" / "02_resnet50_keras.ipynb").read_bytes() == b"executed"


@pytest.mark.parametrize("name, kind", [("../escape.json", tarfile.REGTYPE),
                                        ("/tmp/absolute.ipynb", tarfile.REGTYPE),
                                        ("src/resbook/__init__.py", tarfile.REGTYPE),
                                        ("notebooks/link.ipynb", tarfile.SYMTYPE)])
def test_collect_refuses_an_archive_with_anything_else_and_writes_nothing(runner, tmp_path, capsys, name, kind):
    (tmp_path / "notebooks").mkdir()
    archive = tmp_path / "full-run.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, "notebooks/02_resnet50_keras.ipynb", b"executed")
        add(tar, name, kind=kind)

    assert runner.collect(archive, root=tmp_path) == 2

    assert "nothing was unpacked" in capsys.readouterr().err
    assert not (tmp_path / "notebooks" / "02_resnet50_keras.ipynb").exists()


def test_notebook_env_sets_tensorflows_variables_like_settings(runner):
    """Chapters import keras in their first cell, so the kernel's environment must carry settings.TENSORFLOW_ENV."""
    from resbook.settings import TENSORFLOW_ENV

    for key, value in TENSORFLOW_ENV.items():
        assert runner.NOTEBOOK_ENV[key] == value
