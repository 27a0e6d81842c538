"""The "Runs and results" page body that book/prepare.py generates from run records."""

import json

import pytest

from resbook.records import Record


@pytest.fixture(scope="module")
def prepare(book_script):
    return book_script("prepare")


def record(chapter, name, date, device="CPU: test (2 cores)", **metrics):
    return Record(chapter=chapter, name=name, profile="full", data="MNIST", device=device,
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
    assert "| [03_smoke](../notebooks/03_smoke.ipynb) | smoke | generated (flowers-n40-s0) | CPU: test (2 cores) |" in table
