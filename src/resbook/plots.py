"""Plots the chapters share: training curves, TensorBoard scalars, image grids, confusion matrices (matplotlib only)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
import numpy as np

LABELS = {
    "loss": "training loss", "val_loss": "validation loss",
    "accuracy": "training accuracy", "val_accuracy": "validation accuracy",
    "error": "training error", "val_error": "validation error",
    "step_loss": "training loss (per step)",
}


def _series(history: Mapping[str, Sequence[float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of ``key`` in a history; ``error``/``val_error`` are 1 - accuracy."""
    if key in ("error", "val_error"):
        y = 1.0 - np.asarray(history[key.replace("error", "accuracy")], dtype=float)
    else:
        y = np.asarray(history[key], dtype=float)
    if key == "step_loss":
        return np.arange(1, len(y) + 1), y
    x = np.asarray(history.get("epoch", range(1, len(y) + 1)), dtype=float)
    return x[: len(y)], y


def _smoothed(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Moving average of ``k`` points (x aligned to each window's last point); unchanged if k <= 1."""
    if k > 1 and len(y) >= k:
        return x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid")
    return x, y


def _log_y(ax) -> None:
    """A log y axis labelled 0.5, 1, 2, 5, 10 ... as plain numbers (matplotlib's default labels a
    range of less than a decade with minor ticks such as 4x10^0)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: np.format_float_positional(v, precision=6, trim="-")))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _finish_panel(ax, xlabel: str, ylabel: str, log: bool) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        _log_y(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _finish_figure(fig, title: str | None):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(histories: Mapping[str, Mapping[str, Sequence[float]]],
                keys: Sequence[str] = ("loss", "val_accuracy"), logy: Sequence[str] = (),
                styles: Mapping[str, Mapping] | None = None, smooth: int = 1,
                vlines: Mapping[str, float] | None = None, title: str | None = None,
                validation: bool = False):
    """One panel per key, one line per run: ``histories = {"run name": history}``.

    With ``validation``, each panel also draws ``val_<key>`` of every run as a
    dashed line of the same colour (training vs validation at a glance).

    ``logy`` lists keys drawn on a log scale; ``smooth`` averages that many
    points (for noisy per-step curves); ``vlines`` marks events such as
    ``{"unfreeze": 10.5}``; ``styles`` gives matplotlib line options per run.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            if key not in hist and key.replace("error", "accuracy") not in hist:
                continue
            x, y = _smoothed(*_series(hist, key), smooth)
            if len(y) == 0:
                continue
            line, = ax.plot(x, y, label=name if not validation else f"{name} (training)",
                            **(styles or {}).get(name, {}))
            val_key = f"val_{key}"
            if validation and (val_key in hist or val_key.replace("error", "accuracy") in hist):
                vx, vy = _series(hist, val_key)
                ax.plot(vx, vy, linestyle="--", color=line.get_color(), label=f"{name} (validation)")
        for label, at in (vlines or {}).items():
            ax.axvline(at, color="grey", linestyle=":", linewidth=1)
            ax.annotate(label, (at, 1), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=8, color="grey")
        ylabel = LABELS.get(key, key)
        if validation:  # the panel holds both curves; the legend tells them apart
            ylabel = ylabel.removeprefix("training ")
        _finish_panel(ax, "step" if key == "step_loss" else "epoch", ylabel, key in logy)
    return _finish_figure(fig, title)


def plot_scalars(scalars: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                 panels: Mapping[str, Sequence[str]], xlabel: str | Mapping[str, str] = "epoch",
                 logy: Sequence[str] = (), smooth: Mapping[str, int] | None = None,
                 title: str | None = None):
    """TensorBoard scalars (``{tag: (steps, values)}``, see ``records.read_scalars``) as panels.

    ``panels = {"loss": ["loss/train", "loss/val"], ...}`` draws one panel per
    entry, one line per tag (tags that are missing are skipped). ``xlabel`` is
    one label or one per panel; ``logy`` lists panels drawn on a log scale;
    ``smooth`` averages that many points per panel (for noisy per-step curves).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, (panel, tags) in zip(axes[0], panels.items()):
        for tag in tags:
            if tag not in scalars:
                continue
            x, y = _smoothed(*(np.asarray(v, dtype=float) for v in scalars[tag]), (smooth or {}).get(panel, 1))
            ax.plot(x, y, marker="." if len(x) <= 30 else None, label=tag)
        _finish_panel(ax, xlabel if isinstance(xlabel, str) else xlabel.get(panel, "epoch"), panel, panel in logy)
    return _finish_figure(fig, title)


def image_grid(images: Sequence[np.ndarray] | np.ndarray, titles: Sequence[str] | None = None,
               ncols: int = 8, size: float = 1.4, cmap: str | None = None, title: str | None = None,
               title_colors: Sequence[str] | None = None):
    """Show images (HxW or HxWxC, uint8 or float in [0, 1]) in a grid with optional titles."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = np.asarray(images[i])
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap=cmap or ("gray" if img.ndim == 2 else None))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8,
                         color=title_colors[i] if title_colors is not None else "black")
    return _finish_figure(fig, title)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str],
                     title: str | None = None):
    """A confusion matrix: rows are true classes, columns predicted; every cell shows its count.

    The mistakes are coloured on their own scale, each as a share of its true
    class up to the largest mistake; the diagonal (right answers) is grey. On one
    common scale a 99%-accurate model's mistakes would all look white.
    """
    k = len(class_names)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    right = np.eye(k, dtype=bool)
    mistakes = np.ma.masked_where(right, shares)
    top = max(float(shares[~right].max(initial=0.0)), 1e-9)  # no mistakes: every off-diagonal cell white
    fig, ax = plt.subplots(figsize=(0.7 * k + 2.2, 0.7 * k + 1.6))
    ax.imshow(np.ma.masked_where(~right, np.ones((k, k))), cmap="Greys", vmin=0, vmax=4)  # light grey diagonal
    im = ax.imshow(mistakes, cmap="Reds", vmin=0, vmax=top)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=8,
                    color="white" if not right[i, j] and shares[i, j] > 0.6 * top else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="mistakes: share of the true class")
    if title:
        ax.set_title(title)
    return _finish_figure(fig, None)
