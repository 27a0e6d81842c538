"""The table of remotes (checked against the installed Keras and torchvision), fetch, and the Oxford subset."""

import hashlib
import io
import re
import tarfile
from pathlib import PurePosixPath

import numpy as np
import pytest
from PIL import Image

from resbook.data import sources
from resbook.data.download import Remote
from resbook.data.datasets import OXFORD10_CLASSES, flowers_folder, oxford10
from resbook.data.sources import SOURCES, Source, fetch
from resbook.errors import ResbookError

HEX_LENGTH = {"md5": 32, "sha256": 64}


@pytest.mark.parametrize("name", SOURCES)
def test_every_remote_is_well_formed(name):
    src = SOURCES[name]
    assert src.remotes and src.about
    for remote in src.remotes:
        assert remote.url.startswith("https://") and PurePosixPath(remote.url).name == remote.filename
        assert re.fullmatch(r"[0-9a-f]+", remote.hash_value)
        assert len(remote.hash_value) == HEX_LENGTH[remote.hash_algorithm]
    if src.path:
        assert src.path in {r.filename for r in src.remotes} or src.path.startswith("flower_photos/")


def test_oxford_md5_and_names_match_torchvision():
    from torchvision.datasets import Flowers102
    for remote in SOURCES["oxford102"].remotes:
        assert remote.url == Flowers102._download_url_prefix + remote.filename
        assert (remote.filename, remote.hash_value) in Flowers102._file_dict.values()
    assert list(OXFORD10_CLASSES.values()) == Flowers102.classes[:10] and list(OXFORD10_CLASSES) == list(range(1, 11))


# ----------------------------------------------------------------------------- fetch

def _tgz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _remote(server, filename, body):
    server.routes["/" + filename] = body
    return Remote(f"{server.url}/{filename}", filename, "sha256", hashlib.sha256(body).hexdigest(), len(body))


@pytest.fixture
def toy(http_server, monkeypatch, tmp_path):
    """Sources 'toy' (an archive and a label file) and 'toy_weights' (one file) served from 127.0.0.1."""
    archive = _tgz({"toy/a/1.txt": b"one", "toy/b/2.txt": b"two"})
    monkeypatch.setitem(SOURCES, "toy", Source("a toy dataset", (_remote(http_server, "toy.tgz", archive),
                                                                  _remote(http_server, "labels.txt", b"a b"))))
    monkeypatch.setitem(SOURCES, "toy_weights", Source("toy weights", (_remote(http_server, "w.h5", b"w"),),
                                                       path="w.h5"))
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    return http_server


def test_fetch_downloads_extracts_and_reuses(toy, tmp_path):
    folder = fetch("toy", progress=False)
    assert folder == tmp_path / "cache" / "toy"
    assert (folder / "toy" / "toy" / "b" / "2.txt").read_bytes() == b"two"
    assert (folder / "labels.txt").read_bytes() == b"a b" and (folder / "toy.tgz").exists()
    assert sorted(toy.hits) == ["/labels.txt", "/toy.tgz"]
    assert fetch("toy", progress=False) == folder and len(toy.hits) == 2  # nothing downloaded again
    weights = fetch("toy_weights", dest=tmp_path / "elsewhere", progress=False)
    assert weights == tmp_path / "elsewhere" / "w.h5" and weights.read_bytes() == b"w"


def test_fetch_uses_the_readers_copy_first(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("RESBOOK_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy_weights").mkdir()
    assert fetch("toy", progress=False) == tmp_path / "data" / "toy"
    assert fetch("toy_weights", progress=False) == tmp_path / "data" / "toy_weights" / "w.h5"
    assert toy.hits == [] and not (tmp_path / "cache").exists()


def test_fetch_refuses_a_wrong_file_and_leaves_it(toy, tmp_path, one_sentence):
    mine = tmp_path / "cache" / "toy_weights" / "w.h5"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"not the weights")
    with pytest.raises(ResbookError, match="exists but is not the expected file") as err:
        fetch("toy_weights", progress=False)
    one_sentence(str(err.value))
    assert mine.read_bytes() == b"not the weights"


def test_unknown_source_names_the_valid_ones(one_sentence):
    with pytest.raises(ResbookError) as err:
        fetch("imagenet")
    message = one_sentence(str(err.value))
    assert "'imagenet'" in message and all(name in message for name in SOURCES)


# ----------------------------------------------------------------------------- Oxford 102, 10 classes

def test_oxford10_picks_classes_1_to_10_and_splits_them(tmp_path):
    from scipy.io import savemat
    ids = np.array([1 + i % 12 for i in range(60)], dtype=np.uint8)  # classes 1..12, 5 images each
    jpg = tmp_path / "102flowers" / "jpg"
    jpg.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, len(ids) + 1):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(jpg / f"image_{i:05d}.jpg")
    savemat(tmp_path / "imagelabels.mat", {"labels": ids[None, :]})
    index, parts = oxford10(tmp_path, val_fraction=0.2, seed=0, progress=False)
    assert index.classes == tuple(OXFORD10_CLASSES.values()) and len(index.files) == 50
    assert index.files[0] == "102flowers/jpg/image_00001.jpg" and index.labels[0] == 0
    assert index.counts() == dict.fromkeys(OXFORD10_CLASSES.values(), 5)
    assert np.bincount(index.labels[parts.val]).tolist() == [1] * 10  # stratified: one of five per class
    again = oxford10(tmp_path, val_fraction=0.2, seed=0, progress=False)[1]
    assert np.array_equal(parts.val, again.val)


def test_oxford10_without_labels_is_one_sentence(tmp_path, one_sentence):
    with pytest.raises(ResbookError, match="imagelabels.mat does not exist") as err:
        oxford10(tmp_path)
    one_sentence(str(err.value))
    (tmp_path / "imagelabels.mat").write_text("<html>not a mat file</html>")
    with pytest.raises(ResbookError, match="not Oxford 102's label file") as err:
        oxford10(tmp_path)
    one_sentence(str(err.value))



def test_flowers_folder_by_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("RESBOOK_PROFILE", "smoke")
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    smoke = flowers_folder("flowers-recognition", n_per_class=2)
    assert sorted(p.name for p in smoke.iterdir()) == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    monkeypatch.setenv("RESBOOK_PROFILE", "full")
    monkeypatch.delenv("RESBOOK_DATA", raising=False)
    with pytest.raises(ResbookError, match="needs a Kaggle account") as err:
        flowers_folder("flowers-recognition")
    assert "\n" not in str(err.value)
    (tmp_path / "data" / "flowers-recognition" / "daisy").mkdir(parents=True)
    monkeypatch.setenv("RESBOOK_DATA", str(tmp_path / "data"))
    assert flowers_folder("flowers-recognition") == tmp_path / "data" / "flowers-recognition"
