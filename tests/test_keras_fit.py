import keras
import numpy as np
import pytest

from resbook.data.generated import FLOWER_CLASSES, flower_image
from resbook.errors import ResbookError
from resbook.models.keras_resnet import build_resnet
from resbook.train.keras_fit import (RandomAffine, configure_precision, fit, predict_proba, predict_with_flip,
                                     warmup_cosine, with_input_pipeline)

SMALL = [1, 1, 1, 1]  # a bottleneck ResNet with one block per stage: small and fast


def test_random_affine_is_identity_at_inference_and_with_no_change():
    x = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 3)).astype("float32")
    assert np.array_equal(np.asarray(RandomAffine(rotation=30, zoom=0.2)(x, training=False)), x)
    still = RandomAffine(flip=False, rotation=0, zoom=0, shift=0)(x, training=True)
    assert np.allclose(np.asarray(still), x, atol=1e-5)


def test_random_affine_flips_and_moves_pixels():
    x = np.zeros((64, 8, 8, 1), "float32")
    x[:, :, 0] = 1.0  # a bright left column
    out = np.asarray(RandomAffine(flip=True, seed=1)(x, training=True))
    flipped = out[:, :, -1, 0].mean(1) == 1.0
    assert out.shape == x.shape and 10 < flipped.sum() < 54  # about half are mirrored
    moved = np.asarray(RandomAffine(flip=False, rotation=40, zoom=0.3, shift=0.2, seed=2)(x, training=True))
    assert not np.allclose(moved, x) and moved.min() >= 0 and moved.max() <= 1


def test_fit_trains_logits_with_a_gradient_for_a_confident_mistake():
    """The loss reads logits: a mistake made with p = 1e-12 costs -log 1e-12 (Keras clips probabilities at 1e-7)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)], name="logits")
    model.layers[0].set_weights([np.zeros((2, 3), "float32"), np.array([0.0, -27.6, 0.0], "float32")])
    fit(model, (np.zeros((4, 2), "float32"), np.ones(4, int)), None, epochs=1, batch_size=4,
        optimizer=keras.optimizers.SGD(0.0), verbose=0)
    loss = float(model.evaluate(np.zeros((4, 2), "float32"), np.ones(4, int), verbose=0)[0])
    assert loss == pytest.approx(27.6 + np.log(2), rel=1e-3)  # -log(e^-27.6 / (2 + e^-27.6))
    before = model.layers[0].get_weights()[1][1]
    fit(model, (np.zeros((4, 2), "float32"), np.ones(4, int)), None, epochs=1, batch_size=4,
        optimizer=keras.optimizers.SGD(1.0), verbose=0)
    assert model.layers[0].get_weights()[1][1] == pytest.approx(before + 1.0, abs=1e-3)  # gradient p - 1 = -1


def test_loss_falls_on_generated_flowers_and_predictions_are_probabilities(tiny_flowers):
    train, val = tiny_flowers(100, 0), tiny_flowers(50, 1)
    net = build_resnet(SMALL, (32, 32, 3), classes=5)
    model = with_input_pipeline(net, RandomAffine(flip=True, seed=0))
    hist = fit(model, train, val, epochs=6, batch_size=20, optimizer=keras.optimizers.Adam(1e-3), verbose=0)
    assert len(hist["loss"]) == 6 and len(hist["time_s"]) == 6
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    probs = predict_proba(model, val[0])
    assert probs.shape == (50, 5) and np.allclose(probs.sum(1), 1, atol=1e-6) and (probs >= 0).all()
    logits = model.predict(val[0], verbose=0)
    assert np.array_equal(probs.argmax(1), logits.argmax(1))
    assert (probs.argmax(1) == val[1]).mean() == pytest.approx(hist["val_accuracy"][-1], abs=0.03)  # a tie may flip
    plain, tta = predict_with_flip(model, val[0])
    assert np.allclose(plain, probs, atol=1e-6)
    assert np.allclose(2 * tta - plain, predict_proba(model, val[0][:, :, ::-1]), atol=1e-5)


def test_predict_image_file_and_its_errors(tmp_path):
    from PIL import Image

    from resbook.errors import ResbookError
    from resbook.train.keras_fit import predict_image_file
    rng = np.random.default_rng(3)
    path = tmp_path / "tulip.jpg"
    flower_image("tulip", rng, (90, 70)).save(path)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))  # logits
    ranked = predict_image_file(model, path, FLOWER_CLASSES, size=32)
    assert sorted(name for name, _ in ranked) == sorted(FLOWER_CLASSES)
    probs = [p for _, p in ranked]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ResbookError, match="could not be decoded as an image"):
        predict_image_file(model, tmp_path / "broken.jpg", FLOWER_CLASSES, size=32)
    with pytest.raises(ResbookError, match="does not exist"):
        predict_image_file(model, tmp_path / "missing.jpg", FLOWER_CLASSES, size=32)
    Image.new("L", (40, 40)).save(tmp_path / "grey.png")  # grey images are converted to RGB
    assert len(predict_image_file(model, tmp_path / "grey.png", FLOWER_CLASSES, size=32)) == 5


def test_fit_says_where_it_trains(capsys):
    from resbook import settings
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="tiny")
    fit(model, (np.zeros((8, 4), "float32"), np.zeros(8, int)), None, epochs=1, batch_size=4, verbose=2)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"tiny: training on {settings.device_description()} (") and "batch 4, 8 examples" in first


def test_fit_does_not_seed():
    """Seeding is describe_run's job (settings.seed_everything): fit leaves every random state as it found it."""
    import random
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="tiny")
    random.seed(1)
    np.random.seed(1)
    fit(model, (np.zeros((8, 4), "float32"), np.zeros(8, int)), None, epochs=1, batch_size=4, verbose=0)
    after = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    assert after == (random.random(), np.random.rand())


