# ResNet Hands-On. The README's two commands are `make book` and `make test`;
# each creates .venv on first use and installs everything it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Environment for executing notebooks: our kernel config (TensorFlow's C++
# log lines stay on the terminal instead of landing in cells), no progress
# bars in stored outputs, matplotlib without a display. Defined once, in
# book/run_notebooks.py, which also makes the recorded runs.
NB_ENV := $(shell $(PYTHON) book/run_notebooks.py --print-env)

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# The notebooks test-notebooks and run-notebooks work on (NB=... for some of them).
NB ?= $(NOTEBOOKS)

.PHONY: help setup book test test-unit test-notebooks test-book test-jax chromium run-notebooks bench \
        device-payload device-collect clean

help:
	@echo "make book           build the HTML book into _build/html"
	@echo "make test           unit tests + every notebook under pytest --nbval (smoke profile) + test-book"
	@echo "make test-book      build the book and open every page in headless Chromium"
	@echo "                    (screenshots in _build/html/_screenshots)"
	@echo "make run-notebooks  re-execute notebooks in place (RESBOOK_PROFILE=full for the recorded run)"
	@echo "make bench          training speed of the book's helpers vs the plain recipe (not part of make test)"
	@echo "make test-jax       the Keras tests again on the JAX backend (installs jax[cpu]; not part of make test)"
	@echo "make device-payload what the full run on the lent GPU machine carries (.device/; see book/device_run.sh)"
	@echo "make device-collect ARCHIVE=...  unpack that run's notebooks and records into the repository"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[all]"
	touch $@

setup: $(STAMP)

# A clean build every time (about 5 s): Sphinx never deletes pages that left the book.
book: $(STAMP)
	$(BIN)/python book/prepare.py
	rm -rf _build
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

test: test-unit test-notebooks test-book

# The unit tests run in JOBS pytest-xdist workers, one test file per worker at a time: much of
# their time is one-threaded (imports, graph tracing, compiles, child processes starting), so two
# workers keep two cores busy (7.6 instead of 9.3 min on a 2-core EPYC). The notebooks run one at a
# time: their training cells already keep both cores busy, and two at once took as long as one.
# JOBS=0 runs the unit tests in one process. Each worker gets its share of the cores for OpenMP
# (torch's threads; OMP_NUM_THREADS if you set it yourself): two workers of two threads each on two
# cores stall each other, and one thread each took 324 s instead of 414 s on a 2-core EPYC.
JOBS ?= 2
XDIST := $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadfile)
WORKER_THREADS := $(if $(filter 0,$(JOBS)),,$(shell n=$$(( $$(nproc) / $(JOBS) )); echo $$(( n > 0 ? n : 1 ))))
WORKER_ENV := $(if $(WORKER_THREADS),OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$(WORKER_THREADS)})

test-unit: $(STAMP)
	$(WORKER_ENV) $(BIN)/python -m pytest $(XDIST) --durations=10 tests

# Usage: make test-notebooks [NB=notebooks/01_residual_math.ipynb]
test-notebooks: $(STAMP)
	$(NB_ENV) RESBOOK_PROFILE=smoke $(BIN)/python -m pytest --nbval --nbval-current-env -p no:cacheprovider --durations=15 $(NB)

# Every page of the built book in headless Chromium: loads, links, images, math, figures,
# Colab buttons (tests/book/test_pages.py). Playwright drives the system's Chromium; it
# never downloads a browser.
test-book: book chromium
	CHROMIUM="$$(command -v $(CHROMIUM))" $(BIN)/python -m pytest -p no:cacheprovider tests/book

# Debian's chromium, installed when missing (as root; apt's lists are refreshed only if needed).
CHROMIUM ?= chromium
chromium:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test-book needs Chromium: install Debian's package (sudo apt-get install -y chromium) or set CHROMIUM=/path/to/chromium." >&2; \
	    exit 1; \
	  fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	}

# The Keras code uses keras.ops only, so it runs on JAX as on TensorFlow (the lent GPU machine
# has JAX and no TensorFlow). This runs the Keras tests with KERAS_BACKEND=jax on this machine.
KERAS_TESTS := tests/test_keras_resnet.py tests/test_keras_fit.py tests/test_keras_transfer.py
test-jax: $(STAMP)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt "jax[cpu]"
	KERAS_BACKEND=jax $(BIN)/python -m pytest -p no:cacheprovider $(KERAS_TESTS)

# Usage: make run-notebooks [NB=notebooks/01_residual_math.ipynb] [RESBOOK_PROFILE=full RESBOOK_DATA=...]
run-notebooks: $(STAMP)
	$(BIN)/python book/run_notebooks.py $(NB)

# The full run on the lent GPU machine (book/device_run.sh says how): .device/ carries the
# wheels that machine lacks (not the debugger and completion engine, which a kernel runs
# without), the real data, and the commit being run. Check the size: 64 MiB per call in all.
SHARED       ?= ../shared
DEVICE_DATA  ?= flowers-recognition flower_photos_subset mnist
device-payload: $(STAMP)
	rm -rf .device && mkdir -p .device/wheels .device/data
	cp $(SHARED)/device-wheels/*.whl .device/wheels/
	rm -f .device/wheels/debugpy-*.whl .device/wheels/jedi-*.whl .device/wheels/parso-*.whl
	for d in $(DEVICE_DATA); do cp -r $(SHARED)/data/$$d .device/data/ || exit 1; done
	$(BIN)/python -c "from resbook.records import git_commit; print(git_commit())" > .device/commit
	@case "$$(cat .device/commit)" in *+dirty) echo "warning: uncommitted changes; the run's records will say +dirty" >&2;; esac
	du -sh --apparent-size .device

# Usage: make device-collect ARCHIVE=/work/.device/.../full-run.tar.gz
device-collect:
	$(PYTHON) book/run_notebooks.py --collect "$(ARCHIVE)"

# Training img/s, ours vs plain, per chapter model; records go to $RESBOOK_RUNS (default runs/).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf _build .pytest_cache
