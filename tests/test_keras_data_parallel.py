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
    settings = dict(data=str(data), epochs=2, batch_size=32, frozen_batchnorm=True, snapshot_steps=[1, 3])
    one = kdp.launch(settings, tmp_path / "one", devices=1, timeout_s=300, verbose=False)
    two = kdp.launch(settings, tmp_path / "two", devices=2, timeout_s=300, verbose=False)
    assert (one["devices"], two["devices"]) == (1, 2) and two["platform"] == "cpu"
    a, b = np.load(tmp_path / "one" / "final.npz"), np.load(tmp_path / "two" / "final.npz")
    assert a.files == b.files and len(a.files) > 100
    difference = kdp.distance(a, b)
    assert one["distance_moved"] > 0.01, "the weights must have moved for the comparison to mean anything"
    assert difference < 1e-4 * one["distance_moved"]
    assert np.allclose(one["history"]["loss"], two["history"]["loss"], rtol=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").glob("step-*.npz")) == ["step-1.npz", "step-3.npz"]
    third = np.load(tmp_path / "one" / "step-3.npz")
    assert sorted(third.files) == sorted(one["trainable"]) and 0 < len(third.files) < len(a.files)
    start = np.load(tmp_path / "one" / "initial.npz")
    moved = kdp.distance(a, start, keys=one["trainable"])
    assert np.isclose(moved, one["distance_moved"])  # final.npz holds the weights the result measured
    assert max(float(np.abs(third[k] - a[k]).max()) for k in third.files) > 0, "step 3 is not the end of the run"


def test_with_batchnorm_training_one_and_two_devices_take_the_same_first_step(data, tmp_path):
    """Keras normalises over the whole batch on any number of devices, so even BatchNorm in training mode agrees."""
    settings = dict(data=str(data), epochs=1, batch_size=32, snapshot_steps=[1])
    runs = [kdp.launch(settings, tmp_path / str(d), devices=d, timeout_s=300, verbose=False) for d in (1, 2)]
    start, a, b = (np.load(tmp_path / name) for name in ("1/initial.npz", "1/step-1.npz", "2/step-1.npz"))
    moved, difference = kdp.distance(a, start), kdp.distance(a, b)
    assert moved > 0.01 and runs[0]["trainable"] == runs[1]["trainable"]
    assert difference < 1e-4 * moved


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
