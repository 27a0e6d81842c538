"""A Keras ``PyDataset`` over decoded images: ``uint8[n, h, w, 3]`` arrays in, float32 batches out.

It is plain NumPy behind ``keras.utils.PyDataset`` (no ``tf.data``), so it
works with every Keras backend; the PyTorch counterpart is
:mod:`resbook.data.torch_view`. This module imports Keras and must not import torch.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np

from ..errors import ResbookError


class ImageArrayBatches(keras.utils.PyDataset):
    """Batches ``(float32[b, h, w, 3], int64[b])`` of the arrays, reshuffled each epoch from ``seed``.

    Pixel values stay in [0, 255] unless ``preprocess`` maps them (e.g.
    ``keras.applications.resnet.preprocess_input`` for ImageNet weights, or a
    ``Rescaling`` layer in the model does it). Epoch ``e``'s order is
    ``np.random.default_rng([seed, e]).permutation(n)``, so a run is repeatable.
    Other keyword arguments (``workers``, ...) go to ``PyDataset``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
            raise ResbookError(f"Expected images [n, h, w, 3] and n labels, got images {list(x.shape)} and labels "
                               f"{list(y.shape)}: pass the arrays load_images returns.")
        self.x, self.y = x, y.astype(np.int64)
        self.batch_size, self.shuffle, self.seed, self.preprocess = batch_size, shuffle, seed, preprocess
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        n = len(self.x)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        batch = self.x[rows].astype(np.float32)
        return (self.preprocess(batch) if self.preprocess else batch), self.y[rows]

    def on_epoch_end(self) -> None:
        """Called by Keras after each epoch: move to the next epoch's order."""
        self.epoch += 1
        self.order = self._order()
