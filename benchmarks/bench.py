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
table of images per second, the ratio ours / plain, and the training
GFLOP/s each way achieves beside this CPU's peak, and saves one run record
per case (``chapter="bench"``) that the book's "Runs and results" page lists.

GFLOP/s = training FLOPs per image x images per second. Training FLOPs are
3 x the forward pass's (backward costs about twice the forward), counting the
multiply-adds of convolutions and dense layers (2 FLOPs each); a frozen
layer costs its forward pass only. The peak is cores x clock x FLOPs per
cycle per core of the instruction set the precision runs on
(:func:`peak_gflops`); a GPU's peak is not computed.

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
    same augmentation; ``configure_precision()`` (``mixed_bfloat16`` where the
    device computes bf16 natively). Both end in logits and are compiled alike
    (Adam and ``SparseCategoricalCrossentropy(from_logits=True)``, the loss
    ``resbook.train.keras_fit.fit`` uses) and trained with ``model.fit``
    directly, without ``keras_fit.fit``'s print and epoch timer, so only what
    the book changes is measured.
plain (PyTorch)
    ``DataLoader`` over a ``TensorDataset`` of float tensors on the host,
    each batch copied to the device, NCHW, float32.
ours (PyTorch)
    ``torch_loop.fit``: the whole dataset on the device, channels_last,
    bf16 autocast where the device computes bf16 natively.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent



@dataclass(frozen=True)
class Case:
    """One chapter's model, timed both ways."""

    framework: str  # "keras" or "torch" (separate processes)
    chapter: str
    model: str
    side: int  # image side on a GPU
    classes: int
    batch_cpu: int
    batch_gpu: int
    side_cpu: int | None = None  # a smaller side where the chapter's is minutes per step on a 2-core CPU

    def shape(self, on_gpu: bool) -> tuple[int, int]:
        """``(image side, batch)`` on this device."""
        return (self.side, self.batch_gpu) if on_gpu else (self.side_cpu or self.side, self.batch_cpu)


# On a CPU each case trains at its chapter's batch size.
CASES = {
    "resnet56-28": Case("torch", "01", "cifar_resnet56", 28, 10, batch_cpu=128, batch_gpu=512),
    "resnet50-64": Case("keras", "02", "resnet50", 64, 5, batch_cpu=40, batch_gpu=512),
    "resnet50-transfer": Case("keras", "04", "resnet50", 224, 5, batch_cpu=32, batch_gpu=128, side_cpu=96),
    "resnet152-32": Case("keras", "05", "resnet152", 32, 10, batch_cpu=128, batch_gpu=256),
    "mnist-resnet": Case("torch", "06", "mnist_resnet", 28, 10, batch_cpu=128, batch_gpu=512),
}


def flops_per_cycle(precision: str, flags: set[str] | frozenset[str], vendor: str = "", family: int = 0) -> int:
    """Peak FLOPs per cycle of one core for ``precision`` (``'float32'``/``'bfloat16'``) on this instruction set.

    Two FMA pipes of the vector width (2 FLOPs per lane): 512-bit with
    AVX-512, except AMD Zen 4 (family 25), which runs AVX-512 on 256-bit
    pipes; 256-bit with AVX2. bf16 dot products (``avx512_bf16``) do twice the
    FLOPs of an FP32 FMA per instruction; Intel's AMX tiles 1024 bf16 FLOPs
    per cycle. No FMA: 1 FLOP per cycle (a generic guess).
    """
    if precision == "bfloat16" and "amx_bf16" in flags:
        return 1024
    if "avx512f" in flags:
        bits = 256 if vendor == "AuthenticAMD" and family == 25 else 512
    elif "fma" in flags:
        bits = 256
    else:
        return 1
    fp32 = 2 * (bits // 32) * 2
    return 2 * fp32 if precision == "bfloat16" and "avx512_bf16" in flags else fp32


def peak_gflops(precision: str) -> float | None:
    """cores x clock (``cpu MHz`` of /proc/cpuinfo, the base clock) x :func:`flops_per_cycle`; None off Linux."""
    from resbook import settings
    info = settings.cpu_info()
    if "cpu MHz" not in info:
        return None
    per_cycle = flops_per_cycle(precision, set(info.get("flags", "").split()), info.get("vendor_id", ""),
                                int(info.get("cpu family", 0) or 0))
    return os.cpu_count() * float(info["cpu MHz"]) / 1000 * per_cycle


def _images(n: int, side: int, channels: int, classes: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8)
    return x, rng.integers(0, classes, n)


KERAS_AUGMENT = dict(rotation=20, zoom=0.2, shift=0.1)  # the chapters' augmentation, both ways


def _plain_keras_model(name: str, side: int, classes: int):
    """What keras.io's examples do: a keras.applications model behind Keras' preprocessing layers, float32."""
    import keras
    from keras import layers

    keras.mixed_precision.set_global_policy("float32")
    aug = KERAS_AUGMENT
    augment = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(aug["rotation"] / 360),
                                layers.RandomZoom(aug["zoom"]), layers.RandomTranslation(aug["shift"], aug["shift"])])
    inputs = keras.Input((side, side, 3))
    if name == "resnet50-transfer":
        base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(side, side, 3), pooling="avg")
        base.trainable = False
        out = layers.Dense(classes)(base(augment(inputs), training=False))
    else:
        app = {"resnet50": keras.applications.ResNet50, "resnet152": keras.applications.ResNet152}[CASES[name].model]
        model = app(weights=None, input_shape=(side, side, 3), classes=classes, classifier_activation=None)
        out = model(augment(inputs))
    return keras.Model(inputs, out)


