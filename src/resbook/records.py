"""Run records: one small JSON file per training run, and the Markdown tables that show results.

Every number the book shows comes from a run, and every run leaves a record:
chapter, profile, data, device, versions, git commit, date, settings, metrics
and wall time. ``runs/`` (git-ignored) collects them as they happen; the
records behind the committed notebook outputs are copied to ``book/records/``
so the "Runs and results" page can be rebuilt from them in a fresh clone.

Usage::

    with records.recording(run, "resnet20-vs-plain20") as rec:
        history = fit(...)
        rec.metrics["val_accuracy"] = max(history["val_accuracy"])

:func:`markdown_table` is the one way a chapter (and the "Runs and results"
page) turns rows of results into a table for ``IPython.display.Markdown``.

Runs logged to TensorBoard go to :func:`tensorboard_dir` (``runs/tensorboard/``,
one folder per run); :func:`read_scalars` reads their scalars back, so a
notebook can plot them where TensorBoard itself cannot run (a static page).
"""

from __future__ import annotations

import json
import numbers
import os
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import ResbookError
from .files import atomic_write
from .settings import Run, tensorboard_without_tensorflow

RECORD_FIELDS = ("chapter", "name", "profile", "data", "device", "versions", "seed",
                 "settings", "metrics", "wall_time_s", "git_commit", "date")


def runs_dir() -> Path:
    """Where new records go: ``$RESBOOK_RUNS``, else ``runs/`` in the working directory's repo root."""
    env = os.environ.get("RESBOOK_RUNS")
    if env:
        return Path(env)
    return _repo_root(Path.cwd()) / "runs"


def _repo_root(start: Path) -> Path:
    for p in (start, *start.parents):
        if (p / "pyproject.toml").exists() or (p / ".git").exists():
            return p
    return start


def git_commit(cwd: Path | None = None) -> str:
    """The commit the code ran at, with ``+dirty`` when the tree had changes; ``'unknown'`` outside git.

    ``$RESBOOK_GIT_COMMIT``, when set, is the answer: a copy of the tree without
    ``.git`` (as on the lent GPU machine) says this way which commit it is.
    """
    if os.environ.get("RESBOOK_GIT_COMMIT"):
        return os.environ["RESBOOK_GIT_COMMIT"]
    try:
        kw = dict(cwd=cwd or Path.cwd(), capture_output=True, text=True, timeout=10, check=True)
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], **kw).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


@dataclass
class Record(Run):
    """One training run: the :class:`~resbook.settings.Run` it belongs to, and what it measured."""

    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    git_commit: str = "unknown"
    date: str = ""

    @classmethod
    def start(cls, run: Run, name: str, **settings: Any) -> "Record":
        base = run.as_dict()
        base["settings"] = {**base["settings"], **settings}
        return cls(**base, name=name, git_commit=git_commit(),
                   date=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RECORD_FIELDS}

    def rounded(self) -> dict[str, Any]:
        """The record as stored: metric floats rounded to 6 significant digits."""
        data = self.as_dict()
        data["metrics"] = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in self.metrics.items()}
        return data

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write the record as ``<date>_<chapter>_<name>.json`` (atomically) and return the path."""
        directory = Path(directory) if directory is not None else runs_dir()
        directory.mkdir(parents=True, exist_ok=True)
        stamp = re.sub(r"[^0-9T]", "", self.date)[:15]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.chapter}_{self.name}")
        path = directory / f"{stamp}_{slug}.json"
        with atomic_write(path, "w") as f:
            f.write(json.dumps(self.rounded(), indent=2, sort_keys=False, default=_jsonable) + "\n")
        return path


def tensorboard_dir(run: Run, name: str) -> Path:
    """A new folder for one run's TensorBoard logs: ``runs/tensorboard/<chapter>_<name>_<time>``.

    It is ``runs/tensorboard/`` in the working directory's repository (not
    ``$RESBOOK_RUNS``, which may point at the committed records), so
    ``tensorboard --logdir runs/tensorboard`` from the repository root shows
    every run, each as its own line.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run.chapter}_{name}_{stamp}")
    return _repo_root(Path.cwd()) / "runs" / "tensorboard" / slug


def read_scalars(log_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar in a TensorBoard run folder: ``{tag: (steps, values)}``, sorted by step.

    Reads all event files in ``log_dir`` (a resumed run writes one per
    session) with TensorBoard's ``EventAccumulator``, keeping every point
    (TensorBoard itself keeps a sample). Where a step was logged twice, the
    later value counts.
    """
    log_dir = Path(log_dir)
    if not any(log_dir.glob("events.out.tfevents.*")):
        raise ResbookError(f"{log_dir} holds no TensorBoard event files (events.out.tfevents.*): "
                           "pass the folder a run logged into.")
    tensorboard_without_tensorflow()
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        by_step = {e.step: e.value for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a run record")


@contextmanager
def recording(run: Run, name: str, directory: str | os.PathLike | None = None,
              **settings: Any) -> Iterator[Record]:
    """Time the block, then save a :class:`Record` with the metrics the block filled in.

    The record is saved only when the block finishes without an exception, so
    an interrupted run never leaves a record that looks complete.
    """
    rec = Record.start(run, name, **settings)
    t0 = time.perf_counter()
    yield rec
    rec.wall_time_s = round(time.perf_counter() - t0, 2)
    rec.save(directory)


def load_records(*directories: str | os.PathLike) -> list[Record]:
    """Read every record in the given folders (missing folders are skipped), oldest first."""
    found = []
    for d in directories:
        d = Path(d)
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.json")):
            data = json.loads(path.read_text())
            found.append(Record(**{k: data[k] for k in RECORD_FIELDS if k in data}))
    return sorted(found, key=lambda r: r.date)


def format_value(column: str, value: Any) -> str:
    """One table cell: numbers formatted for reading, anything else as ``str``.

    Whole numbers get thousands separators (``272,474``); a fraction in a
    column whose name says ``accuracy`` or ``error`` is a percentage
    (``0.0312`` -> ``3.12%``); other floats keep 4 significant digits;
    ``None`` is an empty cell.
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if ("accuracy" in column or "error" in column) and 0 <= value <= 1:
        return f"{value:.2%}"
    return f"{value:.4g}"


def markdown_table(rows: Iterable[Sequence[Any] | Mapping[str, Any]], columns: Sequence[str],
                   align: str | None = None) -> str:
    """A Markdown table of ``rows`` under the header ``columns``, as a str for ``IPython.display.Markdown``.

    A row is a sequence of cells in the order of ``columns``, or a mapping
    from column to cell (a missing one is empty). Cells go through
    :func:`format_value`; ``|`` and line breaks in them are escaped.
    ``align`` has one letter per column, ``l`` or ``r``; by default a column
    is right-aligned when all its cells are numbers.
    """
    rows = [[row.get(c) for c in columns] if isinstance(row, Mapping) else list(row) for row in rows]
    if any(len(row) != len(columns) for row in rows):
        raise ResbookError(f"Every row of a table needs {len(columns)} cells, one per column ({', '.join(columns)}).")
    if align is None:
        numeric = [all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in col if v is not None)
                   and any(v is not None for v in col) for col in zip(*rows)] or [False] * len(columns)
        align = "".join("r" if n else "l" for n in numeric)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(format_value(c, v).replace("|", "\\|").replace("\n", " ")
                                for c, v in zip(columns, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"
