#!/usr/bin/env bash
# Create (or reuse) .venv and install geospot into it. Usage: scripts/setup.sh [EXTRAS]
# Torch (scripts/torch_choice.py decides): a torch already in the venv is kept; Linux without
# an NVIDIA GPU gets the CPU build from PyTorch's CPU index (PyPI's is the multi-GB CUDA build),
# or PyPI's if that index is unreachable; with a GPU, PyPI's CUDA build. One line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
step() { echo "[setup $1/4] $2"; }
step 1 "virtual environment: .venv"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
step 2 "upgrading pip"
python -m pip install -q --upgrade pip >/dev/null
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
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[${extras}]"
else
  python -m pip install -q -e .
fi
echo "[setup] done: . .venv/bin/activate"
