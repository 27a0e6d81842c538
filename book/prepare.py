"""Prepare what `make book` needs besides the notebooks; run before `jupyter-book build`.

1. Vendor MathJax 3 from the npm registry into `_vendor/mathjax`, through the
   same verified, atomic download and safe extraction the datasets use, so
   the book renders its math with no network (Jupyter Book loads MathJax from
   a CDN by default).
2. Write `book/_generated/summary.md`, the table the "Runs and results" page
   opens with: per chapter, the articles' numbers (quoted, with their source,
   from `CLAIMS` below) beside ours, data, device and wall time, read from the
   run records in `book/records/`; a row whose run has no record says "not run
   here" and why. And `book/_generated/runs_in_brief.md`, the intro's paragraph
   on which chapters show full runs and which rows are not run here.
   Then `book/_generated/results_table.md`, the records themselves: one section per chapter, in reading order, with what its
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
from typing import Any, NamedTuple

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
    if key == "data":  # older records hold the path on the machine they ran on
        return _data_label(rec.data)
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


# The articles' sources as book/references.md cites them (title, author, venue, date; no URL is known).
HE2016 = "He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016"
HE2016_IDENTITY = "He, Zhang, Ren, Sun, *Identity Mappings in Deep Residual Networks*, ECCV 2016"
SCRATCH_ARTICLE = "*CNN Architecture from Scratch — ResNet50 with Keras*, author not named, Medium"
OXFORD_ARTICLE = "Jeremy, *Deep Learning 101 - Building ResNet for Flower Image Recognition*, his blog, Nov. 7, 2021"
MNIST_ARTICLE = "mrgrhn, *ResNet with TensorFlow (Transfer Learning)*, The Startup (Medium), Jan. 21, year not given"
TORCH_ARTICLE = "Ankita Sinha, *ResNet for Image Classification.*, Analytics Vidhya (Medium)"
IMAGENET = "needs the ImageNet weights download, which the machines this book is made on cannot reach"


class Claim(NamedTuple):
    """One row of the summary: a result, the article's number for it (quoted) and the runs that give ours."""

    chapter: str            # the notebook's name, as its records' `chapter`
    result: str
    runs: tuple[str, ...]   # record names; several runs' values are shown as "a / b"
    metric: str
    theirs: str = "—"
    source: str = "—"
    needs: str = ""         # why the run cannot be made here, when that is why it has no record


CLAIMS = (
    Claim("01_residual_math", "ResNet-20 / ResNet-56, test error", ("resnet-20", "resnet-56"), "test_error",
          "8.75% / 6.97% (CIFAR-10, Table 6)", HE2016),
    Claim("01_residual_math", "plain-56 / plain-20, training error (degradation)", ("plain-56", "plain-20"),
          "train_error", "plain-56 above plain-20 (CIFAR-10, Fig. 1 and 6)", HE2016),
    Claim("01_residual_math", "original / pre-activation ResNet-110, test error", ("original-110", "preact-110"),
          "test_error", "6.61% / 6.37% (CIFAR-10, Table 3)", HE2016_IDENTITY),
    Claim("02_resnet50_keras", "ResNet-50 from scratch, the article's recipe, validation accuracy",
          ("article-recipe",), "final_val_accuracy", "77.60% after 64 epochs; \"oscillates up to 82%\"",
          SCRATCH_ARTICLE),
    Claim("03_training_it_well", "ResNet-50 from scratch at an equal short budget: the article's recipe / all five "
          "changes, validation accuracy", ("row1-baseline", "row5-smoothing-ema"), "final_val_accuracy"),
    Claim("04_transfer_learning", "ImageNet ResNet-50 frozen + head, validation accuracy", ("imagenet-frozen",),
          "val_accuracy", "0.8837 after 20 epochs (10 classes of Oxford 102)", OXFORD_ARTICLE, needs=IMAGENET),
    Claim("04_transfer_learning", "ImageNet ResNet-50 with its top stage fine-tuned", ("imagenet-fine-tuned",),
          "val_accuracy", needs=IMAGENET),
    Claim("04_transfer_learning", "random ResNet-50 frozen / top stage fine-tuned",
          ("random-frozen", "random-fine-tuned"), "val_accuracy"),
    Claim("04_transfer_learning", "ResNet-50 from scratch", ("from-scratch",), "val_accuracy"),
    Claim("05_resnet152_mnist", "run 1: ImageNet ResNet-152 frozen + dense head, test accuracy",
          ("imagenet-frozen",), "test_accuracy", "92.75%", MNIST_ARTICLE, needs=IMAGENET),
    Claim("05_resnet152_mnist", "run 2: random ResNet-152 frozen + dense head", ("random-frozen",),
          "test_accuracy"),
    Claim("05_resnet152_mnist", "run 3: ResNet-152 from scratch, end to end", ("scratch-end-to-end",),
          "test_accuracy"),
    Claim("06_pytorch_resnet_tensorboard", "the article's small ResNet, test accuracy after 10 epochs",
          ("article-resnet",), "test_accuracy", "0.99 \"within 10 epochs\"", TORCH_ARTICLE),
    Claim("07_data_parallel", "batch 512 on 2 processes: unscaled rate / scaled with warm-up, test accuracy",
          ("2x256-unscaled", "2x256-scaled-warmup"), "test_accuracy"),
)


