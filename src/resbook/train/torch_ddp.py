"""Data-parallel training with PyTorch: ``DistributedDataParallel`` in processes that ``torchrun`` starts.

Data parallelism keeps a whole copy of the model in every process (one per
GPU, or here one per CPU core), gives each process a different share of
every batch, and averages the gradients across processes after the backward
pass (an *all-reduce*), so that every copy takes the same optimizer step and
the copies stay equal. PyTorch's parts, all used as they come:

* ``torchrun`` starts the processes (``--nproc_per_node`` per machine,
  ``--nnodes`` machines that meet at a rendezvous address) and sets ``RANK``,
  ``LOCAL_RANK`` and ``WORLD_SIZE`` in each;
* ``torch.distributed.init_process_group`` joins them: backend ``gloo`` on
  CPUs, ``nccl`` on NVIDIA GPUs;
* ``DistributedDataParallel`` all-reduces the gradients during ``backward``;
* ``DistributedSampler`` (with ``set_epoch``) gives each process its share
  of every epoch: :func:`resbook.train.torch_loop.fit` uses it, prints and
  checkpoints on rank 0 only, and resumes every rank from the checkpoint.

This module is both sides of a launch. :func:`launch` (in the notebook or a
test) writes a run's settings to a JSON file and runs ``torchrun ... -m
resbook.train.torch_ddp SETTINGS.json``, with a time limit, and turns a
failure (a process that died, a port in use, a rendezvous that never
completes) into one sentence; :func:`main` is what every process runs: it
trains the MNIST ResNet of :func:`resbook.models.torch_resnet.mnist_resnet`
on arrays from an ``.npz`` file and rank 0 writes the result (history,
timings, the final weights) beside the settings.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from ..data.mnist import MNIST_MEAN, MNIST_STD
from ..errors import ResbookError
from ..files import atomic_write
from ..models.torch_resnet import count_parameters, mnist_resnet
from ..processes import check_launch_settings, run_with_deadline
from .torch_loop import as_tensors, fit, steps_per_epoch, unwrap

DEFAULTS: dict[str, Any] = dict(
    epochs=3, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, warmup_epochs=0.0,
    model={}, seed=0, precision="float32", frozen_batchnorm=False,
    checkpoint=None, stop_after=None, fail_rank=None, collective_timeout_s=300, allreduce_probe=20,
    snapshot_steps=(), threads=None,
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the system picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` on ``host`` cannot be bound (another program holds it)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def torchrun_command(script_args: list[str], nproc: int = 2, nnodes: int = 1, node_rank: int = 0,
                     endpoint: str = "127.0.0.1:29500", join_timeout_s: int = 60, job_id: str = "resbook") -> list[str]:
    """The ``torchrun`` command line that starts ``nproc`` processes here, one of ``nnodes`` machines.

    Every machine runs the same command with its own ``node_rank``;
    ``endpoint`` (``host:port`` of node 0, reachable from all) is where they
    meet (the ``c10d`` rendezvous), and a machine that has not met the others
    within ``join_timeout_s`` seconds gives up. On one machine with N GPUs it
    is ``nproc=N``; on M such machines ``nnodes=M``, ``nproc=N``.
    """
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc}",
            f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", f"--rdzv-id={job_id}",
            f"--rdzv-conf=join_timeout={join_timeout_s}", "--max-restarts=0", "-m", __name__, *script_args]


def launch(settings: dict[str, Any], out: str | os.PathLike, nproc: int = 2, *, nnodes: int = 1, node_rank: int = 0,
           host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 600, join_timeout_s: int = 60,
           verbose: bool = True) -> dict[str, Any]:
    """Train with ``nproc`` processes under ``torchrun`` and return rank 0's result.

    ``settings`` override :data:`DEFAULTS` and name the data (``data``: an
    ``.npz`` with ``x_train, y_train, x_val, y_val``, uint8 images and integer
    labels). ``out`` is the run's folder: the settings, ``result.json`` and
    ``final.pt`` (the trained weights) go there, and ``step-N.pt`` (the
    weights after step N, counted from the run's start, so a resumed launch
    keeps those taken before) for each N of ``settings['snapshot_steps']``; the
    checkpoint too unless ``settings['checkpoint']`` names one. ``threads``
    sets each process's ``torch.set_num_threads`` (by default the cores
    divided by ``nproc``). A launch whose checkpoint
    exists resumes after its last finished epoch (as after a crash). ``port`` is
    the rendezvous port on ``host`` (by default a free one). Rank 0's lines
    are printed as they come (``verbose``). The launch stops within
    ``timeout_s`` seconds whatever happens; a failure raises a
    :class:`~resbook.errors.ResbookError` that says what went wrong.
    """
    check_launch_settings(settings, DEFAULTS, "a data-parallel run")
    if port is None:
        port = free_port(host)
    elif node_rank == 0 and port_in_use(port, host):
        raise ResbookError(f"port {port} on {host} is in use by another program, so the processes cannot meet "
                           "there: pass another port, or leave port out to use a free one.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "final.pt", *(p.name for p in out.glob("error-rank*.txt"))):
        (out / stale).unlink(missing_ok=True)
    run = {**DEFAULTS, **settings, "out": str(out.absolute())}
    if run["checkpoint"] is None:
        run["checkpoint"] = str(out.absolute() / "checkpoint.pt")
    config = out / "settings.json"
    config.write_text(json.dumps(run, indent=1))
    cmd = torchrun_command([str(config)], nproc, nnodes, node_rank, f"{host}:{port}", join_timeout_s,
                           job_id=f"resbook-{port}")
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TQDM_DISABLE": "1"}  # rank 0 prints a line per epoch
    # The workers' prints (rank 0's) come through stdout; torchrun's log, warnings and tracebacks through stderr.
    done = run_with_deadline(cmd, timeout_s, env, verbose)
    errors = sorted(out.glob("error-rank*.txt"))
    if errors:
        raise ResbookError(errors[0].read_text().strip())
    if done.returncode is None:
        raise ResbookError(f"the run with {nproc} processes did not finish within {timeout_s:g} s and was stopped: "
                           "give it more time (timeout_s), or look for a process that hangs.")
    if done.returncode != 0:
        raise ResbookError(_failure(done.stderr, done.returncode, nproc, join_timeout_s))
    return json.loads((out / "result.json").read_text())


def _failure(text: str, code: int, nproc: int, join_timeout_s: int) -> str:
    """One sentence on why torchrun ended with ``code``, read from its output."""
    if "RendezvousTimeoutError" in text or "RendezvousClosedError" in text:
        return (f"the processes did not all meet at the rendezvous within {join_timeout_s} s: start the same "
                "command on every machine (nnodes of them, each with its node_rank) and check the endpoint address.")
    root = text[text.find("Root Cause"):]  # torchrun's summary names the first failure there
    m = re.search(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", root)
    if m:
        rank, exit_code = int(m.group(1)), int(m.group(2))
        killed = exit_code < 0 and -exit_code in signal.valid_signals()
        how = f"was killed by {signal.Signals(-exit_code).name}" if killed else f"exited with code {exit_code}"
        return f"rank {rank} of {nproc} {how}, so torchrun stopped the others: the run did not finish."
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")
    return f"torchrun stopped with exit code {code} before the run finished (last line: {last[:200]})."


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` by torchvision's ``FrozenBatchNorm2d`` with its statistics and scales.

    A frozen BatchNorm is a fixed per-channel affine map, the same in
    training and inference, so a batch gives the same result however it is
    split across processes: the setting in which one process and N must
    agree to float precision.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)
    return model


def digest(tensors) -> str:
    """sha256 of tensors' bytes, in order: equal digests mean bit-identical states."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def optimizer_digest(optimizer: torch.optim.Optimizer) -> str:
    """:func:`digest` of every tensor in the optimizer's state (e.g. SGD's momentum buffers)."""
    state = optimizer.state_dict()["state"]
    return digest(t for k in sorted(state) for t in state[k].values() if torch.is_tensor(t))


