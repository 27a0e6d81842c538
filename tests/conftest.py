"""Shared test set-up.

Tests of the Keras side and of the PyTorch side run in one pytest process.
TensorFlow and this project's torch wheel both bundle LLVM: importing
TensorFlow first and then anything that loads torch's triton (torchvision,
torch.utils.tensorboard, torch.compile) segfaults. Importing triton first is
safe (checked by tests/test_frameworks.py), so do that before any test module
imports a framework. The notebooks never mix the two: each runs in its own kernel.

Test modules import keras themselves, often before any resbook module, and
TensorFlow reads its variables once, at import: so set them here, as the Keras
modules of resbook and the notebooks' kernels do (oneDNN on: the Keras tests
take about half the time on a 2-core EPYC).
"""

import importlib.util
import os
import sys
from pathlib import Path

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401  (must precede TensorFlow; see above)

from resbook.settings import prepare_tensorflow

prepare_tensorflow()  # before any test module imports TensorFlow (see above)

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


@pytest.fixture
def tiny_flowers():
    """Generated flowers as arrays: ``tiny_flowers(n, seed) -> (x, y)``, 32x32 uint8 images, class ``i % 5``."""
    import numpy as np

    from resbook.data.generated import FLOWER_CLASSES, flower_image

    def make(n, seed):
        rng = np.random.default_rng(seed)
        x = np.stack([np.asarray(flower_image(FLOWER_CLASSES[i % 5], rng, (32, 32))) for i in range(n)])
        return x, np.arange(n) % 5
    return make


@pytest.fixture
def one_sentence():
    """A checker for user-facing errors: one line, no traceback, ending with a period."""
    def check(message: str) -> str:
        assert "\n" not in message and "Traceback" not in message, message
        assert message.strip().endswith("."), message
        return message
    return check


@pytest.fixture
def http_server(monkeypatch):
    """A local HTTP server on 127.0.0.1 serving ``routes``: path -> body, or (body, "short") to break off.

    A "short" route announces the full Content-Length, sends half the body and
    closes the connection. ``hits`` lists the paths requested.
    """
    import http.server
    import threading
    from types import SimpleNamespace

    for var in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 through a proxy the machine may set
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    routes: dict = {}
    hits: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, mode = routes[self.path] if isinstance(routes[self.path], tuple) else (routes[self.path], "")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "short" else body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", routes=routes, hits=hits)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def book_script():
    """Import one of the book's scripts, ``book/<name>.py`` (the folder is not a package)."""
    def load(name: str):
        path = Path(__file__).resolve().parent.parent / "book" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"book_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import would: a dataclass in the script looks itself up there
        spec.loader.exec_module(module)
        return module
    return load
