#!/usr/bin/env bash
# Create (or reuse) .venv and install geospot into it. Usage: scripts/setup.sh [EXTRAS]
# Torch: if the venv has no torch yet we install the CPU wheel torch==2.13.0 first, so a
# bare requirement never pulls a multi-GB CUDA build; a torch you installed yourself
# (e.g. a CUDA build on a GPU box) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install -q "torch==2.13.0"
fi
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[${extras}]"
else
  python -m pip install -q -e .
fi
