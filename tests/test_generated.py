import hashlib

import numpy as np
import pytest
from PIL import Image

from resbook.data.generated import FLOWER_CLASSES, generated_flowers, make_digits, make_flowers


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    return make_flowers(tmp_path_factory.mktemp("f") / "flowers", n_per_class=12, seed=3)


def test_flowers_folder_layout(flowers):
    assert sorted(p.name for p in flowers.iterdir()) == sorted(FLOWER_CLASSES)
    for cls in FLOWER_CLASSES:
        files = sorted((flowers / cls).iterdir())
        assert len(files) == 12 and all(f.suffix == ".jpg" for f in files)
        with Image.open(files[0]) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert 72 <= img.width <= 112 and 72 <= img.height <= 112
    assert not [p for p in flowers.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_flowers_are_deterministic(flowers, tmp_path):
    again = make_flowers(tmp_path / "again", n_per_class=12, seed=3)
    other = make_flowers(tmp_path / "other", n_per_class=12, seed=4)
    assert _digest(again) == _digest(flowers)
    assert _digest(other) != _digest(flowers)


def test_make_flowers_never_writes_into_an_existing_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        make_flowers(tmp_path / "mine", n_per_class=1)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_generated_flowers_is_cached(tmp_path):
    a = generated_flowers(n_per_class=2, seed=0, cache=tmp_path)
    stamp = (a / "daisy" / "daisy_0000.jpg").stat().st_mtime_ns
    b = generated_flowers(n_per_class=2, seed=0, cache=tmp_path)
    assert a == b and (b / "daisy" / "daisy_0000.jpg").stat().st_mtime_ns == stamp


def _nearest_mean_accuracy(x_train, y_train, x_test, y_test):
    classes = np.unique(y_train)
    means = np.stack([x_train[y_train == c].mean(0) for c in classes])
    d = ((x_test[:, None, :] - means[None]) ** 2).sum(-1)
    return (classes[d.argmin(1)] == y_test).mean()


def test_flowers_are_learnable(flowers, tmp_path):
    """A nearest-class-mean on the colour histogram of the image centre beats chance (20%) by far."""
    def features(root):
        xs, ys = [], []
        for ci, cls in enumerate(FLOWER_CLASSES):
            for p in sorted((root / cls).iterdir()):
                img = np.asarray(Image.open(p).convert("RGB").resize((32, 32)), dtype=np.float32)[8:24, 8:24] / 255
                hist = [np.histogram(img[..., k], bins=8, range=(0, 1))[0] for k in range(3)]
                xs.append(np.concatenate(hist) / img[..., 0].size)
                ys.append(ci)
        return np.array(xs), np.array(ys)
    test_root = make_flowers(tmp_path / "test", n_per_class=12, seed=99)
    acc = _nearest_mean_accuracy(*features(flowers), *features(test_root))
    assert acc > 0.6


def test_digits_shapes_labels_and_determinism():
    x, y = make_digits(200, seed=5)
    assert x.shape == (200, 28, 28) and x.dtype == np.uint8
    assert y.shape == (200,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [20] * 10
    assert x.max() > 200 and np.median(x) < 30  # bright strokes on a dark background, like MNIST
    x2, y2 = make_digits(200, seed=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = make_digits(200, seed=6)
    assert not np.array_equal(x, x3)
    assert make_digits(0)[0].shape == (0, 28, 28)


def test_digits_are_learnable():
    x, y = make_digits(1000, seed=0)
    xt, yt = make_digits(300, seed=1)
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255
    assert _nearest_mean_accuracy(flat(x), y, flat(xt), yt) > 0.5
