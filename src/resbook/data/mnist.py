"""MNIST: the idx files as published, and the 32x32x3 padding the ResNet-152 chapter uses.

``read_idx`` reads the original ``*-idx?-ubyte[.gz]`` format (LeCun's files,
as torchvision and ``../shared/data/mnist`` have them);
``load_mnist_folder`` returns the four arrays from a folder of them.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import ResbookError, as_path

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Mean and standard deviation of MNIST's training pixels scaled to [0, 1]: what every chapter normalises by.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (gzipped or not) into a NumPy array, checking its header against its size."""
    path = as_path(path, "an idx file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ResbookError(f"{path} does not exist.") from None
    except (OSError, EOFError) as exc:
        raise ResbookError(f"{path} is not a readable idx file ({exc}); download it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ResbookError(f"{path} is not an idx file (bad magic number); download it again.")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int) if len(raw) >= 4 + 4 * ndim else None
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    if dims is None or len(raw) - offset != int(np.prod(dims)) * dtype.itemsize:
        raise ResbookError(f"{path} is truncated or corrupt (its header promises another size); "
                           "download it again.")
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    raise ResbookError(f"{folder} has no {stem}.gz: put the four MNIST idx files there "
                       f"({', '.join(s + '.gz' for s in MNIST_FILES.values())}).")


def load_mnist_folder(folder: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)`` from a folder of the four idx files.

    Images are ``uint8[n, 28, 28]``, labels ``int64[n]``.
    """
    folder = as_path(folder, "the MNIST folder")
    if folder.exists() and not folder.is_dir():
        raise ResbookError(f"{folder} is a file, not a folder: point at the folder that holds the four MNIST "
                           "idx files.")
    if not folder.is_dir():
        raise ResbookError(f"MNIST folder {folder} does not exist: check the path, or get the files with "
                           "fetch('mnist').")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        xs, ys = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise ResbookError(f"MNIST {split} images {xs.shape} and labels {ys.shape} in {folder} do not match.")
    return ((arrays["train_images"], arrays["train_labels"].astype(np.int64)),
            (arrays["test_images"], arrays["test_labels"].astype(np.int64)))


def pad_to_rgb32(images: np.ndarray) -> np.ndarray:
    """Pad ``[n, 28, 28]`` digits with 2 zero pixels a side and repeat the channel: ``[n, 32, 32, 3]``."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ResbookError(f"expected digits of shape [n, 28, 28], got {list(images.shape)}.")
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=-1)
