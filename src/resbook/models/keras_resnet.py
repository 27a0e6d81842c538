"""ResNet v1 in Keras 3, block by block, layer for layer equal to ``keras.applications``.

One block, as in ``keras/src/applications/resnet.py``: :func:`residual_block_v1`,
the three-layer *bottleneck* (1x1 reduce, 3x3, 1x1 expand to ``4 * filters``).
Its shortcut is the input itself (``conv_shortcut=False``, where the shape is
kept) or a 1x1 convolution + BatchNorm (where the shape changes); the stride
sits on the first 1x1 convolution (ResNet v1 as Keras ships it; torchvision's
"v1.5" puts it on the 3x3 instead).

A model is a short table of stages (:data:`STAGES`): ResNet-50 is
``[3, 4, 6, 3]`` bottleneck blocks with 64, 128, 256, 512 filters. Layer
names follow ``keras.applications`` (``conv1_conv``, ``conv2_block1_0_conv``,
..., ``avg_pool``, ``predictions``), so weights copy across by name and the
ImageNet weight files load into our models.

Backend-agnostic: only Keras layers, so it runs on TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Sequence

from ..settings import prepare_tensorflow

prepare_tensorflow()  # TensorFlow reads its variables when Keras imports it

import keras  # noqa: E402
from keras import layers

from ..errors import ResbookError

BN_EPSILON = 1.001e-5  # keras.applications' value (not Keras' default 1e-3)
WIDTHS = (64, 128, 256, 512)

#: name -> bottleneck blocks per stage, the stages named conv2 ... conv5 as in the paper (keras.applications' three).
STAGES: dict[str, tuple[int, ...]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def _regularizer(l2: float | None):
    return keras.regularizers.L2(l2) if l2 else None


def conv_bn(x, filters: int, kernel_size: int, name: str, strides: int = 1, padding: str = "valid",
            l2: float | None = None, relu: bool = True, zero_gamma: bool = False):
    """Conv2D -> BatchNorm (-> ReLU), named ``{name}_conv``, ``{name}_bn``, ``{name}_relu``.

    ``zero_gamma`` starts the BatchNorm's scale at 0, so the layer outputs 0 at first.
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      kernel_regularizer=_regularizer(l2), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{name}_bn",
                                  gamma_initializer="zeros" if zero_gamma else "ones")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def residual_block_v1(x, filters: int, kernel_size: int = 3, stride: int = 1, conv_shortcut: bool = True, *,
                      name: str, l2: float | None = None, zero_init: bool = False):
    """A bottleneck block, ``relu(shortcut(x) + F(x))``, named like ``keras.applications``' (``{name}_1_conv`` ...).

    ``F`` is 1x1 (``filters``, stride ``stride``), ``kernel_size`` x
    ``kernel_size`` (``filters``), 1x1 (``4 * filters``), each with BatchNorm.
    The shortcut is a 1x1 convolution with the same stride + BatchNorm
    (``{name}_0_conv``) when ``conv_shortcut``, else the input itself, which
    then must already have ``4 * filters`` channels. ``zero_init`` starts the
    last BatchNorm's scale at 0, so that ``F(x) = 0`` and the block begins as
    ``relu(shortcut(x))``: the identity on post-ReLU inputs.
    """
    if conv_shortcut:
        shortcut = conv_bn(x, 4 * filters, 1, f"{name}_0", strides=stride, l2=l2, relu=False)
    else:
        shortcut = x
    x = conv_bn(x, filters, 1, f"{name}_1", strides=stride, l2=l2)
    x = conv_bn(x, filters, kernel_size, f"{name}_2", padding="same", l2=l2)
    x = conv_bn(x, 4 * filters, 1, f"{name}_3", l2=l2, relu=False, zero_gamma=zero_init)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stage(x, filters: int, blocks: int, stride: int, name: str, l2: float | None = None, zero_init: bool = False):
    """One stage: a block with a projection shortcut that changes the shape, then ``blocks - 1`` that keep it."""
    x = residual_block_v1(x, filters, stride=stride, conv_shortcut=True, name=f"{name}_block1", l2=l2,
                          zero_init=zero_init)
    for i in range(2, blocks + 1):
        x = residual_block_v1(x, filters, conv_shortcut=False, name=f"{name}_block{i}", l2=l2, zero_init=zero_init)
    return x


