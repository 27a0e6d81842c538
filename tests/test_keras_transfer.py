import warnings

import h5py
import keras
import numpy as np
import pytest

from resbook.errors import ResbookError
from resbook.models.keras_transfer import (HEADS, WEIGHTS, backbone, classifier, count_parameters, freeze,
                                           load_weights, unfreeze_top)

SMALL = [1, 1, 1, 1]  # a bottleneck ResNet with one block per stage: small and fast
LARGER = [1, 2, 1, 1]


def save_legacy_h5(model, path):
    """Write weights in the legacy HDF5 layout of keras-applications' ImageNet files."""
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


@pytest.fixture(scope="module")
def small_base():
    return backbone(SMALL, (32, 32, 3))


@pytest.mark.parametrize("head, out_params", [("modern", 2048 * 4 + 4), ("dense", 2048 * 4 + 4),
                                              ("tf_flowers", 2048 * 512 + 512 + 512 * 4 + 4)])
def test_heads_shapes_and_frozen_trainable_counts(small_base, head, out_params):
    freeze(small_base)
    model = classifier(small_base, classes=4, head=head)
    assert model.output_shape == (None, 4)
    assert count_parameters(model, trainable_only=True) == out_params
    assert set(HEADS) == {"modern", "tf_flowers", "oxford102", "dense"}


def test_oxford_head_on_unpooled_features():
    base = backbone(SMALL, (64, 64, 3), pooling=None)
    freeze(base)
    model = classifier(base, classes=10, head="oxford102")
    flat = 2 * 2 * 2048
    assert count_parameters(model, trainable_only=True) == flat * 512 + 512 + 512 * 64 + 64 + 64 * 10 + 10


def test_unfreeze_top_keeps_batchnorm_frozen_and_in_inference_mode():
    base = backbone(SMALL, (32, 32, 3))
    freeze(base)
    model = classifier(base, classes=3)
    frozen = count_parameters(model, trainable_only=True)
    n_layers = unfreeze_top(base, ("conv5",))
    conv5 = [l for l in base.layers if l.name.startswith("conv5_")]
    assert n_layers == sum(1 for l in conv5 if l.weights and not isinstance(l, keras.layers.BatchNormalization))
    assert all(not l.trainable for l in base.layers if isinstance(l, keras.layers.BatchNormalization))
    expected = frozen + sum(int(np.prod(w.shape)) for l in conv5 if isinstance(l, keras.layers.Conv2D)
                            for w in l.weights)
    assert count_parameters(model, trainable_only=True) == expected
    bn = base.get_layer("conv5_block1_1_bn")
    before = [keras.ops.convert_to_numpy(w) for w in bn.weights]
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 16), epochs=2, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in bn.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # gamma, beta, moving stats untouched
    assert not np.array_equal(keras.ops.convert_to_numpy(base.get_layer("conv5_block1_1_conv").kernel), 0)


def test_generated_weights_file_loads(tmp_path, small_base):
    path = save_legacy_h5(small_base, tmp_path / "resnet18_notop.h5")
    fresh = backbone(SMALL, (32, 32, 3), weights=path)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    assert np.allclose(fresh(x, training=False), small_base(x, training=False), atol=1e-6)


@pytest.mark.parametrize("kind", ["html", "empty", "truncated", "other_model"])
def test_wrong_weights_file_gets_one_sentence(tmp_path, small_base, kind):
    path = tmp_path / f"{kind}.h5"
    if kind == "html":
        path.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = save_legacy_h5(small_base, tmp_path / "good.h5").read_bytes()
        path.write_bytes(good[: len(good) // 3])
    else:
        save_legacy_h5(backbone(LARGER, (32, 32, 3)), path)
    original = path.read_bytes()
    with pytest.raises(ResbookError) as err:
        load_weights(backbone(SMALL, (32, 32, 3)), path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and msg.endswith(".")
    assert path.read_bytes() == original
    with pytest.raises(ResbookError, match="does not exist"):
        load_weights(small_base, tmp_path / "missing.h5")


@pytest.mark.parametrize("fmt", ["keras3", "legacy"])
def test_weights_of_another_resnet_get_one_sentence_and_leave_the_model_alone(tmp_path, small_base, fmt):
    """Issue 26, case 5: a smaller ResNet's weights into a larger one, in Keras 3's and the legacy layout."""
    if fmt == "keras3":
        path = tmp_path / "small.weights.h5"
        small_base.save_weights(path)
    else:
        path = save_legacy_h5(small_base, tmp_path / "small.h5")
    original = path.read_bytes()
    model = backbone(LARGER, (32, 32, 3))
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ResbookError) as err:
            load_weights(model, path)
    assert str(err.value) == (
        f"{path} holds the weights of another network than resnet_backbone: 34 layers with weights and "
        "8,044,928 parameters, where the model has 40 layers with weights and 8,327,296 parameters; load the "
        "weights file saved from the same ResNet (same depth, include_top and input channels).")
    assert [str(w.message) for w in caught] == []  # Keras printed 21-34 warnings before the check
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(w)) for a, w in zip(before, model.weights))
    assert path.read_bytes() == original and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.fixture
