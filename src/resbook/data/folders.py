"""Image folders (one subfolder per class): checked, deduplicated, split, and decoded once.

The real flower sets come as a folder per class, and real folders are messy:
``.DS_Store`` files, a README, an image that was cut off mid-download, a PNG
with an alpha channel, the same photo filed twice (sometimes under two
classes). Three steps turn such a folder into arrays both frameworks share::

    index = index_folder("flowers")          # what is there, what was skipped and why
    print(index.report())
    parts = split(index, val_fraction=0.2, seed=0)
    x, y = load_images(index, size=64)       # uint8[n, 64, 64, 3], int64[n]; cached
    x_train, y_train = x[parts.train], y[parts.train]

:func:`train_val_arrays` does the last three lines in one call, as the
chapters do.

:func:`index_folder` reads every file once: hidden files and non-image files
are ignored, unreadable images (empty, truncated, not an image) are skipped,
and byte-identical copies are dropped. :func:`split` is a seeded, stratified
split into index arrays, so the Keras and the PyTorch chapter train on the
same images. :func:`load_images` decodes and resizes each image once and
caches the result under ``cache_dir()/decoded/``.

A random split of one folder still flatters when a photo is in it twice, once
resized or recompressed: :func:`near_duplicates` counts the validation images
whose :func:`difference_hash` is within a few bits of a training image's, and
:func:`split_by_source` separates a folder's images by the release they came
from (by file name), so a model can be tested on photos from elsewhere::

    near = near_duplicates(hashes(index), parts.train, parts.val, max_distance=4)
    tf_flowers, others = split_by_source(index, "flower_photos")
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
import warnings
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, TypeVar

import numpy as np
from PIL import Image

from ..errors import ResbookError, as_path, brief, reason
from ..files import atomic_write
from ..settings import cache_dir, display_path, progress_bar

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SHOWN = 3  # how many file names a one-line summary quotes
MIN_TO_SPLIT = 2  # images a class needs so that split() puts one in training and one in validation
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "PPM"})  # at most 16 bits a sample; PIL calls PGM and PPM "PPM"
CACHE_VERSION = 3  # bump when load_images' decoding changes, so old caches are not reused
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class FolderIndex:
    """The usable images of an image folder, their labels, and what was left out and why.

    ``files`` are POSIX paths relative to ``root`` in a fixed order (class by
    class, each folder's files by name, then its subfolders by name);
    ``labels[i]`` is the position of ``files[i]``'s class in ``classes``.
    """

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    skipped: tuple[tuple[str, str], ...] = ()      # (file, why) for images that cannot be read
    duplicates: tuple[tuple[str, ...], ...] = ()   # byte-identical images in one class: the first is kept
    ambiguous: tuple[tuple[str, ...], ...] = ()    # byte-identical images in several classes: none is kept
    ignored: tuple[str, ...] = ()                  # files that are not images by their suffix
    converted: dict[str, int] = field(default_factory=dict)  # non-RGB mode -> how many images

    @property
    def paths(self) -> list[Path]:
        """Absolute paths of the usable images, in the order of ``files``."""
        return [self.root / f for f in self.files]

    def counts(self) -> dict[str, int]:
        """Number of usable images per class."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n)}

    def fingerprint(self) -> str:
        """sha256 of the file list and labels: two runs with the same value saw the same images."""
        return hashlib.sha256(json.dumps([self.files, self.labels.tolist()]).encode()).hexdigest()

    def report(self) -> str:
        """A few lines on what the folder holds: classes with counts, skipped files, duplicates."""
        width = max(len(c) for c in self.classes)
        lines = [f"{display_path(self.root)}: {len(self.classes)} classes, {len(self.files):,} images"]
        lines += [f"  {c:<{width}}  {n:>6,}" for c, n in self.counts().items()]
        if self.skipped:
            what = "image(s)" if not any(f.endswith("/") for f, _ in self.skipped) else "image(s) or folder(s)"
            lines.append(f"skipped {len(self.skipped)} unreadable {what}: "
                         + _some([f"{f} ({why})" for f, why in self.skipped]))
        if self.duplicates:
            lines.append(f"duplicates within a class: {len(self.duplicates)} group(s) of byte-identical images, "
                         f"first copy kept, {sum(len(g) - 1 for g in self.duplicates)} dropped: "
                         + _some([" = ".join(g) for g in self.duplicates]))
        if self.ambiguous:
            lines.append(f"duplicates across classes: {len(self.ambiguous)} group(s) of byte-identical images, "
                         f"all {sum(len(g) for g in self.ambiguous)} copies dropped since their label is ambiguous: "
                         + _some([" = ".join(g) for g in self.ambiguous]))
        if self.converted:
            lines.append(f"converted to RGB when loaded: {sum(self.converted.values())} image(s) ("
                         + ", ".join(f"{mode} {n}" + (" scaled to 8 bits" if _full_scale(mode) else "")
                                     for mode, n in sorted(self.converted.items())) + ")")
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} non-image file(s): {_some(list(self.ignored))}")
        small = [f"{c} ({n})" for c, n in self.too_small().items()]
        if small:
            lines.append(f"warning: too few images to split into training and validation (split() needs "
                         f"at least {MIN_TO_SPLIT} images per class): {_some(small)}")
        return "\n".join(lines)

    def too_small(self) -> dict[str, int]:
        """The classes with fewer than ``MIN_TO_SPLIT`` images, which :func:`split` refuses, and their counts."""
        return {c: n for c, n in self.counts().items() if n < MIN_TO_SPLIT}