def _our_keras_model(name: str, side: int, classes: int):
    """The book's way: configure_precision, then our model taking uint8 images, with RandomAffine."""
    from resbook.models.keras_resnet import build_resnet
    from resbook.models.keras_transfer import backbone, classifier, freeze
    from resbook.train.keras_fit import RandomAffine, configure_precision, with_input_pipeline

    configure_precision()
    augment = RandomAffine(flip=True, **KERAS_AUGMENT)
    if name == "resnet50-transfer":
        base = backbone("resnet50", (side, side, 3))
        freeze(base)
        return classifier(base, classes, head="modern", augment=augment)
    return with_input_pipeline(build_resnet(CASES[name].model, (side, side, 3), classes), augment)


def _keras_case(name: str, steps: int, rounds: int, on_gpu: bool) -> dict:
    """Build both ways, compile them alike, warm them up, count our FLOPs, then time alternating epochs."""
    import keras

    side, batch = CASES[name].shape(on_gpu)
    classes = CASES[name].classes
    x, y = _images(batch * steps, side, 3, classes)
    ways = {"plain": (_plain_keras_model(name, side, classes), x.astype("float32") / 255),
            "ours": (_our_keras_model(name, side, classes), x)}

    def epoch(model, inputs):
        """One training epoch over ``inputs``; returns its wall time."""
        t0 = time.perf_counter()
        model.fit(inputs, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - t0

    for model, data in ways.values():
        model.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        epoch(model, data)  # warm-up: trace and compile
    flops = keras_train_flops(ways["ours"][0])
    plain_img_s, ours_img_s = _alternate({k: (lambda m=m, d=d: epoch(m, d)) for k, (m, d) in ways.items()},
                                         rounds, len(x))
    policy = ways["ours"][0].dtype_policy.name
    return {"side": side, "batch": batch, "images": len(x), "plain_img_s": plain_img_s, "ours_img_s": ours_img_s,
            "ours_precision": "bfloat16" if "bfloat16" in policy else "float32",
            "train_gflop_per_image": flops / 1e9}


def keras_train_flops(model) -> float:
    """Training FLOPs per image of a Keras model: 3 x forward for trainable layers, 1 x for frozen ones.

    Counts convolutions and dense layers (2 FLOPs per multiply-add), walking
    into nested models (a frozen backbone inside a classifier).
    """
    import keras
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # freezing a model freezes each of its layers
            total += keras_train_flops(layer)
            continue
        if isinstance(layer, keras.layers.Conv2D):
            h, w = layer.output.shape[1:3]
            forward = 2 * h * w * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            forward = 2 * math.prod(layer.kernel.shape)
        else:
            continue
        total += forward * (3 if layer.trainable else 1)
    return total


def _torch_case(name: str, steps: int, rounds: int, on_gpu: bool) -> dict:
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.flop_counter import FlopCounterMode

    from resbook import settings
    from resbook.data.mnist import MNIST_MEAN, MNIST_STD
    from resbook.models.torch_resnet import cifar_resnet, mnist_resnet
    from resbook.train.torch_loop import as_tensors, autocast_dtype, default_device, fit

    case = CASES[name]
    side, batch = case.shape(on_gpu)
    classes = case.classes
    device = default_device()
    x_np, y_np = _images(batch * steps, side, 1, classes)
    x, y = as_tensors(x_np[..., 0], y_np, mean=MNIST_MEAN, std=MNIST_STD)

    def build():
        settings.seed_everything(0)  # the same initial weights both ways
        return cifar_resnet(56, in_channels=1) if case.model == "cifar_resnet56" else mnist_resnet()

    # plain: a DataLoader on the host, NCHW float32, one copy per batch
    plain_model = build().to(device)
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
    ours_model = build()
    ours_opt = torch.optim.SGD(ours_model.parameters(), lr=0.01, momentum=0.9)

    def ours_epoch():
        return fit(ours_model, ours_opt, (x, y), epochs=1, batch_size=batch, device=device, verbose=False)["time_s"][0]

    plain_epoch(), ours_epoch()  # warm-up
    plain, ours = _alternate({"plain": plain_epoch, "ours": ours_epoch}, rounds, len(x))
    dtype = autocast_dtype(device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # one image, forward only
        plain_model.eval()(x[:1].to(device))
    return {"side": side, "batch": batch, "images": len(x), "plain_img_s": plain, "ours_img_s": ours,
            "ours_precision": "bfloat16" if dtype else "float32",
            "train_gflop_per_image": 3 * counter.get_total_flops() / 1e9}


def _alternate(epochs: dict, rounds: int, images: int) -> tuple[float, float]:
    """Time ``plain`` and ``ours`` in alternating rounds; images per second of each one's fastest round."""
    seconds = {k: [] for k in epochs}
    for _ in range(rounds):
        for k, epoch in epochs.items():
            seconds[k].append(epoch())
    return tuple(images / min(seconds[k]) for k in ("plain", "ours"))


def _gflops(result: dict, on_gpu: bool) -> dict:
    """Achieved training GFLOP/s each way, and (on a CPU) the peak for each way's precision."""
    per_image = result["train_gflop_per_image"]
    out = {"plain_gflop_s": per_image * result["plain_img_s"], "ours_gflop_s": per_image * result["ours_img_s"]}
    if not on_gpu:
        plain_peak, ours_peak = peak_gflops("float32"), peak_gflops(result["ours_precision"])
        if plain_peak and ours_peak:
            out.update(plain_of_peak=out["plain_gflop_s"] / plain_peak, peak_gflop_s_float32=plain_peak,
                       ours_of_peak=out["ours_gflop_s"] / ours_peak, peak_gflop_s_ours=ours_peak)
    return out


def run_cases(framework: str, steps: int, rounds: int, out: Path | None) -> list[dict]:
    """Run every case of one framework in this process; save a run record per case."""
    from resbook import records, settings
    if framework == "torch":
        settings.tensorboard_without_tensorflow()
    on_gpu = settings.gpu_name() is not None
    run = settings.describe_run("bench", data=f"synthetic uint8 images, {steps} steps per epoch", steps=steps,
                                rounds=rounds)
    rows = []
    for name, case in CASES.items():
        if case.framework != framework:
            continue
        with records.recording(run, name, directory=out, framework=framework, chapter_model=case.chapter) as rec:
            result = (_keras_case if framework == "keras" else _torch_case)(name, steps, rounds, on_gpu)
            result["ratio"] = result["ours_img_s"] / result["plain_img_s"]
            result.update(_gflops(result, on_gpu))
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
    print(f"\n{'case':<20}{'side':>6}{'batch':>7}{'plain img/s':>13}{'ours img/s':>12}{'ratio':>8}"
          f"{'ours':>10}{'plain GFLOP/s':>15}{'ours GFLOP/s':>14}")
    for r in rows:
        of_peak = lambda way: f" ({r[way + '_of_peak']:.0%})" if way + "_of_peak" in r else ""  # noqa: E731
        print(f"{r['case']:<20}{r['side']:>6}{r['batch']:>7}{r['plain_img_s']:>13.1f}{r['ours_img_s']:>12.1f}"
              f"{r['ratio']:>8.2f}{r['ours_precision']:>10}{r['plain_gflop_s']:>9.0f}{of_peak('plain'):>6}"
              f"{r['ours_gflop_s']:>8.0f}{of_peak('ours'):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
