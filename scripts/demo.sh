#!/usr/bin/env bash
# README command 1: set up and run the demo (tiny model + synthetic world, CPU, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dashboard
. .venv/bin/activate
export HF_HUB_OFFLINE=1
exec geospot demo "$@"