def test_configure_precision_follows_the_cpus_bf16_instructions_and_the_override(monkeypatch, capsys):
    from resbook import settings
    monkeypatch.setattr(settings, "gpu_name", lambda: None)
    monkeypatch.delenv("RESBOOK_PRECISION", raising=False)
    try:
        monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
        assert configure_precision() == "mixed_bfloat16" == keras.mixed_precision.global_policy().name
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="tiny")
        fit(model, (np.zeros((8, 4), "float32"), np.zeros(8, int)), None, epochs=1, batch_size=4, verbose=2)
        assert "with mixed_bfloat16" in capsys.readouterr().out.splitlines()[0]
        assert configure_precision("float32") == "float32" == keras.mixed_precision.global_policy().name
        monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx2"}))
        assert configure_precision() == "float32"
        monkeypatch.setenv("RESBOOK_PRECISION", "bfloat16")
        assert configure_precision() == "mixed_bfloat16"
        with pytest.raises(ResbookError, match="^precision='fp8' is not a precision"):
            configure_precision("fp8")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_warmup_cosine_rises_to_the_peak_then_falls_to_zero_at_the_last_step():
    schedule = warmup_cosine(0.1, epochs=3, steps_per_epoch=10, warmup_epochs=0.5)
    lr = [float(schedule(step)) for step in range(30)]
    assert lr[0] == 0 and lr[5] == pytest.approx(0.1)  # 5 warm-up steps
    assert lr[:6] == sorted(lr[:6]) and lr[5:] == sorted(lr[5:], reverse=True)
    assert lr[29] < 0.1 * 0.01 and float(schedule(30)) == pytest.approx(0, abs=1e-9)
    assert float(warmup_cosine(1.0, epochs=1, steps_per_epoch=100, warmup_epochs=0.0)(1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0 <= warmup_epochs < epochs"):
        warmup_cosine(0.1, epochs=2, steps_per_epoch=10, warmup_epochs=2)


def test_random_resized_crop_is_identity_with_the_whole_image_and_mirrors_exactly():
    from resbook.train.keras_fit import RandomResizedCrop
    x = np.random.default_rng(0).uniform(0, 255, (32, 12, 10, 3)).astype("float32")
    assert np.array_equal(np.asarray(RandomResizedCrop(seed=0)(x, training=False)), x)
    whole = RandomResizedCrop(area=(1, 1), ratio=(1, 1), flip=False, seed=0)
    assert np.allclose(np.asarray(whole(x, training=True)), x, atol=1e-3)
    out = np.asarray(RandomResizedCrop(area=(1, 1), ratio=(1, 1), flip=True, seed=1)(x, training=True))
    same = np.all(np.isclose(out, x, atol=1e-3), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, x[:, :, ::-1], atol=1e-3), axis=(1, 2, 3))
    assert np.all(same | mirrored) and 5 < mirrored.sum() < 27  # each image kept or mirrored, about half mirrored


def test_random_resized_crop_zooms_into_part_of_the_image(one_sentence):
    from resbook.train.keras_fit import RandomResizedCrop
    ramp = np.tile(np.arange(16, dtype="float32")[None, None, :, None], (64, 16, 1, 1))  # x coordinate as value
    out = np.asarray(RandomResizedCrop(area=(0.25, 0.25), ratio=(1, 1), flip=False, seed=2)(ramp, training=True))
    spans = out[:, 0, -1, 0] - out[:, 0, 0, 0]  # a quarter of the area at ratio 1: half of the width, resized
    # 15/2 from the first to the last output pixel centre; a crop at the edge loses up to 1/4 pixel each side
    assert np.all((spans > 7.0 - 1e-3) & (spans < 7.5 + 1e-3)) and np.mean(np.isclose(spans, 7.5, atol=1e-3)) > 0.8
    assert out.min() >= 0 and out.max() <= 15
    starts = out[:, 0, 0, 0]
    assert starts.min() < 2 and starts.max() > 5  # the crop's position varies over the image
    rows = np.asarray(RandomResizedCrop(area=(0.25, 0.25), ratio=(1, 1), flip=False, seed=3)(
        np.swapaxes(ramp, 1, 2), training=True))
    heights = rows[:, -1, 0, 0] - rows[:, 0, 0, 0]  # height is cut the same way
    assert np.all((heights > 7.0 - 1e-3) & (heights < 7.5 + 1e-3))
    for bad in (dict(area=(0, 1)), dict(area=(0.8, 0.5)), dict(ratio=(2, 1))):
        with pytest.raises(ResbookError) as err:
            RandomResizedCrop(**bad)
        one_sentence(str(err.value))


def test_random_resized_crop_survives_saving(tmp_path):
    from resbook.train.keras_fit import RandomResizedCrop
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, RandomResizedCrop(area=(0.6, 0.9), flip=False, seed=4)(inputs))
    model.save(tmp_path / "m.keras")
    layer = keras.models.load_model(tmp_path / "m.keras").layers[-1]
    assert isinstance(layer, RandomResizedCrop) and layer.area == (0.6, 0.9) and layer.flip is False


