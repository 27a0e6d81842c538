# ResNet Hands-On. The README's two commands are `make book` and `make test`;
# each creates .venv on first use and installs everything it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Environment for executing notebooks: our kernel config (TensorFlow's C++
# log lines stay on the terminal instead of landing in cells), no progress
# bars in stored outputs, matplotlib without a display.
NB_ENV := IPYTHONDIR=$(CURDIR)/config/ipython TQDM_DISABLE=1 MPLBACKEND=module://matplotlib_inline.backend_inline PYTHONHASHSEED=0

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: help setup book test test-unit test-notebooks run-notebooks bench clean

help:
	@echo "make book           build the HTML book into _build/html"
	@echo "make test           unit tests + every notebook under pytest --nbval (smoke profile)"
	@echo "make run-notebooks  re-execute notebooks in place (RESBOOK_PROFILE=full for the recorded run)"
	@echo "make bench          training speed of the book's helpers vs the plain recipe (not part of make test)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[all]"
	touch $@

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python book/prepare.py
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

test: test-unit test-notebooks

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests

test-notebooks: $(STAMP)
	$(NB_ENV) RESBOOK_PROFILE=smoke $(BIN)/python -m pytest --nbval --nbval-current-env -p no:cacheprovider notebooks

# Usage: make run-notebooks [NB=notebooks/01_residual_math.ipynb] [RESBOOK_PROFILE=full RESBOOK_DATA=...]
NB ?= $(NOTEBOOKS)
run-notebooks: $(STAMP)
	for nb in $(NB); do \
	  $(NB_ENV) $(BIN)/jupyter execute --inplace --timeout=-1 "$$nb" || exit 1; \
	done

# Training img/s, ours vs plain, per chapter model; records go to $RESBOOK_RUNS (default runs/).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf _build .pytest_cache
