"""A small, fast PyTorch train/eval loop for datasets that fit in memory.

:func:`fit` is what the PyTorch chapters call. It keeps the whole dataset as
tensors on the training device (MNIST-sized data fits easily, and per-batch
host-to-device copies are what make small-batch GPU training launch-bound),
picks the fast path and says what it picked (bf16 autocast where the device
computes bf16 natively, see :func:`resbook.settings.precision`; channels_last
memory format), shows a progress bar, prints one line per
epoch, and can checkpoint every epoch and resume an interrupted run.

The same :func:`fit` trains a ``DistributedDataParallel`` model in every
process of a ``torchrun`` launch (see :mod:`resbook.train.torch_ddp`): when
``torch.distributed`` is initialised, each process takes its share of every
epoch from a ``DistributedSampler`` (the same sampler, with ``world_size``
1, orders the examples of a single-process run), the epoch's loss and
accuracy are averaged over the processes, only rank 0 prints and writes
checkpoints, and every rank resumes from them.

History is a dict of per-epoch lists, like Keras' ``History.history``:
``epoch, loss, accuracy, val_loss, val_accuracy, time_s`` plus ``step_loss``
(one value per optimisation step).

Also here: :func:`random_shift`, an augmentation that works on a batch
already on the device (``fit(..., augment=...)``). ``fit(...,
on_epoch_end=...)`` is the hook a chapter logs with: chapter 6 writes its
TensorBoard logging there, with ``torch.utils.tensorboard``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data.distributed import DistributedSampler

from ..errors import ResbookError
from ..files import atomic_write
from .. import settings
from ..settings import progress_bar

Batch = tuple[torch.Tensor, torch.Tensor]


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str | None = None) -> torch.dtype | None:
    """The ``torch.autocast`` dtype for ``device``: ``torch.bfloat16``, or None for float32.

    ``precision`` is :func:`resbook.settings.precision`'s choice (``'auto'``,
    ``'float32'``, ``'bfloat16'``; default ``$RESBOOK_PRECISION`` or
    ``'auto'``): ``'auto'`` is bf16 on a GPU that supports it and on a CPU with
    native bf16 instructions, float32 elsewhere.
    """
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else settings.cpu_bf16() is not None
    return torch.bfloat16 if settings.precision(precision, native_bf16=native) == "bfloat16" else None


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
            order: torch.Tensor | None = None) -> Iterator[Batch]:
    """Yield ``(x, y)`` mini-batches from in-memory tensors, in ``order`` (indices) if given."""
    n = len(x) if order is None else len(order)
    for start in range(0, n, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` unless ``torch.distributed`` is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Optimisation steps in an epoch of ``n`` examples at ``batch_size`` per process, as :func:`epoch_order` shares
    them out (each of ``world_size`` processes gets ``ceil(n / world_size)`` indices)."""
    per_process = -(-n // world_size)  # ceiling divisions
    return -(-per_process // batch_size)


def epoch_order(n: int, epoch: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The indices this process trains on in ``epoch``, from a ``DistributedSampler`` over ``n`` examples.

    Every process draws the same permutation (seeded with ``seed + epoch``,
    ``set_epoch``) and takes every ``world_size``-th index from position
    ``rank`` on, the permutation padded by repeating its start when ``n`` does
    not divide evenly. So the first batch of ``b`` examples on each of two
    processes holds exactly the first ``2b`` examples a single process
    (``world_size=1``) trains on.
    """
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def _prepare(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             device: torch.device | None = None, precision: str | None = None,
             channels_last: bool = True) -> dict[str, float | torch.Tensor]:
    """Loss, accuracy and predicted classes of ``model`` on ``(x, y)`` in eval mode."""
    device = device or next(model.parameters()).device
    dtype = autocast_dtype(device, precision)
    model.eval()
    total, correct, loss_sum, preds = 0, 0, 0.0, []
    for xb, yb in batches(x, y, batch_size):
        xb, yb = _prepare(xb, device, channels_last), yb.to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").item()
        p = logits.argmax(1)
        correct += (p == yb).sum().item()
        total += len(yb)
        preds.append(p.cpu())
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1),
            "predictions": torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (``model.module``); any other model as it is."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_checkpoint(path: str | os.PathLike, **state) -> None:
    """``torch.save(state)`` to ``path`` through :func:`resbook.files.atomic_write`: never a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`fit`, with a one-sentence error if it is not one."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ResbookError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                           "delete it to start the run afresh.") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise ResbookError(f"{path} is not a resbook checkpoint (no model/epoch entries); "
                           "delete it to start the run afresh.")
    return state


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train: Batch, val: Batch | None = None,
        epochs: int = 10, batch_size: int = 128, scheduler=None, device: torch.device | None = None,
        precision: str | None = None, channels_last: bool = True, seed: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        checkpoint: str | os.PathLike | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        on_step_end: Callable[[int], None] | None = None,
        verbose: bool = True, name: str = "") -> dict[str, list]:
    """Train ``model`` on in-memory tensors ``train = (x, y)`` and return its history.

    Every epoch is three steps: one pass of training over the shuffled data,
    :func:`evaluate` on ``val`` (if given), and :func:`save_checkpoint` (with
    ``checkpoint``). ``batch_size`` is per process: under ``torchrun`` with N
    processes a step sees ``N * batch_size`` examples. ``scheduler`` is stepped
    once per optimisation step (e.g. OneCycleLR). ``augment`` maps a batch of inputs on the device to an
    augmented batch. With ``checkpoint``, the model, optimizer, scheduler and
    history are saved after every epoch, and a later call with the same path
    resumes after the last finished epoch. ``on_epoch_end(epoch, history)``
    is called after each epoch (chapter 6 logs to TensorBoard with it);
    ``on_step_end(step)`` after every optimizer step, with the number of steps
    the run has taken (counting those of the epochs it resumed after).

    ``fit`` seeds no global random generator: a run is seeded once, by
    :func:`resbook.settings.seed_everything` (which
    :func:`resbook.settings.describe_run` calls), and the initial weights and
    ``augment``'s draws come from there. Only the order of the examples is
    drawn by :func:`epoch_order`, seeded from ``seed`` and the epoch, so that
    a resumed run shuffles exactly as an uninterrupted one.
    """
    device = device or default_device()
    dtype = autocast_dtype(device, precision)
    rank, world = rank_and_world()
    verbose = verbose and rank == 0
    prefix = f"{name}: " if name else ""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x_train, y_train = train[0].to(device), train[1].to(device)
    val = None if val is None else (val[0].to(device), val[1].to(device))
    history, start_epoch = _resume(checkpoint, unwrap(model), optimizer, scheduler, device)
    if verbose and start_epoch:
        print(f"{prefix}resumed from {settings.display_path(checkpoint)} after epoch {start_epoch}")
    elif verbose:
        where = settings.device_description() if device.type == "cpu" else device.type
        per = f"{world} processes x batch {batch_size}" if world > 1 else f"batch {batch_size}"
        print(f"{prefix}training on {where} with {'float32' if dtype is None else 'bf16 autocast'}"
              f"{', channels_last' if channels_last else ''}, {per}, {len(x_train)} examples")
    per_epoch = steps_per_epoch(len(x_train), batch_size, world)
    bar = progress_bar(total=per_epoch * (epochs - start_epoch), show=verbose, desc=name or "train", leave=False)
    steps_done = [start_epoch * per_epoch]

    def step_done(n: int) -> None:
        bar.update(n)
        steps_done[0] += n
        if on_step_end is not None:
            on_step_end(steps_done[0])

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = epoch_order(len(x_train), epoch, seed, rank, world).to(device)
        scores = _train_epoch(model, optimizer, x_train, y_train, batch_size, order, scheduler=scheduler,
                              augment=augment, dtype=dtype, channels_last=channels_last, on_step=step_done)
        if val is not None:
            ev = evaluate(model, *val, device=device, precision=precision, channels_last=channels_last)
            scores.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"])
        history["step_loss"] += scores.pop("step_loss")
        for key, value in {"epoch": epoch + 1, **scores, "time_s": time.perf_counter() - t0}.items():
            history[key].append(value)
        if verbose:
            bar.write(prefix + f"epoch {epoch + 1}/{epochs}  " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items())
                      + f"  ({history['time_s'][-1]:.1f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict() if scheduler is not None else None,
                            epoch=epoch + 1, history=history)
        if world > 1:
            dist.barrier()  # no rank runs ahead of the checkpoint it would resume from
    bar.close()
    return history


