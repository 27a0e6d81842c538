"""Prepare what `make book` needs besides the notebooks; run before `jupyter-book build`.

1. Vendor MathJax 3 from the npm registry into `_vendor/mathjax`, through the
   same verified, atomic download and safe extraction the datasets use, so
   the book renders its math with no network (Jupyter Book loads MathJax from
   a CDN by default).
2. Write `book/_generated/results_table.md`, the body of the "Runs and
   results" page, from the run records in `book/records/` (one JSON per
   recorded run): one section per chapter, in reading order, with what its
   runs share (profile, data, device, versions) said once above a compact
   table of what differs (run, metrics, wall time, date, commit).
3. Write `book/_generated/shown_outputs.md`: for each notebook, the profile,
   data and device of the run whose outputs it shows, read from the run
   description its set-up cell printed (so it cannot drift from the notebook).
4. Point each notebook's install cell (its first code cell, which runs only on
   Colab) at the repository `_config.yml` names in `repository.url` and
   `repository.branch`, the setting Jupyter Book's Colab buttons use: the one
   place the book's address is set. Only that cell's source changes; its
   outputs are empty (it does nothing outside Colab) and stay so.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from resbook import records, settings
from resbook.records import Record
from resbook.data.download import Remote, download, extract
from resbook.files import atomic_folder, atomic_write

ROOT = Path(__file__).resolve().parent.parent
MATHJAX = Remote(
    url="https://registry.npmjs.org/mathjax/-/mathjax-3.2.2.tgz",
    filename="mathjax-3.2.2.tgz",
    hash_algorithm="sha512",  # npm's "integrity" field, base64 -> hex
    hash_value="06df9249553c7811b6ef30a155ec0e89c62ced7b1db78d2a9b8f94a47c97ee4d"
               "3f3bd36588f73ec7bee4d7f144b0fb2328f64626fb5164cd6f3be81e5b43a11b",
    size=6_132_118,
)
# What tex-chtml.js loads at run time; the 4 MB speech engine (sre/) is left out.
MATHJAX_PARTS = ["tex-chtml.js", "input", "output", "ui", "a11y", "adaptors"]


def vendor_mathjax() -> Path:
    target = ROOT / "_vendor" / "mathjax"
    if (target / "tex-chtml.js").exists():
        return target
    cache = settings.cache_dir() / "downloads"
    unpacked = cache / "mathjax-3.2.2"
    if not unpacked.exists():
        extract(download(MATHJAX, cache), unpacked)
    shutil.rmtree(target, ignore_errors=True)  # a copy without tex-chtml.js is not one
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(target) as staging:
        for part in MATHJAX_PARTS:
            src = unpacked / "package" / "es5" / part
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / part)
    return target


# What the runs of a chapter usually share: said once above its table, or a column where they differ.
SHARED = ("profile", "data", "device", "versions", "seed")


# Records that belong to no notebook: benchmarks/bench.py writes chapter "bench".
OTHER_TITLES = {"bench": "Training speed: the book's helpers vs the plain recipe (make bench)"}


def _cells(notebook: Path) -> list[dict[str, Any]]:
    return json.loads(notebook.read_text())["cells"]


def _first_heading(cells: list[dict[str, Any]]) -> str | None:
    """The first ``# ...`` line of the markdown cells (``# 1. Residual math`` -> ``1. Residual math``)."""
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


def chapter_title(chapter: str, notebooks: Path) -> str:
    """The notebook's first heading (``# 1. Residual math``), else a known title, else the name itself."""
    if chapter in OTHER_TITLES:
        return OTHER_TITLES[chapter]
    path = notebooks / f"{chapter}.ipynb"
    return (_first_heading(_cells(path)) if path.exists() else None) or chapter


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _shared_value(rec: Record, key: str) -> str:
    if key != "versions":
        return str(getattr(rec, key))
    try:
        return settings.format_versions(rec.versions)
    except KeyError:  # a record written by an older resbook
        return ", ".join(f"{k} {v}" for k, v in rec.versions.items())


def _short_commit(commit: str) -> str:
    """``48af7b8c1d2e+dirty`` -> ``48af7b8c+dirty``: eight hex digits name a commit of this repository."""
    sha, plus, rest = commit.partition("+")
    return sha[:8] + plus + rest


def results_page(recs: list[Record], notebooks: Path, link_prefix: str = "../notebooks/") -> str:
    """The Markdown body of "Runs and results": one section per chapter, in reading order."""
    if not recs:
        return ("*No recorded runs yet: a chapter's runs appear here once the records of its `full` run "
                "are committed to `book/records/`.*")
    chapters: dict[str, list[Record]] = {}
    for rec in recs:  # records are sorted by date; chapters by name, which is reading order (01_, 02_, ...)
        chapters.setdefault(rec.chapter, []).append(rec)
    out = []
    for chapter in sorted(chapters):
        runs = chapters[chapter]
        title = chapter_title(chapter, notebooks)
        out.append(f"### {title}\n")
        n = f"{len(runs)} recorded run{'s' if len(runs) != 1 else ''}"
        if (notebooks / f"{chapter}.ipynb").exists():
            n += f" of [the chapter]({link_prefix}{chapter}.ipynb)"
        out.append(n + ".\n")
        varying = [k for k in SHARED if len({_shared_value(r, k) for r in runs}) > 1]
        out += [f"* **{key}**: {_shared_value(runs[0], key).replace(chr(10), ' ')}" for key in SHARED if key not in varying]
        out.append("")
        metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
        head = ["run", *varying, *(m.replace("_", " ") for m in metrics), "wall time", "date", "commit"]
        rows = [[r.name, *(_shared_value(r, k) for k in varying), *(r.metrics.get(m) for m in metrics),
                 _duration(r.wall_time_s), r.date[:10], f"`{_short_commit(r.git_commit)}`"] for r in runs]
        align = "l" * (1 + len(varying)) + "r" * (len(metrics) + 1) + "ll"
        out += [records.markdown_table(rows, head, align).rstrip("\n"), ""]
    return "\n".join(out).rstrip() + "\n"


