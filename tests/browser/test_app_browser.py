"""End-to-end tests of the web app in headless Chromium (``make test-browser``; marker ``browser``).

The app runs as ``python -m apps --fast`` on a free loopback port (see conftest). Screenshots are
saved to ``outputs/test-artifacts/``.
"""

from __future__ import annotations

import io
import json
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


def _canvas_drawn(page, elem: str) -> float:
    """Standard deviation of the grey levels of the 3D view's canvas (0 for an empty, uniform view)."""
    png = page.locator(f"{elem} canvas").screenshot()
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32).std())


#: grey-level spread of a 3D view showing a model; an empty view (background, label) measures about 4
DRAWN_STD = 15.0


def _wait_drawn(page, elem: str, timeout_ms: int = 30_000) -> float:
    """Poll the 3D view until it shows something (see DRAWN_STD); the last spread measured."""
    std = 0.0
    for _ in range(timeout_ms // 500):
        std = _canvas_drawn(page, elem)
        if std > DRAWN_STD:
            break
        page.wait_for_timeout(500)
    return std


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
    link = page.locator("#i2d-model3d a[data-testid=model3d-download-link]")
    link.wait_for(state="attached")
    assert link.get_attribute("href").endswith(".glb")
    assert _wait_drawn(page, "#i2d-model3d") > DRAWN_STD, "the 3D view stayed empty"
    page.locator("#i2d-turntable img").wait_for()
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
    link = page.locator("#fit-model3d a[data-testid=model3d-download-link]")
    link.wait_for(state="attached")
    assert link.get_attribute("href").endswith("splats.ply")
    assert _wait_drawn(page, "#fit-model3d") > DRAWN_STD, "the splat view stayed empty"
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
    assert _wait_drawn(page, "#viewer-splats") > DRAWN_STD
    page.screenshot(path=str(artifacts / "app_viewer.png"), full_page=True)
