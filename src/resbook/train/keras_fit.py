"""Keras 3 training with fast, backend-agnostic defaults.

* :class:`RandomAffine`: flip, rotation, zoom and shift as one layer written
  with ``keras.ops`` (a bilinear gather), so augmentation runs on the device
  inside the compiled train step on TensorFlow, JAX or PyTorch alike. Keras'
  own ``RandomRotation``/``RandomZoom`` go through ``ops.image.affine_transform``,
  which on JAX took minutes per epoch in our measurements.
* :func:`configure_precision`: ``mixed_bfloat16`` where the device computes
  bf16 natively (GPUs, CPUs with AMX or AVX-512 bf16), else float32.
* :class:`RandomResizedCrop`: a random crop of part of the image (of a random
  area and aspect ratio), resized back to the input size, and a random
  horizontal flip; the same bilinear gather as :class:`RandomAffine`. Keras 3
  has no such layer (``RandomCrop`` cuts a fixed size and does not resize;
  ``RandomZoom`` zooms about the centre).
* :func:`warmup_cosine`: the learning rate rises linearly, then follows a
  cosine to 0 at the last step.
* :func:`fit`'s loss is ``SparseCategoricalCrossentropy(from_logits=True)``:
  the models end in logits, so the loss reads them through a log-softmax on
  every backend (on probabilities, Keras clips them to ``[1e-7, 1 - 1e-7]`` on
  JAX and PyTorch, where a confident mistake then gets no gradient). With
  ``label_smoothing`` or a ``batch_transform`` that mixes labels (Keras'
  ``MixUp``, ``CutMix``) it trains on one-hot labels with
  ``CategoricalCrossentropy(from_logits=True)`` instead.
* :func:`train_from_scratch`: chapters 4 and 5's recipe for a ResNet that
  starts from random weights.
* :func:`fit`: compile + fit with in-memory arrays, one line per epoch in
  stored outputs (a progress bar when interactive), and epoch times in the
  history.
* :func:`save_classifier` / :func:`load_classifier`: a trained model as a
  ``.keras`` file with its class names beside it, which ``resbook predict``
  loads to classify photos (:func:`predict_image_file`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from ..settings import prepare_tensorflow

prepare_tensorflow()  # TensorFlow reads its variables when Keras imports it

import keras  # noqa: E402
import numpy as np
from keras import layers, ops

from .. import settings
from ..data.folders import decode_image
from ..errors import ResbookError, as_path, brief
from ..files import atomic_write
from ..models import keras_transfer  # noqa: F401 - registers CaffePreprocess, so load_model finds it
from ..models.keras_resnet import build_resnet


class _DropRetracingNotice(logging.Filter):
    """TensorFlow warns when ``predict`` traces again; a new model per run does that by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_DROP_RETRACING_NOTICE = _DropRetracingNotice()  # one instance: adding it again to a logger is a no-op


def progress_verbosity() -> int:
    """Keras ``verbose``: 1 (progress bar) interactively, 2 (one line per epoch) when TQDM_DISABLE is set."""
    return 2 if os.environ.get("TQDM_DISABLE", "") not in ("", "0") else 1


