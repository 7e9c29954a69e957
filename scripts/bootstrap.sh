#!/usr/bin/env bash
# Create .venv and install recon3d with everything it needs, system packages included.
# Idempotent: a second run only checks. Torch policy:
#   - a torch already importable in .venv is kept (bring your own CUDA build);
#   - TORCH_SPEC=... overrides what is installed (e.g. TORCH_SPEC="torch==2.5.1 --index-url ...");
#   - otherwise, with an NVIDIA GPU: the registry's default (CUDA) torch plus gsplat;
#     without one: torch==2.13.0 (the CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.recon3d-installed

need_apt=()
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then need_apt+=(libusb-1.0-0); fi
if ! ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1'; then need_apt+=(libgomp1); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing system packages: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[bootstrap] warning: missing system packages ${need_apt[*]} (install them with your package manager)" >&2
  fi
fi

if [ ! -x $VENV/bin/python ]; then
  echo "[bootstrap] creating $VENV"
  $PY -m venv $VENV
  $VENV/bin/pip install -q --upgrade pip
fi
PIP="$VENV/bin/pip install -q"

if [ -n "${TORCH_SPEC:-}" ]; then
  # shellcheck disable=SC2086
  $PIP $TORCH_SPEC
elif ! $VENV/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "[bootstrap] NVIDIA GPU found: installing CUDA torch and gsplat"
    $PIP torch
    GPU_EXTRA=1
  else
    echo "[bootstrap] no CUDA GPU: installing CPU torch==2.13.0"
    $PIP torch==2.13.0
  fi
fi

if [ ! -f $STAMP ] || [ pyproject.toml -nt $STAMP ]; then
  echo "[bootstrap] installing recon3d (editable) and test tools"
  extras="test"
  if [ "${GPU_EXTRA:-0}" = 1 ] || $VENV/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    extras="test,cuda"
  fi
  $PIP -e ".[$extras]"
  touch $STAMP
fi
$VENV/bin/python -c "import recon3d, torch, open3d; print('[bootstrap] ok: recon3d', recon3d.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