def _some(items: Sequence[str]) -> str:
    """The first few items joined with commas, and how many more there are."""
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _classes(items: Sequence[str]) -> str:
    """``Class 'a'`` or ``Classes 'a', 'b' and 'c'``: the subject of a sentence about one or more classes."""
    return f"Class {items[0]}" if len(items) == 1 else f"Classes {', '.join(items[:-1])} and {items[-1]}"


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _problem(data: bytes) -> tuple[str | None, str]:
    """``(why it is unreadable or None, PIL mode)`` of an image file's bytes, decoding all of them."""
    if not data:
        return "empty file", ""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft(None, (1, 1))  # JPEG: decode at 1/8 scale, which still reads every byte
            img.load()
            return None, img.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return ("truncated" if "truncated" in str(exc) else "not an image"), ""


def index_files(root: str | os.PathLike, classes: Sequence[str], candidates: Sequence[tuple[str, int]],
                progress: bool = True) -> FolderIndex:
    """Check candidate images ``(path relative to root, label)`` and index the usable ones.

    Every file is read once: unreadable images are skipped, and of a group of
    byte-identical files one copy is kept when all copies share a class, none
    when they do not (the label is ambiguous). Raises :class:`ResbookError`
    naming the classes left without images. :func:`index_folder` calls this
    for a folder per class; a dataset with a label file can call it directly.
    """
    root = Path(root)
    skipped, modes, by_hash = [], {}, defaultdict(list)
    for rel, label in progress_bar(candidates, show=progress, desc=f"checking {root.name}", unit="img",
                                   leave=False):
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            skipped.append((rel, f"cannot be read: {brief(exc)}"))
            continue
        why, mode = _problem(data)
        if why:
            skipped.append((rel, why))
            continue
        modes[rel] = mode
        by_hash[hashlib.sha256(data).digest()].append((rel, label))
    duplicates, ambiguous, dropped = [], [], set()
    for group in (g for g in by_hash.values() if len(g) > 1):
        across = len({label for _, label in group}) > 1
        (ambiguous if across else duplicates).append(tuple(rel for rel, _ in group))
        dropped.update(rel for rel, _ in (group if across else group[1:]))
    kept = [(rel, label) for rel, label in candidates if rel in modes and rel not in dropped]
    labels = np.array([label for _, label in kept], dtype=np.int64)
    empty = [repr(c) for i, c in enumerate(classes) if not np.any(labels == i)]
    if empty:
        raise ResbookError(f"{_classes(empty)} in {root} {'has' if len(empty) == 1 else 'have'} no "
                           "usable images (none found, or all unreadable or copies of another class's images): "
                           "add images or remove the class.")
    return FolderIndex(
        root=root, classes=tuple(classes), files=tuple(rel for rel, _ in kept), labels=labels,
        skipped=tuple(skipped), duplicates=tuple(duplicates), ambiguous=tuple(ambiguous),
        converted=dict(Counter(modes[rel] for rel, _ in kept if modes[rel] != "RGB")))


