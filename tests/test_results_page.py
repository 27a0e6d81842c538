"""The "Runs and results" page body that book/prepare.py generates from run records."""

import json

import pytest

from resbook.records import Record


@pytest.fixture(scope="module")
def prepare(book_script):
    return book_script("prepare")


def record(chapter, name, date, device="CPU: test (2 cores)", profile="full", data="MNIST", **metrics):
    return Record(chapter=chapter, name=name, profile=profile, data=data, device=device,
                  versions={"python": "3.11.7", "torch": "2.14.1"}, seed=0, metrics=metrics,
                  wall_time_s=150.0, git_commit="48af7b8c1d2e+dirty", date=f"{date}T10:00:00+00:00")


@pytest.fixture
def notebooks(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": ["# 1. Residual math\n", "\n", "Text."]}]}
    (tmp_path / "01_residual_math.ipynb").write_text(json.dumps(nb))
    return tmp_path


def test_one_section_per_chapter_in_reading_order(prepare, notebooks):
    recs = [record("05_torch", "a", "2026-01-01", test_accuracy=0.99),
            record("01_residual_math", "plain-20", "2026-01-02", train_error=0.0312, parameters=272474),
            record("01_residual_math", "resnet-20", "2026-01-03", train_error=0.021)]
    page = prepare.results_page(recs, notebooks)
    assert page.index("## 1. Residual math") < page.index("## 05_torch")  # no notebook: the chapter name
    assert "2 recorded runs of [the chapter](../notebooks/01_residual_math.ipynb)." in page
    assert "1 recorded run." in page
    assert "* **versions**: Python 3.11.7 · torch 2.14.1" in page
    assert "| run | train error | parameters | wall time | date | commit |" in page
    assert "| plain-20 | 3.12% | 272,474 | 2.5 min | 2026-01-02 | `48af7b8c+dirty` |" in page
    assert "| resnet-20 | 2.10% |  | 2.5 min |" in page


def test_what_differs_between_runs_becomes_a_column(prepare, notebooks):
    recs = [record("01_residual_math", "a", "2026-01-01", device="GPU one", loss=0.5),
            record("01_residual_math", "b|c", "2026-01-02", device="GPU two", loss=0.25)]
    page = prepare.results_page(recs, notebooks)
    assert "**device**" not in page
    assert "| run | device | loss | wall time | date | commit |" in page
    assert "| b\\|c | GPU two | 0.25 |" in page


def test_a_records_data_shows_no_machine_folder(prepare, notebooks):
    recs = [record("01_residual_math", "a", "2026-01-01",
                   data="MNIST idx files in /work/shared/data/mnist (60000 train)"),
            record("01_residual_math", "b", "2026-01-02", data="/root/.cache/resbook/generated/flowers-n40-s0")]
    page = prepare.results_page(recs, notebooks)
    assert "/work/" not in page and "/root/" not in page
    assert "| a | MNIST idx files in mnist (60000 train) |" in page
    assert "| b | generated data (flowers-n40-s0) |" in page


def test_no_records(prepare, notebooks):
    assert "No recorded runs yet" in prepare.results_page([], notebooks)


def test_shown_outputs_reads_the_profile_each_notebook_printed(prepare, tmp_path):
    printed = ("chapter   01_residual_math\nprofile   full (the articles' settings)\n"
               "data      MNIST idx files\ndevice    CPU: test (2 cores)\nseed      0\n")
    cells = [{"cell_type": "markdown", "source": ["# 1. Residual math"]},
             {"cell_type": "code", "source": [], "outputs": [{"output_type": "stream", "name": "stdout",
                                                              "text": printed}]}]
    (tmp_path / "01_residual_math.ipynb").write_text(json.dumps({"cells": cells}))
    (tmp_path / "03_smoke.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "stream", "name": "stdout", "text": printed.replace("full (", "smoke (").replace(
            "MNIST idx files", "/home/reader/.cache/resbook/generated/flowers-n40-s0")}]}]}))
    (tmp_path / "02_unrun.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": [],
                                                                      "outputs": []}]}))
    table = prepare.shown_outputs(tmp_path)
    assert ("| [Chapter 1](../notebooks/01_residual_math.ipynb) | **full** | MNIST idx files "
            "| CPU: test (2 cores) |") in table
    assert "| [02_unrun](../notebooks/02_unrun.ipynb) | not run |  |  |" in table
    assert "| [03_smoke](../notebooks/03_smoke.ipynb) | smoke | generated data (flowers-n40-s0) | CPU: test (2 cores) |" in table


