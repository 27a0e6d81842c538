"""``resbook predict MODEL PHOTO...``: each photo's top classes from a model saved by ``save_classifier``.

One tiny classifier (a small conv net behind ``with_input_pipeline``, with the
book's two custom layers, ``RandomAffine`` and ``CaffePreprocess``, so loading
needs them registered) is trained for a few steps on generated flowers and
saved once for the module; a fresh process loads it too.
"""

import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from resbook import cli, settings
from resbook.data.generated import FLOWER_CLASSES, flower_image, make_flowers
from resbook.errors import ResbookError
from resbook.models.keras_transfer import CaffePreprocess
from resbook.train.keras_fit import (RandomAffine, classes_file, fit, load_classifier, predict_image_file,
                                     save_classifier, with_input_pipeline)

SIZE = 32
LINE = re.compile(r"^(?P<photo>.+): (?P<ranked>.+)$")
ENTRY = re.compile(r"^(?P<name>\S+) (?P<percent>\d+\.\d)%$")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(model in memory, path of the saved .keras file, folder of photos)``."""
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    x = np.stack([np.asarray(flower_image(FLOWER_CLASSES[i % 5], rng, (SIZE, SIZE))) for i in range(60)])
    y = np.arange(60) % 5
    settings.seed_everything(0)
    net = keras.Sequential([keras.Input((SIZE, SIZE, 3)), CaffePreprocess(),
                            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)], name="tiny")
    model = with_input_pipeline(net, RandomAffine(rotation=10, seed=0), scale=1.0)  # pixels in [0, 255]
    fit(model, (x, y), None, epochs=2, batch_size=20, verbose=0)
    path = save_classifier(model, root / "flowers.keras", FLOWER_CLASSES)
    photos = make_flowers(root / "photos", n_per_class=2, seed=1)  # JPEGs of mixed sizes, a folder per class
    return model, path, photos


def _snapshot(*folders):
    """Every file below ``folders`` with its bytes: what the command must leave as it was."""
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _parse(out: str) -> dict[str, list[tuple[str, float]]]:
    """The command's lines as ``{photo: [(class, percent), ...]}``."""
    result = {}
    for line in out.splitlines():
        m = LINE.match(line)
        assert m, line
        entries = [ENTRY.match(e) for e in m["ranked"].split(", ")]
        assert all(entries), line
        result[m["photo"]] = [(e["name"], float(e["percent"])) for e in entries]
    return result


def _one_sentence_each(err: str) -> list[str]:
    lines = err.splitlines()
    assert lines and all(line.startswith("resbook: ") and line.endswith(".") for line in lines), err
    assert "Traceback" not in err
    return lines