def stem(x, l2: float | None = None):
    """conv1: 7x7/2 convolution with 64 filters, BatchNorm, ReLU, then a 3x3/2 max-pool (pool1)."""
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = conv_bn(x, 64, 7, "conv1", strides=2, l2=l2)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def stages_of(depth: str | Sequence[int]) -> tuple[int, ...]:
    """Blocks per stage of ``depth``, a name of :data:`STAGES` or four positive counts; else one sentence."""
    if isinstance(depth, str):
        if depth not in STAGES:
            raise ResbookError(f"There is no ResNet called {depth!r}: choose one of {', '.join(list(STAGES)[:-1])} "
                               f"and {list(STAGES)[-1]}, or pass blocks per stage (e.g. [3, 4, 6, 3]).")
        return STAGES[depth]
    blocks = tuple(depth) if isinstance(depth, Iterable) else (depth,)
    if len(blocks) != len(WIDTHS) or not all(isinstance(n, Integral) and n > 0 for n in blocks):
        raise ResbookError(f"A ResNet has {len(WIDTHS)} stages of at least one block each, so depth must be four "
                           f"positive block counts (e.g. [3, 4, 6, 3]), not {list(blocks)}.")
    return blocks


def build_resnet(depth: str | Sequence[int] = "resnet50", input_shape: tuple[int, int, int] = (64, 64, 3),
                 classes: int = 5, include_top: bool = True, pooling: str | None = None,
                 l2: float | None = None, classifier_activation: str | None = None, name: str | None = None,
                 zero_init_residual: bool = False) -> keras.Model:
    """Build a ResNet v1 from a stage table.

    ``depth`` is a key of :data:`STAGES` (``"resnet50"``) or bottleneck blocks
    per stage (``[3, 8, 36, 3]``); anything else is a :class:`ResbookError`.
    ``include_top`` adds global average pooling and a ``Dense(classes)`` named
    ``predictions`` that outputs logits (train with ``from_logits=True``;
    apply a softmax for probabilities, or pass
    ``classifier_activation="softmax"``, ``keras.applications``' default);
    without it, ``pooling`` may be ``"avg"`` or ``"max"`` as in
    ``keras.applications``. ``l2`` puts an L2 penalty of that factor on every
    Conv2D and Dense kernel.

    ``zero_init_residual`` (torchvision's argument of the same name) starts the
    last BatchNorm of every residual branch with scale 0, so each block begins
    as its shortcut (the identity, or the first block's projection) and a deep
    network trains like a shallow one at first (Goyal et al. 2017). It changes
    only the starting weights, not the architecture; ``keras.applications``
    starts every scale at 1 (the default).
    """
    blocks = stages_of(depth)
    name = name or (depth if isinstance(depth, str) else "resnet")
    inputs = keras.Input(shape=input_shape, name="input")
    x = stem(inputs, l2)
    for i, (filters, n) in enumerate(zip(WIDTHS, blocks)):
        x = stage(x, filters, n, stride=1 if i == 0 else 2, name=f"conv{i + 2}", l2=l2, zero_init=zero_init_residual)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, kernel_regularizer=_regularizer(l2),
                         name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> int:
    """Copy every layer's weights from ``source`` into the same-named layer of ``target``.

    Returns the number of layers copied; raises if a layer with weights has no
    twin or the shapes differ, so a silent partial copy is impossible.
    """
    by_name = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        if not layer.weights:
            continue
        twin = by_name.get(layer.name)
        if twin is None:
            raise ValueError(f"layer {layer.name!r} has no twin in {target.name}")
        twin.set_weights(layer.get_weights())
        copied += 1
    return copied


def _stage_of(layer_name: str) -> str | None:
    prefix = layer_name.split("_")[0]
    if prefix == "input":
        return None
    if prefix == "pool1":  # the paper's Table 1 counts the max-pool in conv2_x
        return "conv2"
    return prefix if prefix in ("conv1", "conv2", "conv3", "conv4", "conv5") else "head"


def stage_table(model: keras.Model) -> list[dict]:
    """One row per stage (``conv1`` ... ``conv5``, ``head``): output shape and parameter count."""
    rows: dict[str, dict] = {}
    for layer in model.layers:
        stage_name = _stage_of(layer.name)
        if stage_name is None:
            continue
        row = rows.setdefault(stage_name, {"stage": stage_name, "output_shape": None, "parameters": 0})
        row["parameters"] += layer.count_params()
        row["output_shape"] = tuple(layer.output.shape[1:])
    return list(rows.values())
