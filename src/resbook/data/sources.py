"""Every file the book downloads, in one table, and :func:`fetch` to get one.

Each entry of :data:`SOURCES` names a dataset or a set of weights and lists
its files as :class:`~resbook.data.download.Remote` objects: URL, hash, and
size where the publisher states one. The hashes are the ones the frameworks
themselves check, copied from their code:

* tf_flowers: the sha256 and size of TensorFlow's ``flower_photos.tgz``.
* Oxford 102 Flowers: the md5 values of torchvision's ``Flowers102``.
* MNIST: the four idx files of torchvision's mirror (md5 and size).

``tests/test_sources.py`` compares these values with the installed
torchvision, so a change upstream shows up as a failing test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResbookError, as_path
from ..settings import cache_dir, data_root
from .download import Remote, download, extract

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class Source:
    """A dataset or a weights file that :func:`fetch` can get: its files, and what to hand back.

    ``path`` is what :func:`fetch` returns, relative to the source's folder:
    ``""`` for the folder itself, a file name for single-file sources.
    Archives are extracted beside themselves into a folder of their name
    without the suffix (``flower_photos.tgz`` -> ``flower_photos/``).
    """

    about: str
    remotes: tuple[Remote, ...]
    path: str = ""


_OXFORD = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

SOURCES: dict[str, Source] = {
    "tf_flowers": Source(
        "TensorFlow's flower_photos: 3,670 photos of 5 flower classes, one folder per class",
        (Remote("https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
                "flower_photos.tgz", "sha256",
                "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c", 228_813_984),),
        path="flower_photos/flower_photos"),
    "oxford102": Source(
        "Oxford 102 Flowers: 8,189 photos of 102 classes (102flowers/jpg/), their labels and official splits",
        (Remote(_OXFORD + "102flowers.tgz", "102flowers.tgz", "md5", "52808999861908f626f3c1f4e79d11fa"),
         Remote(_OXFORD + "imagelabels.mat", "imagelabels.mat", "md5", "e0620be6f572b9609742df49c70aed4d"),
         Remote(_OXFORD + "setid.mat", "setid.mat", "md5", "a5357ecc9cb78c4bef273ce3793fc85c"))),
    "mnist": Source(
        "MNIST as the four original idx files (torchvision's mirror)",
        (Remote(_MNIST_MIRROR + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "md5",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
         Remote(_MNIST_MIRROR + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "md5",
                "d53e105ee54ea40749a09fcbcd1e9432", 28_881),
         Remote(_MNIST_MIRROR + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "md5",
                "9fb629c4189551a2d022fa330f9573f3", 1_648_877),
         Remote(_MNIST_MIRROR + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "md5",
                "ec29112dd5afa0611ce80d1b7f02629c", 4_542))),
}


def source(name: str) -> Source:
    """The :data:`SOURCES` entry called ``name``; a one-sentence error names the valid ones."""
    if name not in SOURCES:
        raise ResbookError(f"There is no source called {name!r}: choose one of {', '.join(SOURCES)}.")
    return SOURCES[name]


def _unpacked(filename: str) -> str | None:
    """The folder an archive is extracted to (its name without the suffix), or None for other files."""
    for suffix in ARCHIVE_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return None


def fetch(name: str, dest: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download, verify and extract the source ``name``; return its folder or file (``Source.path``).

    Where it looks, in order:

    1. ``$RESBOOK_DATA/<name>``, a copy a reader placed there (e.g. ``mnist/``
       with the four idx files): returned as it is (for a single-file source,
       the file of that name inside it), never changed or checked here.
    2. ``dest``, else ``cache_dir()/<name>``: each file is downloaded there
       unless a verified copy is present (see :func:`download`), and each
       archive is extracted beside itself unless its folder already exists
       (:func:`extract` creates that folder only once extraction finished).

    Nothing is deleted: a wrong file already in place stays, and the error
    says what to do. ``dest`` must be a folder (or not exist yet) that the
    user can write to; otherwise one sentence says so.
    """
    src = source(name)
    local = data_root() / name if data_root() else None
    if local is not None and local.is_dir():
        single_file = src.path in {r.filename for r in src.remotes}
        return local / src.path if single_file else local
    folder = as_path(dest, "the destination folder") if dest is not None else cache_dir() / name
    for remote in src.remotes:
        unpacked = _unpacked(remote.filename)
        if unpacked is None:
            download(remote, folder, progress=progress)
        elif not (folder / unpacked).exists():
            extract(download(remote, folder, progress=progress), folder / unpacked)
    return folder / src.path
