"""The Gradio page builds, queues heavy jobs one at a time, and its server serves nothing outside its folders."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

gr = pytest.importorskip("gradio")

from apps.settings import REPO_ROOT, AppSettings  # noqa: E402


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "elsewhere"))  # restored after the test
    runs = tmp_path / "outputs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "metrics.json").write_text(json.dumps({"method": "splat"}))
    return AppSettings(workdir=str(tmp_path / "work"), runs_roots=[str(runs)]).resolved()


def test_build_app_queues_heavy_jobs(settings):
    from apps.ui import build_app

    demo = build_app(settings)
    by_name = {}
    for f in demo.fns.values():
        by_name.setdefault(f.name, []).append(f)
    image, fit = by_name["handler"]
    assert (image.concurrency_limit, image.concurrency_id) == (1, "image_to_3d")
    assert (fit.concurrency_limit, fit.concurrency_id) == (1, "fit")
    assert demo._queue.max_size == 32
    caches = {getattr(b, "GRADIO_CACHE", None) for b in demo.blocks.values()} - {None}
    assert caches == {str(settings.upload_dir)}  # uploads and served copies stay in the work folder
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Image to 3D", "Fit from photos", "Viewer"]


def test_server_serves_only_app_files(settings):
    from apps.ui import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _app, url, _ = launch(settings, host="127.0.0.1", port=port, block=False)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"recon3d" in r.read()
        for path in ("/etc/passwd", str(REPO_ROOT / "pyproject.toml")):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
            assert e.value.code in (403, 404)
    finally:
        gr.close_all()


def test_sessions_let_go_of_the_results_they_no_longer_show(settings):
    """A new image-to-3D request deletes the session's previous result; a new fit releases (keeps) its
    previous run for the viewer; a closed session's states let go the same way."""
    from apps import jobs
    from apps.ui import build_app

    demo = build_app(settings)
    image, fit = [f for f in demo.fns.values() if f.name == "handler"]
    images, runs = jobs.image_jobs(settings), jobs.fit_runs(settings)
    old = images.create("old")
    out = image.fn(None, "lrm", False, str(old))
    assert not old.exists() and out[0].startswith("**Error:**") and out[-1] is None
    run = runs.create("photos")
    outs = list(fit.fn(None, False, "splat", "quick", 10, False, str(run)))
    assert outs[-1][0] == "**Error:** photos: upload photos or a zip of them, or tick the sample scene"
    assert run.is_dir() and not runs.is_held(run) and outs[-1][-1] is None
    outs = list(fit.fn(None, False, "nerf", "quick", 10, True, None))
    assert outs[-1][0].startswith("**Error:** --pose-opt: pose refinement is available for --method splat")
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert len(states) == 3  # image result, fit result, viewed run
    shown_image, shown_run = images.create("shown"), runs.create("shown")
    for st in states:  # the session ends
        st.delete_callback(str(shown_image) if st is states[0] else str(shown_run))
        st.delete_callback(None)
    assert not shown_image.exists() and shown_run.is_dir() and not runs.is_held(shown_run)
