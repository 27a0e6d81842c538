"""Training speed of the book's helpers against the plain recipe a reader would write, side by side.

For each chapter's model, both ways train on the same synthetic images for
the same number of steps, in the same process on the same device. After a
warm-up (tracing, compilation), they are timed in alternating rounds, one
epoch each, input pipeline included, and each way's fastest round is kept (as
``timeit`` does: interference only ever adds time). A shared virtual machine's
speed drifts from minute to minute, and on the 2-core machine this book was
made on an epoch randomly took either its normal time or about 0.9 s longer;
alternating rounds expose both ways to the same drift, and the best round
drops the stalls, which a median of a few rounds does not. Prints a
table of images per second and the ratio ours / plain, and saves one run
record per case (``chapter="bench"``) that the book's "Runs and results"
page lists.

    python benchmarks/bench.py [--cases keras torch] [--steps N] [--rounds R] [--out DIR]

Keras cases and PyTorch cases run in separate processes (TensorFlow and
torch's triton must not share one; see the book's "How to run it").

What differs between the two ways (the rest is identical: model, batch size,
optimizer, data size):

plain (Keras)
    ``keras.applications`` model; images converted to float32 in [0, 1] on the
    host; augmentation with Keras' preprocessing layers (``RandomFlip``,
    ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``) in the model, as
    keras.io's examples do; float32.
ours (Keras)
    ``build_resnet`` + ``with_input_pipeline``: uint8 images go to the device
    and are rescaled there; ``RandomAffine`` (one ``keras.ops`` gather) for the
    same augmentation; ``configure_precision()`` (bf16 on a GPU); ``fit``.
plain (PyTorch)
    ``DataLoader`` over a ``TensorDataset`` of float tensors on the host,
    each batch copied to the device, NCHW, float32.
ours (PyTorch)
    ``torch_loop.fit``: the whole dataset on the device, channels_last,
    bf16 autocast on GPUs that support it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (framework, chapter, model, image side, classes, batch on CPU, batch on GPU)
CASES = {
    "resnet50-64": ("keras", "02", "resnet50", 64, 5, 40, 512),
    "resnet152-32": ("keras", "04", "resnet152", 32, 10, 64, 256),
    "resnet50-transfer": ("keras", "03", "resnet50", 224, 5, 16, 128),
    "mnist-resnet": ("torch", "05", "mnist_resnet", 28, 10, 128, 512),
}
CPU_SIDE = {"resnet50-transfer": 96}  # 224x224 ResNet-50 is minutes per step on a 2-core CPU


def _images(n: int, side: int, channels: int, classes: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8)
    return x, rng.integers(0, classes, n)


def _keras_case(name: str, steps: int, rounds: int, on_gpu: bool) -> dict:
    import keras
    import numpy as np
    from keras import layers

    from resbook.models.keras_resnet import build_resnet
    from resbook.models.keras_transfer import backbone, classifier, freeze
    from resbook.train.keras_fit import RandomAffine, configure_precision, with_input_pipeline

    _, _, depth, side, classes, batch_cpu, batch_gpu = CASES[name]
    side = side if on_gpu else CPU_SIDE.get(name, side)
    batch = batch_gpu if on_gpu else batch_cpu
    x, y = _images(batch * steps, side, 3, classes)
    aug = dict(rotation=20, zoom=0.2, shift=0.1)

    def epoch(model, inputs):
        """One training epoch over ``inputs``; returns its wall time."""
        t0 = time.perf_counter()
        model.fit(inputs, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - t0

    # plain: what keras.io's examples do
    keras.mixed_precision.set_global_policy("float32")
    keras_aug = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(aug["rotation"] / 360),
                                  layers.RandomZoom(aug["zoom"]), layers.RandomTranslation(aug["shift"], aug["shift"])])
    inputs = keras.Input((side, side, 3))
    if name == "resnet50-transfer":
        base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(side, side, 3), pooling="avg")
        base.trainable = False
        out = layers.Dense(classes, activation="softmax")(base(keras_aug(inputs), training=False))
    else:
        app = {"resnet50": keras.applications.ResNet50, "resnet152": keras.applications.ResNet152}[depth]
        out = app(weights=None, input_shape=(side, side, 3), classes=classes)(keras_aug(inputs))
    plain = keras.Model(inputs, out)

    # ours
    policy = configure_precision()
    if name == "resnet50-transfer":
        base = backbone("resnet50", (side, side, 3))
        freeze(base)
        ours = classifier(base, classes, head="modern", augment=RandomAffine(flip=True, **aug))
    else:
        ours = with_input_pipeline(build_resnet(depth, (side, side, 3), classes), RandomAffine(flip=True, **aug))

    ways = {"plain": (plain, x.astype("float32") / 255), "ours": (ours, x)}
    for model, data in ways.values():
        model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        epoch(model, data)  # warm-up: trace and compile
    plain, ours = _alternate({k: (lambda m=m, d=d: epoch(m, d)) for k, (m, d) in ways.items()}, rounds, len(x))
    return {"side": side, "batch": batch, "images": len(x), "plain_img_s": plain, "ours_img_s": ours,
            "ours_precision": policy}


def _torch_case(name: str, steps: int, rounds: int, on_gpu: bool) -> dict:
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from resbook.models.torch_resnet import mnist_resnet
    from resbook.train.torch_loop import as_tensors, autocast_dtype, default_device, fit

    _, _, _, side, classes, batch_cpu, batch_gpu = CASES[name]
    batch = batch_gpu if on_gpu else batch_cpu
    device = default_device()
    x_np, y_np = _images(batch * steps, side, 1, classes)
    x, y = as_tensors(x_np[..., 0], y_np, mean=0.1307, std=0.3081)

    # plain: a DataLoader on the host, NCHW float32, one copy per batch
    torch.manual_seed(0)
    plain_model = mnist_resnet().to(device)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)

    def plain_epoch():
        t0 = time.perf_counter()
        plain_model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            plain_opt.zero_grad()
            F.cross_entropy(plain_model(xb), yb).backward()
            plain_opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    # ours: fit() keeps the data on the device; its epoch time excludes the one-off copy there
    torch.manual_seed(0)
    ours_model = mnist_resnet()
    ours_opt = torch.optim.SGD(ours_model.parameters(), lr=0.01, momentum=0.9)

    def ours_epoch():
        return fit(ours_model, ours_opt, (x, y), epochs=1, batch_size=batch, device=device, verbose=False)["time_s"][0]

    plain_epoch(), ours_epoch()  # warm-up
    plain, ours = _alternate({"plain": plain_epoch, "ours": ours_epoch}, rounds, len(x))
    dtype = autocast_dtype(device)
    return {"side": side, "batch": batch, "images": len(x), "plain_img_s": plain, "ours_img_s": ours,
            "ours_precision": str(dtype).replace("torch.", "") if dtype else "float32"}


def _alternate(epochs: dict, rounds: int, images: int) -> tuple[float, float]:
    """Time ``plain`` and ``ours`` in alternating rounds; images per second of each one's fastest round."""
    seconds = {k: [] for k in epochs}
    for _ in range(rounds):
        for k, epoch in epochs.items():
            seconds[k].append(epoch())
    return tuple(images / min(seconds[k]) for k in ("plain", "ours"))


