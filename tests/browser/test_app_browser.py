"""End-to-end tests of the web app in headless Chromium (``make test-browser``; marker ``browser``).

The app runs as ``python -m apps --fast`` on a free loopback port (see conftest). Screenshots are
saved to ``outputs/test-artifacts/``.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import EXAMPLE, REPO_ROOT

pytestmark = pytest.mark.browser

SAMPLE_IMAGES = REPO_ROOT / "data" / "sample_scene" / "images"


def _click_and_wait(page, button: str, status: str, timeout_ms: int) -> str:
    """Click ``button``, wait until the status box ``status`` shows a new final message, return it."""
    before = page.locator(status).inner_text()
    page.locator(button).click()
    page.wait_for_function(
        "([sel, old]) => { const t = (document.querySelector(sel)?.innerText || '').trim();"
        " return t.length > 0 && t !== old.trim() && !/processing|queue:|Running:/.test(t); }",
        arg=[status, before], timeout=timeout_ms)
    return page.locator(status).inner_text().strip()


def _upload(page, elem: str, files) -> None:
    clear = page.locator(f"{elem} button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.locator(f"{elem} input[type=file]").set_input_files(files)
    names = [Path(f).name for f in (files if isinstance(files, list) else [files])]
    page.wait_for_function("([sel, n]) => n.every(x => (document.querySelector(sel)?.innerText || '')"
                           ".replace(/\\s/g, '').includes(x))", arg=[elem, names])


def _canvas_drawn(page, elem: str, timeout_ms: float = 30_000) -> float:
    """Standard deviation of the grey levels of the 3D view's canvas (0 for an empty, uniform view)."""
    png = page.locator(f"{elem} canvas").screenshot(timeout=timeout_ms)
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32).std())


#: grey-level spread of a 3D view showing a model; an empty view (background, label) measures about 4
DRAWN_STD = 15.0

#: how long a 3D view may take to show its model once its file is in the page. Its canvas appears only
#: once Model3D has imported its viewer's code (for a .ply, after fetching the file's header to choose
#: the viewer), and the model is drawn after the whole file is loaded; headless Chromium renders WebGL
#: in software, so on a loaded 2-core CI machine one screenshot of the canvas can take several seconds
#: (locally it is drawn within ~2 s).
DRAWN_TIMEOUT_S = 120.0


def _save_failure(page, app_server, artifacts, name: str) -> str:
    """Save a screenshot of the page, the tail of the server log and the browser's console messages to
    the artifacts folder (``FAILED_<name>.*``); a note naming them, with the log tail, for a failure message."""
    shot = artifacts / f"FAILED_{name}.png"
    try:
        page.screenshot(path=str(shot), full_page=True, timeout=30_000)
    except Exception as e:  # noqa: BLE001 - a failure report must not fail itself
        shot = f"(none: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    try:
        tail = Path(app_server["log"]).read_text(errors="replace")[-6000:]
    except OSError as e:
        tail = f"(cannot read {app_server['log']}: {e})"
    (artifacts / f"FAILED_{name}_server.log").write_text(tail)
    console = "\n".join(getattr(page, "recon3d_console", [])[-40:])
    (artifacts / f"FAILED_{name}_console.log").write_text(console)
    return (f"page screenshot: {shot}; server log tail and browser console: {artifacts}/FAILED_{name}_*.log\n"
            f"--- browser console (last lines) ---\n{console[-1500:]}\n--- server log (tail) ---\n{tail[-2500:]}")


