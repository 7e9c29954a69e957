#!/usr/bin/env bash
# The prepared GPU check: run it first in a session that has a GPU (under 8 minutes on one H100/H200).
#   bash scripts/gpu_check.sh                   # set-up, then every CUDA path; JSON summary in $OUT or outputs/gpu_check
#   bash scripts/gpu_check.sh --dry-run         # run nothing: check every command's arguments parse (any machine)
#   bash scripts/gpu_check.sh --cpu --only vggt # toy-size CPU run of chosen steps (tests the plumbing)
#   bash scripts/gpu_check.sh --prepare-carry   # here, before a lent GPU machine without the registry:
#                                               # .gpu_carry/ = gsplat wheel, lego_200, a small ffdata set
# Each step has its own timeout; a failing step is recorded in the JSON, never fatal. The steps and
# options: scripts/gpu_check.py --help. Needs only python3 (standard library) to start.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3 || command -v python)
exec "$PY" scripts/gpu_check.py "$@"