def run_cases(framework: str, steps: int, rounds: int, out: Path | None) -> list[dict]:
    """Run every case of one framework in this process; save a run record per case."""
    from resbook import records, settings
    if framework == "torch":
        settings.tensorboard_without_tensorflow()
    on_gpu = settings.gpu_name() is not None
    run = settings.describe_run("bench", data=f"synthetic uint8 images, {steps} steps per epoch", steps=steps,
                                rounds=rounds)
    rows = []
    for name, spec in CASES.items():
        if spec[0] != framework:
            continue
        with records.recording(run, name, directory=out, framework=framework, chapter_model=spec[1]) as rec:
            result = (_keras_case if framework == "keras" else _torch_case)(name, steps, rounds, on_gpu)
            result["ratio"] = result["ours_img_s"] / result["plain_img_s"]
            rec.metrics.update(result)
        rows.append({"case": name, **result})
        print(json.dumps({"case": name, **result}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=["keras", "torch"], default=["keras", "torch"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per timed epoch (default: 8 on CPU, 50 on GPU)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the fastest of each way is kept")
    parser.add_argument("--out", type=Path, default=None, help="where run records go (default: $RESBOOK_RUNS or runs/)")
    parser.add_argument("--framework", choices=["keras", "torch"], help=argparse.SUPPRESS)  # one subprocess
    args = parser.parse_args(argv)
    if args.framework:
        from resbook import settings
        steps = args.steps or (50 if settings.gpu_name() else 8)
        run_cases(args.framework, steps, args.rounds, args.out)
        return 0
    rows = []
    for framework in args.cases:  # one process per framework
        cmd = [sys.executable, __file__, "--framework", framework, "--rounds", str(args.rounds)]
        cmd += ["--steps", str(args.steps)] if args.steps else []
        cmd += ["--out", str(args.out)] if args.out else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(proc.stderr[-3000:] if proc.returncode else "")
        if proc.returncode:
            print(f"bench: the {framework} cases failed (exit {proc.returncode}); see the error above.", file=sys.stderr)
            return proc.returncode
        print("\n".join(l for l in proc.stdout.splitlines() if not l.startswith("{")))
        rows += [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    print(f"\n{'case':<20}{'side':>6}{'batch':>7}{'plain img/s':>13}{'ours img/s':>12}{'ratio':>8}")
    for r in rows:
        print(f"{r['case']:<20}{r['side']:>6}{r['batch']:>7}{r['plain_img_s']:>13.1f}{r['ours_img_s']:>12.1f}{r['ratio']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
