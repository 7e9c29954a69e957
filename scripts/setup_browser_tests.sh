#!/usr/bin/env bash
# Install what the web app's browser tests need (idempotent; `make test-browser` runs it):
#   - Debian's chromium + chromium-driver (apt, as root), driven headless from /usr/bin/chromium;
#   - the `playwright` Python package (the `browser` extra) in .venv, without `playwright install`
#     (no browser download: the tests point Playwright at the Debian chromium);
#   - gradio (a recon3d dependency) if an older .venv lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[browser] installing chromium and chromium-driver (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "[browser] error: chromium is missing; install the Debian packages chromium and chromium-driver" >&2
    exit 1
  fi
fi

if ! $VENV/bin/python -c "import playwright.sync_api, gradio" 2>/dev/null; then
  echo "[browser] installing the browser extra (playwright) into $VENV"
  $VENV/bin/pip install -q -e ".[browser]"
fi
echo "[browser] ok: $(chromium --version 2>/dev/null | head -n1) | playwright $($VENV/bin/python -c 'from importlib.metadata import version; print(version("playwright"))')"
