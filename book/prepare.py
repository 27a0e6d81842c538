"""Prepare what `make book` needs besides the notebooks; run before `jupyter-book build`.

1. Vendor MathJax 3 from the npm registry into `_vendor/mathjax`, through the
   same verified, atomic download and safe extraction the datasets use, so
   the book renders its math with no network (Jupyter Book loads MathJax from
   a CDN by default).
2. Write `book/_generated/results_table.md`, the "Runs and results" table,
   from the run records in `book/records/` (one JSON per recorded run).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from resbook import records, settings
from resbook.data.download import Remote, download, extract

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
    staging = target.with_name("mathjax.incomplete")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        src = unpacked / "package" / "es5" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / part)
    staging.rename(target)
    return target


def write_results_table() -> Path:
    recs = records.load_records(ROOT / "book" / "records")
    out = ROOT / "book" / "_generated" / "results_table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = records.results_table(recs) if recs else "*No recorded runs yet.*"
    out.write_text(body + "\n")
    return out


def main() -> int:
    print(f"MathJax vendored in {vendor_mathjax().relative_to(ROOT)}")
    print(f"Results table from {len(records.load_records(ROOT / 'book' / 'records'))} records "
          f"written to {write_results_table().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
