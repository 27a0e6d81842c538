"""Child processes for training: the launchers' settings check, and a command run with a time limit.

:func:`check_launch_settings` is the one check both data-parallel launchers
(:mod:`resbook.train.torch_ddp`, :mod:`resbook.train.keras_data_parallel`)
make before anything starts.

:func:`run_with_deadline` starts the command in a session of its own, prints
its standard output line by line (read by a thread, so a command that hangs
in silence is still stopped on time), keeps its standard error for the
caller to explain a failure, and at the deadline kills the whole session:
the command and every process it started.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ResbookError


def check_launch_settings(settings: dict[str, Any], defaults: dict[str, Any], what: str) -> None:
    """One sentence unless ``settings`` names only keys of ``defaults`` (or ``data``) and ``data`` is a file."""
    unknown = set(settings) - set(defaults) - {"data"}
    if unknown:
        raise ResbookError(f"unknown setting(s) {', '.join(sorted(unknown))} for {what}: the settings are data, "
                           f"{', '.join(defaults)}.")
    if "data" not in settings or not Path(settings["data"]).is_file():
        raise ResbookError(f"the data file {settings.get('data')!r} does not exist: save the arrays with "
                           "numpy.savez(path, x_train=..., y_train=..., x_val=..., y_val=...) and pass data=path.")


class Finished(NamedTuple):
    returncode: int | None   # None when the deadline stopped it
    stderr: str
    seconds: float


def run_with_deadline(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None,
                      verbose: bool = True) -> Finished:
    """Run ``cmd``; print its stdout lines (``verbose``); stop it and its children after ``timeout_s`` seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    stderr: list[str] = []
    err_reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    err_reader.start()
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline, finished = start + timeout_s, False
    try:
        while not finished and (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                finished = True
            elif verbose:
                print(line, end="", flush=True)
    finally:  # also on an interrupt (a notebook's stop button): nothing is left running
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()) if finished else 0)
        except subprocess.TimeoutExpired:
            finished = False
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        err_reader.join(timeout=5)
    return Finished(proc.returncode if finished else None, "".join(stderr), time.monotonic() - start)
