import keras
import numpy as np
import pytest

from resbook.models.keras_resnet import (STAGES, basic_block, build_resnet, convolutional_block,
                                         copy_weights_by_name, identity_block, stage_table)


def _block_model(fn, input_shape, **kw):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, fn(inputs, **kw))


def test_identity_block_keeps_the_shape_and_needs_matching_channels():
    m = _block_model(identity_block, (8, 8, 256), filters=64, name="b")
    assert m.output_shape == (None, 8, 8, 256)
    # 1x1 256->64, 3x3 64->64, 1x1 64->256 (with biases) + three BatchNorms
    convs = (256 * 64 + 64) + (9 * 64 * 64 + 64) + (64 * 256 + 256)
    assert m.count_params() == convs + 4 * (64 + 64 + 256)
    with pytest.raises(ValueError):
        _block_model(identity_block, (8, 8, 128), filters=64, name="b")


def test_convolutional_block_changes_shape_with_stride_on_the_first_1x1():
    m = _block_model(convolutional_block, (8, 8, 256), filters=128, name="b", stride=2)
    assert m.output_shape == (None, 4, 4, 512)
    assert m.get_layer("b_1_conv").strides == (2, 2) and m.get_layer("b_2_conv").strides == (1, 1)
    assert m.get_layer("b_0_conv").strides == (2, 2)


def test_basic_block_shapes():
    m = _block_model(basic_block, (8, 8, 64), filters=128, name="b", stride=2, conv_shortcut=True)
    assert m.output_shape == (None, 4, 4, 128)
    assert _block_model(basic_block, (8, 8, 64), filters=64, name="c").output_shape == (None, 8, 8, 64)


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
    m = build_resnet("resnet18", (32, 32, 3), classes=3, l2=1e-4)
    kernels = [l for l in m.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(m.losses) == len(kernels) and len(kernels) == 1 + 16 + 3 + 1


def test_headless_model_and_bad_depths():
    m = build_resnet("resnet50", (64, 64, 3), include_top=False, pooling="avg")
    assert m.output_shape == (None, 2048)
    with pytest.raises(ValueError, match="unknown ResNet"):
        build_resnet("resnet51")
    with pytest.raises(ValueError, match="4 stages"):
        build_resnet([3, 4, 6])
    assert set(STAGES) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


@pytest.mark.parametrize("depth", ["resnet50", "resnet18"])
def test_zero_init_residual_makes_every_block_start_as_the_identity(depth):
    net = build_resnet(depth, (32, 32, 3), classes=4, zero_init_residual=True)
    plain = build_resnet(depth, (32, 32, 3), classes=4)
    assert net.count_params() == plain.count_params()
    last = "_3_bn" if depth == "resnet50" else "_2_bn"
    zeroed = [l for l in net.layers if l.name.endswith(last)]
    assert zeroed and all(not np.any(l.gamma.numpy()) for l in zeroed)
    assert all(np.all(plain.get_layer(l.name).gamma.numpy() == 1) for l in zeroed)
    # an identity-shortcut block then passes its (post-ReLU) input through unchanged
    probe = keras.Model(net.input, [net.get_layer("conv2_block1_out").output, net.get_layer("conv2_block2_out").output])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    before, after = (np.asarray(t) for t in probe(x, training=False))
    assert before.std() > 0 and np.allclose(before, after, atol=1e-6)
