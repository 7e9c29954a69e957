"""Fixtures of the browser tests: the app on a free loopback port, and headless Chromium driven by Playwright.

Chromium is the Debian package (``/usr/bin/chromium``, or ``$RECON3D_CHROMIUM``), never a download;
``scripts/setup_browser_tests.sh`` installs it and the ``playwright`` package. Screenshots go to
``outputs/test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import REPO_ROOT, untrained_lrm_data

ARTIFACTS = REPO_ROOT / "outputs" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    path = os.environ.get("RECON3D_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("no Chromium: run scripts/setup_browser_tests.sh (apt-get install chromium chromium-driver)")
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The app (``python -m apps --fast``) on a free 127.0.0.1 port, with its own work folder and runs root.

    With no shipped image-to-3D checkpoint (``data/checkpoints/lrm.pt`` / ``pixelnerf.pt``), an
    untrained tiny LRM is installed in a temporary data folder instead (with an iso-level that gives a
    surface): these tests check the app's plumbing, not the model's quality.
    """
    from recon3d.feedforward.registry import shipped_checkpoint

    tmp = tmp_path_factory.mktemp("app")
    env = dict(os.environ, RECON3D_APP_FAST="1", PYTHONUNBUFFERED="1")
    info = {"weights": "shipped"}
    if not any(shipped_checkpoint(m).is_file() for m in ("lrm", "pixelnerf")):
        env["RECON3D_APP_DENSITY_THRESHOLD"] = repr(untrained_lrm_data(tmp / "data"))
        env["RECON3D_DATA"] = str(tmp / "data")
        info["weights"] = "untrained tiny LRM (no shipped checkpoint)"
    port = _free_port()
    work, runs = tmp / "work", tmp / "runs"
    runs.mkdir()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "apps", "--host", "127.0.0.1", "--port", str(port), "--workdir",
                             str(work), "--runs-root", str(runs), "--fast"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > 120:
            proc.kill()
            pytest.fail(f"the app did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"url": url, "work": work, "runs": runs, "log": tmp / "server.log", **info}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make test-browser)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.recon3d_console = []  # the page's console messages and uncaught errors, for failure reports
    pg.on("console", lambda m: pg.recon3d_console.append(f"[{m.type}] {m.text[:500]}"))
    pg.on("pageerror", lambda e: pg.recon3d_console.append(f"[pageerror] {str(e)[:500]}"))
    pg.set_default_timeout(30_000)
    pg.goto(app_server["url"])
    pg.wait_for_selector("#i2d-upload")
    yield pg
    ctx.close()