def fetches(monkeypatch):
    """Record download calls instead of downloading anything."""
    from resbook.models import keras_transfer
    calls = []
    monkeypatch.setattr(keras_transfer, "download", lambda *args, **kw: calls.append(args) or pytest.fail("fetched"))
    return calls


def test_imagenet_weights_for_a_depth_without_them(fetches):
    """Issue 26: Keras publishes ImageNet weights for its three ResNets, not for a list of stages; none is fetched."""
    with pytest.raises(ResbookError) as err:
        backbone(SMALL, (32, 32, 3), weights="imagenet")
    assert str(err.value) == ("There are no ImageNet weights for [1, 1, 1, 1]: weights='imagenet' works with resnet50, "
                              "resnet101 and resnet152 (Keras' published no-top files), so pass one of those names, "
                              "weights=None for random weights, or the path of a weights file.")
    assert fetches == []


def test_imagenet_weights_are_keras_applications_own_files():
    """WEIGHTS holds the URL and md5 keras.applications itself downloads for include_top=False, for every depth."""
    from keras.src.applications import resnet

    from resbook.models.keras_resnet import STAGES
    assert set(WEIGHTS) == set(STAGES) <= set(resnet.WEIGHTS_HASHES)  # Keras' v1 ResNets (it also has v2, ResNeXt)
    for depth, remote in WEIGHTS.items():
        assert remote.filename == f"{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        assert remote.url == resnet.BASE_WEIGHTS_PATH + remote.filename
        assert (remote.hash_algorithm, remote.hash_value) == ("md5", resnet.WEIGHTS_HASHES[depth][1])


@pytest.mark.parametrize("weights", [None, "imagenet"])
def test_a_depth_that_is_no_resnet(fetches, weights):
    with pytest.raises(ResbookError) as err:
        backbone("resnet51", (32, 32, 3), weights=weights)
    assert str(err.value) == ("There is no ResNet called 'resnet51': choose one of resnet50, resnet101 and resnet152, "
                              "or pass blocks per stage (e.g. [3, 4, 6, 3]).")
    assert fetches == []


def test_a_layer_named_optimizer_something_is_a_layer(tmp_path):
    """Only a weights file's top-level optimizer group is not weights; a layer's name may start with "optimizer"."""
    def model():
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(5, name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(3, name="optimizer_proj")(hidden))
    saved = model()
    path = save_legacy_h5(saved, tmp_path / "w.h5")
    with h5py.File(path, "a") as f:  # what a whole-model save adds beside the weights: the optimizer's state
        f.create_dataset("optimizer_weights/Adam/iterations", data=np.int64(3))
    fresh = model()
    load_weights(fresh, path)
    assert all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
               for a, b in zip(saved.weights, fresh.weights))


def test_generated_weights_with_their_own_hash_and_a_wrong_one(tmp_path, small_base):
    """The verified path chapter 4 uses for ImageNet weights, on a generated file with its own md5."""
    from resbook.data.download import Remote, file_hash
    path = save_legacy_h5(small_base, tmp_path / "resnet18_notop.h5")
    remote = Remote("https://example.invalid/resnet18_notop.h5", path.name, "md5", file_hash(path, "md5"))
    fresh = backbone(SMALL, (32, 32, 3))
    load_weights(fresh, path, remote)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    assert np.allclose(fresh(x, training=False), small_base(x, training=False), atol=1e-6)
    other = save_legacy_h5(backbone(SMALL, (32, 32, 3)), tmp_path / "other.h5")
    with pytest.raises(ResbookError, match="is not the weights file resnet18_notop.h5") as err:
        load_weights(fresh, other, remote)
    assert remote.hash_value in str(err.value) and "\n" not in str(err.value)


def test_imagenet_weights_come_through_the_verified_download(monkeypatch, tmp_path):
    """A file placed under $RESBOOK_DATA that is not Keras' ImageNet file is refused with its expected md5."""
    folder = tmp_path / "keras_weights"
    folder.mkdir()
    save_legacy_h5(backbone("resnet50", (32, 32, 3)), folder / WEIGHTS["resnet50"].filename)
    monkeypatch.setenv("RESBOOK_DATA", str(tmp_path))
    with pytest.raises(ResbookError, match="4d473c1dd8becc155b73f8504c6f6626"):
        backbone("resnet50", (32, 32, 3), weights="imagenet")


def test_head_on_frozen_base_learns_generated_flowers_and_base_stays_put(tiny_flowers):
    """Phase 1 as chapter 4 runs it: only the head learns, its loss falls, the frozen base does not move."""
    from resbook.train.keras_fit import fit
    x, y = tiny_flowers(100, 0)
    base = backbone(SMALL, (32, 32, 3))
    freeze(base)
    model = classifier(base, classes=5, head="modern")
    kernel = keras.ops.convert_to_numpy(base.get_layer("conv2_block1_1_conv").kernel)
    hist = fit(model, (x, y), None, epochs=8, batch_size=20, optimizer=keras.optimizers.Adam(1e-2), verbose=0)
    assert hist["loss"][-1] < 0.7 * hist["loss"][0] and hist["accuracy"][-1] > 0.4  # chance is 0.2
    assert np.array_equal(kernel, keras.ops.convert_to_numpy(base.get_layer("conv2_block1_1_conv").kernel))
