"""The built book, page by page, in headless Chromium: `make test-book`.

`make test-book` builds the HTML book (the `book` target) and runs this file;
the plain `pytest tests` unit run skips this folder (see `norecursedirs` in
pyproject.toml). Every page of `_toc.yml` is served from `_build/html` by a
local HTTP server on 127.0.0.1 and opened in Debian's Chromium, driven by
Playwright (which never downloads a browser here: `executable_path` points at
the system one, `$CHROMIUM` or `chromium` on the PATH). Each page must:

* load with HTTP 200, without JavaScript errors or failed requests for the book's own files;
* have no broken internal link: every relative `<a href>` names an existing file and anchor;
* show every `<img>` (naturalWidth > 0);
* have its math typeset by MathJax: no raw `$$`, `\\(` or `\\[` left in the text, and every
  math element holding an `mjx-container`;
* show Markdown tables (the notebooks print their results tables as Markdown) as tables,
  not as rows of `|` and `---`;
* keep everything inside the text column: code and outputs wrap at its edge (no line cut off
  at the edge of its box), and a table, image or displayed equation wider than the column
  scrolls sideways inside a box that fits it (see book/static/book.css);
* (chapters) show at least as many rendered images in cell outputs as the notebook has PNG
  outputs, and an "Open in Colab" button for that notebook in the repository `_config.yml`
  names (tests/test_colab.py checks that each notebook's install cell names the same one);
* (chapters) name what they follow ("This chapter follows ...") and link the references page;
* (chapters) show their block diagrams: every cell the notebook tags `diagram` is on the page
  (MyST-NB writes a cell's tags as `tag_<name>` classes) with its drawing rendered, and
  chapters 1 and 2 have the diagrams their prose explains (`DIAGRAMS`).

A full-page screenshot of each page is saved to `_build/html/_screenshots/`.
Requests to anywhere but the local server are blocked, so the test needs no network.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SCREENSHOTS = SITE / "_screenshots"

# Headless Chromium on a machine whose network is closed: no sandbox (root in a
# container), no GPU, and none of the background connections it would try.
# Playwright gives every launch a fresh temporary profile (user-data-dir).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
# Pages Sphinx writes besides those of the table of contents.
SPHINX_PAGES = ["index.html", "genindex.html", "search.html"]


def toc_pages() -> list[str]:
    """The book's pages in reading order, as paths in `_build/html` (`book/intro.html`, ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return [f"{Path(f).with_suffix('')}.html" for f in files]


PAGES = toc_pages()
CHAPTERS = [p for p in PAGES if p.startswith("notebooks/")]


def png_outputs(notebook: Path) -> int:
    """How many PNG images the notebook's stored outputs hold (cells removed from the page excluded)."""
    count = 0
    for cell in json.loads(notebook.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-cell", "remove-output"} & set(tags):
            continue
        count += sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    return count


def diagram_cells(notebook: Path) -> tuple[int, int]:
    """How many code cells the notebook tags `diagram`, and how many PNG outputs those cells hold."""
    cells = [cell for cell in json.loads(notebook.read_text())["cells"]
             if cell["cell_type"] == "code" and "diagram" in cell.get("metadata", {}).get("tags", [])]
    return len(cells), sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))


# The block diagrams (resbook.diagrams) a chapter must show at least: chapter 1's residual block and
# pre-activation block; chapter 2's bottleneck block with either shortcut and ResNet-50's stage layout.
DIAGRAMS = {"notebooks/01_residual_math.html": 2, "notebooks/02_resnet50_keras.html": 3}