def _fixed_logits_model():
    """Logits [0, -27.6, 0] for every input: with SGD(0) the loss shows what labels the step saw."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)], name="fixed")
    model.layers[0].set_weights([np.zeros((2, 3), "float32"), np.array([0.0, -27.6, 0.0], "float32")])
    return model


def _cross_entropy(q):
    logp = np.log(np.exp([0.0, -27.6, 0.0]) / np.exp([0.0, -27.6, 0.0]).sum())
    return float(-(np.asarray(q) * logp).sum())


def test_fit_smooths_labels_on_training_and_validation():
    x, y = np.zeros((4, 2), "float32"), np.ones(4, int)
    hist = fit(_fixed_logits_model(), (x, y), (x, y), epochs=1, batch_size=4, optimizer=keras.optimizers.SGD(0.0),
               verbose=0, label_smoothing=0.3)
    smoothed = [0.1, 0.7 + 0.1, 0.1]  # 0.3 spread over 3 classes
    assert hist["loss"][0] == pytest.approx(_cross_entropy(smoothed), rel=1e-3)
    assert hist["val_loss"][0] == pytest.approx(_cross_entropy(smoothed), rel=1e-3)
    assert hist["val_accuracy"][0] == 0.0  # argmax of the logits is never class 1
    with pytest.raises(ResbookError, match="leave loss out"):
        fit(_fixed_logits_model(), (x, y), None, epochs=1, batch_size=4, loss="mse", label_smoothing=0.1, verbose=0)


def test_fit_trains_on_what_batch_transform_returns_and_validates_on_plain_labels():
    seen = []

    def uniform_labels(batch):  # stands in for MixUp: returns soft labels
        seen.append((batch["images"].shape, batch["labels"].copy(), batch["images"][:, 0].copy()))
        return {"images": batch["images"], "labels": np.full_like(batch["labels"], 1 / 3)}

    x = np.arange(10, dtype="float32")[:, None].repeat(2, 1)
    y = np.ones(10, int)
    np.random.seed(0)  # fit draws its shuffling generator from NumPy's global state
    hist = fit(_fixed_logits_model(), (x, y), (x, y), epochs=2, batch_size=4, optimizer=keras.optimizers.SGD(0.0),
               verbose=0, batch_transform=uniform_labels)
    assert hist["loss"] == pytest.approx([_cross_entropy([1 / 3] * 3)] * 2, rel=1e-3)
    assert hist["val_loss"][0] == pytest.approx(_cross_entropy([0, 1, 0]), rel=1e-3)  # validation is not transformed
    assert all(np.array_equal(labels, np.tile([0, 1, 0], (len(labels), 1))) for _, labels, _ in seen)
    assert {shape[0] for shape, _, _ in seen} <= {4, 2}
    # every training example once per epoch (the last batches fetched belong to the second epoch), reshuffled
    first, last = (np.concatenate([ids for _, _, ids in part]) for part in (seen[-6:-3], seen[-3:]))
    assert sorted(first) == sorted(last) == list(range(10)) and not np.array_equal(first, last)


def test_fit_with_keras_mixup_mixes_images_and_labels(tiny_flowers):
    train, val = tiny_flowers(20, 0), tiny_flowers(10, 1)
    mixed = []
    mixup = keras.layers.MixUp(alpha=0.4, seed=0)

    def recording_mixup(batch):
        out = mixup(batch)
        mixed.append(keras.ops.convert_to_numpy(out["labels"]))
        return out

    net = build_resnet(SMALL, (32, 32, 3), classes=5)
    hist = fit(with_input_pipeline(net), train, val, epochs=1, batch_size=10,
               optimizer=keras.optimizers.Adam(1e-3), verbose=0, batch_transform=recording_mixup)
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy", "time_s"}
    labels = np.concatenate(mixed)
    assert np.allclose(labels.sum(1), 1, atol=1e-5) and ((labels > 0.01) & (labels < 0.99)).any()  # soft labels


def test_one_hot_rows_and_bad_labels():
    from resbook.train.keras_fit import one_hot
    assert np.array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([1]), 2).dtype == np.float32
    for bad in (np.array([0.5]), np.array([3]), np.array([-1]), np.zeros((2, 3), int)):
        with pytest.raises(ResbookError, match="one_hot needs"):
            one_hot(bad, 3)


def test_fit_mixes_in_float32_under_mixed_precision_and_finalizes_the_ema(tiny_flowers, one_sentence):
    """Under mixed_bfloat16 Keras' MixUp fails on its float32 weights: fit asks for dtype="float32", which works."""
    train, val = tiny_flowers(10, 0), tiny_flowers(5, 1)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = with_input_pipeline(build_resnet(SMALL, (32, 32, 3), classes=5))
        with pytest.raises(ResbookError) as err:
            fit(model, train, val, epochs=1, batch_size=5, verbose=0, batch_transform=keras.layers.MixUp())
        assert 'dtype="float32"' in one_sentence(str(err.value))
        optimizer = keras.optimizers.AdamW(1e-3, use_ema=True)
        hist = fit(model, train, val, epochs=1, batch_size=5, optimizer=optimizer, verbose=0, label_smoothing=0.1,
                   batch_transform=keras.layers.MixUp(seed=0, dtype="float32"))
        assert len(hist["val_accuracy"]) == 1
        averages = [v for v in optimizer._model_variables_moving_average if v is not None]
        assert all(np.array_equal(np.asarray(a), np.asarray(w)) for a, w in zip(averages, model.trainable_variables))
    finally:
        keras.mixed_precision.set_global_policy("float32")
