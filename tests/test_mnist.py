import gzip

import numpy as np
import pytest

from mnist_files import make_mnist_folder, write_idx
from resbook.data.datasets import load_digits
from resbook.data.generated import make_digits
from resbook.data.mnist import MNIST_FILES, load_mnist_folder, pad_to_rgb32, read_idx
from resbook.errors import ResbookError


def test_idx_round_trip(tmp_path):
    x, y = make_digits(30, seed=2)
    for suffix in (".gz", ""):
        assert np.array_equal(read_idx(write_idx(tmp_path / f"img{suffix}", x)), x)
        assert np.array_equal(read_idx(write_idx(tmp_path / f"lab{suffix}", y)), y.astype(np.uint8))


def test_load_mnist_folder(tmp_path):
    root = make_mnist_folder(tmp_path / "mnist", n_train=50, n_test=20)
    (xtr, ytr), (xte, yte) = load_mnist_folder(root)
    assert xtr.shape == (50, 28, 28) and ytr.shape == (50,) and ytr.dtype == np.int64
    assert xte.shape == (20, 28, 28) and yte.shape == (20,)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-10], "truncated or corrupt"),
    (lambda raw: b"\x1f\x8b" + raw[2:], "not an idx file"),
    (lambda raw: b"", "not an idx file"),
])
def test_damaged_idx_files_get_one_sentence(tmp_path, damage, message):
    x, _ = make_digits(10)
    raw = gzip.decompress(write_idx(tmp_path / "a.gz", x).read_bytes())
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(damage(raw))
    with pytest.raises(ResbookError, match=message) as err:
        read_idx(bad)
    assert "\n" not in str(err.value)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(ResbookError, match="does not exist"):
        load_mnist_folder(tmp_path / "nowhere")
    root = make_mnist_folder(tmp_path / "m", n_train=10, n_test=10)
    (root / (MNIST_FILES["test_labels"] + ".gz")).unlink()
    with pytest.raises(ResbookError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist_folder(root)


def test_load_digits_profiles(monkeypatch, tmp_path):
    from resbook.data import sources
    from resbook.data.download import Remote
    monkeypatch.setenv("RESBOOK_PROFILE", "smoke")
    digits = load_digits(n_train=40, n_test=20)
    assert digits[0][0].shape == (40, 28, 28) and "generated" in digits.source
    monkeypatch.setenv("RESBOOK_PROFILE", "full")
    monkeypatch.setenv("RESBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RESBOOK_CACHE", str(tmp_path / "cache"))
    unreachable = tuple(Remote("http://127.0.0.1:9/" + r.filename, r.filename, r.hash_algorithm, r.hash_value, r.size)
                        for r in sources.SOURCES["mnist"].remotes)
    monkeypatch.setitem(sources.SOURCES, "mnist", sources.Source("MNIST", unreachable))
    with pytest.raises(ResbookError, match="Could not download .* by hand") as err:
        load_digits()
    assert "\n" not in str(err.value)
    make_mnist_folder(tmp_path / "data" / "mnist", n_train=30, n_test=10)
    digits = load_digits(n_train=20)
    assert digits[0][0].shape == (20, 28, 28) and digits[1][0].shape == (10, 28, 28)
    assert "$RESBOOK_DATA/mnist" in digits.source  # as the reader set it, not this machine's folder


def test_pad_to_rgb32():
    x, _ = make_digits(3)
    padded = pad_to_rgb32(x)
    assert padded.shape == (3, 32, 32, 3) and padded.dtype == np.uint8
    assert np.array_equal(padded[:, 2:30, 2:30, 1], x)
    assert padded[:, :2].max() == 0 and padded[:, :, -2:].max() == 0
    with pytest.raises(ResbookError, match="28, 28"):
        pad_to_rgb32(np.zeros((2, 32, 32)))
