"""MNIST idx files for tests: :func:`write_idx` and a generated :func:`make_mnist_folder`.

Only tests write idx files (the book reads the published ones), so the writers live here.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from resbook.data.generated import make_digits
from resbook.data.mnist import MNIST_FILES


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (uint8 or int64 labels) in MNIST's idx format, gzipped when ``path`` ends in .gz."""
    path = Path(path)
    array = np.asarray(array).astype(np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def make_mnist_folder(root: str | os.PathLike, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Write generated digits as the four MNIST ``*-idx?-ubyte.gz`` files into ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = make_digits(n_train, seed), make_digits(n_test, seed + 1)
    for key, arr in (("train_images", xtr), ("train_labels", ytr), ("test_images", xte), ("test_labels", yte)):
        write_idx(root / (MNIST_FILES[key] + ".gz"), arr)
    return root