def colab_url(notebook: str) -> str:
    """Where the "Open in Colab" button of `notebooks/<name>.ipynb` must point, from `_config.yml`."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    owner_name = urlsplit(repo["url"]).path.strip("/")
    prefix = repo.get("path_to_book", "").strip("/")
    path = f"{prefix}/{notebook}" if prefix else notebook
    return f"{config['launch_buttons']['colab_url']}/github/{owner_name}/blob/{repo['branch']}/{path}"


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    """Every id (and old-style `name`) a built HTML file defines."""
    return frozenset(re.findall(r'\s(?:id|name)="([^"]+)"', path.read_text(errors="replace")))


# What the browser reports about a page once it has settled: MathJax has typeset
# the math, every image has been decoded (or failed), the fonts are loaded.
INSPECT = """async () => {
  const hasMath = document.querySelector('.math') !== null;
  if (hasMath) {  // MathJax loads deferred; wait for it to exist, then for its first typesetting
    for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await new Promise(r => setTimeout(r, 50));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
  await Promise.all([...document.images].map(img => {
    img.loading = 'eager';
    return img.decode().catch(() => null);
  }));
  await document.fonts.ready;
  // The text column, and what does not fit it: a <pre> whose lines run past its box (cut off,
  // or hidden behind a scroll bar), or a wide element that is not inside a scrolling box that fits.
  const column = document.querySelector('article.bd-article') || document.querySelector('main');
  const edge = column.getBoundingClientRect();
  const outside = r => r.left < edge.left - 1 || r.right > edge.right + 1;
  const scroller = el => {
    for (let e = el; e && e !== column; e = e.parentElement)
      if (['auto', 'scroll'].includes(getComputedStyle(e).overflowX)) return e;
    return null;
  };
  const shown = e => e.getClientRects().length > 0;
  const name = e => `<${e.tagName.toLowerCase()}> "${e.textContent.trim().replace(/\s+/g, ' ').slice(0, 60)}"`;
  const prose = document.querySelector('main').cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, textarea, mjx-container').forEach(e => e.remove());
  return {
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    images: [...document.images].map(img => ({
      src: img.currentSrc || img.src, width: img.naturalWidth, inOutput: img.closest('.cell_output') !== null,
    })),
    math: document.querySelectorAll('.math').length,
    mathUntypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'))
      .map(e => e.textContent.slice(0, 80)),
    mjxContainers: document.querySelectorAll('mjx-container').length,
    diagramCells: document.querySelectorAll('.cell.tag_diagram').length,
    diagramsShown: [...document.querySelectorAll('.cell.tag_diagram .cell_output img')]
      .filter(img => img.naturalWidth > 0).length,
    proseText: prose.textContent,
    unwrapped: [...column.querySelectorAll('pre')].filter(shown)
      .filter(e => e.scrollWidth > e.clientWidth + 1 || outside(e.getBoundingClientRect())).map(name),
    tooWide: [...column.querySelectorAll('table, img, mjx-container[display="true"], .cell_output > *')]
      .filter(shown).filter(e => {
        const box = scroller(e);
        return outside((box || e).getBoundingClientRect()) || (!box && e.scrollWidth > e.clientWidth + 1);
      }).map(name),
  };
}"""


@dataclass
class Visit:
    """One page as the browser showed it."""

    path: str
    url: str
    status: int | None
    errors: list[str]  # JavaScript errors and failed requests for the book's own files
    links: list[str]
    images: list[dict]
    math: int
    math_untypeset: list[str]
    mjx_containers: int
    diagram_cells: int   # cells tagged `diagram` on the page
    diagrams_shown: int  # images rendered in those cells' outputs
    prose_text: str
    unwrapped: list[str]  # <pre> blocks whose lines do not fit their box
    too_wide: list[str]   # tables, images, equations, outputs wider than the column and not scrollable


@pytest.fixture(scope="session")
def server():
    """`_build/html` over HTTP on 127.0.0.1 (a free port)."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"{SITE} holds no built book: run `make test-book`, which builds it first.")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("No Chromium found: install Debian's chromium (apt-get install -y chromium) "
                    "or set CHROMIUM to a Chromium executable.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def visit(server, browser):
    """`visit("book/intro.html")`: open the page once, screenshot it, and return what it showed."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Visit] = {}

    def load(path: str) -> Visit:
        if path in seen:
            return seen[path]
        context = browser.new_context(viewport=VIEWPORT)
        # Nothing but the local server: the test must not depend on (or wait for) the network.
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                      else route.abort())
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"JavaScript error: {exc}"))
        page.on("requestfailed", lambda req: req.url.startswith(server) and errors.append(
            f"request failed: {req.url} ({req.failure})"))
        page.on("response", lambda res: res.url.startswith(server) and res.status >= 400 and errors.append(
            f"HTTP {res.status}: {res.url}"))
        response = page.goto(f"{server}/{path}", wait_until="load")
        page.wait_for_load_state("networkidle")
        facts = page.evaluate(INSPECT)
        page.screenshot(path=str(SCREENSHOTS / (path.replace("/", "__").removesuffix(".html") + ".png")),
                        full_page=True)
        seen[path] = Visit(path=path, url=page.url, status=response.status if response else None,
                           errors=errors, links=facts["links"], images=facts["images"], math=facts["math"],
                           math_untypeset=facts["mathUntypeset"], mjx_containers=facts["mjxContainers"],
                           diagram_cells=facts["diagramCells"], diagrams_shown=facts["diagramsShown"],
                           prose_text=facts["proseText"], unwrapped=facts["unwrapped"],
                           too_wide=facts["tooWide"])
        context.close()
        return seen[path]

    return load


def test_the_build_has_exactly_the_toc_pages():
    built = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                   if not p.relative_to(SITE).parts[0].startswith("_"))
    assert built == sorted(PAGES + SPHINX_PAGES)


def test_the_toc_has_every_chapter_in_reading_order():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert CHAPTERS == [nb.relative_to(ROOT).with_suffix(".html").as_posix() for nb in notebooks]


@pytest.mark.parametrize("path", PAGES + SPHINX_PAGES)
def test_page_loads(visit, path):
    page = visit(path)
    assert page.status == 200
    assert page.errors == []


@pytest.mark.parametrize("path", PAGES + SPHINX_PAGES)
def test_internal_links_resolve(visit, server, path):
    broken = []
    for link in visit(path).links:
        if not link.startswith(server + "/"):
            continue  # other sites (GitHub, Colab, arXiv, ...) are not checked: no network here
        parts = urlsplit(link)
        target = SITE / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link}: no file {target.relative_to(SITE)}")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
            broken.append(f"{link}: no anchor #{parts.fragment} in {target.relative_to(SITE)}")
    assert broken == []


@pytest.mark.parametrize("path", PAGES + SPHINX_PAGES)
def test_images_load(visit, path):
    assert [img["src"] for img in visit(path).images if img["width"] == 0] == []


@pytest.mark.parametrize("path", PAGES + SPHINX_PAGES)
def test_math_is_typeset(visit, path):
    page = visit(path)
    raw = [d for d in ("$$", "\\(", "\\)", "\\[", "\\]") if d in page.prose_text]
    assert raw == [], f"raw TeX delimiters in the text of {path}"
    assert page.math_untypeset == []
    if page.math:
        assert page.mjx_containers >= 1


# A Markdown table's delimiter row, `|---|--:|`, also after smartquotes made `---` a dash.
RAW_TABLE_ROW = re.compile(r"\|\s*:?[-\u2013\u2014]{1,}:?\s*\|\s*:?[-\u2013\u2014]{1,}:?\s*\|")


@pytest.mark.parametrize("path", PAGES + SPHINX_PAGES)
def test_markdown_tables_are_rendered(visit, path):
    assert RAW_TABLE_ROW.findall(visit(path).prose_text) == []


@pytest.mark.parametrize("path", PAGES)
def test_code_and_outputs_wrap_inside_the_column(visit, path):
    assert visit(path).unwrapped == [], f"{path}: lines of code or output run past the column"


@pytest.mark.parametrize("path", PAGES)
def test_wide_tables_scroll_inside_the_column(visit, path):
    assert visit(path).too_wide == [], f"{path}: wider than the text column and not in a box that scrolls"


@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_shows_its_figures(visit, path):
    expected = png_outputs(ROOT / Path(path).with_suffix(".ipynb"))
    shown = [img for img in visit(path).images if img["inOutput"] and img["width"] > 0]
    assert len(shown) >= expected, f"{path}: {len(shown)} figures shown, the notebook has {expected} PNG outputs"


@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_shows_its_diagrams(visit, path):
    cells, pngs = diagram_cells(ROOT / Path(path).with_suffix(".ipynb"))
    page = visit(path)
    assert page.diagram_cells == cells, f"{path}: {page.diagram_cells} diagram cells on the page, notebook: {cells}"
    assert page.diagrams_shown == pngs, f"{path}: {page.diagrams_shown} diagrams shown, the notebook has {pngs}"
    assert page.diagram_cells >= DIAGRAMS.get(path, 0) and page.diagrams_shown >= DIAGRAMS.get(path, 0), \
        f"{path}: shows {page.diagrams_shown} diagrams in {page.diagram_cells} cells, expected {DIAGRAMS.get(path)}"


@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_names_what_it_follows_and_links_the_references(visit, path):
    page = visit(path)
    text = " ".join(page.prose_text.split())
    assert "This chapter follows" in text, f"{path}: no 'This chapter follows ...' line under the title"
    assert any(link.split("#")[0].endswith("/book/references.html") for link in page.links), \
        f"{path}: the sources line does not link the references page"


@pytest.mark.parametrize("path", CHAPTERS)
def test_colab_button_opens_this_notebook(visit, path):
    notebook = str(Path(path).with_suffix(".ipynb"))
    buttons = [link for link in visit(path).links if link.startswith("https://colab.research.google.com/")]
    assert buttons == [colab_url(notebook)]
    assert buttons[0].endswith(notebook)