@pytest.fixture
def claims(prepare):
    Claim = prepare.Claim
    return (Claim("01_residual_math", "ResNet-56, test error", ("resnet-56",), "test_error", "6.97%", "He et al. 2016"),
            Claim("01_residual_math", "plain-56 / plain-20", ("plain-56", "plain-20"), "train_error"),
            Claim("02_keras", "the article's recipe", ("article-recipe",), "val_accuracy", "77.60%", "*Scratch*"),
            Claim("03_transfer", "ImageNet base, frozen", ("imagenet-frozen",), "val_accuracy", "88.37%", "Jeremy",
                  needs="needs the ImageNet weights download"),
            Claim("05_torch", "test accuracy", ("article-resnet",), "test_accuracy", "0.99", "Sinha"))


def summary_rows(page):
    return [line for line in page.splitlines()[2:]]


def test_summary_puts_the_articles_numbers_with_their_source_beside_ours(prepare, notebooks, claims):
    recs = [record("01_residual_math", "resnet-56", "2026-01-01", data="MNIST idx files in /home/someone/datasets/mnist",
                   test_error=0.0046),
            record("01_residual_math", "plain-56", "2026-01-02", train_error=0.01),
            record("01_residual_math", "plain-20", "2026-01-03", train_error=0.0036),
            record("02_keras", "article-recipe", "2026-01-04", profile="smoke", val_accuracy=0.2,
                   data="/root/.cache/resbook/generated/flowers-n40-s0"),
            record("05_torch", "article-resnet", "2026-01-05", test_accuracy=0.9),
            record("05_torch", "article-resnet", "2026-01-06", test_accuracy=0.995)]
    page = prepare.summary(recs, notebooks, claims)
    assert page.splitlines()[0] == ("| chapter | result | the article's number | source | ours | data | device "
                                    "| wall time |")
    rows = summary_rows(page)
    assert len(rows) == 5  # a row per claim, in the chapters' order
    assert rows[0] == ("| [Chapter 1](../notebooks/01_residual_math.ipynb) | ResNet-56, test error | 6.97% "
                       "| He et al. 2016 | 0.46% | MNIST idx files in mnist | CPU: test (2 cores) | 2.5 min |")
    assert "| plain-56 / plain-20 | — | — | 1.00% / 0.36% | MNIST | CPU: test (2 cores) | 5.0 min |" in rows[1]
    assert ("| 02_keras | the article's recipe | 77.60% | *Scratch* | no full run yet (only a `smoke` run, whose "
            "numbers mean nothing) | generated data (flowers-n40-s0) |") in rows[2]
    assert rows[3] == ("| 03_transfer | ImageNet base, frozen | 88.37% | Jeremy | not run here: needs the ImageNet "
                       "weights download |  |  |  |")
    assert "| 0.99 | Sinha | 99.50% |" in rows[4]  # the latest record of a run


def test_a_run_without_a_record_and_no_reason_is_not_recorded_yet(prepare, notebooks, claims):
    page = prepare.summary([], notebooks, claims)
    assert summary_rows(page)[0].endswith("| He et al. 2016 | not recorded yet |  |  |  |")
    assert "not run here: needs the ImageNet weights download" in summary_rows(page)[3]


def test_runs_in_brief_names_full_and_smoke_chapters_and_the_rows_not_run(prepare, tmp_path, claims):
    def nb(name, heading, profile, data):
        printed = f"chapter   x\nprofile   {profile} (...)\ndata      {data}\ndevice    CPU\n"
        cells = [{"cell_type": "markdown", "source": [f"# {heading}"]},
                 {"cell_type": "code", "source": [], "outputs": [{"output_type": "stream", "text": printed}]}]
        (tmp_path / f"{name}.ipynb").write_text(json.dumps({"cells": cells}))
    nb("01_residual_math", "1. Residual math", "full", "MNIST")
    nb("02_keras", "2. Keras", "smoke", "/home/r/.cache/resbook/generated/flowers-n40-s0")
    nb("03_transfer", "3. Transfer", "full", "flowers")
    text = prepare.runs_in_brief([record("03_transfer", "random-frozen", "2026-01-01")], tmp_path, claims)
    assert text.startswith("Chapters 1 and 3 show the outputs of real `full` runs on the real data. ")
    assert "chapter 2 shows only a `smoke` run on generated data (flowers-n40-s0)" in text
    assert "Not run here: chapter 3's ImageNet base; each needs the ImageNet weights download." in text


def test_the_books_claims_cite_the_sources_of_the_references_page(prepare):
    references = (prepare.ROOT / "book" / "references.md").read_text()
    sources = {c.source for c in prepare.CLAIMS if c.source != "—"}
    assert len(sources) == 6  # two papers (chapter 1), four articles
    for source in sources:
        title = source.split("*")[1]
        assert f"*{title.rstrip('.')}" in references, f"{title} is not cited on the references page"
    chapters = {c.chapter for c in prepare.CLAIMS}
    assert chapters == {p.stem for p in (prepare.ROOT / "notebooks").glob("*.ipynb")}  # a row per chapter
