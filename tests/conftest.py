"""Shared test set-up.

Tests of the Keras side and of the PyTorch side run in one pytest process.
TensorFlow and this project's torch wheel both bundle LLVM: importing
TensorFlow first and then anything that loads torch's triton (torchvision,
torch.utils.tensorboard, torch.compile) segfaults. Importing triton first is
safe (checked by tests/test_frameworks.py), so do that before any test module
imports a framework. The notebooks never mix the two: each runs in its own kernel.
"""

import importlib.util
import os

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401  (must precede TensorFlow; see above)

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory):
    """Keep caches and run records of the tests out of the user's home and the repo."""
    root = tmp_path_factory.mktemp("resbook")
    old = {k: os.environ.get(k) for k in ("RESBOOK_CACHE", "RESBOOK_RUNS", "RESBOOK_DATA", "RESBOOK_PROFILE")}
    os.environ["RESBOOK_CACHE"] = str(root / "cache")
    os.environ["RESBOOK_RUNS"] = str(root / "runs")
    os.environ.pop("RESBOOK_DATA", None)
    os.environ["RESBOOK_PROFILE"] = "smoke"
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
