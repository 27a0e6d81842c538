import keras
import numpy as np
import pytest

from resbook.errors import ResbookError
from resbook.models.keras_resnet import STAGES, build_resnet, copy_weights_by_name, residual_block_v1, stage_table


def _block_model(input_shape, **kw):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, residual_block_v1(inputs, **kw))


def test_identity_shortcut_keeps_the_shape_and_needs_matching_channels():
    m = _block_model((8, 8, 256), filters=64, conv_shortcut=False, name="b")
    assert m.output_shape == (None, 8, 8, 256)
    # 1x1 256->64, 3x3 64->64, 1x1 64->256 (with biases) + three BatchNorms
    convs = (256 * 64 + 64) + (9 * 64 * 64 + 64) + (64 * 256 + 256)
    assert m.count_params() == convs + 4 * (64 + 64 + 256)
    with pytest.raises(ValueError):
        _block_model((8, 8, 128), filters=64, conv_shortcut=False, name="b")


def test_projection_shortcut_changes_shape_with_stride_on_the_first_1x1():
    m = _block_model((8, 8, 256), filters=128, stride=2, name="b")
    assert m.output_shape == (None, 4, 4, 512)
    assert m.get_layer("b_1_conv").strides == (2, 2) and m.get_layer("b_2_conv").strides == (1, 1)
    assert m.get_layer("b_0_conv").strides == (2, 2)


def test_resnet50_equals_keras_applications():
    ours = build_resnet("resnet50", (64, 64, 3), classes=5)
    ref = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=5, classifier_activation=None)
    assert ours.get_layer("predictions").activation is keras.activations.linear  # logits, like ref here
    assert ours.count_params() == ref.count_params() == 23_597_957
    assert [l.name for l in ours.layers[1:]] == [l.name for l in ref.layers[1:]]
    assert copy_weights_by_name(ref, ours) == 107
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype("float32")
    diff = np.abs(ours(x, training=False) - ref(x, training=False)).max()
    assert diff < 1e-5


def test_resnet152_stage_table_matches_keras_applications():
    ours = build_resnet([3, 8, 36, 3], (32, 32, 3), classes=10)
    ref = keras.applications.ResNet152(weights=None, input_shape=(32, 32, 3), classes=10)
    assert ours.count_params() == ref.count_params() == 58_391_434


def test_stage_table():
    rows = stage_table(build_resnet("resnet50", (64, 64, 3), classes=5))
    assert [r["stage"] for r in rows] == ["conv1", "conv2", "conv3", "conv4", "conv5", "head"]
    assert [r["output_shape"] for r in rows] == [(32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024),
                                                  (2, 2, 2048), (5,)]
    assert sum(r["parameters"] for r in rows) == 23_597_957
    assert rows[-1]["parameters"] == 2048 * 5 + 5


def test_l2_adds_one_penalty_per_kernel():
    m = build_resnet([1, 1, 1, 1], (32, 32, 3), classes=3, l2=1e-4)
    kernels = [l for l in m.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(m.losses) == len(kernels) and len(kernels) == 1 + 4 * 4 + 1


def test_headless_model_and_bad_depths_get_one_sentence():
    m = build_resnet("resnet50", (64, 64, 3), include_top=False, pooling="avg")
    assert m.output_shape == (None, 2048)
    with pytest.raises(ResbookError) as err:
        build_resnet("resnet18")
    assert str(err.value) == ("There is no ResNet called 'resnet18': choose one of resnet50, resnet101 and resnet152, "
                              "or pass blocks per stage (e.g. [3, 4, 6, 3]).")
    for bad in ([3, 4, 6], [3, 0, 6, 3], 50):
        with pytest.raises(ResbookError, match="^A ResNet has 4 stages of at least one block each"):
            build_resnet(bad)
    with pytest.raises(TypeError):  # there is one kind of block: no block= to ignore
        build_resnet("resnet50", block="basic")
    assert STAGES == {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


@pytest.mark.parametrize("depth", ["resnet50", [2, 1, 1, 1]])
def test_zero_init_residual_makes_every_block_start_as_the_identity(depth):
    net = build_resnet(depth, (32, 32, 3), classes=4, zero_init_residual=True)
    plain = build_resnet(depth, (32, 32, 3), classes=4)
    assert net.count_params() == plain.count_params()
    zeroed = [l for l in net.layers if l.name.endswith("_3_bn")]
    assert zeroed and all(not np.any(l.gamma.numpy()) for l in zeroed)
    assert all(np.all(plain.get_layer(l.name).gamma.numpy() == 1) for l in zeroed)
    # an identity-shortcut block then passes its (post-ReLU) input through unchanged
    probe = keras.Model(net.input, [net.get_layer("conv2_block1_out").output, net.get_layer("conv2_block2_out").output])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    before, after = (np.asarray(t) for t in probe(x, training=False))
    assert before.std() > 0 and np.allclose(before, after, atol=1e-6)
