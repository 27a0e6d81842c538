"""The one exception the book raises for bad input.

Every check in :mod:`resbook` that a reader can trip (a wrong profile name, a
missing folder, a corrupt file) raises :class:`ResbookError` with one sentence
that says what is wrong and what to do. The CLI prints that sentence and exits
with status 1; in a notebook, :func:`resbook.settings.describe_run` (the first
call of every chapter) installs, once, the handler of :func:`show_in_notebook`
that shows the sentence instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class ResbookError(Exception):
    """Bad input or a missing resource, explained in one sentence."""


def brief(exc: BaseException) -> str:
    """``exc``'s message on one line and without a final period, to quote inside a sentence."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def reason(exc: OSError) -> str:
    """What the system says went wrong (``Permission denied``), else :func:`brief`: to quote inside a sentence."""
    return exc.strerror or brief(exc)


def as_path(value: object, what: str) -> Path:
    """``value`` as a Path, or a one-sentence error if it is empty or not a path at all.

    ``what`` names the path in the sentence (``"an image folder"``). ``Path("")``
    would silently mean the current folder, so an empty string is refused.
    """
    if not isinstance(value, (str, os.PathLike)):
        raise ResbookError(f"The path of {what} must be a str or pathlib.Path, not {value!r:.60}: "
                           f"pass the path of {what}.")
    if not os.fspath(value):
        raise ResbookError(f"The path of {what} is empty: give its path (use '.' for the current folder).")
    return Path(value)


def show_in_notebook() -> None:
    """Make IPython print a ResbookError as its one sentence, not a traceback (nothing outside IPython).

    :func:`resbook.settings.describe_run` calls it; calling it again replaces
    the handler with an identical one.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with Jupyter
        return
    shell = get_ipython()
    if shell is None:
        return

    def _handler(shell, etype, value, tb, tb_offset=None):
        print(f"ResbookError: {value}")
        return None

    shell.set_custom_exc((ResbookError,), _handler)
