#!/usr/bin/env bash
# Create .venv and install recon3d with everything it needs, system packages included.
# Idempotent: a second run only checks. Torch policy:
#   - a torch already importable in .venv is kept (bring your own CUDA build);
#   - TORCH_SPEC=... overrides what is installed (e.g. TORCH_SPEC="torch==2.5.1 --index-url ...");
#   - otherwise, with an NVIDIA GPU: torch==2.11.0, the registry's CUDA 13.0 build (pinned: gsplat 1.5.3's
#     JIT build compiles and loads with it and the registry's CUDA 13.0.2 compiler; README "GPU set-up"),
#     or torch==2.8.0 (CUDA 12.8) when the driver is older than CUDA 13 (R580), plus gsplat==1.5.3;
#     without one: torch==2.13.0 (the CPU build).
# With a CUDA torch (installed here or your own) the GPU part follows: ninja, a C++ compiler and Python
# headers, a CUDA compiler matching torch when the machine has none (the registry's
# cuda-toolkit[nvcc,...] under .venv/cuda; CUDA 13 only), then gsplat's CUDA extension is built once
# (cached in .venv/torch_extensions) and checked: the last lines say whether the gsplat backend is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.recon3d-installed
TORCH_GPU_SPEC=${TORCH_GPU_SPEC:-torch==2.11.0}       # CUDA 13.0 build (driver >= R580)
TORCH_GPU_SPEC_CU12=${TORCH_GPU_SPEC_CU12:-torch==2.8.0}  # CUDA 12.8 build, for older drivers
GSPLAT_SPEC=${GSPLAT_SPEC:-gsplat==1.5.3}

have_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }

need_apt=()
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then need_apt+=(libusb-1.0-0); fi
if ! ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1'; then need_apt+=(libgomp1); fi
# the compiled CPU rasterizer (recon3d/core/csrc) and gsplat's CUDA extension need a C++ compiler
if [ -z "${CXX:-}" ] && ! command -v g++ >/dev/null && ! command -v c++ >/dev/null; then need_apt+=(g++); fi
if have_gpu; then  # gsplat compiles its CUDA extension: Python.h too
  $PY -c "import os,sys,sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)" \
    || need_apt+=(python3-dev)
fi
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
  if have_gpu; then
    spec=$TORCH_GPU_SPEC
    drv_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
    if [ -n "$drv_cuda" ] && [ "$drv_cuda" -lt 13 ]; then
      spec=$TORCH_GPU_SPEC_CU12
      echo "[bootstrap] the NVIDIA driver supports CUDA $drv_cuda only (CUDA 13 needs R580+): $spec; gsplat then" \
        "needs a CUDA 12 nvcc on the machine (the registry has none for CUDA 12)" >&2
    fi
    echo "[bootstrap] NVIDIA GPU found: installing CUDA torch ($spec) and $GSPLAT_SPEC"
    $PIP $spec "$GSPLAT_SPEC"
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
# the compiled CPU rasterizer: built once (~2 s, cached in .venv/share/recon3d-native, rebuilt when its source
# changes); without a compiler recon3d renders with the slower PyTorch rasterizer
$VENV/bin/python -m recon3d.core.native || true

# ---- GPU part: a CUDA compiler for torch, then gsplat's CUDA extension built once and checked
gpu_setup() {
  local plan
  if ! plan=$($VENV/bin/python scripts/gsplat_setup.py plan); then
    echo "[bootstrap] warning: could not inspect the CUDA set-up; the gsplat backend stays off" >&2
    return 0
  fi
  eval "$plan"  # TORCH_CUDA, CUDA_HOME_FOUND, NVCC_RELEASE, NVCC_MATCHES, GSPLAT_INSTALLED, GSPLAT_PREBUILT, TOOLKIT_REQ
  if [ "$GSPLAT_INSTALLED" = 0 ]; then
    echo "[bootstrap] installing $GSPLAT_SPEC"
    $PIP "$GSPLAT_SPEC" || { echo "[bootstrap] warning: $GSPLAT_SPEC did not install; gsplat backend off" >&2; return 0; }
  fi
  # gsplat 1.5.3 imports packaging without declaring it; torch runs ninja for the JIT build and each load
  $VENV/bin/python -c "import ninja, packaging" 2>/dev/null || $PIP ninja packaging || true
  if [ "$GSPLAT_PREBUILT" = 0 ] && [ "$NVCC_MATCHES" = 0 ]; then
    if [ -n "$TOOLKIT_REQ" ]; then
      echo "[bootstrap] no complete CUDA $TORCH_CUDA toolkit found (nvcc: ${NVCC_RELEASE:-none}${CUDA_HOME_FOUND:+ in $CUDA_HOME_FOUND}):" \
        "installing $TOOLKIT_REQ from the registry into .venv/cuda"
      { $PIP "$TOOLKIT_REQ" && $VENV/bin/python scripts/gsplat_setup.py toolkit; } \
        || echo "[bootstrap] warning: the registry's CUDA compiler did not install" >&2
      if [ -n "${CUDA_HOME:-}${CUDA_PATH:-}" ]; then
        echo "[bootstrap] warning: CUDA_HOME=${CUDA_HOME:-${CUDA_PATH:-}} is set but is no complete CUDA $TORCH_CUDA" \
          "toolkit, and it wins over .venv/cuda: unset it (or point it at .venv/cuda)" >&2
      fi
    else
      echo "[bootstrap] warning: gsplat must compile its CUDA extension, but there is no nvcc for CUDA ${TORCH_CUDA}" \
        "here and the registry ships none for CUDA 12: install the CUDA $TORCH_CUDA toolkit and set CUDA_HOME" >&2
    fi
  fi
  mkdir -p $VENV/torch_extensions
  $VENV/bin/python scripts/gsplat_setup.py check --json $VENV/.gsplat-status.json || true
}

if [ "${GPU_EXTRA:-0}" = 1 ] || $VENV/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  gpu_setup
elif have_gpu; then
  echo "[bootstrap] warning: an NVIDIA GPU is here but .venv's torch cannot use it (a CPU build?): CUDA and gsplat" \
    "are off. For the GPU: rm -rf .venv && make setup (or TORCH_SPEC=... ./scripts/bootstrap.sh)" >&2
fi
