"""The web app's fit tab takes a video upload: one video (not mixed with photos), checked as
``recon3d fit --video`` checks it, fitted by ``recon3d fit --video``; errors name the user's file only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("av")

from apps import fit_tab  # noqa: E402
from apps.safety import check_video, is_video_name, pick_video  # noqa: E402
from recon3d.io.errors import DataError  # noqa: E402
from tests.test_video import texture, write_video  # noqa: E402


def test_pick_video():
    assert pick_video([("/u/a.png", "a.png"), ("/u/b.zip", "b.zip")]) is None
    assert pick_video([("/u/x", "Clip 1.MOV")]) == ("/u/x", "Clip 1.MOV")
    assert is_video_name("a.webm") and is_video_name("../x/b.MP4") and not is_video_name("c.jpg")
    with pytest.raises(DataError, match="2 videos uploaded"):
        pick_video([("/u/a.mp4", "a.mp4"), ("/u/b.mov", "b.mov")])
    with pytest.raises(DataError, match="either one video or photos"):
        pick_video([("/u/a.mp4", "a.mp4"), ("/u/b.png", "b.png")])


def test_check_video(tmp_path):
    (tmp_path / "up").mkdir()
    v = write_video(tmp_path / "up" / "orig.mp4", [texture(k) for k in range(5)])
    cv = check_video(v, tmp_path / "job" / "video", original_name="My clip (1).MP4")
    assert cv.path == tmp_path / "job" / "video" / "My_clip_1.mp4" and cv.path.read_bytes() == v.read_bytes()
    assert cv.frames == 5 and cv.size == (96, 64) and cv.notice == "My_clip_1.mp4: 5 frames, 96x64 px"
    bad = tmp_path / "up" / "notes"
    bad.write_text("not a video")
    with pytest.raises(DataError) as e:
        check_video(bad, tmp_path / "job2", original_name="notes.mp4")
    assert str(e.value).startswith("notes.mp4: not a readable video") and str(tmp_path) not in str(e.value)
    assert not list((tmp_path / "job2").iterdir())  # the copy is removed
    with pytest.raises(DataError, match="notes.txt: is not a video file"):
        check_video(bad, tmp_path / "job3", original_name="notes.txt")


def test_fit_command_with_a_video_parses_with_the_real_cli(tmp_path):
    from recon3d.cli import build_parser

    cmd = fit_tab.fit_command(tmp_path / "clip.mp4", tmp_path / "run", method="splat", preset="quick", steps=20,
                              orbit_frames=0, video=True, frames=150)
    assert cmd[:3] == [sys.executable, "-m", "recon3d.cli"]
    args = build_parser().parse_args(cmd[3:])
    assert (args.video, args.frames, args.images, args.out) == (tmp_path / "clip.mp4", 150, None, tmp_path / "run")
    photos = build_parser().parse_args(fit_tab.fit_command(tmp_path / "p", tmp_path / "r", method="splat",
                                                           preset="quick", steps=3, orbit_frames=0, frames=9)[3:])
    assert photos.images == tmp_path / "p" and photos.video is None and photos.frames is None


@pytest.fixture
def app_fit(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    from apps.settings import AppSettings
    from apps.ui import build_app

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "elsewhere"))
    settings = AppSettings(workdir=str(tmp_path / "work"), runs_roots=[str(tmp_path / "outputs")]).resolved()
    demo = build_app(settings)
    _image, fit = [f for f in demo.fns.values() if f.name == "handler"]
    yield fit.fn, settings
    gr.close_all()


def test_the_fit_tab_runs_recon3d_fit_on_a_video(app_fit, tmp_path, monkeypatch):
    fit, settings = app_fit
    seen = []

    class Stop:  # stands in for the fit subprocess: records its command line
        def __init__(self, cmd, *a, **k):
            seen.append(cmd)

        def __enter__(self):
            raise DataError("fit", "stopped by the test")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(fit_tab, "FitProcess", Stop)
    up = tmp_path / "gradio" / "abc123"
    up.mkdir(parents=True)
    v = write_video(up / "orbit.mp4", [texture(k) for k in range(6)])
    outs = list(fit([str(v)], False, "splat", "quick", 10, False, None))
    assert outs[-1][0] == "**Error:** fit: stopped by the test"
    cmd = seen[0]
    video = Path(cmd[cmd.index("--video") + 1])
    assert video.name == "orbit.mp4" and video.parent.name == "video" and video.read_bytes() == v.read_bytes()
    assert "--images" not in cmd and cmd[cmd.index("--frames") + 1] == str(min(settings.max_photos, 300))


def test_the_fit_tab_refuses_a_bad_video_naming_the_upload(app_fit, tmp_path):
    fit, _ = app_fit
    up = tmp_path / "gradio" / "def456"
    up.mkdir(parents=True)
    (up / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    outs = list(fit([str(up / "broken.mp4")], False, "splat", "quick", 10, False, None))
    msg = outs[-1][0]
    assert msg.startswith("**Error:** broken.mp4: not a readable video") and str(tmp_path) not in msg
    two = write_video(up / "two.mp4", [texture(k) for k in range(2)])
    outs = list(fit([str(two)], False, "splat", "quick", 10, False, None))
    assert outs[-1][0].startswith("**Error:** two.mp4: has 2 video frames")
    outs = list(fit([str(two), str(up / "broken.mp4")], False, "splat", "quick", 10, False, None))
    assert outs[-1][0] == "**Error:** video: 2 videos uploaded; fit one video at a time"
