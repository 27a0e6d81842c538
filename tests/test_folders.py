"""Image-folder index, split and decode cache, on a generated folder with every kind of bad file."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resbook.data import folders
from resbook.data.folders import index_folder, load_images, split
from resbook.data.generated import FLOWER_CLASSES, make_flowers
from resbook.errors import ResbookError


def _noise(mode, seed, size=(20, 14)):
    """A small image of ``mode`` whose pixels (hence bytes) differ with ``seed``."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb).convert(mode)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Generated flowers (4 a class) plus every kind of file a real folder holds by mistake."""
    root = make_flowers(tmp_path_factory.mktemp("messy") / "flowers", n_per_class=4, seed=1)
    good = (root / "daisy" / "daisy_0001.jpg").read_bytes()
    (root / "daisy" / "empty.jpg").write_bytes(b"")
    (root / "daisy" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "rose" / "random.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "rose" / "notes.txt").write_text("photos from the garden")
    (root / "README.md").write_text("a top-level file is not a class")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "tulip" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "tulip" / ".thumbs").mkdir()
    _noise("RGB", 9).save(root / "tulip" / ".thumbs" / "hidden.jpg")
    (root / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    (root / "tulip" / "more").mkdir()
    _noise("RGB", 10).save(root / "tulip" / "more" / "nested.png")
    _noise("L", 1).save(root / "sunflower" / "grey.png")
    _noise("CMYK", 2).save(root / "sunflower" / "cmyk.jpg")
    _noise("P", 3).save(root / "sunflower" / "palette.gif")
    Image.new("RGBA", (20, 14), (255, 0, 0, 0)).save(root / "sunflower" / "transparent.png")  # fully see-through
    shutil.copy(root / "daisy" / "daisy_0002.jpg", root / "daisy" / "copy_of_2.jpg")
    shutil.copy(root / "dandelion" / "dandelion_0003.jpg", root / "tulip" / "misfiled.jpg")
    return root


@pytest.fixture(scope="module")
def index(messy):
    return index_folder(messy, progress=False)


def test_index_skips_ignores_and_deduplicates(index):
    assert index.classes == FLOWER_CLASSES
    assert dict(index.skipped) == {"daisy/empty.jpg": "empty file", "daisy/truncated.jpg": "truncated",
                                   "rose/random.jpg": "not an image"}
    assert set(index.ignored) == {"README.md", "rose/notes.txt"}  # hidden files are not even listed
    assert index.duplicates == (("daisy/copy_of_2.jpg", "daisy/daisy_0002.jpg"),)
    assert index.ambiguous == (("dandelion/dandelion_0003.jpg", "tulip/misfiled.jpg"),)
    assert "daisy/copy_of_2.jpg" in index.files and "daisy/daisy_0002.jpg" not in index.files  # one copy kept
    assert "dandelion/dandelion_0003.jpg" not in index.files and "tulip/misfiled.jpg" not in index.files
    assert "tulip/more/nested.png" in index.files
    assert not any("hidden" in f or ".DS_Store" in f for f in index.files)
    assert index.counts() == {"daisy": 4, "dandelion": 3, "rose": 4, "sunflower": 8, "tulip": 5}
    assert index.converted == {"CMYK": 1, "L": 1, "P": 1, "RGBA": 1}
    assert [index.classes[label] for label in index.labels] == [f.split("/")[0] for f in index.files]


def test_report_names_what_was_left_out(index):
    report = index.report()
    skipped = [line for line in report.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "3 unreadable" in skipped[0] and "daisy/empty.jpg (empty file)" in skipped[0]
    assert "duplicates within a class: 1 group" in report
    assert "duplicates across classes: 1 group" in report and "label is ambiguous" in report
    assert "dandelion/dandelion_0003.jpg = tulip/misfiled.jpg" in report
    for cls in FLOWER_CLASSES:
        assert cls in report


def test_report_names_the_folder_as_the_reader_set_it(index, monkeypatch):
    monkeypatch.setenv("RESBOOK_DATA", str(Path(index.root).parent))
    first = index.report().splitlines()[0]
    assert first.startswith(f"$RESBOOK_DATA/{Path(index.root).name}: 5 classes"), first


def test_load_images_converts_every_mode_to_rgb(index, monkeypatch, tmp_path):
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path))
    x, y = load_images(index, size=12, progress=False)
    assert x.shape == (len(index.files), 12, 12, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.array_equal(y, index.labels)
    assert (x[index.files.index("sunflower/transparent.png")] == 255).all()  # transparency laid over white
    grey = x[index.files.index("sunflower/grey.png")].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("a file", "is a file, not a folder"),
    ("no class folders", "has no class subfolders"),
    ("one class", "only one class folder ('daisy')"),
    ("empty class", "Class 'rose' in"),
    ("only bad images", "Class 'rose' in"),
    ("two empty classes", "Classes 'rose' and 'tulip' in"),
    ("three empty classes", "Classes 'daisy', 'rose' and 'tulip' in"),
])
def test_unusable_folders_get_one_sentence(tmp_path, one_sentence, case, expected):
    root = tmp_path / "data"
    if case == "a file":
        root.write_text("not a folder")
    elif case == "no class folders":
        root.mkdir()
        _noise("RGB", 0).save(root / "loose.jpg")
        (root / ".hidden").mkdir()
    elif case == "one class":
        (root / "daisy").mkdir(parents=True)
        _noise("RGB", 0).save(root / "daisy" / "a.jpg")
    elif case != "missing":
        empty = {"empty class": 1, "only bad images": 1, "two empty classes": 2, "three empty classes": 3}[case]
        for i, cls in enumerate(("rose", "tulip", "daisy", "violet")):
            (root / cls).mkdir(parents=True)
            if i >= empty:
                _noise("RGB", i).save(root / cls / "a.jpg")
        if case == "only bad images":
            (root / "rose" / "zero.jpg").write_bytes(b"")
            (root / "rose" / "text.jpg").write_text("hello")
    with pytest.raises(ResbookError, match=re.escape(expected)) as err:
        index_folder(root, progress=False)
    one_sentence(str(err.value))


