"""Data-parallel training with Keras 3: ``keras.distribution.DataParallel`` on the JAX backend's devices.

Keras' distribution API does in one process what ``torchrun`` does with
many: the variables are replicated on every device of a device mesh, each
batch is split along its first axis across the devices, and JAX's compiler
inserts the all-reduce of the gradients. A BatchNorm layer's batch mean and
variance are therefore computed over the *whole* batch, as PyTorch's
``SyncBatchNorm`` does, not per device. On one machine the mesh is all its
GPUs; on several, ``keras.distribution.initialize()`` joins them first (JAX's
multi-process set-up), and the same code runs unchanged.

A backend is chosen when Keras is first imported, and the number of host
devices when JAX starts, so a run happens in a fresh Python process:
:func:`launch` (which imports neither Keras nor JAX, so a PyTorch notebook
can call it) writes the settings to a JSON file and runs ``python -m
resbook.train.keras_data_parallel SETTINGS.json`` with ``KERAS_BACKEND=jax``
and, on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N``,
which splits the processor into N JAX devices; :func:`main` trains a ResNet
of :func:`resbook.models.keras_resnet.build_resnet` on arrays from an
``.npz`` file and writes the result and the final weights beside the settings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ResbookError
from ..files import atomic_write
from ..processes import check_launch_settings, run_with_deadline

BACKEND = "jax"  # the Keras backend every run of this module uses (its processes are started with it)

DEFAULTS: dict[str, Any] = dict(
    epochs=2, batch_size=128, lr=0.05, momentum=0.9, blocks=[1, 1, 1, 1], seed=0, frozen_batchnorm=False,
    precision="float32", snapshot_steps=(),
)


def launch(settings: dict[str, Any], out: str | os.PathLike, devices: int = 2, *, timeout_s: float = 600,
           verbose: bool = True) -> dict[str, Any]:
    """Train with Keras on ``devices`` JAX devices in a new process and return its result.

    ``settings`` override :data:`DEFAULTS` and name the data (``data``: an
    ``.npz`` with ``x_train, y_train, x_val, y_val``, uint8 images ``[n, H, W]``
    and integer labels); ``batch_size`` is the global batch, split across the
    devices. ``out`` is the run's folder: the settings, ``result.json`` and
    ``final.npz`` (every weight, by its path in the model: BatchNorm's moving
    statistics too) go there, ``initial.npz`` and ``step-N.npz`` (the
    trainable weights before training and after step N, counted from the
    run's start) for each N of ``settings['snapshot_steps']``; the result's
    ``trainable`` lists the paths of the trainable weights and
    ``distance_moved`` is how far training moved them (the Euclidean norm of
    final minus initial), the scale against which two runs' differences are
    small or not. The
    process is stopped after ``timeout_s`` seconds; a failure raises a
    :class:`~resbook.errors.ResbookError` that says what went wrong.
    """
    check_launch_settings(settings, DEFAULTS, "a Keras data-parallel run")
    if not isinstance(devices, int) or devices < 1:
        raise ResbookError(f"devices must be a positive number of JAX devices, not {devices!r}.")
    batch = settings.get("batch_size", DEFAULTS["batch_size"])
    if batch % devices:
        raise ResbookError(f"the batch of {batch} does not split evenly over {devices} devices: make batch_size a "
                           "multiple of the device count.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "final.npz", "initial.npz", "error.txt", *(p.name for p in out.glob("step-*.npz"))):
        (out / stale).unlink(missing_ok=True)
    run = {**DEFAULTS, **settings, "devices": devices, "out": str(out.absolute())}
    config = out / "settings.json"
    config.write_text(json.dumps(run, indent=1))
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TQDM_DISABLE": "1",
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()}
    done = run_with_deadline([sys.executable, "-m", __name__, str(config)], timeout_s, env, verbose)
    if (out / "error.txt").exists():
        raise ResbookError((out / "error.txt").read_text().strip())
    if done.returncode is None:
        raise ResbookError(f"the Keras run on {devices} device(s) did not finish within {timeout_s:g} s and was "
                           "stopped: give it more time (timeout_s).")
    if done.returncode != 0:
        last = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise ResbookError(f"the Keras run on {devices} device(s) stopped with exit code {done.returncode} "
                           f"(last line: {last[:200]}).")
    return json.loads((out / "result.json").read_text())


def main(argv: list[str] | None = None) -> int:
    """The training process: ``python -m resbook.train.keras_data_parallel SETTINGS.json`` (see :func:`launch`)."""
    argv = sys.argv[1:] if argv is None else argv
    run = json.loads(Path(argv[0]).read_text())
    out = Path(run["out"])
    try:
        result = _train(run, out)
    except ResbookError as exc:
        (out / "error.txt").write_text(f"{exc}\n")
        return 1
    with atomic_write(out / "result.json", "w") as f:
        json.dump(result, f, indent=1)
    return 0


def distance(a, b, keys=None) -> float:
    """The Euclidean distance between two sets of weights, in float64 over ``keys`` (default: all of ``a``'s).

    ``a`` and ``b`` map weight paths to arrays, as the ``.npz`` files of a run
    do (``initial.npz``, ``step-N.npz``, ``final.npz``).
    """
    import numpy as np

    return float(np.sqrt(sum(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2)
                             for k in (a if keys is None else keys))))


def _train(run: dict[str, Any], out: Path) -> dict[str, Any]:
    import jax
    import keras
    import numpy as np

    from .. import settings
    from ..models.keras_resnet import build_resnet
    from .keras_fit import configure_precision, fit

    if keras.backend.backend() != BACKEND:
        raise ResbookError(f"Keras' backend here is {keras.backend.backend()}, not {BACKEND}: run with "
                           f"KERAS_BACKEND={BACKEND} (launch() sets it).")
    devices = jax.devices()
    if len(devices) < run["devices"]:
        raise ResbookError(f"{run['devices']} devices were asked for and JAX sees {len(devices)} "
                           f"({devices[0].platform}): ask for at most {len(devices)}.")
    devices = devices[:run["devices"]]
    try:
        arrays = np.load(run["data"])
        x_train, y_train, x_val, y_val = (arrays[k] for k in ("x_train", "y_train", "x_val", "y_val"))
    except (OSError, KeyError, ValueError) as exc:
        raise ResbookError(f"the data file {run['data']} is not an .npz with x_train, y_train, x_val, y_val "
                           f"({type(exc).__name__}).") from None
    # Scaled to [0, 1] here, once: uint8 batches fed to a Rescaling layer came out a rounding apart on one and on
    # two devices (Keras 3.15, JAX 0.10), which is enough for the runs to drift apart.
    x_train, x_val = ((x[..., None] if x.ndim == 3 else x).astype("float32") / 255 for x in (x_train, x_val))

    if len(devices) > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    policy = configure_precision(run["precision"])
    settings.seed_everything(run["seed"])
    model = build_resnet(run["blocks"], input_shape=x_train.shape[1:], classes=int(y_train.max()) + 1)
    if run["frozen_batchnorm"]:  # inference-mode BatchNorm: a fixed per-channel affine map
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    print(f"{len(devices)} {devices[0].platform} device(s), batch {run['batch_size']} "
          f"({run['batch_size'] // len(devices)} per device), {policy}, {model.count_params():,} parameters", flush=True)

    def arrays(variables) -> dict[str, np.ndarray]:
        return {w.path: np.array(keras.ops.convert_to_numpy(w)) for w in variables}

    class Snapshots(keras.callbacks.Callback):
        """Saves the trainable weights after each step of ``snapshot_steps`` (steps counted from the run's start)."""

        step = 0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step in run["snapshot_steps"]:  # self.model (not model): on JAX, it brings the weights up to date
                np.savez(out / f"step-{self.step}.npz", **arrays(self.model.trainable_weights))

    initial = arrays(model.trainable_weights)
    np.savez(out / "initial.npz", **initial)
    history = fit(model, (x_train, y_train), (x_val, y_val), epochs=run["epochs"], batch_size=run["batch_size"],
                  optimizer=keras.optimizers.SGD(run["lr"], momentum=run["momentum"]), verbose=2,
                  callbacks=[Snapshots()])
    final = arrays(model.weights)
    np.savez(out / "final.npz", **final)
    moved = distance(final, initial, keys=initial)
    return {"devices": len(devices), "platform": devices[0].platform, "global_batch": run["batch_size"],
            "parameters": int(model.count_params()), "history": history, "distance_moved": moved,
            "trainable": list(initial)}


if __name__ == "__main__":
    sys.exit(main())
