"""Chapter 5's pieces: padded digits into a frozen ResNet-152 with the article's dense head, and a
small end-to-end network that learns the padded digits."""

import keras
import numpy as np

from resbook.data.generated import make_digits
from resbook.data.mnist import pad_to_rgb32
from resbook.models.keras_transfer import backbone, classifier, count_parameters, freeze
from resbook.train.keras_fit import RandomAffine, train_from_scratch

SMALL = [1, 1, 1, 1]  # a bottleneck ResNet with one block per stage: small and fast


def test_frozen_resnet152_trains_only_the_dense_head():
    base = backbone("resnet152", (32, 32, 3), pooling=None)
    freeze(base)
    model = classifier(base, classes=10, head="dense")
    assert model.count_params() == count_parameters(model) == 58_370_944 + 2048 * 10 + 10
    assert count_parameters(model, trainable_only=True) == 2048 * 10 + 10
    x = pad_to_rgb32(make_digits(4)[0])
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_the_from_scratch_recipe_learns_padded_generated_digits():
    """train_from_scratch, as chapters 4 and 5 run it: zero-initialised residual branches, warm-up then cosine."""
    (x, y), (xv, yv) = make_digits(300, seed=0), make_digits(100, seed=1)
    x, xv = pad_to_rgb32(x), pad_to_rgb32(xv)
    augment = RandomAffine(flip=False, rotation=10, shift=0.1, seed=0)
    seen = []
    epochs_seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    model, hist = train_from_scratch(SMALL, (x, y), (xv, yv), classes=10, epochs=5, batch_size=50, learning_rate=1e-3,
                                     augment=augment, callbacks=[epochs_seen])
    assert seen == [0, 1, 2, 3, 4]  # the caller's callbacks run (chapter 4's exercise 6 stops the schedule early)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert np.isfinite(hist["val_loss"]).all() and model.output_shape == (None, 10)
    zeroed = [l for l in model.layers[-1].layers if l.name.endswith("_3_bn")]
    assert len(zeroed) == 4 and model.layers[-1].get_layer("predictions").activation is keras.activations.linear