def run_description(cells: list[dict[str, Any]]) -> dict[str, str]:
    """The ``key   value`` lines :func:`resbook.settings.describe_run` printed in a notebook's outputs."""
    for cell in cells:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            if text.startswith("chapter "):
                pairs = (line.split(maxsplit=1) for line in text.splitlines())
                return dict(pair for pair in pairs if len(pair) == 2)
    return {}


def shown_outputs(notebooks: Path, link_prefix: str = "../notebooks/") -> str:
    """A table: for each chapter, the profile, data and device of the outputs its page shows."""
    rows = []
    for path in sorted(notebooks.glob("*.ipynb")):
        cells = _cells(path)  # read once: the run description and the heading both come from it
        run = run_description(cells)
        profile = run["profile"].split(" ", 1)[0] if "profile" in run else "not run"
        shown = f"**{profile}**" if profile == "full" else profile
        number = (_first_heading(cells) or path.stem).split(". ", 1)[0]
        name = f"Chapter {number}" if number.isdigit() else path.stem
        title = f"[{name}]({link_prefix}{path.name})"
        data = run.get("data", "")
        if "/generated/" in data:  # a path in the cache of whoever ran it: say what it is
            data = f"generated ({data.rstrip('/').rsplit('/', 1)[-1]})"
        rows.append((title, shown, data, run.get("device", "")))
    return records.markdown_table(rows, ["chapter", "outputs shown", "data", "device"], align="llll")


def write_results_table() -> Path:
    recs = records.load_records(ROOT / "book" / "records")
    out = ROOT / "book" / "_generated" / "results_table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(results_page(recs, ROOT / "notebooks"))
    (out.parent / "shown_outputs.md").write_text(shown_outputs(ROOT / "notebooks"))
    return out


# The install line of a chapter's first cell: `%pip install -q "resbook[torch] @ git+URL@BRANCH"`.
INSTALL_LINE = re.compile(r'(%pip install -q "resbook\[\w+\] @ git\+)[^"]*(")')
COLAB_ONLY = 'if "google.colab" in sys.modules:'


def repository(config: Path = ROOT / "_config.yml") -> str:
    """``URL@BRANCH`` of the book's repository, from ``_config.yml`` (what the Colab buttons open)."""
    repo = yaml.safe_load(config.read_text())["repository"]
    url, branch = str(repo["url"]).rstrip("/"), str(repo["branch"])
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"Colab opens notebooks from GitHub: set repository.url in {config.name} to "
                         f"https://github.com/OWNER/NAME (it is {url!r}).")
    return f"{url}@{branch}"


def install_cell(cells: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A notebook's install cell: its first code cell, which installs the book on Colab only."""
    cell = next((c for c in cells if c["cell_type"] == "code"), None)
    if cell is None or COLAB_ONLY not in "".join(cell["source"]) or not INSTALL_LINE.search("".join(cell["source"])):
        raise SystemExit(f"{name}: the first code cell must be the Colab install cell "
                         f"({COLAB_ONLY} %pip install -q \"resbook[...] @ git+URL@BRANCH\").")
    return cell


def point_install_cells(notebooks: Path, repo: str) -> list[Path]:
    """Make every notebook's install cell install from ``repo`` (``URL@BRANCH``); return the notebooks changed.

    Only the install line of that one cell is rewritten, and only where it
    differs; a notebook whose install cell has outputs is refused rather than
    changed, so a build never alters what a page shows.
    """
    changed = []
    for path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cell = install_cell(nb["cells"], path.name)
        source = "".join(cell["source"])
        new = INSTALL_LINE.sub(lambda m: f"{m.group(1)}{repo}{m.group(2)}", source)
        if new == source:
            continue
        if cell.get("outputs"):
            raise SystemExit(f"{path.name}: its install cell has outputs; clear them before the build changes it.")
        cell["source"] = new.splitlines(keepends=True)
        with atomic_write(path, "w") as f:
            f.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        changed.append(path)
    return changed


def main() -> int:
    repo = repository()
    for path in point_install_cells(ROOT / "notebooks", repo):
        print(f"{path.relative_to(ROOT)}: its install cell now installs from {repo}")
    print(f"MathJax vendored in {vendor_mathjax().relative_to(ROOT)}")
    print(f"Results table from {len(records.load_records(ROOT / 'book' / 'records'))} records "
          f"written to {write_results_table().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
