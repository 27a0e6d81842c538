"""Transfer learning with a ResNet backbone in Keras 3: freeze it, add a head, unfreeze the top.

The recipe follows keras.io's transfer-learning guide:

* the backbone is our :func:`~resbook.models.keras_resnet.build_resnet`
  without its top (layer for layer ``keras.applications``' model, so
  ImageNet weight files load into it);
* it is called with ``training=False``, so its BatchNorm layers stay in
  inference mode (moving statistics) even after they are unfrozen;
* phase 1 trains only the head; phase 2 unfreezes the top stage(s), keeps
  every BatchNorm frozen, and needs a recompile and a very low learning rate.

Heads (:data:`HEADS`) reproduce the articles the chapters follow, beside a
modern default; each ends in a ``Dense`` that outputs logits (the articles'
softmax is applied by the loss, ``from_logits=True``, and by
:func:`~resbook.train.keras_fit.predict_proba`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import h5py
from ..settings import prepare_tensorflow

prepare_tensorflow()  # TensorFlow reads its variables when Keras imports it

import keras  # noqa: E402
import numpy as np
from keras import layers

from ..data.download import Remote, check_weights_file, download
from ..errors import ResbookError, brief
from ..settings import cache_dir, data_root
from .keras_resnet import build_resnet, stages_of

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


def _notop(model: str, md5: str) -> Remote:
    filename = f"{model}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Remote(KERAS_WEIGHTS_URL + filename, filename, "md5", md5)


#: Keras' ImageNet weights without the classifier, by depth: the files and md5 values of
#: ``WEIGHTS_HASHES`` in ``keras/src/applications/resnet.py``.
WEIGHTS: dict[str, Remote] = {
    "resnet50": _notop("resnet50", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": _notop("resnet101", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": _notop("resnet152", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}


@keras.saving.register_keras_serializable(package="resbook")
class CaffePreprocess(layers.Layer):
    """``keras.applications.resnet.preprocess_input`` as a layer: RGB -> BGR, minus the ImageNet mean.

    Expects pixel values in [0, 255], as the ImageNet weights were trained with.
    """

    def call(self, x):
        x = keras.ops.flip(keras.ops.cast(x, self.compute_dtype), axis=-1)
        return x - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def backbone(depth: str | Sequence[int] = "resnet50", input_shape: tuple[int, int, int] = (224, 224, 3),
             weights: str | os.PathLike | None = None, pooling: str | None = "avg") -> keras.Model:
    """A ResNet without its classifier, randomly initialised or loaded from a weights file.

    ``weights``: None (random), ``"imagenet"`` (Keras' no-top ImageNet file
    of a depth in :data:`WEIGHTS`, see :func:`imagenet_weights`), or the path
    of a weights file of the same architecture.
    """
    stages_of(depth)  # an unknown depth gets its one sentence before any download
    if weights == "imagenet" and not (isinstance(depth, str) and depth in WEIGHTS):
        names = ", ".join(list(WEIGHTS)[:-1]) + f" and {list(WEIGHTS)[-1]}"
        raise ResbookError(f"There are no ImageNet weights for {depth!r}: weights='imagenet' works with {names} "
                           "(Keras' published no-top files), so pass one of those names, weights=None for random "
                           "weights, or the path of a weights file.")
    model = build_resnet(depth, input_shape, include_top=False, pooling=pooling,
                         name=f"{depth if isinstance(depth, str) else 'resnet'}_backbone")
    if weights == "imagenet":
        load_weights(model, imagenet_weights(depth), WEIGHTS[depth])
    elif weights is not None:
        load_weights(model, weights)
    return model


def imagenet_weights(depth: str, progress: bool = True) -> Path:
    """The no-top ImageNet weights file of ``depth`` (a key of :data:`WEIGHTS`), downloaded once and md5-verified.

    A copy a reader placed at ``$RESBOOK_DATA/keras_weights/<file name>`` is
    used first (:func:`load_weights` checks its md5); otherwise the file is
    downloaded into ``cache_dir()/keras_weights`` (as Keras keeps its own in
    ``~/.keras/models``) unless a verified copy is there.
    """
    remote = WEIGHTS[depth]
    placed = data_root() / "keras_weights" / remote.filename if data_root() else None
    if placed is not None and placed.is_file():
        return placed
    return download(remote, cache_dir() / "keras_weights", progress=progress)


def load_weights(model: keras.Model, path: str | os.PathLike, remote: Remote | None = None) -> None:
    """Load a weights file into ``model``; a wrong file gets one sentence, never an h5py trace.

    The file is first checked by :func:`~resbook.data.download.check_weights_file`
    (against ``remote``'s hash when given); then a file that is valid HDF5 but
    made for another network is caught by comparing its arrays' shapes with
    the model's before Keras loads anything, so the model is left as it was.
    """
    path = check_weights_file(path, remote)
    found, wanted = _shapes_in_file(path), _shapes_in_model(model)
    if Counter(s for shapes in found.values() for s in shapes) != Counter(
            s for shapes in wanted.values() for s in shapes):
        raise ResbookError(f"{path} holds the weights of another network than {model.name}: {_summary(found)}, "
                           f"where the model has {_summary(wanted)}; load the weights file saved from the same "
                           "ResNet (same depth, include_top and input channels).")
    try:
        model.load_weights(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - Keras raises several kinds for a mismatched file
        raise ResbookError(f"{path} does not fit {model.name} although its arrays have the right shapes "
                           f"({type(exc).__name__}: {brief(exc)[:120]}): load the weights file saved from the "
                           "same ResNet.") from None


def _shapes_in_file(path: Path) -> dict[str, list[tuple[int, ...]]]:
    """The shapes of the arrays in a Keras weights file (``.weights.h5`` or legacy ``.h5``), by layer group."""
    groups: dict[str, list[tuple[int, ...]]] = {}

    def visit(name: str, obj: object) -> None:  # the optimizer's state is a top-level group, not a layer's
        if isinstance(obj, h5py.Dataset) and name.split("/")[0] not in {"optimizer", "optimizer_weights"}:
            groups.setdefault(name.rpartition("/")[0], []).append(tuple(obj.shape))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return groups


def _shapes_in_model(model: keras.Model) -> dict[str, list[tuple[int, ...]]]:
    """The shapes of ``model``'s weights, by layer."""
    groups: dict[str, list[tuple[int, ...]]] = {}
    for w in model.weights:
        groups.setdefault(w.path.rpartition("/")[0], []).append(tuple(w.shape))
    return groups


def _summary(groups: dict[str, list[tuple[int, ...]]]) -> str:
    """``"62 layers with weights and 11,186,112 parameters"``."""
    params = sum(int(np.prod(s)) for shapes in groups.values() for s in shapes)
    return f"{len(groups)} layers with weights and {params:,} parameters"


def _head_layers(head: str, classes: int) -> list[layers.Layer]:
    if head == "modern":  # pooled features -> dropout -> linear classifier
        return [layers.Dropout(0.2, name="head_dropout"), layers.Dense(classes, name="predictions")]
    if head == "tf_flowers":  # the 180x180 tf_flowers article
        return [layers.Flatten(name="head_flatten"), layers.Dense(512, activation="relu", name="head_dense"),
                layers.Dense(classes, name="predictions")]
    if head == "oxford102":  # the Oxford-102 article: on the unpooled 7x7x2048 feature map
        return [layers.Flatten(name="head_flatten"), layers.Dropout(0.4, name="head_dropout1"),
                layers.Dense(512, activation="elu", name="head_dense1"), layers.Dropout(0.4, name="head_dropout2"),
                layers.Dense(64, activation="elu", name="head_dense2"), layers.Dropout(0.4, name="head_dropout3"),
                layers.Dense(classes, name="predictions")]
    if head == "dense":  # the ResNet-152 MNIST article: one dense layer on the features
        return [layers.Flatten(name="head_flatten"), layers.Dense(classes, name="predictions")]
    raise ValueError(f"unknown head {head!r}; choose from {HEADS}")


HEADS = ("modern", "tf_flowers", "oxford102", "dense")


def classifier(base: keras.Model, classes: int, head: str = "modern", preprocess: bool = True,
               augment: layers.Layer | None = None, name: str | None = None) -> keras.Model:
    """uint8/float images in [0, 255] -> (augment) -> Caffe preprocessing -> ``base(training=False)`` -> head."""
    inputs = keras.Input(shape=base.input_shape[1:], name="images")
    x = inputs
    if augment is not None:
        x = augment(x)
    if preprocess:
        x = CaffePreprocess(name="preprocess")(x)
    x = base(x, training=False)  # BatchNorm stays in inference mode, frozen or not
    for layer in _head_layers(head, classes):
        x = layer(x)
    return keras.Model(inputs, x, name=name or f"{base.name}_{head}")


def freeze(base: keras.Model) -> None:
    """Phase 1: nothing in the backbone trains."""
    base.trainable = False


def unfreeze_top(base: keras.Model, stages: Sequence[str] = ("conv5",)) -> int:
    """Phase 2: unfreeze the layers of the given stages, except BatchNorm; return how many layers train.

    Recompile the model afterwards: Keras reads ``trainable`` when it compiles.
    """
    base.trainable = True
    count = 0
    for layer in base.layers:
        train = layer.name.startswith(tuple(f"{s}_" for s in stages)) and not isinstance(
            layer, layers.BatchNormalization)
        layer.trainable = train
        count += bool(train and layer.weights)
    return count


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of parameters: all of them, or with ``trainable_only`` those the optimiser will update.

    "All" counts every weight, BatchNorm's moving statistics included, as ``model.count_params()`` does.
    """
    return int(sum(np.prod(w.shape) for w in (model.trainable_weights if trainable_only else model.weights)))
