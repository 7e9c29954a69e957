#!/usr/bin/env bash
# Create .venv-blender: Blender as a Python module (bpy, from PyPI) for the Blender import checks
# (tests/test_blender_import.py, `make test-blender`). Idempotent: a second run only checks.
#
# bpy wheels exist for one Python version per Blender release: bpy 5.0.x needs Python 3.11 (the
# 5.1+ wheels need a newer Python), and bpy 5.0 is built against numpy 1.x, hence numpy<2.
# Override with BLENDER_PYTHON=/path/to/python3.11 or BPY_SPEC="bpy==4.5.15".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-blender
BPY_SPEC=${BPY_SPEC:-bpy==5.0.1}
NUMPY_SPEC="numpy<2"
STAMP=$VENV/.installed

find_python311() {
  local c
  for c in "${BLENDER_PYTHON:-}" python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -x $VENV/bin/python ]; then
  if ! PY311=$(find_python311); then
    echo "[blender-env] error: bpy ($BPY_SPEC) needs Python 3.11 with the venv module; none found" \
         "(apt-get install python3.11-venv, or set BLENDER_PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  echo "[blender-env] creating $VENV with $PY311 ($("$PY311" --version 2>&1))"
  "$PY311" -m venv $VENV
  $VENV/bin/pip install -q --upgrade pip
fi

if [ ! -f $STAMP ] || [ "$(cat $STAMP)" != "$BPY_SPEC $NUMPY_SPEC" ]; then
  echo "[blender-env] installing $BPY_SPEC and $NUMPY_SPEC (the bpy wheel is ~375 MB)"
  $VENV/bin/pip install -q "$BPY_SPEC" "$NUMPY_SPEC"
  echo "$BPY_SPEC $NUMPY_SPEC" > $STAMP
fi

$VENV/bin/python -c "import bpy, numpy, sys; print('[blender-env] ok: Blender', bpy.app.version_string, '| bpy python', sys.version.split()[0], '| numpy', numpy.__version__)"
