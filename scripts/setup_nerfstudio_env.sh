#!/usr/bin/env bash
# Create .venv-nerfstudio: nerfstudio 1.1.5 + a torch/torchvision pair it accepts + recon3d (editable,
# extras "nerfstudio,test"), kept apart from .venv because torchvision does not import with the CPU
# torch 2.13 build that .venv uses.
#
# Idempotent: a second run only checks (it reinstalls recon3d when pyproject.toml is newer than the stamp).
#
# Choices (see README "nerfstudio"):
#   - torch==2.5.1 / torchvision==0.20.1 from PyPI: the pair current when nerfstudio 1.1.5 was released
#     (its checkpoints load with torch.load's pre-2.6 defaults). PyPI's Linux wheels are CUDA builds
#     (~2.5 GB of nvidia-* wheels) that also run on CPU. Override with NS_TORCH_SPEC="torch==X torchvision==Y".
#   - nerfstudio 1.1.5 pins gsplat==1.4.0 and nerfacc==0.5.2 (both compile CUDA kernels lazily, so they
#     import on a CPU-only machine), opencv-python-headless==4.10.0.84, viser==0.2.7, timm==0.6.7.
#   - the environment needs ~10 GB of disk; pip's cache is disabled to avoid a second copy.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NS_VENV:-.venv-nerfstudio}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH_SPEC=${NS_TORCH_SPEC:-"torch==2.5.1 torchvision==0.20.1"}
STAMP=$VENV/.recon3d-nerfstudio-installed
export PIP_NO_CACHE_DIR=1

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "[nerfstudio-env] warning: libusb-1.0-0 missing (open3d needs it)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[nerfstudio-env] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  start=$(date +%s)
  echo "[nerfstudio-env] installing $TORCH_SPEC + recon3d[nerfstudio,test] (several GB, takes minutes)"
  # One resolver run so the torch pin holds for every dependency (nerfstudio, gsplat, torchmetrics...).
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $TORCH_SPEC -e ".[nerfstudio,test]"
  touch "$STAMP"
  echo "[nerfstudio-env] installed in $(( $(date +%s) - start )) s"
fi

"$VENV/bin/python" - <<'EOF'
import torch, torchvision, nerfstudio, recon3d
from importlib.metadata import version
print(f"[nerfstudio-env] ok: nerfstudio {version('nerfstudio')} | torch {torch.__version__} | "
      f"torchvision {torchvision.__version__} | gsplat {version('gsplat')} | recon3d {recon3d.__version__} | "
      f"cuda {torch.cuda.is_available()}")
EOF