def _data_label(data: str) -> str:
    """A record's or page's data line without the folders of the machine it ran on."""
    if "/generated/" in data:
        return f"generated data ({data.rstrip('/').rsplit('/', 1)[-1]})"
    return re.sub(r"(?:[~$]\w*)?/\S*/([^/\s]+)/?", r"\1", data)


def _chapter_link(chapter: str, notebooks: Path, link_prefix: str) -> str:
    path = notebooks / f"{chapter}.ipynb"
    number = ((_first_heading(_cells(path)) if path.exists() else None) or chapter).split(". ", 1)[0]
    name = f"Chapter {number}" if number.isdigit() else chapter
    return f"[{name}]({link_prefix}{chapter}.ipynb)" if path.exists() else name


def _ours(claim: Claim, runs: list[Record | None]) -> str:
    if None in runs:
        return f"not run here: {claim.needs}" if claim.needs else "not recorded yet"
    unreal = [r for r in runs if r.profile != "full"]
    if unreal:
        return f"no full run yet (only a `{unreal[0].profile}` run, whose numbers mean nothing)"
    return " / ".join(records.format_value(claim.metric, r.metrics.get(claim.metric)) for r in runs)


def summary(recs: list[Record], notebooks: Path, claims=CLAIMS, link_prefix: str = "../notebooks/") -> str:
    """The table "Runs and results" opens with: per chapter, the articles' numbers beside ours."""
    latest = {(r.chapter, r.name): r for r in recs}  # records are oldest first: a re-run replaces a run
    rows = []
    for claim in claims:
        runs = [latest.get((claim.chapter, name)) for name in claim.runs]
        found = [r for r in runs if r is not None]
        data = " / ".join(dict.fromkeys(_data_label(r.data) for r in found))
        device = " / ".join(dict.fromkeys(r.device for r in found))
        wall = sum(r.wall_time_s or 0 for r in found) if found else None
        rows.append((_chapter_link(claim.chapter, notebooks, link_prefix), claim.result, claim.theirs,
                     claim.source, _ours(claim, runs), data, device, _duration(wall)))
    head = ["chapter", "result", "the article's number", "source", "ours", "data", "device", "wall time"]
    return records.markdown_table(rows, head, align="llllllll")


def runs_in_brief(recs: list[Record], notebooks: Path, claims=CLAIMS) -> str:
    """A paragraph for the intro: which chapters show full runs, which show smoke runs, which rows are not run."""
    profiles: dict[str, list[str]] = {}
    smoke = []
    for path in sorted(notebooks.glob("*.ipynb")):
        cells = _cells(path)
        run = run_description(cells)
        profile = run["profile"].split(" ", 1)[0] if "profile" in run else "not run"
        number = (_first_heading(cells) or path.stem).split(". ", 1)[0]
        profiles.setdefault(profile, []).append(number)
        if profile != "full":
            smoke.append(f"chapter {number} shows only a `{profile}` run on {_data_label(run.get('data', 'no data'))}")

    def chapters(numbers: list[str]) -> str:
        if len(numbers) == 1:
            return f"Chapter {numbers[0]}"
        return f"Chapters {', '.join(numbers[:-1])} and {numbers[-1]}"

    out = []
    if profiles.get("full"):
        out.append(f"{chapters(profiles['full'])} show the outputs of real `full` runs on the real data.")
    if smoke:
        out.append("Not yet: " + "; ".join(smoke) + ": that proves the code runs end to end, its accuracies mean "
                   "nothing, and the full run is still to be recorded.")
    latest = {(r.chapter, r.name) for r in recs}
    missing = [(c, c.needs) for c in claims if c.needs and any((c.chapter, n) not in latest for n in c.runs)]
    for needs in dict.fromkeys(n for _, n in missing):
        rows = [f"{_chapter_link(c.chapter, notebooks, '').split(']')[0].lstrip('[').lower()}'s "
                f"{c.result.split(',')[0]}" for c, n in missing if n == needs]
        out.append(f"Not run here: {', '.join(rows)}; each {needs}. Their tables say so "
                   "instead of showing a borrowed number.")
    return " ".join(out) + "\n"


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
        rows.append((title, shown, _data_label(run.get("data", "")), run.get("device", "")))
    return records.markdown_table(rows, ["chapter", "outputs shown", "data", "device"], align="llll")


def write_results_table() -> Path:
    recs = records.load_records(ROOT / "book" / "records")
    out = ROOT / "book" / "_generated" / "results_table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(results_page(recs, ROOT / "notebooks"))
    (out.parent / "summary.md").write_text(summary(recs, ROOT / "notebooks"))
    (out.parent / "runs_in_brief.md").write_text(runs_in_brief(recs, ROOT / "notebooks"))
    (out.parent / "shown_outputs.md").write_text(shown_outputs(ROOT / "notebooks"))
    return out


# The install line of a chapter's first cell: `%pip install -q "resbook[torch] @ git+URL@BRANCH"`.
INSTALL_LINE = re.compile(r'(%pip install -q "resbook\[[\w,]+\] @ git\+)[^"]*(")')
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
