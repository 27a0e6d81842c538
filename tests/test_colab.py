"""Colab: the launch buttons (`_config.yml`) and every notebook's install cell name one repository."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def prepare(book_script):
    return book_script("prepare")


def install_source(path: Path) -> str:
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    return "".join(first["source"])


def test_the_buttons_open_notebooks_from_the_configured_github_repository(prepare):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert prepare.repository() == f"{config['repository']['url']}@{config['repository']['branch']}"


def test_the_book_has_seven_chapters_to_check():
    assert len(NOTEBOOKS) == 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_installs_from_the_configured_repository_on_colab_only(prepare, path):
    source = install_source(path)
    assert 'if "google.colab" in sys.modules:' in source
    assert f'@ git+{prepare.repository()}"' in source, f"{path.name} installs from elsewhere: make book rewrites it"
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert first["outputs"] == [] and "hide-input" in first["metadata"]["tags"]


INSTALL = ('# On Colab, install the book\'s helpers first; anywhere else this cell does nothing.\nimport sys\n'
           'if "google.colab" in sys.modules:\n    %pip install -q "resbook[torch] @ git+{}"')


def notebook(tmp_path, name, url, outputs=()):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# 1. Title"]},
             {"cell_type": "code", "execution_count": 1, "metadata": {"tags": ["hide-input"]},
              "outputs": list(outputs), "source": INSTALL.format(url).splitlines(keepends=True)},
             {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": ["print('é')"],
              "outputs": [{"output_type": "stream", "name": "stdout", "text": ["é\n"]}]}]
    path = tmp_path / name
    path.write_text(json.dumps({"cells": cells, "nbformat": 4}, indent=1, ensure_ascii=False) + "\n")
    return path


def test_a_notebook_that_differs_gets_only_its_install_line_rewritten(prepare, tmp_path):
    repo = "https://github.com/someone/resnet-book@main"
    same = notebook(tmp_path, "01_a.ipynb", repo)
    other = notebook(tmp_path, "02_b.ipynb", "https://github.com/resnet-hands-on/resnet-hands-on")
    before = json.loads(other.read_text())
    untouched = same.read_text()
    assert prepare.point_install_cells(tmp_path, repo) == [other]
    assert same.read_text() == untouched
    after = json.loads(other.read_text())
    assert install_source(other) == INSTALL.format(repo)
    assert after["cells"][0] == before["cells"][0] and after["cells"][2] == before["cells"][2]
    assert after["cells"][1]["outputs"] == [] and after["cells"][1]["metadata"] == before["cells"][1]["metadata"]
    assert "'é'" in other.read_text()  # written as the notebooks are: indent 1, UTF-8 kept
    assert prepare.point_install_cells(tmp_path, repo) == []


def test_an_install_cell_with_outputs_is_refused_not_changed(prepare, tmp_path):
    path = notebook(tmp_path, "01_a.ipynb", "https://github.com/old/name",
                    outputs=[{"output_type": "stream", "name": "stdout", "text": ["installed\n"]}])
    text = path.read_text()
    with pytest.raises(SystemExit, match="install cell has outputs"):
        prepare.point_install_cells(tmp_path, "https://github.com/new/name@main")
    assert path.read_text() == text


def test_a_notebook_without_an_install_cell_is_an_error(prepare, tmp_path):
    (tmp_path / "01_a.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["x = 1"],
                                                                 "outputs": [], "metadata": {}}]}))
    with pytest.raises(SystemExit, match="first code cell must be the Colab install cell"):
        prepare.point_install_cells(tmp_path, "https://github.com/new/name@main")


def test_a_repository_colab_cannot_open_is_an_error(prepare, tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://gitlab.com/a/b\n  branch: main\n")
    with pytest.raises(SystemExit, match="set repository.url in _config.yml to https://github.com/OWNER/NAME"):
        prepare.repository(config)