def index_folder(path: str | os.PathLike, progress: bool = True) -> FolderIndex:
    """Index an image folder with one subfolder per class (as Keras and torchvision read them).

    Classes are the sorted names of the subfolders; images are found at any
    depth below them by suffix (``.jpg``, ``.png``, ...). Hidden files and
    folders are ignored, other files are listed as ignored; a link to a
    missing folder and a subfolder that cannot be read are listed as skipped.
    Raises :class:`ResbookError` for a missing or unreadable folder, a file,
    a folder without class subfolders, fewer than two classes, or a class
    without images or whose folder cannot be read.
    """
    root = as_path(path, "an image folder")
    if not root.exists():
        raise ResbookError(f"Image folder {root} does not exist: check the path (it should hold one subfolder "
                           "per class).")
    if not root.is_dir():
        raise ResbookError(f"{root} is a file, not a folder: point at the folder that holds one subfolder per class.")
    try:  # a folder that can be listed (r) but not searched (x) fails at is_dir(), not at iterdir()
        entries = sorted((p for p in root.iterdir() if not _hidden(p.name)), key=lambda p: p.name)
        classes = [p.name for p in entries if p.is_dir()]
        ignored = [p.name for p in entries if p.is_file()]
        skipped = [(f"{p.name}/", f"cannot be read: it links to {os.readlink(p)}, which does not exist")
                   for p in entries if p.is_symlink() and not p.exists()]
    except OSError as exc:
        raise ResbookError(f"Image folder {root} cannot be read ({reason(exc)}): fix its "
                           "permissions or point at another folder.") from None
    if not classes:
        raise ResbookError(f"{root} has no class subfolders: put the images in one subfolder per class "
                           f"(e.g. {root / 'daisy'}/*.jpg).")
    if len(classes) < 2:
        raise ResbookError(f"{root} has only one class folder ({classes[0]!r}): a classifier needs at least "
                           "two classes, one subfolder each.")
    candidates = []
    for label, cls in enumerate(classes):
        unreadable: list[OSError] = []
        for folder, subfolders, names in os.walk(root / cls, onerror=unreadable.append):
            subfolders[:] = sorted(d for d in subfolders if not _hidden(d))
            for name in sorted(n for n in names if not _hidden(n)):
                rel = (Path(folder) / name).relative_to(root).as_posix()
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    candidates.append((rel, label))
                else:
                    ignored.append(rel)
        for exc in unreadable:
            if Path(exc.filename) == root / cls:
                raise ResbookError(f"Class folder {root / cls} cannot be read ({reason(exc)}): "
                                   f"fix its permissions or move it out of {root}.")
            skipped.append((f"{Path(exc.filename).relative_to(root).as_posix()}/",
                            f"cannot be read: {reason(exc)}"))
    index = index_files(root, classes, candidates, progress=progress)
    return replace(index, skipped=tuple(skipped) + index.skipped, ignored=tuple(ignored))


# ----------------------------------------------------------------------------- split

@dataclass(frozen=True, eq=False)
class Split:
    """Indices into a :class:`FolderIndex` (and into ``load_images``' arrays) or a label array: training and validation."""

    train: np.ndarray
    val: np.ndarray
    val_fraction: float
    seed: int
    files_sha256: str  # of the file list and labels (FolderIndex.fingerprint), or of the labels alone

    def as_dict(self) -> dict[str, object]:
        """What a run record needs to redo this split: its parameters, sizes and the file list's hash."""
        return {"val_fraction": self.val_fraction, "seed": self.seed, "files_sha256": self.files_sha256,
                "n_train": len(self.train), "n_val": len(self.val)}