def _resume(checkpoint: str | os.PathLike | None, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler, device: torch.device) -> tuple[dict[str, list], int]:
    """``(history, finished epochs)`` of ``checkpoint``, whose states are loaded into model, optimizer and
    scheduler; an empty history and 0 if there is no checkpoint yet."""
    if checkpoint is None or not Path(checkpoint).exists():
        return {k: [] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "time_s", "step_loss")}, 0
    state = load_checkpoint(checkpoint, map_location=device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state["history"], state["epoch"]


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, order: torch.Tensor, scheduler=None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, dtype: torch.dtype | None = None,
                 channels_last: bool = True, on_step: Callable[[int], object] | None = None) -> dict:
    """One pass over the examples ``order`` picks from ``(x, y)`` (on the device), one optimizer step per batch.

    Returns the epoch's mean ``loss`` and ``accuracy`` (of the weights as they
    changed during the epoch) and ``step_loss``, the loss of every step; under
    ``torch.distributed``, each averaged over the processes.
    """
    model.train()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    step_loss = []
    for xb, yb in batches(x, y, batch_size, order=order):
        xb = _prepare(augment(xb) if augment else xb, x.device, channels_last)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        step_loss.append(loss.detach())  # kept on the device: no wait for the GPU inside the loop
        loss_sum += step_loss[-1] * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        if on_step is not None:
            on_step(1)
    totals = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(len(order)), device=x.device)])
    step_loss = torch.stack(step_loss).float()
    if rank_and_world()[1] > 1:  # each process saw its share: sum the shares, average the step losses
        dist.all_reduce(totals)
        dist.all_reduce(step_loss)
        step_loss /= dist.get_world_size()
    return {"loss": totals[0].item() / totals[2].item(), "accuracy": totals[1].item() / totals[2].item(),
            "step_loss": step_loss.tolist()}


def as_tensors(images, labels, mean: float | tuple = 0.0, std: float | tuple = 1.0) -> Batch:
    """uint8 images ``[n, H, W]`` or ``[n, H, W, C]`` -> normalised float32 ``[n, C, H, W]`` + int64 labels."""
    x = torch.as_tensor(images)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    x = x.float().div_(255)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    return (x - mean_t) / std_t, torch.as_tensor(labels, dtype=torch.long)


def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Shift every image of a batch ``[n, C, H, W]`` by its own random offset of up to ``max_shift`` pixels.

    Offsets in x and y are drawn independently from ``-max_shift..max_shift``
    (PyTorch's global random generator, on the batch's device); pixels that
    move in from outside repeat the border, which for digits is background.
    Shapes, dtype and device are unchanged. Use as ``fit(..., augment=lambda
    x: random_shift(x, 2))``.
    """
    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n, 1), device=x.device)
    rows = offsets[0] + torch.arange(h, device=x.device)  # [n, h]: which padded rows each image keeps
    cols = offsets[1] + torch.arange(w, device=x.device)  # [n, w]
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