def allreduce_ms(numel: int, repeats: int = 20) -> float:
    """Median milliseconds of one all-reduce of ``numel`` float32 values across the process group."""
    t = torch.zeros(numel)
    dist.all_reduce(t)  # warm-up: the first call sets up the connections
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def warmup_linear(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """The rate rises linearly over ``warmup_steps`` (from 1/``warmup_steps`` of the peak), then falls linearly to 0.

    Goyal et al. (2017) warm up for the first epochs when the batch, and with
    it the rate, is scaled up.
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def main(argv: list[str] | None = None) -> int:
    """One process of a launch: ``python -m resbook.train.torch_ddp SETTINGS.json`` under ``torchrun``."""
    argv = sys.argv[1:] if argv is None else argv
    run = json.loads(Path(argv[0]).read_text())
    out = Path(run["out"])
    rank = int(os.environ.get("RANK", 0))
    try:
        result = _train(run, out)
    except ResbookError as exc:
        (out / f"error-rank{rank}.txt").write_text(f"rank {rank}: {exc}\n")
        return 1
    if rank == 0:
        with atomic_write(out / "result.json", "w") as f:
            json.dump(result, f, indent=1)
    return 0


def _train(run: dict[str, Any], out: Path) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=run["collective_timeout_s"]))
    try:
        return _train_in_group(run, out, device)
    finally:
        dist.destroy_process_group()


def _train_in_group(run: dict[str, Any], out: Path, device: torch.device) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    if run["threads"] is not None:
        torch.set_num_threads(run["threads"])
    try:
        arrays = np.load(run["data"])
        train = as_tensors(arrays["x_train"], arrays["y_train"], MNIST_MEAN, MNIST_STD)
        val = as_tensors(arrays["x_val"], arrays["y_val"], MNIST_MEAN, MNIST_STD)
    except (OSError, KeyError, ValueError) as exc:
        raise ResbookError(f"the data file {run['data']} is not an .npz with x_train, y_train, x_val, y_val "
                           f"({type(exc).__name__}).") from None

    torch.manual_seed(run["seed"])  # every rank builds the same initial weights (DDP also broadcasts rank 0's)
    model = mnist_resnet(**run["model"])
    if run["frozen_batchnorm"]:
        freeze_batchnorm(model)
    elif device.type == "cuda" and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over all GPUs (CUDA only)
    model.to(device, memory_format=torch.channels_last)  # before DDP: its gradient buckets follow this layout
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = count_parameters(model)
    ms = allreduce_ms(params, run["allreduce_probe"]) if run["allreduce_probe"] else None

    optimizer = torch.optim.SGD(model.parameters(), lr=run["lr"], momentum=run["momentum"],
                                weight_decay=run["weight_decay"])
    steps = steps_per_epoch(len(train[0]), run["batch_size"], world)
    scheduler = warmup_linear(optimizer, max(1, round(run["warmup_epochs"] * steps)), steps * run["epochs"])
    processes = f"{world} process{'es' if world > 1 else ''}"
    say(f"{processes}, backend {dist.get_backend()}, batch {run['batch_size']} per process "
        f"({run['batch_size'] * world} per step), learning rate {run['lr']:g}, {params:,} parameters"
        + (f"; one all-reduce of the gradients: {ms:.1f} ms" if ms is not None else ""), flush=True)

    def on_epoch_end(epoch: int, history: dict) -> None:
        if run["fail_rank"] == rank:  # for the tests: this process dies as a crashed one would
            os.kill(os.getpid(), signal.SIGKILL)

    def on_step_end(step: int) -> None:
        if rank == 0 and step in run["snapshot_steps"]:  # every rank holds the same weights: one copy is enough
            torch.save(unwrap(ddp).state_dict(), out / f"step-{step}.pt")

    resumed = Path(run["checkpoint"]).exists()
    epochs = run["epochs"] if run["stop_after"] is None else run["stop_after"]
    history = fit(ddp, optimizer, train, val, epochs=epochs, batch_size=run["batch_size"], scheduler=scheduler,
                  device=device, precision=run["precision"], seed=run["seed"], checkpoint=run["checkpoint"],
                  on_epoch_end=on_epoch_end, on_step_end=on_step_end, verbose=rank == 0)
    digests = [None] * world
    dist.all_gather_object(digests, {"weights": digest(unwrap(ddp).state_dict().values()),
                                     "optimizer": optimizer_digest(optimizer)})
    if rank == 0:
        torch.save(unwrap(ddp).state_dict(), out / "final.pt")
    dist.barrier()  # leave the group together: a rank that tears gloo down while rank 0 still writes can abort it
    return {"world_size": world, "backend": dist.get_backend(), "batch_per_process": run["batch_size"],
            "global_batch": run["batch_size"] * world, "lr": run["lr"], "parameters": params,
            "allreduce_ms": ms, "steps_per_epoch": steps, "resumed": resumed,
            "epochs_done": len(history["epoch"]), "history": history, "digests": digests}


if __name__ == "__main__":
    sys.exit(main())
