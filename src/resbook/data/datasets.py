"""The datasets the chapters train on, chosen by profile: generated in ``smoke``, real in ``full``.

This module sits above the rest of :mod:`resbook.data` and is the only one
that knows about profiles: :func:`load_digits` (chapters 1, 5, 6 and 7),
:func:`flowers_folder` (chapters 2 and 4) and :func:`oxford10` (chapter 4)
pick generated data (:mod:`~resbook.data.generated`) or real files
(:func:`~resbook.data.sources.fetch`, :mod:`~resbook.data.mnist`,
:mod:`~resbook.data.folders`). None of those imports this module back.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ResbookError, as_path
from ..settings import data_root, display_path, profile
from .folders import FolderIndex, Split, index_files, split
from .generated import generated_flowers, make_digits
from .mnist import load_mnist_folder
from .sources import fetch

# ----------------------------------------------------------------------------- digits

class Digits(tuple):
    """``((x_train, y_train), (x_test, y_test))`` plus ``.source``, a description of where they came from."""

    source: str

    def __new__(cls, train, test, source: str):
        obj = super().__new__(cls, (train, test))
        obj.source = source
        return obj


def load_digits(profile_name: str | None = None, n_train: int = 2048, n_test: int = 512, seed: int = 0) -> Digits:
    """The digits a chapter trains on: real MNIST in the ``full`` profile, generated ones in ``smoke``.

    ``full`` reads the idx files that :func:`resbook.data.sources.fetch` finds
    or downloads (the first ``n_train`` / ``n_test`` of each split); ``smoke``
    draws ``n_train`` + ``n_test`` digit-like images with :func:`make_digits`.
    """
    if profile(profile_name) == "smoke":
        train = make_digits(n_train, seed=seed)
        test = make_digits(n_test, seed=seed + 1)
        return Digits(train, test, f"generated digits ({n_train} train, {n_test} test, seed {seed})")
    folder = fetch("mnist")  # $RESBOOK_DATA/mnist, else the verified download in the cache
    (x_train, y_train), (x_test, y_test) = load_mnist_folder(folder)
    train, test = (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])
    return Digits(train, test, f"MNIST idx files in {display_path(folder)} ({len(train[0])} train, {len(test[0])} test)")

# ----------------------------------------------------------------------------- flowers

KAGGLE_FLOWERS_URL = "https://www.kaggle.com/datasets/alxmamaev/flowers-recognition"


def flowers_folder(name: str = "flowers-recognition", profile_name: str | None = None,
                   n_per_class: int = 40) -> Path:
    """The image folder a flowers chapter trains on: generated flowers in ``smoke``, real ones in ``full``.

    ``name`` is ``"flowers-recognition"`` (the Kaggle set, which needs a
    Kaggle account to download, so it must be placed under ``$RESBOOK_DATA``),
    ``"tf_flowers"`` (TensorFlow's flower_photos, downloaded and verified), or
    ``"flower_photos_subset"`` (a local subset of tf_flowers; without it, the
    full tf_flowers download is used).
    """
    if profile(profile_name) == "smoke":
        return generated_flowers(n_per_class=n_per_class)
    local = data_root() / name if data_root() else None
    if local is not None and local.is_dir():
        return local
    if name == "flowers-recognition":
        raise ResbookError(f"The Kaggle Flowers Recognition set needs a Kaggle account to download: get it from "
                           f"{KAGGLE_FLOWERS_URL}, unpack it so that <folder>/flowers-recognition/<class>/*.jpg "
                           "exist, and set RESBOOK_DATA=<folder>.")
    if name == "flower_photos_subset":
        name = "tf_flowers"
    return fetch(name)


# ----------------------------------------------------------------------------- Oxford 102, 10 classes

OXFORD10_CLASSES: dict[int, str] = {
    1: "pink primrose", 2: "hard-leaved pocket orchid", 3: "canterbury bells", 4: "sweet pea",
    5: "english marigold", 6: "tiger lily", 7: "moon orchid", 8: "bird of paradise", 9: "monkshood",
    10: "globe thistle",
}
"""The 10-class Oxford 102 subset of the transfer-learning chapter: class ids 1-10, with their names.

The article this chapter follows trains on ten Oxford 102 classes without
listing them in a form we could check, so this subset is *our choice*: the
first ten class ids of ``imagelabels.mat`` (1-based), named as in the
standard Oxford 102 name list (torchvision's ``Flowers102.classes``).
Training and validation images come from :func:`oxford10`'s seeded,
stratified split, not from ``setid.mat``.
"""


def oxford10(folder: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 0,
             progress: bool = True) -> tuple[FolderIndex, Split]:
    """The :data:`OXFORD10_CLASSES` images of Oxford 102 and their seeded, stratified train/valid split.

    ``folder`` holds ``imagelabels.mat`` and the images in ``102flowers/jpg/``
    (as :func:`fetch` lays them out) or ``jpg/`` (torchvision's layout); by
    default it is ``fetch("oxford102")``. Labels are 0-9 in the order of
    :data:`OXFORD10_CLASSES`. Needs SciPy to read the ``.mat`` file.
    """
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ResbookError("Reading Oxford 102's imagelabels.mat needs SciPy: pip install scipy.") from None
    root = as_path(folder, "the Oxford 102 folder") if folder is not None else fetch("oxford102", progress=progress)
    labels_file = root / "imagelabels.mat"
    if not labels_file.is_file():
        raise ResbookError(f"{labels_file} does not exist: run fetch('oxford102') or point at the folder that "
                           "holds imagelabels.mat and the jpg/ images.")
    try:
        ids = loadmat(labels_file, squeeze_me=True)["labels"].tolist()
    except Exception as exc:  # noqa: BLE001 - SciPy raises many kinds (MatReadError, IndexError, ...) on a bad file
        raise ResbookError(f"{labels_file} is not Oxford 102's label file ({type(exc).__name__}); "
                           "download it again.") from None
    images = "102flowers/jpg" if (root / "102flowers" / "jpg").is_dir() else "jpg"
    wanted = {class_id: label for label, class_id in enumerate(OXFORD10_CLASSES)}
    candidates = [(f"{images}/image_{i:05d}.jpg", wanted[c]) for i, c in enumerate(ids, 1) if c in wanted]
    index = index_files(root, tuple(OXFORD10_CLASSES.values()), candidates, progress=progress)
    return index, split(index, val_fraction=val_fraction, seed=seed)