def test_split_is_seeded_stratified_and_recordable(index, one_sentence):
    parts = split(index, val_fraction=0.25, seed=7)
    again = split(index, val_fraction=0.25, seed=7)
    other = split(index, val_fraction=0.25, seed=8)
    assert np.array_equal(parts.train, again.train) and np.array_equal(parts.val, again.val)
    assert not np.array_equal(parts.val, other.val)
    assert parts.train.dtype == np.int64
    assert sorted(np.concatenate([parts.train, parts.val]).tolist()) == list(range(len(index.files)))
    for c, n in enumerate(index.counts().values()):
        assert (index.labels[parts.val] == c).sum() == round(n * 0.25)  # every class in the same proportion
        assert (index.labels[parts.train] == c).sum() == n - round(n * 0.25)
    record = json.loads(json.dumps(parts.as_dict()))
    assert record == {"val_fraction": 0.25, "seed": 7, "files_sha256": index.fingerprint(),
                      "n_train": len(parts.train), "n_val": len(parts.val)}
    with pytest.raises(ResbookError, match="between 0 and 1") as err:
        split(index, val_fraction=1.5)
    one_sentence(str(err.value))


def test_split_of_a_label_array_is_the_split_of_an_index_with_those_labels(index, one_sentence):
    """MNIST's labels are split as an image folder is: the same indices for the same labels and seed."""
    by_index, by_labels = split(index, val_fraction=0.25, seed=3), split(index.labels, val_fraction=0.25, seed=3)
    assert np.array_equal(by_index.train, by_labels.train) and np.array_equal(by_index.val, by_labels.val)
    digits = np.arange(120) % 10
    parts = split(list(digits), val_fraction=1 / 12, seed=0)
    assert np.bincount(digits[parts.val]).tolist() == [1] * 10  # stratified: one of twelve per digit
    assert len(parts.train) == 110 and parts.as_dict()["files_sha256"] == split(digits, 1 / 12).files_sha256
    with pytest.raises(ResbookError, match="Class '7' \\(1 image\\) has too few images to split") as err:
        split(np.array([7, 1, 1]))
    one_sentence(str(err.value))
    with pytest.raises(ResbookError, match="1-D array of integer labels, not str") as err:
        split("digits")
    one_sentence(str(err.value))