def _is_number(value: object, kind: type) -> bool:
    """``value`` is a ``kind`` (``numbers.Real``, ``numbers.Integral``) and not a bool (Python's 1 or 0)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _check_index(index: object, caller: str) -> None:
    if not isinstance(index, FolderIndex):
        raise ResbookError(f"{caller}() needs the FolderIndex that index_folder() returns, not "
                           f"{type(index).__name__}: call index_folder(path) first.")


def _labels_to_split(data: object) -> tuple[np.ndarray, dict[int, str], str, str]:
    """``(labels, class name by label, where they are from, their fingerprint)`` of what :func:`split` splits."""
    if isinstance(data, FolderIndex):
        return data.labels, dict(enumerate(data.classes)), f" in {data.root}", data.fingerprint()
    labels = np.asarray(data) if isinstance(data, (np.ndarray, list, tuple)) else np.empty((0, 0))
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ResbookError(f"split() needs the FolderIndex that index_folder() returns or a 1-D array of integer "
                           f"labels, not {type(data).__name__}: pass index_folder(path) or the labels y.")
    labels = labels.astype(np.int64)
    names = {int(c): str(c) for c in np.unique(labels)}
    return labels, names, "", hashlib.sha256(labels.tobytes()).hexdigest()


def split(data: FolderIndex | np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """A seeded, stratified split: ``round(val_fraction * n)`` images of each class go to validation.

    ``data`` is a :class:`FolderIndex` or an array of integer labels (such
    as MNIST's ``y_train``): the one way the chapters hold out validation
    data. Every class lands in both parts (at least one image in each); a
    class with fewer than two images cannot, and gets a one-sentence error.
    The result depends only on the labels, ``val_fraction`` and ``seed``
    (each class is shuffled with its own generator), so it is the same in
    every process and for either framework.
    """
    labels, names, where, fingerprint = _labels_to_split(data)
    if not _is_number(val_fraction, numbers.Real) or not 0 < val_fraction < 1:
        raise ResbookError(f"val_fraction={val_fraction!r} is not a fraction: use a number between 0 and 1, "
                           "e.g. 0.2.")
    if not _is_number(seed, numbers.Integral) or seed < 0:
        raise ResbookError(f"seed={seed!r} is not a valid seed: use a whole number from 0 up, e.g. 0.")
    counts = {c: int(np.sum(labels == c)) for c in names}
    small = [f"{names[c]!r} ({n} image{'' if n == 1 else 's'})" for c, n in counts.items() if n < MIN_TO_SPLIT]
    if small:
        one = len(small) == 1
        raise ResbookError(f"{_classes(small)}{where} {'has' if one else 'have'} too few "
                           f"images to split (each class needs at least {MIN_TO_SPLIT}, one for training and one "
                           f"for validation): add images or remove {'it' if one else 'them'}.")
    train, val = [], []
    for c in names:
        members = np.random.default_rng([seed, c]).permutation(np.flatnonzero(labels == c))
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return Split(train=np.sort(np.concatenate(train or [[]])).astype(np.int64),
                 val=np.sort(np.concatenate(val or [[]])).astype(np.int64),
                 val_fraction=val_fraction, seed=seed, files_sha256=fingerprint)


# ----------------------------------------------------------------------------- decoding

def _full_scale(mode: str, file_format: str | None = None) -> float | None:
    """The value that becomes 255 for a grey image of more than 8 bits (None for 8-bit modes).

    As ``tf.image.convert_image_dtype`` and torchvision's ``ConvertImageDtype``
    scale: by the range of the type (16-bit 65535, 32-bit integer 2**31 - 1),
    floats from [0, 1]. PIL opens a 16-bit PGM as mode "I", the mode of
    32-bit images, so "I" from a file format of at most 16 bits is 16-bit.
    """
    if mode.startswith("I;16") or (mode == "I" and file_format in SIXTEEN_BIT_FORMATS):
        return 65535
    return 2**31 - 1 if mode == "I" else 1.0 if mode == "F" else None


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as RGB: grey, CMYK and palette images are converted, transparency is laid over white.

    Grey images of 16 or 32 bits or of floats are scaled to 8 bits (see
    :func:`_full_scale`); PIL's own conversion would clip them, turning a
    16-bit image almost white.
    """
    top = _full_scale(img.mode, img.format)
    if top is not None:
        grey = np.rint(np.asarray(img, dtype=np.float64) * (255 / top))
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return img.convert("RGB")


def _check_size(size: object) -> None:
    if not _is_number(size, numbers.Integral) or size < 1:
        raise ResbookError(f"size={size!r} is not an image size: use a whole number of pixels from 1 up, e.g. 64.")


def _gone(path: str | os.PathLike) -> ResbookError:
    return ResbookError(f"{path} does not exist: check the path, or if it belongs to an indexed folder that "
                        "changed since, run index_folder again.")


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One image file as ``uint8[size, size, 3]``, decoded as :func:`load_images` decodes every image."""
    _check_size(size)
    return _opened(path, lambda img: np.asarray(img.resize((size, size), Image.BILINEAR)), draft=(size, size))


def _opened(path: str | os.PathLike, use: Callable[[Image.Image], T], draft: tuple[int, int] | None = None) -> T:
    """``use(image)`` of the image file at ``path`` as RGB (:func:`to_rgb`), JPEGs decoded at ``draft`` scale.

    The one place an image file is opened for its pixels; a missing or
    undecodable file gets one :class:`ResbookError` sentence.
    """
    path = as_path(path, "an image")
    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft(None, draft)
            return use(to_rgb(img))
    except FileNotFoundError:
        raise _gone(path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ResbookError(f"{path} could not be decoded as an image ({brief(exc)}): check the file "
                           "(if it is part of an indexed folder that changed, run index_folder again).") from None


def _cache_path(index: FolderIndex, size: int) -> Path:
    """Where ``load_images`` caches this index at this size: named by a hash of what it depends on."""
    try:
        stats = [(f, st.st_size, st.st_mtime_ns) for f, st in zip(index.files, (p.stat() for p in index.paths))]
    except FileNotFoundError as exc:  # the folder changed since it was indexed
        raise _gone(exc.filename) from None
    except OSError as exc:
        raise ResbookError(f"{exc.filename} cannot be read ({reason(exc)}): fix its permissions, "
                           "or run index_folder again if the folder changed.") from None
    key = hashlib.sha256(json.dumps([CACHE_VERSION, size, stats]).encode()).hexdigest()[:20]
    return cache_dir() / "decoded" / f"{index.root.name}-{size}px-{key}.npz"


def _read_cache(path: Path, n: int, size: int) -> np.ndarray | None:
    """The cached array, or None when there is none or it is damaged (it is rebuilt then)."""
    try:
        with np.load(path) as cached:
            x = cached["x"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return x if x.shape == (n, size, size, 3) and x.dtype == np.uint8 else None


def _write_cache(path: Path, x: np.ndarray) -> None:
    """Write ``x`` to ``path`` atomically (see :func:`resbook.files.atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, x=x)


def load_images(index: FolderIndex, size: int = 64, cache: bool = True,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image of ``index`` to ``x: uint8[n, size, size, 3]``, with ``y = index.labels``.

    Each image is converted to RGB (:func:`to_rgb`) and resized to a square
    with PIL's bilinear filter, which averages over the whole footprint when
    shrinking (antialiasing, like ``tf.image.resize(antialias=True)`` and
    torchvision's ``Resize``); the aspect ratio is not kept, as in Keras'
    ``image_dataset_from_directory`` and torchvision's ``Resize((s, s))``. JPEGs
    are first decoded at the smallest scale not below ``size`` (PIL's draft
    mode), which is much faster for photos and changes little after resizing.

    With ``cache`` the array is stored under ``cache_dir()/decoded/``, keyed
    by the relative paths, sizes and modification times of the files and by
    ``size``: a changed file means a new decode, and a damaged cache file is
    ignored and rebuilt.
    """
    _check_index(index, "load_images")
    _check_size(size)
    path = _cache_path(index, size) if cache else None
    x = _read_cache(path, len(index.files), size) if path is not None else None
    if x is None:
        x = np.empty((len(index.files), size, size, 3), np.uint8)
        bar = progress_bar(index.paths, show=progress, desc=f"decoding {index.root.name} at {size}x{size}",
                           unit="img", leave=False)
        for i, p in enumerate(bar):
            x[i] = decode_image(p, size)
        if path is not None:
            try:
                _write_cache(path, x)
            except OSError as exc:
                warnings.warn(f"Could not cache the decoded images in {path} ({brief(exc)}); they will be "
                              "decoded again next time.", stacklevel=2)
    return x, index.labels.copy()



class TrainVal(NamedTuple):
    """What :func:`train_val_arrays` returns: the two parts' images and labels, and the split that made them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    split: Split


def train_val_arrays(index: FolderIndex, size: int = 64, val_fraction: float = 0.2, seed: int = 0,
                     progress: bool = True) -> TrainVal:
    """An image folder as training and validation arrays: :func:`load_images`, then :func:`split`.

    Returns ``(x_train, y_train, x_val, y_val, split)`` (a :class:`TrainVal`):
    the images of ``split.train`` and ``split.val`` as ``uint8[n, size,
    size, 3]`` with their labels, in the order of ``index.files``, and the
    :class:`Split` itself, whose ``as_dict()`` a run record keeps. The split
    is :func:`split`'s, seeded and stratified, so the same arguments give
    the same images in every process and for either framework.
    """
    _check_index(index, "train_val_arrays")
    parts = split(index, val_fraction=val_fraction, seed=seed)  # checks the fraction and seed before decoding
    x, y = load_images(index, size=size, progress=progress)
    return TrainVal(x[parts.train], y[parts.train], x[parts.val], y[parts.val], parts)

# ----------------------------------------------------------------------------- near-duplicates and sources

HASH_BITS = 64  # of the difference hash that hashes() computes (size 8)
_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)  # set bits of each uint16
_PAIRS_AT_ONCE = 1 << 22  # hash pairs compared in one numpy step: 32 MiB of uint64


def difference_hash(image: Image.Image | np.ndarray, size: int = 8) -> int:
    """The difference hash (dHash) of an image: ``size * size`` bits that survive resizing and re-encoding.

    The image (a PIL image of any mode, or a ``uint8`` array) is made grey
    and shrunk to ``size + 1`` by ``size`` pixels with PIL's Lanczos filter;
    each bit says whether a pixel is darker than its right-hand neighbour,
    row by row, the first bit the most significant (as the ``imagehash``
    package computes it). Copies of one photo that were resized, recompressed
    or slightly brightened differ in a few bits; different photos in about
    half of them. ``size=8`` gives the usual 64-bit hash.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ResbookError(f"difference_hash() needs a PIL image or a uint8 array of shape (h, w) or (h, w, 3), "
                               f"not a {image.dtype} array of shape {image.shape}.")
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise ResbookError(f"difference_hash() needs a PIL image or a uint8 array, not {type(image).__name__}: "
                           "open the file with PIL.Image.open or pass decode_image's array.")
    _check_size(size)
    grey = np.asarray(to_rgb(image).convert("L").resize((size + 1, size), Image.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hashes(index: FolderIndex, progress: bool = True) -> np.ndarray:
    """The 64-bit :func:`difference_hash` of every image of ``index``, as ``uint64[n]`` in the order of ``files``.

    Each file is opened as :func:`load_images` opens it (converted to RGB,
    but at full resolution: the hash shrinks it itself).
    """
    _check_index(index, "hashes")
    bar = progress_bar(index.paths, show=progress, desc=f"hashing {index.root.name}", unit="img", leave=False)
    return np.array([_opened(p, difference_hash) for p in bar], dtype=np.uint64)


def _check_positions(positions: object, name: str, n: int) -> np.ndarray:
    """``positions`` as int64 indices into ``n`` hashes, or one ResbookError sentence."""
    array = np.asarray(positions)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ResbookError(f"{name} must be a 1-D array of image indices (such as split(...).{name[:-4]}), "
                           f"not {type(positions).__name__} of shape {array.shape}.")
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ResbookError(f"{name} holds indices outside 0..{n - 1}: it must index the same images as the hashes "
                           "(use the split of the index that hashes() was given).")
    return array.astype(np.int64)


def nearest(hashes: np.ndarray, train_idx: Sequence[int], val_idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """For each validation image, the Hamming distance to the closest training image's hash, and which image that is.

    ``hashes`` comes from :func:`hashes`, ``train_idx`` and ``val_idx`` from
    :func:`split`. Returns ``(distance: int64[len(val_idx)], closest: int64[len(val_idx)])``,
    ``closest`` an index into the same images as ``train_idx``. All pairs are
    compared: XOR of the hashes, then the set bits counted with a table of
    the 65,536 16-bit values.
    """
    hashes = np.asarray(hashes)
    if hashes.ndim != 1 or hashes.dtype != np.uint64:
        raise ResbookError(f"hashes must be the uint64 array that hashes(index) returns, not a {hashes.dtype} "
                           f"array of shape {hashes.shape}.")
    train = _check_positions(train_idx, "train_idx", len(hashes))
    val = _check_positions(val_idx, "val_idx", len(hashes))
    if not train.size:
        raise ResbookError("train_idx is empty: there is no training image to compare the validation images with.")
    distance, closest = np.empty(len(val), np.int64), np.empty(len(val), np.int64)
    rows = max(1, _PAIRS_AT_ONCE // len(train))
    for start in range(0, len(val), rows):
        xor = hashes[val[start:start + rows], None] ^ hashes[None, train]
        bits = _POPCOUNT16[xor.view(np.uint16)].reshape(*xor.shape, 4).sum(axis=-1, dtype=np.int64)
        best = bits.argmin(axis=1)
        distance[start:start + rows] = bits[np.arange(len(best)), best]
        closest[start:start + rows] = train[best]
    return distance, closest


def near_duplicates(hashes: np.ndarray, train_idx: Sequence[int], val_idx: Sequence[int],
                    max_distance: int = 4) -> np.ndarray:
    """The validation images whose hash is within ``max_distance`` bits of some training image's.

    A random split of one folder puts copies of a photo (resized,
    recompressed, brightened: not byte-identical, so :func:`index_folder`
    kept both) on both sides, and validation accuracy then partly measures
    memory. Returns the sorted entries of ``val_idx`` that have such a
    near-duplicate in training; ``max_distance=0`` finds equal hashes only.
    See :func:`nearest` for the distances themselves.
    """
    if not _is_number(max_distance, numbers.Integral) or not 0 <= max_distance <= HASH_BITS:
        raise ResbookError(f"max_distance={max_distance!r} is not a number of differing bits: use a whole number "
                           f"from 0 to {HASH_BITS}, e.g. 4.")
    distance, _ = nearest(hashes, train_idx, val_idx)  # checks the indices too
    return np.sort(np.asarray(val_idx, dtype=np.int64)[distance <= max_distance])


def _image_names(folder: Path) -> set[str]:
    """The file names (without folders) of the images anywhere below ``folder``, hidden ones left out."""
    names = set()
    for _, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not _hidden(d)]
        names.update(n for n in files if not _hidden(n) and Path(n).suffix.lower() in IMAGE_SUFFIXES)
    return names


def split_by_source(index: FolderIndex, reference_folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Split ``index`` by where its images came from: ``(in_reference, not_in_reference)`` index arrays.

    An image is in the reference when its file name is that of an image
    anywhere in ``reference_folder``. Kaggle's flowers-recognition, for one,
    took much of TensorFlow's flower_photos under the same file names, so
    ``split_by_source(index_folder("flowers-recognition"), "flower_photos")``
    separates those photos from the others, and a model can be trained on
    one part and tested on the other. Names are matched without their class
    folder, since two releases name classes differently ("rose", "roses")
    and may file a photo under another class. Raises :class:`ResbookError`
    when ``reference_folder`` is not a folder or shares no file name with
    ``index``.
    """
    _check_index(index, "split_by_source")
    reference = as_path(reference_folder, "a reference folder")
    if not reference.is_dir():
        raise ResbookError(f"Reference folder {reference} {'is a file' if reference.exists() else 'does not exist'}: "
                           "point split_by_source at the folder whose images' file names mark the first part.")
    names = _image_names(reference)
    inside = np.array([Path(f).name in names for f in index.files], dtype=bool)
    if not inside.any():
        raise ResbookError(f"No image of {index.root} has the file name of an image in {reference}: the two "
                           "folders share no photos by name, so they cannot split it by source.")
    return np.flatnonzero(inside).astype(np.int64), np.flatnonzero(~inside).astype(np.int64)
