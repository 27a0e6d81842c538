"""Keras 3 data parallelism (keras.distribution.DataParallel) on two JAX host devices, in a child process."""

import subprocess
import sys

import numpy as np
import pytest

from resbook.errors import ResbookError
from resbook.train import keras_data_parallel as kdp


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 96)
    path = tmp_path_factory.mktemp("kdp") / "digits.npz"
    np.savez(path, x_train=x[:64], y_train=y[:64], x_val=x[64:], y_val=y[64:])
    return path


def test_two_devices_with_half_batches_train_the_weights_one_device_trains(data, tmp_path):
    settings = dict(data=str(data), epochs=2, batch_size=32, frozen_batchnorm=True)
    one = kdp.launch(settings, tmp_path / "one", devices=1, timeout_s=300, verbose=False)
    two = kdp.launch(settings, tmp_path / "two", devices=2, timeout_s=300, verbose=False)
    assert (one["devices"], two["devices"]) == (1, 2) and two["platform"] == "cpu"
    a, b = np.load(tmp_path / "one" / "final.npz"), np.load(tmp_path / "two" / "final.npz")
    assert a.files == b.files and len(a.files) > 100
    difference = np.sqrt(sum(float(np.sum((a[k] - b[k]) ** 2)) for k in a.files))
    assert one["distance_moved"] > 0.01, "the weights must have moved for the comparison to mean anything"
    assert difference < 1e-4 * one["distance_moved"]
    assert np.allclose(one["history"]["loss"], two["history"]["loss"], rtol=1e-5)


def test_settings_that_cannot_work_get_one_sentence_before_anything_starts(data, tmp_path, one_sentence):
    for settings, devices, says in ((dict(data=str(data), batch_size=33), 2, "does not split evenly over 2 devices"),
                                    (dict(data=str(data), optimizer="adam"), 2, "unknown setting(s) optimizer"),
                                    (dict(data=str(tmp_path / "none.npz")), 2, "does not exist"),
                                    (dict(data=str(data)), 0, "devices must be a positive number")):
        with pytest.raises(ResbookError) as err:
            kdp.launch(settings, tmp_path / "run", devices=devices, timeout_s=30, verbose=False)
        assert says in one_sentence(str(err.value))
    assert not (tmp_path / "run").exists()


def test_the_launcher_loads_no_framework_so_a_pytorch_notebook_can_call_it():
    code = ("import sys, torch, resbook.train.keras_data_parallel\n"
            "print(*(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr[-1000:]