def _assert_drawn(page, elem: str, app_server, artifacts, what: str, timeout_s: float = DRAWN_TIMEOUT_S) -> float:
    """Wait until the 3D view ``elem`` shows something (its canvas' grey-level spread > DRAWN_STD): for its
    canvas to be attached, then polling screenshots of it, until ``timeout_s``. Returns the spread; else
    saves the page, the server log tail and the console (see _save_failure) and fails saying whether the
    canvas never appeared or stayed empty."""
    from playwright.sync_api import Error as PlaywrightError

    t0 = time.monotonic()
    deadline = t0 + timeout_s

    def left_ms() -> float:
        return max(1_000.0, (deadline - time.monotonic()) * 1000)

    canvas = page.locator(f"{elem} canvas")
    std, error, problem = None, None, None
    try:
        page.locator(elem).scroll_into_view_if_needed(timeout=left_ms())
        canvas.wait_for(state="attached", timeout=left_ms())
    except PlaywrightError as e:
        problem = f"no <canvas> in {elem} after {time.monotonic() - t0:.0f} s (its 3D viewer never mounted)"
        error = str(e).splitlines()[0]
    else:
        while True:
            try:
                std = _canvas_drawn(page, elem, timeout_ms=left_ms())
                if std > DRAWN_STD:
                    return std
            except PlaywrightError as e:  # detached, not visible or not stable yet: try again until the deadline
                error = str(e).splitlines()[0]
            if time.monotonic() >= deadline:
                break
            page.wait_for_timeout(500)
        problem = (f"the canvas of {elem} stayed empty for {time.monotonic() - t0:.0f} s (grey-level spread "
                   f"{'never measured' if std is None else f'{std:.1f}'}, a drawn view measures > {DRAWN_STD})")
    pytest.fail(f"{what}: {problem}; last error: {error}; the view: {_describe(page, elem)}\n"
                f"{_save_failure(page, app_server, artifacts, elem.lstrip('#'))}", pytrace=False)


def _describe(page, elem: str) -> str:
    """What the component ``elem`` holds: its canvases, its download link, the start of its text."""
    try:
        return str(page.locator(elem).evaluate(
            "el => ({canvases: el.querySelectorAll('canvas').length, "
            "download: el.querySelector('a[data-testid=model3d-download-link]')?.getAttribute('href') || null, "
            "text: (el.innerText || '').trim().slice(0, 200)})", timeout=10_000))
    except Exception as e:  # noqa: BLE001
        return f"(cannot be read: {type(e).__name__})"


def _wait_download_link(page, elem: str, app_server, artifacts, timeout_ms: float = 60_000) -> str:
    """The href of the 3D view ``elem``'s download link, once attached (its file is in the page); else
    fails with the page, server log and console saved (see _save_failure)."""
    from playwright.sync_api import Error as PlaywrightError

    link = page.locator(f"{elem} a[data-testid=model3d-download-link]")
    try:
        link.wait_for(state="attached", timeout=timeout_ms)
    except PlaywrightError as e:
        report = _save_failure(page, app_server, artifacts, elem.lstrip("#"))
        pytest.fail(f"no file in the 3D view {elem} after {timeout_ms / 1000:.0f} s ({str(e).splitlines()[0]}); "
                    f"the view: {_describe(page, elem)}\n{report}", pytrace=False)
    return link.get_attribute("href")


