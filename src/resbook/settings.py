"""Run settings: which profile, which device, which versions, which seed.

This is the lowest layer of :mod:`resbook`; it imports no deep-learning
framework, so a Keras notebook and a PyTorch notebook can both start with::

    from resbook import settings
    run = settings.describe_run("02_resnet50_keras", data="generated flowers")

Two profiles exist:

``smoke``
    CPU, minutes, generated data. What CI and ``pytest --nbval`` run.
``full``
    The real data, at each chapter's full settings: what the book's pages
    show. They follow the articles where a chapter reproduces one, and are
    sized so that each notebook ran in at most 100 minutes on the 2-core CPU
    the book was made on (a GPU is much faster).

``RESBOOK_PROFILE`` picks one; without it, ``full`` is chosen when an NVIDIA
GPU is present and ``smoke`` otherwise.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ResbookError, show_in_notebook

PROFILES = {
    "smoke": "CPU, minutes, generated data",
    "full": "real data, the chapter's full settings",
}

#: What :func:`prepare_tensorflow` sets, unless the environment already says otherwise.
TENSORFLOW_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",   # no C++ start-up chatter in the cells
    "TF_ENABLE_ONEDNN_OPTS": "1",  # oneDNN on CPUs where TensorFlow leaves it off (3-8x faster training here)
}


def prepare_tensorflow() -> None:
    """Set :data:`TENSORFLOW_ENV` (keeping any value already set) for TensorFlow to read when it is imported.

    TensorFlow reads these variables once, at import, so the Keras modules of
    :mod:`resbook` call this just before ``import keras``; importing
    :mod:`resbook` itself sets nothing. Once TensorFlow is imported (a chapter
    imports keras in its first cell) it does nothing: the book's kernels get
    the same variables from ``book/run_notebooks.py``'s environment instead.
    """
    if "tensorflow" in sys.modules:
        return
    for key, value in TENSORFLOW_ENV.items():
        os.environ.setdefault(key, value)


def profile(value: str | None = None) -> str:
    """Return the active profile: ``value``, else ``$RESBOOK_PROFILE``, else by device.

    Raises :class:`ResbookError` naming the valid choices for anything else.
    """
    chosen = value if value is not None else os.environ.get("RESBOOK_PROFILE", "")
    chosen = chosen.strip().lower()
    if not chosen:
        return "full" if gpu_name() else "smoke"
    if chosen not in PROFILES:
        choices = " or ".join(f"'{p}' ({d})" for p, d in PROFILES.items())
        raise ResbookError(f"RESBOOK_PROFILE={chosen!r} is not a profile: use {choices}.")
    return chosen


def pick(smoke: Any, full: Any, profile_name: str | None = None) -> Any:
    """Return ``smoke`` or ``full`` depending on the active profile."""
    return smoke if profile(profile_name) == "smoke" else full


@lru_cache(maxsize=1)
def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU (asks ``nvidia-smi``), or None on a CPU machine."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


# CPU instruction sets with native bfloat16 arithmetic, best first: the flag in
# /proc/cpuinfo and how the device line names it.
BF16_INSTRUCTIONS = {"amx_bf16": "AMX bf16", "avx512_bf16": "AVX-512 bf16"}

PRECISIONS = {
    "auto": "bfloat16 on a GPU or on a CPU with native bf16 instructions, else float32",
    "float32": "float32 everywhere",
    "bfloat16": "bfloat16 compute with float32 weights (Keras' mixed_bfloat16, torch.autocast)",
}


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo``, read once (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_flags() -> frozenset[str]:
    """The feature flags of this machine's CPU, read once from ``/proc/cpuinfo`` (empty elsewhere)."""
    return frozenset(cpu_info().get("flags", "").split())


def cpu_bf16(flags: frozenset[str] | set[str] | None = None) -> str | None:
    """The CPU's native bfloat16 instruction set (``'AMX bf16'``, ``'AVX-512 bf16'``), or None.

    ``flags`` defaults to :func:`cpu_flags`; pass others to ask about another machine.
    """
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in BF16_INSTRUCTIONS.items() if flag in flags), None)


