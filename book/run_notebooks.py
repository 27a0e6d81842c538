"""Execute chapter notebooks in place, the way their committed outputs are made.

One runner for every place a recorded run happens: ``make run-notebooks`` on
this machine, and the lent GPU machine, which has no TensorFlow, no Jupyter
command and no network (``book/device_run.sh`` calls this file there). It
imports nothing but ``nbclient``/``nbformat`` and the standard library.

Usage::

    python book/run_notebooks.py notebooks/02_resnet50_keras.ipynb [...]
    python book/run_notebooks.py --archive OUT/full-run.tar.gz notebooks/*.ipynb
    python book/run_notebooks.py --collect full-run.tar.gz     # back on the development machine
    python book/run_notebooks.py --print-env                   # the kernel environment, for make

Each notebook runs in a fresh kernel with :data:`NOTEBOOK_ENV` (the kernel
config that keeps TensorFlow's C++ log lines out of cells, no progress bars,
inline figures, a fixed hash seed) and is saved in place, also when a cell
fails, so the error can be read. A notebook that fails does not stop the
others. With ``--archive``, the executed notebooks, the run records they wrote
(the new files in ``$RESBOOK_RUNS``, packed as ``book/records/``) and
``full-run.json`` (seconds and outcome per notebook) go into one ``.tar.gz``
laid out like the repository; ``--collect`` unpacks such an archive into the
repository, replacing the records of the chapters it holds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = Path("book") / "records"

#: The environment every executed notebook's kernel gets (``make test-notebooks`` uses it too).
NOTEBOOK_ENV = {
    "IPYTHONDIR": str(ROOT / "config" / "ipython"),  # TensorFlow's C++ log lines stay on the terminal
    "TQDM_DISABLE": "1",  # no progress bars in stored outputs
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYTHONHASHSEED": "0",
    # TensorFlow reads these at import, which a chapter's first cell does (settings.TENSORFLOW_ENV says why):
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def execute(path: Path, timeout: int | None = None) -> tuple[bool, float, str]:
    """Run ``path`` top to bottom in a new kernel and save it in place: ``(ok, seconds, error)``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return not error, seconds, error


def records_written_since(folder: Path, start: float) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.stat().st_mtime >= start)


def run(notebooks: list[Path], archive: Path | None = None, timeout: int | None = None, root: Path = ROOT) -> int:
    """Execute ``notebooks`` in order; with ``archive``, pack them, their new records and a summary."""
    os.environ.update({k: os.environ.get(k, v) for k, v in NOTEBOOK_ENV.items()})
    runs = Path(os.environ.get("RESBOOK_RUNS", root / "runs")).resolve()
    started = time.time()
    summary = {"host": platform.node(), "env": {k: os.environ.get(k) for k in
                                               ("RESBOOK_PROFILE", "RESBOOK_DATA", "KERAS_BACKEND")},
               "notebooks": {}}
    failed = 0
    for nb in notebooks:
        print(f"[run_notebooks] {nb} ...", flush=True)
        ok, seconds, error = execute(nb, timeout)
        failed += not ok
        summary["notebooks"][nb.name] = {"ok": ok, "seconds": round(seconds, 1), "error": error}
        print(f"[run_notebooks] {nb}: {'ok' if ok else 'FAILED: ' + error} ({seconds:.0f} s)", flush=True)
    if archive is not None:
        new_records = records_written_since(runs, started) if runs.is_dir() else []
        summary["records"] = [p.name for p in new_records]
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            for nb in notebooks:
                tar.add(nb.resolve(), arcname=f"notebooks/{nb.name}")
            for rec in new_records:
                tar.add(rec, arcname=str(RECORDS / rec.name))
            data = json.dumps(summary, indent=2).encode()
            info = tarfile.TarInfo("full-run.json")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        print(f"[run_notebooks] packed {len(notebooks)} notebooks and {len(new_records)} records into {archive}")
    return 1 if failed else 0


def collect(archive: Path, root: Path = ROOT) -> int:
    """Unpack a ``--archive`` file into the repository; the chapters it holds lose their old records."""
    sys.path.insert(0, str(ROOT / "src"))  # make device-collect runs this with a Python that may lack resbook
    from resbook.files import atomic_write
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name != "full-run.json"]
        bad = [m.name for m in members if not (m.isfile() and _allowed(m.name))]
        if bad:
            print(f"{archive} holds entries other than notebooks/*.ipynb and book/records/*.json "
                  f"({', '.join(bad[:3])}): nothing was unpacked.", file=sys.stderr)
            return 2
        chapters = {Path(m.name).stem for m in members if m.name.startswith("notebooks/")}
        for old in (root / RECORDS).glob("*.json"):
            if any(f"_{chapter}_" in old.name for chapter in chapters):
                old.unlink()
        for m in members:
            with atomic_write(root / m.name, "wb") as out:
                out.write(tar.extractfile(m).read())
        if "full-run.json" in tar.getnames():
            print(tar.extractfile("full-run.json").read().decode())
    print(f"unpacked {len(members)} files; chapters replaced: {', '.join(sorted(chapters)) or 'none'}")
    return 0


def _allowed(name: str) -> bool:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
        return False
    return ((p.parts[0] == "notebooks" and len(p.parts) == 2 and p.suffix == ".ipynb")
            or (p.parent == RECORDS and p.suffix == ".json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--archive", type=Path, help="pack notebooks, new records and a summary into this .tar.gz")
    parser.add_argument("--collect", type=Path, metavar="ARCHIVE", help="unpack an --archive file into the repository")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--print-env", action="store_true", help="print NOTEBOOK_ENV as shell assignments")
    args = parser.parse_args(argv)
    if args.print_env:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in NOTEBOOK_ENV.items()))
        return 0
    if args.collect:
        return collect(args.collect)
    missing = [str(nb) for nb in args.notebooks if not nb.is_file()]
    if missing or not args.notebooks:
        parser.error(f"no such notebook: {', '.join(missing)}" if missing else "name at least one notebook")
    return run(args.notebooks, args.archive, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