def configure_precision(precision: str | None = None) -> str:
    """Set Keras' global dtype policy from :func:`resbook.settings.precision`; return the policy's name.

    ``precision`` is ``'auto'``, ``'float32'`` or ``'bfloat16'`` (default
    ``$RESBOOK_PRECISION``, else ``'auto'``: ``mixed_bfloat16`` on a GPU or a
    CPU with native bf16 instructions, ``float32`` elsewhere). Call it before
    building a model: layers take the policy in force when they are made.
    """
    policy = "mixed_bfloat16" if settings.precision(precision) == "bfloat16" else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def warmup_cosine(peak: float, epochs: int, steps_per_epoch: int,
                  warmup_epochs: float = 0.2) -> keras.optimizers.schedules.LearningRateSchedule:
    """Learning rate per step: linear from 0 to ``peak`` over ``warmup_epochs``, then a cosine to 0.

    The cosine ends exactly at the last of ``epochs * steps_per_epoch`` steps,
    so the last epoch fine-tunes at a small rate. ``warmup_epochs`` may be a
    fraction of an epoch; the warm-up lasts at least one step.
    """
    total = epochs * steps_per_epoch
    if total < 2 or steps_per_epoch < 1 or not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_cosine needs at least 2 steps and 0 <= warmup_epochs < epochs; got epochs={epochs}, "
                         f"steps_per_epoch={steps_per_epoch}, warmup_epochs={warmup_epochs}.")
    warmup = min(total - 1, max(1, round(warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=total - warmup, warmup_target=peak,
                                                  warmup_steps=warmup)


class _Resampling(layers.Layer):
    """What the augmentation layers share: in training, each image of the batch is resampled
    bilinearly at the source coordinates :meth:`sources` gives for its output pixels; at inference
    (``training=False``) the input is returned unchanged."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def uniform(self, b, low, high):
        """``b`` draws from U(low, high), one per image."""
        return keras.random.uniform((b,), low, high, seed=self.seed_generator)

    def sources(self, b, hf, wf, xs, ys):
        """``(src_x, src_y)``, each ``[b, h, w]``: where output pixel ``(ys, xs)`` (each ``[1, h, w]``) is read."""
        raise NotImplementedError

    def call(self, images, training=None):
        if not training:
            return images
        x = ops.cast(images, "float32")
        shape = ops.shape(x)
        h, w = shape[1], shape[2]
        ys, xs = ops.meshgrid(ops.arange(h, dtype="float32"), ops.arange(w, dtype="float32"), indexing="ij")
        src_x, src_y = self.sources(shape[0], ops.cast(h, "float32"), ops.cast(w, "float32"), xs[None], ys[None])
        return ops.cast(_bilinear(x, src_x, src_y), images.dtype)


@keras.saving.register_keras_serializable(package="resbook")
class RandomAffine(_Resampling):
    """Random horizontal flip, rotation, zoom and shift of a batch of images (training only).

    ``rotation`` is in degrees (+-), ``zoom`` and ``shift`` are fractions
    (``zoom=0.2`` scales by 0.8-1.2, ``shift=0.1`` moves up to 10% of the side).
    Pixels are sampled bilinearly; points outside the image take the nearest
    edge pixel (``ImageDataGenerator``'s default ``fill_mode="nearest"``).
    At inference (``training=False``) the layer returns its input unchanged.
    """

    def __init__(self, flip: bool = True, rotation: float = 0.0, zoom: float = 0.0, shift: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.flip, self.rotation, self.zoom, self.shift = flip, rotation, zoom, shift

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "rotation": self.rotation, "zoom": self.zoom,
                "shift": self.shift, "seed": self.seed}

    def sources(self, b, hf, wf, xs, ys):
        angle = self.uniform(b, -1.0, 1.0) * (self.rotation * math.pi / 180.0)
        scale = self.uniform(b, 1.0 - self.zoom, 1.0 + self.zoom)
        tx, ty = self.uniform(b, -self.shift, self.shift) * wf, self.uniform(b, -self.shift, self.shift) * hf
        sign = ops.where(self.uniform(b, 0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else ops.ones((b,))

        # Rotate and scale about the centre, then shift.
        xc = (xs - (wf - 1) / 2) * sign[:, None, None]  # a flip mirrors x
        yc = ys - (hf - 1) / 2
        cos, sin = ops.cos(angle)[:, None, None], ops.sin(angle)[:, None, None]
        s = scale[:, None, None]
        src_x = (cos * xc - sin * yc) / s + (wf - 1) / 2 - tx[:, None, None]
        src_y = (sin * xc + cos * yc) / s + (hf - 1) / 2 - ty[:, None, None]
        return src_x, src_y


@keras.saving.register_keras_serializable(package="resbook")
class RandomResizedCrop(_Resampling):
    """A random crop of each image, resized back to the input size, and a random horizontal flip (training only).

    The crop covers a fraction of the image's area drawn uniformly from
    ``area`` and has a width/height ratio drawn log-uniformly from ``ratio``
    (a side that would exceed the image is cut to the image's side); its
    position is uniform over the image. This is the "random-resized crop" of
    Inception and torchvision's ``RandomResizedCrop``, resampled bilinearly
    with the crop's corners at pixel corners, so ``area=(1, 1), ratio=(1, 1),
    flip=False`` returns the images unchanged. At inference
    (``training=False``) the layer returns its input unchanged.
    """

    def __init__(self, area: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip: bool = True, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        area, ratio = tuple(float(a) for a in area), tuple(float(r) for r in ratio)
        if len(area) != 2 or not 0 < area[0] <= area[1] <= 1:
            raise ResbookError(f"RandomResizedCrop's area must be (low, high) with 0 < low <= high <= 1, the "
                               f"fractions of the image a crop covers, not {area}.")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ResbookError(f"RandomResizedCrop's ratio must be (low, high) with 0 < low <= high, the crop's "
                               f"width/height, not {ratio}.")
        self.area, self.ratio, self.flip = area, ratio, flip

    def get_config(self):
        return {**super().get_config(), "area": list(self.area), "ratio": list(self.ratio), "flip": self.flip,
                "seed": self.seed}

    def sources(self, b, hf, wf, xs, ys):
        area = self.uniform(b, *self.area)
        aspect = ops.exp(self.uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1])))
        cw = ops.minimum(ops.sqrt(area * aspect), 1.0)[:, None, None]  # crop width and height, as fractions
        ch = ops.minimum(ops.sqrt(area / aspect), 1.0)[:, None, None]
        x0 = self.uniform(b, 0.0, 1.0)[:, None, None] * (1.0 - cw)
        y0 = self.uniform(b, 0.0, 1.0)[:, None, None] * (1.0 - ch)

        # Output pixel centre (j + 0.5) / w of the crop maps to the source pixel (x0 + u * cw) * w - 0.5.
        u, v = (xs + 0.5) / wf, (ys + 0.5) / hf
        if self.flip:
            u = ops.where((self.uniform(b, 0.0, 1.0) < 0.5)[:, None, None], 1.0 - u, u)  # a flip mirrors x
        return (x0 + u * cw) * wf - 0.5, (y0 + v * ch) * hf - 0.5


def _bilinear(x, src_x, src_y):
    """Sample ``x[b, h, w, c]`` at float coordinates ``src_[xy][b, h, w]``, clamping to the edges."""
    shape = ops.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    src_x = ops.clip(src_x, 0.0, ops.cast(w - 1, "float32"))
    src_y = ops.clip(src_y, 0.0, ops.cast(h - 1, "float32"))
    x0, y0 = ops.floor(src_x), ops.floor(src_y)
    wx, wy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    x0i, y0i = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1i, y1i = ops.minimum(x0i + 1, w - 1), ops.minimum(y0i + 1, h - 1)
    flat = ops.reshape(x, (-1, c))
    base = (ops.arange(b, dtype="int32") * (h * w))[:, None, None]

    def gather(yi, xi):
        return ops.take(flat, ops.reshape(base + yi * w + xi, (-1,)), axis=0)

    top = gather(y0i, x0i) * (1 - ops.reshape(wx, (-1, 1))) + gather(y0i, x1i) * ops.reshape(wx, (-1, 1))
    bottom = gather(y1i, x0i) * (1 - ops.reshape(wx, (-1, 1))) + gather(y1i, x1i) * ops.reshape(wx, (-1, 1))
    out = top * (1 - ops.reshape(wy, (-1, 1))) + bottom * ops.reshape(wy, (-1, 1))
    return ops.reshape(out, (b, h, w, c))


class EpochTimer(keras.callbacks.Callback):
    """Adds the wall time of every epoch to the history as ``time_s``."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["time_s"] = time.perf_counter() - self._t0


def with_input_pipeline(model: keras.Model, augment: layers.Layer | None = None,
                        scale: float = 1 / 255, offset: float = 0.0, name: str | None = None) -> keras.Model:
    """Wrap ``model`` so it takes uint8 images: rescale (``x * scale + offset``), then augment when training."""
    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    x = layers.Rescaling(scale, offset, name="rescale")(inputs)
    if augment is not None:
        x = augment(x)
    return keras.Model(inputs, model(x), name=name or f"{model.name}_with_inputs")


class TransformedBatches(keras.utils.PyDataset):
    """Shuffled batches of in-memory arrays, each passed through ``transform`` (see :func:`fit`'s ``batch_transform``).

    ``transform`` receives ``{"images": x, "labels": y}`` (NumPy) and returns
    such a dict (Keras' ``MixUp`` and ``CutMix`` layers take and give exactly
    that); the batches are converted back to float32 NumPy arrays. The order is drawn again
    from ``rng`` at the start and at the end of every epoch.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, transform: Callable,
                 rng: np.random.Generator):
        super().__init__()
        self.x, self.y, self.batch_size, self.transform, self.rng = x, y, batch_size, transform, rng
        self.order = rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int):
        picked = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        out = self.transform({"images": self.x[picked], "labels": self.y[picked]})
        # float32 whatever the layer computed in (a mixed_bfloat16 policy makes Keras' layers compute in bf16)
        return tuple(np.asarray(ops.convert_to_numpy(out[k]), dtype="float32") for k in ("images", "labels"))

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """Integer labels as float32 one-hot rows: ``one_hot([2, 0], 3) == [[0, 0, 1], [1, 0, 0]]``."""
    labels = np.asarray(labels)
    integers = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    if not integers or (labels < 0).any() or (labels >= classes).any():
        raise ResbookError(f"one_hot needs a 1-D array of integer labels in 0..{classes - 1}, not {labels!r:.60}.")
    return np.eye(classes, dtype="float32")[labels]


def fit(model: keras.Model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
        epochs: int, batch_size: int, optimizer: keras.optimizers.Optimizer | str = "adam",
        loss: str | Callable | None = None, metrics: Sequence[str] = ("accuracy",),
        callbacks: Sequence[keras.callbacks.Callback] = (), jit_compile: bool | str = "auto",
        verbose: int | None = None, batch_transform: Callable | None = None,
        label_smoothing: float = 0.0) -> dict[str, list[float]]:
    """Compile ``model`` and train it on in-memory arrays; return ``history.history`` plus ``time_s``.

    ``model`` ends in logits over the classes and ``train``'s labels are
    integers; the loss is ``SparseCategoricalCrossentropy(from_logits=True)``
    unless another is given. It does not seed: :func:`resbook.settings.describe_run`
    seeds a run, and :func:`resbook.settings.seed_everything` a model built again
    with another seed. TensorFlow's notice that ``predict`` traced again is
    dropped from the log (a new model per run does that by design).

    Soft labels: with ``label_smoothing`` > 0 or a ``batch_transform``, the
    labels of ``train`` and ``val`` become one-hot rows (:func:`one_hot`) and
    the loss ``CategoricalCrossentropy(from_logits=True, label_smoothing=...)``
    (``loss`` must then be left out). ``batch_transform`` is called on every
    training batch as ``{"images": x, "labels": one-hot y}`` and returns such a
    dict, e.g. ``keras.layers.MixUp()`` or ``keras.layers.CutMix()``: the
    batches come from a :class:`TransformedBatches`, shuffled each epoch with
    a generator drawn from NumPy's global state (so a seeded run repeats).
    ``accuracy`` then compares the prediction with each label's largest share
    (on a mixed batch, the image that dominates the mix). A Keras layer given
    as ``batch_transform`` must compute in float32 (``dtype="float32"``): under
    a ``mixed_bfloat16`` policy Keras' ``MixUp`` fails, so fit says so first.
    """
    logging.getLogger("tensorflow").addFilter(_DROP_RETRACING_NOTICE)
    soft = batch_transform is not None or label_smoothing > 0
    if soft and loss is not None:
        raise ResbookError("fit chooses the loss itself with label_smoothing or a batch_transform (categorical "
                           "cross-entropy on one-hot labels): leave loss out, or smooth and mix inside your loss.")
    if isinstance(batch_transform, layers.Layer) and batch_transform.compute_dtype != "float32":
        raise ResbookError(f"batch_transform {batch_transform.name!r} computes in {batch_transform.compute_dtype} "
                           "(the global mixed-precision policy), and Keras' MixUp then fails on its float32 mixing "
                           "weights: make it with dtype=\"float32\", e.g. keras.layers.MixUp(dtype=\"float32\").")
    if not 0 <= label_smoothing < 1:
        raise ResbookError(f"label_smoothing must be in [0, 1), the share of each label spread over all classes, "
                           f"not {label_smoothing}.")
    if soft:
        classes = model.output_shape[-1]
        train = (train[0], one_hot(train[1], classes))
        val = None if val is None else (val[0], one_hot(val[1], classes))
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if loss is None else loss
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics), jit_compile=jit_compile)
    verbose = progress_verbosity() if verbose is None else verbose
    if verbose:
        print(f"{model.name}: training on {settings.device_description()} ({keras.backend.backend()} backend) with "
              f"{keras.mixed_precision.global_policy().name}, XLA {'on' if model.jit_compile else 'off'}, "
              f"batch {batch_size}, {len(train[0])} examples")
    if batch_transform is None:
        data = dict(x=train[0], y=train[1], batch_size=batch_size, shuffle=True)
    else:
        rng = np.random.default_rng(np.random.randint(2**31))
        data = dict(x=TransformedBatches(train[0], train[1], batch_size, batch_transform, rng), shuffle=False,
                    validation_batch_size=batch_size)
    history = model.fit(**data, validation_data=val, epochs=epochs, callbacks=[EpochTimer(), *callbacks],
                        verbose=verbose)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def train_from_scratch(depth: str | Sequence[int], train: tuple[np.ndarray, np.ndarray],
                       val: tuple[np.ndarray, np.ndarray] | None, classes: int, epochs: int, batch_size: int,
                       learning_rate: float, augment: layers.Layer | None = None,
                       warmup_epochs: float = 0.2, callbacks: Sequence[keras.callbacks.Callback] = (),
                       ) -> tuple[keras.Model, dict[str, list[float]]]:
    """The from-scratch recipe of chapters 4 and 5; returns the trained model and :func:`fit`'s history.

    A fresh ResNet (``build_resnet(depth, ..., zero_init_residual=True)``: each
    residual branch starts at zero) behind :func:`with_input_pipeline` (uint8
    images scaled to [0, 1], then ``augment``), trained with Adam whose rate
    warms up over ``warmup_epochs`` and then follows a cosine to 0
    (:func:`warmup_cosine`). ``callbacks`` go to :func:`fit` (e.g. one that sets
    ``self.model.stop_training`` to end the schedule early). Seed first
    (``settings.seed_everything``) for a repeatable run.
    """
    net = build_resnet(depth, train[0].shape[1:], classes=classes, zero_init_residual=True)
    model = with_input_pipeline(net, augment)
    schedule = warmup_cosine(learning_rate, epochs, math.ceil(len(train[0]) / batch_size), warmup_epochs)
    history = fit(model, train, val, epochs=epochs, batch_size=batch_size, optimizer=keras.optimizers.Adam(schedule),
                  callbacks=callbacks)
    return model, history


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits along the last axis, in float64 NumPy (stable: the row's maximum is subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of ``model`` (which outputs logits) on ``x``: one row per image, summing to 1."""
    return _softmax(model.predict(x, batch_size=batch_size, verbose=0))


def predict_with_flip(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(plain, flip_tta)``: class probabilities on ``x``, and those averaged with the mirrored images'.

    One pass over ``x`` and one over its mirror, for callers that report both.
    """
    plain = predict_proba(model, x, batch_size)
    return plain, (plain + predict_proba(model, x[:, :, ::-1], batch_size)) / 2


def predict_image_file(model: keras.Model, path, class_names: Sequence[str], size: int) -> list[tuple[str, float]]:
    """Classify one image file (PIL, no OpenCV): ``[(class name, probability), ...]``, most likely first.

    The file is decoded and resized exactly as the training images were
    (:func:`resbook.data.folders.decode_image`), then ``model`` predicts.
    """
    probs = predict_proba(model, decode_image(path, size)[None])[0]
    return [(class_names[i], float(probs[i])) for i in np.argsort(probs)[::-1]]


CLASSES_SUFFIX = ".classes.json"  # save_classifier keeps a model's class names in MODEL.keras.classes.json


class Classifier(NamedTuple):
    """A model saved by :func:`save_classifier`, loaded: it maps ``image_size``-square uint8 images to logits."""

    model: keras.Model
    class_names: tuple[str, ...]
    image_size: int


def _square_input(model: keras.Model) -> int | None:
    """The side of the square images ``model`` takes (None when it takes any size); else a ResbookError."""
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] == shape[2]):
        raise ResbookError(f"Model {model.name!r} takes input of shape {shape}, not one batch of square "
                           "images (None, size, size, channels): a photo classifier needs that input.")
    return shape[1]


def _checked_classes(model: keras.Model, class_names: object, where: str) -> tuple[str, ...]:
    """``class_names`` as a tuple, if it is one distinct string per output of ``model``; else a ResbookError."""
    if not (isinstance(model.output_shape, tuple) and len(model.output_shape) == 2):
        raise ResbookError(f"Model {model.name!r} has output of shape {model.output_shape}, not one row of class "
                           "logits per image (None, classes): a photo classifier needs that output.")
    outputs = model.output_shape[-1]
    names = tuple(class_names) if isinstance(class_names, (list, tuple)) else ()
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ResbookError(f"The class names {where} must be a list of distinct, non-empty strings, not "
                           f"{class_names!r:.80}: pass the classes in label order, e.g. index.classes.")
    if len(names) != outputs:
        raise ResbookError(f"{len(names)} class names {where} do not match model {model.name!r}, which has "
                           f"{outputs} outputs: give one name per output, in label order.")
    return names


def save_classifier(model: keras.Model, path: str | os.PathLike, class_names: Sequence[str],
                    image_size: int | None = None) -> Path:
    """Save ``model`` (uint8 images in, logits out) as ``path`` (a ``.keras`` file) with its class names; return it.

    The class names and the input size go to ``path + ".classes.json"``
    beside the model, where :func:`load_classifier` and ``resbook predict``
    read them. ``image_size`` is needed only for a model that takes images of
    any size; otherwise it must be the model's own. Both files are written
    atomically (:func:`resbook.files.atomic_write`), the model first.
    """
    path = as_path(path, "the saved model")
    if path.suffix != ".keras":
        raise ResbookError(f"{path} does not end in .keras: save_classifier writes Keras' own format, so name the "
                           f"file like {path.with_suffix('.keras').name}.")
    names = _checked_classes(model, class_names, "given to save_classifier")
    size = _square_input(model)
    if size is None and not (isinstance(image_size, int) and image_size > 0):
        raise ResbookError(f"Model {model.name!r} takes images of any size: pass image_size=, the side of the "
                           "square images it was trained on.")
    if size is not None and image_size not in (None, size):
        raise ResbookError(f"image_size={image_size!r} does not match model {model.name!r}, which takes "
                           f"{size}x{size} images: leave image_size out.")
    if not path.parent.is_dir():
        raise ResbookError(f"Folder {path.parent} does not exist: create it first (mkdir -p) or save elsewhere.")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name  # Keras saves to a path; atomic_write moves the bytes into place
        model.save(staged)
        with open(staged, "rb") as src, atomic_write(path) as dst:
            shutil.copyfileobj(src, dst)
    with atomic_write(classes_file(path), "w") as f:
        json.dump({"class_names": list(names), "image_size": size or image_size}, f, indent=1)
        f.write("\n")
    return path


def classes_file(path: str | os.PathLike) -> Path:
    """Where :func:`save_classifier` keeps the class names of the model at ``path``: ``path + ".classes.json"``."""
    return Path(os.fspath(path) + CLASSES_SUFFIX)


def load_classifier(path: str | os.PathLike) -> Classifier:
    """The model that :func:`save_classifier` wrote to ``path``, with its class names and input size.

    Loads with ``keras.models.load_model`` (not compiled; the book's layers
    are registered, so no ``custom_objects`` are needed) and writes nothing.
    A missing file, a file that is not a Keras model and a model saved
    without class names each get one :class:`ResbookError` sentence.
    """
    path = as_path(path, "a saved model")
    if not path.is_file():
        raise ResbookError(f"Model {path} {'is a folder' if path.is_dir() else 'does not exist'}: give the "
                           ".keras file that save_classifier wrote.")
    if path.suffix != ".keras":
        raise ResbookError(f"{path} is not a Keras model (its name does not end in .keras): give the .keras file "
                           "that save_classifier wrote.")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise ResbookError(f"{path} is not a Keras model (a .keras file is a zip archive, this is not one): give "
                           "the .keras file that save_classifier wrote.")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, BadZipFile, OSError, KeyError, ... for a bad file
        raise ResbookError(f"{path} could not be loaded as a Keras model ({brief(exc):.100}): give the .keras "
                           "file that save_classifier wrote.") from None
    names_file = classes_file(path)
    try:
        saved = json.loads(names_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResbookError(f"Model {path} has no class names ({names_file.name} is not beside it): save it with "
                           "save_classifier(model, path, class_names), which writes them.") from None
    except (OSError, ValueError) as exc:
        raise ResbookError(f"The class names of {path} cannot be read from {names_file.name} ({brief(exc):.80}): "
                           "save the model again with save_classifier.") from None
    saved = saved if isinstance(saved, dict) else {}
    names = _checked_classes(model, saved.get("class_names"), f"in {names_file.name}")
    size = _square_input(model) or saved.get("image_size")
    if not (isinstance(size, int) and size > 0):
        raise ResbookError(f"{names_file} gives no image size for a model that takes any size: save the model "
                           "again with save_classifier(..., image_size=SIZE).")
    return Classifier(model, names, size)
