#!/usr/bin/env bash
# README command 2: set up and run the test suite (offline, CPU).
set -euo pipefail
unset CDPATH  # (an exported CDPATH sends a relative cd to another checkout)
cd -P -- "$(dirname -- "$0")/.."
bash scripts/setup.sh test
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; browser tests will be skipped"
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
# The house style is checked with the tests: ruff's configuration is in pyproject.toml.
echo "[test] ruff check (pyproject.toml's [tool.ruff])"
ruff check -q geospot tests benchmarks scripts
# Two worker processes (pytest-xdist), each running whole test files: most tests use one thread,
# so on 2 cores this halves the wall time. GEOSPOT_TEST_WORKERS=0 runs everything in this process.
exec python -m pytest -q -n "${GEOSPOT_TEST_WORKERS:-2}" --dist loadfile "$@"
