"""Near-duplicates across a split (difference hashes) and a split by source, on generated flower folders."""

import io
import shutil
import time

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from resbook.data.folders import (difference_hash, hashes, index_folder, near_duplicates, nearest, split,
                                  split_by_source)
from resbook.data.generated import make_flowers
from resbook.errors import ResbookError


def _bits(a, b):
    return bin(int(a) ^ int(b)).count("1")


def _reencoded(img, fmt="JPEG", **options):
    """``img`` saved as ``fmt`` and read back: the same photo in other bytes."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    buffer.seek(0)
    with Image.open(buffer) as copy:
        copy.load()
        return copy


def _copies(img):
    """The ways a photo gets into a folder twice without being byte-identical."""
    w, h = img.size
    return {"resized": img.resize((w * 3 // 4, h * 3 // 4), Image.BICUBIC),
            "enlarged": img.resize((w * 2, h * 2), Image.BILINEAR),
            "recompressed": _reencoded(img, quality=50),
            "brightened": ImageEnhance.Brightness(img).enhance(1.08),
            "all three": _reencoded(ImageEnhance.Brightness(img.resize((w * 4 // 5, h * 4 // 5))).enhance(1.05),
                                    quality=60)}


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """Generated flowers (6 a class) plus, in daisy, a shrunk and recompressed copy of daisy_0000.jpg."""
    root = make_flowers(tmp_path_factory.mktemp("near") / "flowers", n_per_class=6, seed=3)
    with Image.open(root / "daisy" / "daisy_0000.jpg") as original:
        w, h = original.size
        _reencoded(original.resize((w * 4 // 5, h * 4 // 5), Image.BICUBIC), quality=60).save(
            root / "daisy" / "zz_copy_of_0000.jpg", quality=70)
    return root


@pytest.fixture(scope="module")
def index(flowers):
    return index_folder(flowers, progress=False)


def test_difference_hash_is_the_standard_dhash():
    rising = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))  # brighter to the right: every bit set
    assert difference_hash(rising) == 2**64 - 1
    assert difference_hash(rising[:, ::-1].copy()) == 0
    assert difference_hash(Image.fromarray(rising).convert("RGB")) == 2**64 - 1  # any mode: made grey first
    assert difference_hash(rising, size=4) == 2**16 - 1
    top_row = np.zeros((8, 9), np.uint8)
    top_row[0, 1:] = 200  # only the first pair of the first row rises: the most significant bit
    assert difference_hash(top_row) == 1 << 63


def test_copies_of_a_photo_hash_close_and_other_photos_far(index):
    with Image.open(index.paths[0]) as img:
        img.load()
    own = difference_hash(img)
    distances = {name: _bits(difference_hash(copy), own) for name, copy in _copies(img).items()}
    assert all(d <= 4 for d in distances.values()), distances
    assert _bits(difference_hash(_reencoded(img, "PNG")), own) == 0  # same pixels, other bytes
    others = [_bits(h, own) for f, h in zip(index.files, hashes(index, progress=False))
              if f not in ("daisy/daisy_0000.jpg", "daisy/zz_copy_of_0000.jpg")]
    assert min(others) > 8  # every other generated flower


def test_hashes_cover_the_index_in_order(index):
    found = hashes(index, progress=False)
    assert found.dtype == np.uint64 and found.shape == (len(index.files),)
    for i in (0, len(index.files) // 2, len(index.files) - 1):
        with Image.open(index.paths[i]) as img:
            assert int(found[i]) == difference_hash(img)


def test_near_duplicates_finds_the_copy_and_not_an_unrelated_image(index):
    original, copy = index.files.index("daisy/daisy_0000.jpg"), index.files.index("daisy/zz_copy_of_0000.jpg")
    unrelated = index.files.index("daisy/daisy_0001.jpg")
    train = np.array([i for i in range(len(index.files)) if i not in (copy, unrelated)])
    val = np.array([copy, unrelated])
    found = hashes(index, progress=False)
    assert near_duplicates(found, train, val).tolist() == [copy]
    distance, closest = nearest(found, train, val)
    assert closest[0] == original and distance[0] <= 4 and distance[1] > 8
    assert near_duplicates(found, train, val, max_distance=64).tolist() == sorted([copy, unrelated])
    # the copy counts only while its original is in training
    assert near_duplicates(found, train[train != original], val).size == 0


def test_a_random_split_is_checked_whole(index):
    found = hashes(index, progress=False)
    parts = split(index, val_fraction=0.5, seed=0)
    original, copy = index.files.index("daisy/daisy_0000.jpg"), index.files.index("daisy/zz_copy_of_0000.jpg")
    split_apart = (original in parts.train) != (copy in parts.train)
    expected = [copy if copy in parts.val else original] if split_apart else []
    assert near_duplicates(found, parts.train, parts.val).tolist() == expected


def test_distances_are_exact_popcounts_and_fast():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 2**64, 60, dtype=np.uint64)
    distance, closest = nearest(small, np.arange(20, 60), np.arange(20))
    brute = np.array([[_bits(v, t) for t in small] for v in small[:20]])
    assert distance.tolist() == brute[:, 20:].min(axis=1).tolist()
    assert closest.min() >= 20 and (brute[np.arange(20), closest] == distance).all()  # indices, not positions
    big = rng.integers(0, 2**64, 4330, dtype=np.uint64)
    big[4000] = big[7] ^ np.uint64(0b1011)  # 3 bits from a training image
    start = time.perf_counter()
    near = near_duplicates(big, np.arange(3900), np.arange(3900, 4330), max_distance=4)
    assert time.perf_counter() - start < 1.0  # 430 x 3,900 pairs
    assert near.tolist() == [4000]
    assert near_duplicates(big, np.arange(3900), np.arange(3900, 4330), max_distance=3).tolist() == [4000]
    assert near_duplicates(big, np.arange(3900), np.arange(3900, 4330), max_distance=2).size == 0


def test_a_large_comparison_in_pieces_gives_the_same_answer(monkeypatch):
    from resbook.data import folders
    rng = np.random.default_rng(1)
    many = rng.integers(0, 2**64, 500, dtype=np.uint64)
    whole = nearest(many, np.arange(100, 500), np.arange(100))
    monkeypatch.setattr(folders, "_PAIRS_AT_ONCE", 1000)  # 2 validation rows at a time
    pieces = nearest(many, np.arange(100, 500), np.arange(100))
    assert np.array_equal(whole[0], pieces[0]) and np.array_equal(whole[1], pieces[1])


@pytest.mark.parametrize("call, message", [
    (lambda h: near_duplicates(h, [0, 1], [2], max_distance=-1), "max_distance=-1 is not a number of differing bits"),
    (lambda h: near_duplicates(h, [0, 1], [2], max_distance=65), "from 0 to 64"),
    (lambda h: near_duplicates(h, [0, 1], [2], max_distance=2.5), "max_distance=2.5"),
    (lambda h: near_duplicates(h, [0, 1], [2], max_distance=True), "max_distance=True"),
    (lambda h: near_duplicates(h.astype(np.int64), [0, 1], [2]), "hashes must be the uint64 array"),
    (lambda h: near_duplicates(h, [0, 9], [2]), "train_idx holds indices outside 0..2"),
    (lambda h: near_duplicates(h, [0, 1], [[2]]), "val_idx must be a 1-D array"),
    (lambda h: near_duplicates(h, [], [2]), "train_idx is empty"),
    (lambda h: difference_hash("daisy.jpg"), "needs a PIL image or a uint8 array, not str"),
    (lambda h: difference_hash(np.zeros((4, 4), np.float32)), "not a float32 array"),
    (lambda h: difference_hash(np.zeros((4, 4), np.uint8), size=0), "size=0 is not an image size"),
    (lambda h: hashes("flowers"), "hashes() needs the FolderIndex"),
])
def test_bad_arguments_get_one_sentence(call, message):
    with pytest.raises(ResbookError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        call(np.array([1, 2, 3], dtype=np.uint64))


@pytest.fixture(scope="module")
def reference(flowers, tmp_path_factory):
    """Another release of some of the same photos: plural class names, one photo filed under another class."""
    root = tmp_path_factory.mktemp("reference") / "flower_photos"
    for cls, plural in (("daisy", "daisy"), ("rose", "roses"), ("tulip", "tulips")):
        (root / plural).mkdir(parents=True)
        for name in (f"{cls}_0000.jpg", f"{cls}_0001.jpg"):
            shutil.copy(flowers / cls / name, root / plural / name)
    shutil.copy(flowers / "sunflower" / "sunflower_0002.jpg", root / "roses" / "sunflower_0002.jpg")
    (root / "LICENSE.txt").write_text("CC-BY")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def test_split_by_source_matches_file_names_across_class_names(index, reference):
    inside, outside = split_by_source(index, reference)
    assert sorted(index.files[i] for i in inside) == sorted([
        "daisy/daisy_0000.jpg", "daisy/daisy_0001.jpg", "rose/rose_0000.jpg", "rose/rose_0001.jpg",
        "tulip/tulip_0000.jpg", "tulip/tulip_0001.jpg", "sunflower/sunflower_0002.jpg"])
    assert inside.dtype == outside.dtype == np.int64
    assert sorted(np.concatenate([inside, outside]).tolist()) == list(range(len(index.files)))
    assert "daisy/zz_copy_of_0000.jpg" in [index.files[i] for i in outside]  # by name, not by content


def test_split_by_source_refuses_a_reference_it_cannot_use(index, reference, tmp_path):
    with pytest.raises(ResbookError, match="does not exist"):
        split_by_source(index, tmp_path / "flower_photos")
    with pytest.raises(ResbookError, match="is a file"):
        split_by_source(index, reference / "LICENSE.txt")
    strangers = make_flowers(tmp_path / "strangers", n_per_class=1, seed=5, classes=("daisy",))
    for image in (strangers / "daisy").iterdir():
        image.rename(image.with_name("other_" + image.name))
    with pytest.raises(ResbookError, match="share no photos by name"):
        split_by_source(index, strangers)
    with pytest.raises(ResbookError, match="needs the FolderIndex"):
        split_by_source(str(index.root), reference)