def cpu_name() -> str:
    """A short description of this machine's CPU, e.g. ``'Intel Xeon (2 cores, AMX bf16)'``."""
    model = cpu_info().get("model name") or platform.processor() or platform.machine()
    extra = f", {cpu_bf16()}" if cpu_bf16() else ""
    return f"{model} ({os.cpu_count()} cores{extra})"


def device_description() -> str:
    """A description of the device a run trains on: the GPU's name, else ``'CPU: <model> (<n> cores[, bf16 set])'``.

    A string for people and run records; the ``torch.device`` to train on is
    :func:`resbook.train.torch_loop.default_device`'s.
    """
    gpu = gpu_name()
    return gpu if gpu else f"CPU: {cpu_name()}"


def precision(choice: str | None = None, native_bf16: bool | None = None) -> str:
    """The precision to train in: ``'bfloat16'`` or ``'float32'``.

    ``choice`` (else ``$RESBOOK_PRECISION``, else ``'auto'``) is one of
    :data:`PRECISIONS`. ``'auto'`` picks bfloat16 where the device computes
    it natively (``native_bf16``; by default: an NVIDIA GPU is present, or
    this CPU has one of :data:`BF16_INSTRUCTIONS`) and float32 elsewhere,
    where bf16 would be emulated and slower. The Keras and the PyTorch
    helpers both ask here, so every chapter on one machine decides alike.
    Raises :class:`ResbookError` naming the valid choices for anything else.
    """
    chosen = choice if choice is not None else os.environ.get("RESBOOK_PRECISION", "")
    chosen = (chosen.strip().lower() if isinstance(chosen, str) else chosen) or "auto"
    if chosen not in PRECISIONS:
        where = "precision" if choice is not None else "RESBOOK_PRECISION"
        raise ResbookError(f"{where}={chosen!r} is not a precision: use {', '.join(map(repr, PRECISIONS))}.")
    if chosen != "auto":
        return chosen
    if native_bf16 is None:
        native_bf16 = gpu_name() is not None or cpu_bf16() is not None
    return "bfloat16" if native_bf16 else "float32"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Versions of Python and of the frameworks that are installed (none is imported).

    Keras' backend is added only when this process has imported Keras: a
    PyTorch chapter that runs Keras in other processes (chapter 7's JAX runs)
    records their backend with those runs instead of claiming one here.
    """
    found = {"python": platform.python_version()}
    for dist in ("numpy", "keras", "tensorflow", "jax", "torch", "torchvision"):
        v = _version(dist)
        if v:
            found[dist] = v
    backend = keras_backend()
    if "keras" in found and backend:
        found["keras_backend"] = backend
    return found


def keras_backend() -> str | None:
    """The backend of the Keras this process imported, or None when it has not imported Keras."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return None


def cache_dir() -> Path:
    """Where downloads, decoded-image caches and generated data go (``$RESBOOK_CACHE``)."""
    root = os.environ.get("RESBOOK_CACHE") or Path.home() / ".cache" / "resbook"
    return Path(root).expanduser()


def data_root() -> Path | None:
    """A folder of real datasets given by ``$RESBOOK_DATA`` (one subfolder per dataset), or None."""
    root = os.environ.get("RESBOOK_DATA")
    return Path(root).expanduser() if root else None


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a reader would write it, for printed output: no machine's folders in the book's pages.

    Under ``$RESBOOK_DATA``: ``$RESBOOK_DATA/...``; under the cache:
    ``~/.cache/resbook/...`` (``$RESBOOK_CACHE/...`` when that is set); under
    the repository the current folder is in: relative to it (``runs/...``);
    under the home folder: ``~/...``; anything else unchanged.
    """
    p = Path(path).expanduser().absolute()
    cwd = Path.cwd()
    repo = next((d for d in (cwd, *cwd.parents) if (d / "pyproject.toml").exists() or (d / ".git").exists()), None)
    cache = "$RESBOOK_CACHE" if os.environ.get("RESBOOK_CACHE") else "~/.cache/resbook"
    for root, name in ((data_root(), "$RESBOOK_DATA"), (cache_dir(), cache), (repo, ""), (Path.home(), "~")):
        if root is None:
            continue
        try:
            rest = p.relative_to(Path(root).expanduser().absolute()).as_posix()
        except ValueError:
            continue
        if not name:
            return rest
        return name if rest == "." else f"{name}/{rest}"
    return str(path)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and whichever of Keras / PyTorch the process has imported.

    The one place the book seeds: :func:`describe_run` calls it at the top of
    each chapter, after the chapter imported its framework.
    """
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def tensorboard_without_tensorflow() -> None:
    """Make the ``tensorboard`` package use its built-in file I/O instead of importing TensorFlow.

    TensorBoard's event-file writer and reader (which PyTorch's
    ``SummaryWriter`` uses) import all of TensorFlow when it is installed,
    only for file access: seconds of start-up, and in a PyTorch process the
    risk of the LLVM clash described on the "How to run it" page. TensorBoard's own
    switch for its stub is an importable ``tensorboard.compat.notf`` module;
    this registers an empty one. Call it before the first event file is
    written or read. It does nothing where TensorFlow is already imported.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


@dataclass
class Run:
    """What :func:`describe_run` printed, kept for the run record."""

    chapter: str
    profile: str
    data: str
    device: str
    versions: dict[str, str]
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "chapter": self.chapter, "profile": self.profile, "data": self.data,
            "device": self.device, "versions": dict(self.versions), "seed": self.seed,
            "settings": dict(self.settings),
        }


def format_versions(found: dict[str, str]) -> str:
    parts = [f"Python {found['python']}"]
    names = {"numpy": "NumPy", "tensorflow": "TensorFlow", "jax": "JAX",
             "torch": "torch", "torchvision": "torchvision"}
    if "keras" in found:
        backend = f" ({found['keras_backend']} backend)" if "keras_backend" in found else ""
        parts.append(f"Keras {found['keras']}{backend}")
    parts += [f"{names[k]} {found[k]}" for k in names if k in found]
    return " · ".join(parts)


def describe_run(chapter: str, data: str, seed: int = 0, **settings: Any) -> Run:
    """Print what this run uses (profile, data, device, versions, settings), seed it, and show errors briefly.

    Call it once at the top of every chapter, after importing the framework.
    ``data`` says where the data comes from (e.g. ``"generated digits"`` or a
    folder, printed and recorded by :func:`display_path`); ``settings`` are the chapter's knobs for this profile (epochs,
    batch size, ...), printed and recorded. It does the two things a run sets
    up, each here and nowhere else: it seeds Python, NumPy and the imported
    framework with ``seed`` (:func:`seed_everything`), and in a notebook it
    makes a :class:`ResbookError` print as its one sentence
    (:func:`resbook.errors.show_in_notebook`).
    """
    show_in_notebook()
    if os.path.isabs(os.fspath(data)):  # a folder: as the reader set it ($RESBOOK_DATA/...), not this machine's path
        data = display_path(data)
    run = Run(chapter=chapter, profile=profile(), data=data, device=device_description(),
              versions=versions(), seed=seed, settings=settings)
    hint = ("set RESBOOK_PROFILE=full for the real data" if run.profile == "smoke"
            else "set RESBOOK_PROFILE=smoke for a quick CPU run")
    lines = [
        f"chapter   {chapter}",
        f"profile   {run.profile} ({PROFILES[run.profile]}; {hint})",
        f"data      {data}",
        f"device    {run.device}",
        f"versions  {format_versions(run.versions)}",
        f"seed      {seed}",
    ]
    if settings:
        lines.append("settings  " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print("\n".join(lines))
    seed_everything(seed)
    return run


def progress_bar(iterable=None, show: bool = True, **kwargs):
    """A ``tqdm.auto`` progress bar, hidden when ``show`` is False or ``TQDM_DISABLE`` is set.

    ``make run-notebooks`` and ``make test`` set ``TQDM_DISABLE=1`` to keep
    bars out of stored notebook outputs; tqdm's notebook widget does not read
    that variable itself, so it is checked here.
    """
    from tqdm.auto import tqdm
    if not show or os.environ.get("TQDM_DISABLE", "") not in ("", "0"):
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
