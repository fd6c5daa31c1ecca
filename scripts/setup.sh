#!/usr/bin/env bash
# Create (or reuse) .venv and install geospot into it. Usage: scripts/setup.sh [EXTRAS]
# Torch (scripts/torch_choice.py decides): a torch already in the venv is kept; Linux without
# an NVIDIA GPU gets the CPU build from PyTorch's CPU index (PyPI's is the multi-GB CUDA build),
# or PyPI's if that index is unreachable; with a GPU, PyPI's CUDA build. One line per step.
set -euo pipefail
unset CDPATH  # (an exported CDPATH sends a relative cd to another checkout)
cd -P -- "$(dirname -- "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
step() { echo "[setup $1/4] $2"; }
fail() { echo "[setup] $1" >&2; exit 1; }
# geospot needs Python 3.11+ (pyproject.toml): said before anything is downloaded
supported='import sys; sys.exit(sys.version_info < (3, 11))'
command -v "$PY" >/dev/null || fail "no $PY here; install Python 3.11 or newer, or name one: PYTHON=/path/to/python3.11 bash $0"
"$PY" -c "$supported" || fail "geospot needs Python 3.11 or newer; $PY is $("$PY" -V 2>&1 | cut -d' ' -f2): install a newer one, or name it: PYTHON=/path/to/python3.11 bash $0"
step 1 "virtual environment: .venv"
# a .venv that cannot serve (its Python gone or upgraded away, an older Python's) is made again: reused, it
# failed the same way on every run. One without pip (uv's, --without-pip) keeps what it holds and gets pip.
if [ -e .venv ] && ! .venv/bin/python -c "$supported" >/dev/null 2>&1; then
  echo "[setup 1/4] .venv cannot be used (its Python is missing or older than 3.11): making it again"
  rm -rf .venv
fi
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "[setup 1/4] .venv has no pip: adding it (ensurepip)"
  .venv/bin/python -m ensurepip --upgrade >/dev/null || fail ".venv has no pip and its Python cannot add one (Debian/Ubuntu: apt install python3-venv), then run this again"
fi
if [ ! -e .venv ]; then
  "$PY" -m venv .venv || fail "$PY could not make a virtual environment (Debian/Ubuntu: apt install python3-venv), then run this again"
fi
. .venv/bin/activate
# pip's cache in a folder it cannot write (a read-only HOME): a source-only requirement (reverse_geocoder)
# failed to build its wheel there; without a cache it builds
cache="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/pip}"
if ! { mkdir -p "$cache" && [ -w "$cache" ]; } 2>/dev/null; then
  echo "[setup] pip's cache $cache cannot be written: installing without one"
  export PIP_NO_CACHE_DIR=1
fi
# pip 23+ installs geospot editable from pyproject.toml; a new enough pip is not upgraded (offline, it
# retried the index for ~20 s on every run)
if python -c 'import sys, pip; sys.exit(int(pip.__version__.split(".")[0]) < 23)' 2>/dev/null; then
  step 2 "pip $(python -c 'import pip; print(pip.__version__)'): kept"
else
  step 2 "upgrading pip"
  python -m pip install -q --upgrade pip >/dev/null
fi
IFS=$'\t' read -r what torch_args < <(python scripts/torch_choice.py)
step 3 "torch: $what"
if [ -n "${torch_args:-}" ]; then
  # shellcheck disable=SC2086  # the arguments are words on purpose
  python -m pip install -q $torch_args || {
    echo "[setup 3/4] torch: that failed; trying the plain requirement from PyPI"
    python -m pip install -q "torch==2.13.0"
  }
fi
step 4 "geospot${extras:+[$extras]} (editable) and its requirements"
# (PYTHONWARNINGS: setuptools' 10-line note that an editable install is one; errors still print)
if [ -n "$extras" ]; then
  PYTHONWARNINGS=ignore python -m pip install -q -e ".[${extras}]"
else
  PYTHONWARNINGS=ignore python -m pip install -q -e .
fi
echo "[setup] done: . .venv/bin/activate"
