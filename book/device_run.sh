#!/usr/bin/env bash
# The book's full profile on the lent GPU machine, in one call of the device tool.
#
# That machine has Python 3.12 with PyTorch, torchvision and JAX, but no TensorFlow, no Jupyter
# kernel and no network. `make device-payload` (on the development machine) copies what it lacks
# into .device/: the Keras + nbclient/ipykernel wheels, the real data, and the commit being run.
# Then, with the device tool:   run  command="bash book/device_run.sh notebooks/02_resnet50_keras.ipynb"
#                                    carry=[".device"]
# and back here:                make device-collect ARCHIVE=<files_at>/full-run.tar.gz
#
# Keras runs on JAX there (the chapters' Keras code uses keras.ops only). The executed notebooks,
# their run records and a summary come back as one archive, $OUT/full-run.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .device/wheels ] || { echo "No .device/wheels: run 'make device-payload' on the development machine and carry .device." >&2; exit 2; }
[ $# -gt 0 ] || set -- notebooks/*.ipynb

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PATH="/tmp/site/bin:$PATH"
python3 -m ipykernel install --user --name python3 >/dev/null

export KERAS_BACKEND=jax RESBOOK_PROFILE="${RESBOOK_PROFILE:-full}" RESBOOK_DATA="$PWD/.device/data" RESBOOK_RUNS="$PWD/book/records"
export RESBOOK_GIT_COMMIT="$(cat .device/commit)" RESBOOK_CACHE=/tmp/resbook-cache
# Every fit builds a new model of the same shapes: JAX's persistent cache compiles each train step once.
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 book/run_notebooks.py --archive "${OUT:-/tmp/out}/full-run.tar.gz" "$@"