def test_image_to_3d_in_the_browser(page, app_server, artifacts, tmp_path):
    import trimesh

    # a bad upload: a readable message in the page, no traceback
    (tmp_path / "notes.txt").write_text("not a photo")
    _upload(page, "#i2d-upload", str(tmp_path / "notes.txt"))
    text = _click_and_wait(page, "#i2d-run", "#i2d-status", 30_000)
    assert "notes.txt: is not an image file" in text
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    _upload(page, "#i2d-upload", str(tmp_path / "broken.png"))
    text = _click_and_wait(page, "#i2d-run", "#i2d-status", 30_000)
    assert text.startswith("Error: broken.png: is"), text
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and 'File "' not in body
    page.screenshot(path=str(artifacts / "app_bad_upload.png"), full_page=True)

    # the bundled examples fill the upload box
    page.get_by_role("button", name="r_13.png").click()
    page.wait_for_function("(document.querySelector('#i2d-upload')?.innerText || '').replace(/\\s/g, '')"
                           ".includes('r_13.png')")

    # a bundled example photo -> mesh in the 3D view, turntable, downloads
    _upload(page, "#i2d-upload", str(EXAMPLE))
    text = _click_and_wait(page, "#i2d-run", "#i2d-status", 240_000)
    assert text.startswith("Done.") and "face mesh from r_0.png" in text, text
    assert _wait_download_link(page, "#i2d-model3d", app_server, artifacts).endswith(".glb")
    _assert_drawn(page, "#i2d-model3d", app_server, artifacts, "the 3D view of the mesh")
    page.locator("#i2d-turntable img").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "app_image_to_3d.png"), full_page=True)

    # download the GLB through the page and load it
    names = page.locator("#i2d-downloads td.filename").evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert names[0] == "mesh.glb" and names[1].endswith("_obj.zip") and names[2] == "mesh.ply"
    with page.expect_download() as dl:
        page.locator("#i2d-downloads a[download='mesh.glb']").click()
    glb = tmp_path / "downloaded.glb"
    dl.value.save_as(glb)
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all()

    # every file the request wrote is inside the app's work folder
    jobs = list((app_server["work"] / "jobs").iterdir())
    assert len(jobs) == 1 and (jobs[0] / "out" / "mesh.glb").stat().st_size == glb.stat().st_size


def test_server_refuses_files_outside_its_folders(app_server):
    url = app_server["url"]
    for path in ("/etc/passwd", str(REPO_ROOT / "pyproject.toml"), str(app_server["log"])):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert e.value.code in (403, 404)


def test_fit_then_view_in_the_browser(page, app_server, artifacts, tmp_path):
    page.get_by_role("tab", name="Fit from photos").click()
    # too few photos: a readable message
    two = [str(SAMPLE_IMAGES / "r_0.png"), str(SAMPLE_IMAGES / "r_1.png")]
    _upload(page, "#fit-upload", two)
    text = _click_and_wait(page, "#fit-run", "#fit-status", 30_000)
    assert "2 usable photo(s); fitting needs at least 3" in text
    assert not any((app_server["work"] / "runs").iterdir())  # a refused request leaves nothing behind

    # the bundled sample scene, Gaussian splats, a few steps
    page.locator("#fit-sample input[type=checkbox]").check()
    page.locator("#fit-method input").click()
    page.get_by_role("option", name="splat", exact=True).click()
    page.locator("#fit-steps input").fill("60")
    page.locator("#fit-run").click()
    page.wait_for_function("document.querySelector('#fit-status').innerText.includes('Running:')", timeout=60_000)
    page.wait_for_function("/^(Done|Error)/.test((document.querySelector('#fit-status')?.innerText || '').trim())",
                           timeout=280_000)
    text = page.locator("#fit-status").inner_text().strip()
    assert text.startswith("Done.") and "Gaussian splats" in text, text
    assert "test PSNR (dB)" in page.locator("#fit-metrics").inner_text()
    assert _wait_download_link(page, "#fit-model3d", app_server, artifacts).endswith("splats.ply")
    _assert_drawn(page, "#fit-model3d", app_server, artifacts, "the fit's splat view")
    page.screenshot(path=str(artifacts / "app_fit.png"), full_page=True)
    runs = list((app_server["work"] / "runs").glob("*/run/metrics.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["steps"] == 60

    # the viewer lists the new run and shows its splats and renders
    page.get_by_role("tab", name="Viewer").click()
    page.get_by_role("button", name="Refresh list").click()
    page.locator("#viewer-run input").click()
    label = f"app/{runs[0].parent.parent.name}/run"
    page.get_by_role("option", name=label).click()
    text = _click_and_wait(page, "#viewer-open", "#viewer-status", 30_000)
    assert "splats" in text and "renders" in text, text
    _assert_drawn(page, "#viewer-splats", app_server, artifacts, "the viewer's splat view")
    page.screenshot(path=str(artifacts / "app_viewer.png"), full_page=True)
