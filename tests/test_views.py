"""The PyTorch and Keras views of decoded image arrays (both frameworks in one process: see conftest.py)."""

import subprocess
import sys

import numpy as np
import pytest

from resbook.errors import ResbookError


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), np.arange(10, dtype=np.int64) % 3


def test_torch_view_gives_normalised_chw_tensors(arrays):
    import torch
    from torch.utils.data import DataLoader

    from resbook.data.torch_view import ImageArrayDataset
    x, y = arrays
    ds = ImageArrayDataset(x, y, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image, label = ds[3]
    assert len(ds) == 10 and image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label) == y[3]
    expected = (x[3, 2, 5, 1] / 255 - 0.5) / 0.25
    assert image[1, 2, 5].item() == pytest.approx(expected, abs=1e-6)
    flipped = ImageArrayDataset(x, y, mean=(0.5,) * 3, std=(0.25,) * 3, transform=lambda t: t.flip(-1))[3][0]
    assert torch.equal(flipped, image.flip(-1))
    images, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and labels.tolist() == y[:4].tolist()


def test_keras_view_gives_float_batches_shuffled_per_epoch(arrays):
    import keras

    from resbook.data.keras_view import ImageArrayBatches
    x, y = arrays
    ds = ImageArrayBatches(x, y, batch_size=4, seed=1)
    assert len(ds) == 3
    batches = [ds[i] for i in range(len(ds))]
    assert [b[0].shape for b in batches] == [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    first = np.concatenate([b[1] for b in batches])
    assert sorted(first.tolist()) == sorted(y.tolist())  # every image once per epoch
    order = ds.order.copy()
    ds.on_epoch_end()
    assert not np.array_equal(ds.order, order)
    assert np.array_equal(ImageArrayBatches(x, y, batch_size=4, seed=1).order, order)  # seeded
    assert np.array_equal(ImageArrayBatches(x, y, shuffle=False).order, np.arange(10))
    scaled = ImageArrayBatches(x, y, batch_size=10, shuffle=False, preprocess=lambda b: b / 255)[0][0]
    assert scaled.max() <= 1 and np.allclose(scaled, x / 255)

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and ds.epoch >= 2


@pytest.mark.parametrize("view", ["torch_view.ImageArrayDataset", "keras_view.ImageArrayBatches"])
def test_views_refuse_wrong_arrays(view, one_sentence):
    module, name = view.split(".")
    cls = getattr(__import__(f"resbook.data.{module}", fromlist=[name]), name)
    with pytest.raises(ResbookError, match="pass the arrays load_images returns") as err:
        cls(np.zeros((4, 8, 8), np.uint8), np.zeros(4))
    one_sentence(str(err.value))


@pytest.mark.parametrize("module, forbidden", [("torch_view", ("keras", "tensorflow")),
                                               ("keras_view", ("torch",))])
def test_views_never_import_the_other_framework(module, forbidden):
    code = f"import sys, resbook.data.{module}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
