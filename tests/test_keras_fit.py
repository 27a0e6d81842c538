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