def test_train_val_arrays_are_the_split_images_with_their_labels(tmp_path, counted_decodes, one_sentence):
    """Chapters 2 and 3's one call: each image in one part only, with its own label, every class in both."""
    index = index_folder(make_flowers(tmp_path / "flowers", n_per_class=10, seed=4), progress=False)
    x_train, y_train, x_val, y_val, parts = folders.train_val_arrays(index, size=16, val_fraction=0.2, seed=5,
                                                                     progress=False)
    assert x_train.shape == (40, 16, 16, 3) and x_val.shape == (10, 16, 16, 3) and x_train.dtype == np.uint8
    assert np.bincount(y_val).tolist() == [2] * 5 and np.bincount(y_train).tolist() == [8] * 5
    expected = split(index, val_fraction=0.2, seed=5)  # the same split as split() gives, recordable
    assert np.array_equal(parts.train, expected.train) and np.array_equal(parts.val, expected.val)
    assert parts.as_dict() == expected.as_dict()
    for images, labels, positions in ((x_train, y_train, parts.train), (x_val, y_val, parts.val)):
        assert labels.tolist() == index.labels[positions].tolist()
        for image, position in zip(images, positions):  # each image is the decoded file its label belongs to
            assert np.array_equal(image, folders.decode_image(index.paths[position], 16))
    assert not set(parts.train.tolist()) & set(parts.val.tolist())
    other = folders.train_val_arrays(index, size=16, val_fraction=0.2, seed=6, progress=False)
    assert not np.array_equal(other.split.val, parts.val) and other.x_val.shape == x_val.shape
    with pytest.raises(ResbookError, match="between 0 and 1") as err:
        folders.train_val_arrays(index, size=16, val_fraction=20)
    one_sentence(str(err.value))
    with pytest.raises(ResbookError, match="train_val_arrays\\(\\) needs the FolderIndex") as err:
        folders.train_val_arrays(tmp_path / "flowers")
    one_sentence(str(err.value))

@pytest.fixture
def counted_decodes(monkeypatch, tmp_path):
    """Count calls of the per-image decoder; caches go to a fresh folder."""
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    calls = []
    decode = folders.decode_image
    monkeypatch.setattr(folders, "decode_image", lambda path, size: calls.append(path) or decode(path, size))
    return calls


def test_decode_cache_is_used_and_invalidated(tmp_path, counted_decodes):
    root = make_flowers(tmp_path / "flowers", n_per_class=3, seed=2)
    index = index_folder(root, progress=False)
    x1, _ = load_images(index, size=16, progress=False)
    assert len(counted_decodes) == 15
    x2, _ = load_images(index, size=16, progress=False)
    assert len(counted_decodes) == 15 and np.array_equal(x1, x2)  # warm: nothing decoded
    cached = list((tmp_path / "cache" / "decoded").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no .part file left

    load_images(index, size=8, progress=False)  # another size is another cache entry
    assert len(counted_decodes) == 30

    changed = root / "rose" / "rose_0000.jpg"
    _noise("RGB", 5).save(changed, format="JPEG")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    x3, _ = load_images(index_folder(root, progress=False), size=16, progress=False)
    assert len(counted_decodes) == 45 and not np.array_equal(x1, x3)

    load_images(index, size=16, cache=False, progress=False)
    assert len(counted_decodes) == 60 and len(list((tmp_path / "cache" / "decoded").iterdir())) == 3


@pytest.mark.parametrize("damage", [b"", b"not an npz at all", "truncated", "wrong shape"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path, counted_decodes, damage):
    index = index_folder(make_flowers(tmp_path / "flowers", n_per_class=2, seed=3), progress=False)
    x, _ = load_images(index, size=8, progress=False)
    (cached,) = (tmp_path / "cache" / "decoded").iterdir()
    if damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:300])
    elif damage == "wrong shape":
        np.savez(cached, x=np.zeros((3, 8, 8, 3), np.uint8))
    else:
        cached.write_bytes(damage)
    again, _ = load_images(index, size=8, progress=False)
    assert np.array_equal(again, x) and len(counted_decodes) == 2 * len(index.files)
    assert np.array_equal(np.load(cached)["x"], x)  # rebuilt in place
    load_images(index, size=8, progress=False)
    assert len(counted_decodes) == 2 * len(index.files)


def test_data_modules_import_no_framework():
    code = ("import sys, resbook.data.folders, resbook.data.sources, resbook.data.download; "
            "print(sorted(m for m in ('tensorflow', 'torch', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
