#!/usr/bin/env bash
# README command 1: set up and run the demo (tiny model + synthetic world, CPU, offline).
# It runs in the folder it is called from: --data / --out and the runs/demo it writes are read there.
set -euo pipefail
unset CDPATH  # (an exported CDPATH sends a relative cd to another checkout)
root="$(cd -P -- "$(dirname -- "$0")/.." && pwd)"
bash "$root/scripts/setup.sh" dashboard
. "$root/.venv/bin/activate"
export HF_HUB_OFFLINE=1
exec geospot demo "$@"