def test_photos_get_their_top_classes_as_the_trained_model_ranks_them(saved, capsys):
    model, path, photos = saved
    files = [photos / "tulip" / "tulip_0000.jpg", photos / "rose" / "rose_0001.jpg"]
    before = _snapshot(path.parent)
    assert cli.main(["predict", str(path), *map(str, files)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    ranked = _parse(out)
    assert list(ranked) == [str(f) for f in files]
    for f in files:
        top = ranked[str(f)]
        assert len(top) == 3 and len({name for name, _ in top}) == 3
        percents = [p for _, p in top]
        assert percents == sorted(percents, reverse=True) and sum(percents) <= 100.0 + 0.15  # 3 roundings
        expected = predict_image_file(model, f, FLOWER_CLASSES, SIZE)[:3]  # the model before it was saved
        assert top == [(name, round(100 * p, 1)) for name, p in expected]
    assert _snapshot(path.parent) == before  # nothing written, nothing changed


def test_top_k_and_all_classes(saved, capsys):
    _, path, photos = saved
    photo = str(photos / "daisy" / "daisy_0000.jpg")
    assert cli.main(["predict", str(path), photo, "--top", "9"]) == 0  # more than there are: all five
    (top,) = _parse(capsys.readouterr().out).values()
    assert sorted(name for name, _ in top) == sorted(FLOWER_CLASSES)
    assert sum(p for _, p in top) == pytest.approx(100, abs=0.25)
    assert cli.main(["predict", str(path), photo, "--top", "1"]) == 0
    (top,) = _parse(capsys.readouterr().out).values()
    assert len(top) == 1
    assert cli.main(["predict", str(path), photo, "--top", "0"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--top 0 shows no class" in _one_sentence_each(err)[0]


def test_a_folder_gives_its_images_sorted_one_folder_down(saved, capsys):
    _, path, photos = saved
    (photos / "notes.txt").write_text("not a photo")  # ignored in a folder: not an image by its name
    (photos / ".hidden.jpg").write_bytes(b"")
    try:
        assert cli.main(["predict", str(path), str(photos)]) == 0
    finally:
        (photos / "notes.txt").unlink()
        (photos / ".hidden.jpg").unlink()
    out, err = capsys.readouterr()
    assert err == ""
    expected = [str(photos / cls / f"{cls}_{i:04d}.jpg") for cls in FLOWER_CLASSES for i in range(2)]
    assert list(_parse(out)) == expected


def test_a_bad_photo_is_reported_and_the_others_go_on(saved, capsys, tmp_path):
    _, path, photos = saved
    good = photos / "sunflower" / "sunflower_0000.jpg"
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "broken.jpg"), str(good), str(tmp_path / "missing.jpg"), str(tmp_path / "empty")]
    assert cli.main(["predict", str(path), *args]) == 0
    out, err = capsys.readouterr()
    assert list(_parse(out)) == [str(good)]
    problems = _one_sentence_each(err)
    assert len(problems) == 3
    assert f"{tmp_path / 'broken.jpg'} could not be decoded as an image" in problems[0]
    assert f"Photo {tmp_path / 'missing.jpg'} does not exist: check the path." in problems[1]
    assert f"Folder {tmp_path / 'empty'} holds no images" in problems[2]
    # nothing could be classified: exit status 1
    assert cli.main(["predict", str(path), str(tmp_path / "broken.jpg")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(_one_sentence_each(err)) == 1


def _bad_model(kind, tmp_path, saved):
    model, path, _ = saved
    if kind == "missing":
        return tmp_path / "nowhere.keras"
    if kind == "text":
        (tmp_path / "notes.txt").write_text("a model, honest")
        return tmp_path / "notes.txt"
    if kind == "text named .keras":
        (tmp_path / "fake.keras").write_text("a model, honest")
        return tmp_path / "fake.keras"
    if kind == "zip named .keras":
        with zipfile.ZipFile(tmp_path / "other.keras", "w") as zf:
            zf.writestr("readme.txt", "a zip archive, but no model in it")
        return tmp_path / "other.keras"
    if kind == "no class names":
        model.save(tmp_path / "plain.keras")  # Keras' own save: no class names beside it
        return tmp_path / "plain.keras"
    if kind == "wrong class names":
        target = tmp_path / "renamed.keras"
        target.write_bytes(path.read_bytes())
        classes_file(target).write_text('{"class_names": ["cat", "dog"], "image_size": 32}')
        return target
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, expected", [
    ("missing", "nowhere.keras does not exist"),
    ("text", "notes.txt is not a Keras model"),
    ("text named .keras", "fake.keras is not a Keras model (a .keras file is a zip archive, this is not one)"),
    ("zip named .keras", "other.keras could not be loaded as a Keras model"),
    ("no class names", "plain.keras has no class names (plain.keras.classes.json is not beside it)"),
    ("wrong class names", "2 class names in renamed.keras.classes.json do not match model"),
])
def test_a_bad_model_is_one_sentence(saved, capsys, tmp_path, kind, expected):
    _, _, photos = saved
    model_path = _bad_model(kind, tmp_path, saved)
    before = _snapshot(tmp_path)
    assert cli.main(["predict", str(model_path), str(photos / "rose" / "rose_0000.jpg")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    (problem,) = _one_sentence_each(err)
    assert expected in problem
    assert _snapshot(tmp_path) == before


def test_save_classifier_writes_two_files_and_refuses_a_mismatch(saved, tmp_path):
    model, _, _ = saved
    path = save_classifier(model, tmp_path / "m.keras", list(FLOWER_CLASSES))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.classes.json"]  # no temporaries left
    loaded = load_classifier(path)
    assert loaded.class_names == FLOWER_CLASSES and loaded.image_size == SIZE
    with pytest.raises(ResbookError, match="3 class names given to save_classifier do not match"):
        save_classifier(model, tmp_path / "n.keras", ["a", "b", "c"])
    with pytest.raises(ResbookError, match="does not end in .keras"):
        save_classifier(model, tmp_path / "n.h5", FLOWER_CLASSES)
    with pytest.raises(ResbookError, match="image_size=64 does not match"):
        save_classifier(model, tmp_path / "n.keras", FLOWER_CLASSES, image_size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.classes.json"]


def test_the_installed_command_classifies_and_reports(saved, tmp_path):
    _, path, photos = saved
    (tmp_path / "broken.png").write_bytes(b"")
    good = photos / "dandelion" / "dandelion_0001.jpg"
    out = subprocess.run([sys.executable, "-m", "resbook.cli", "predict", str(path), str(good),
                          str(tmp_path / "broken.png")], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    (top,) = _parse(out.stdout).values()
    assert len(top) == 3
    problems = [line for line in out.stderr.splitlines() if line.startswith("resbook: ")]
    assert len(problems) == 1 and "broken.png could not be decoded as an image" in problems[0]
    assert "Traceback" not in out.stderr
