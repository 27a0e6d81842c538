"""A PyTorch ``Dataset`` over decoded images: ``uint8[n, h, w, 3]`` arrays in, normalised CHW tensors out.

The arrays come from :func:`resbook.data.folders.load_images` (or any other
loader); the Keras counterpart is :mod:`resbook.data.keras_view`. This module
imports torch and must not import Keras.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ResbookError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's ImageNet weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageArrayDataset(Dataset):
    """Item ``i`` is ``(image, label)``: a float32 ``[3, h, w]`` tensor, normalised, and an int64 tensor.

    The image is scaled to [0, 1], passed through ``transform`` if one is
    given (e.g. torchvision's random flips and crops, which accept tensors),
    then normalised with ``(image - mean) / std`` per channel.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) != len(y):
            raise ResbookError(f"Expected uint8 images [n, h, w, 3] and n labels, got images {x.dtype}{list(x.shape)} "
                               f"and labels {list(y.shape)}: pass the arrays load_images returns.")
        self.x, self.y = x, torch.as_tensor(y, dtype=torch.int64)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return (image - self.mean) / self.std, self.y[i]
