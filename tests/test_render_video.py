"""MP4 videos of fitted runs: the H.264 writer (decoded back with PyAV), ``recon3d render --path/--mp4`` on
a tiny fitted run, ``orbit.mp4`` beside the fit's GIF, and the viewer showing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from recon3d.cli import main  # noqa: E402
from recon3d.io.errors import DataError  # noqa: E402
from recon3d.io.video_writer import Mp4Writer, write_mp4  # noqa: E402


def probe(path: Path) -> dict:
    """What a player sees: codec, pixel format, size, frame rate, and the decoded frames."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "width": s.width,
                "height": s.height, "fps": float(s.average_rate), "frames": frames}


def gradient_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    y, x = np.mgrid[0:h, 0:w]
    return [np.stack([(x * 255 // max(1, w - 1)), (y * 255 // max(1, h - 1)), np.full_like(x, 20 * i % 256)],
                     -1).astype(np.uint8) for i in range(n)]


# ------------------------------------------------------------------------------------ the writer
def test_mp4_decodes_back_to_its_frames(tmp_path):
    frames = gradient_frames(12, 48, 64)
    path = write_mp4(tmp_path / "v.mp4", frames, fps=24)
    v = probe(path)
    assert (v["codec"], v["pix_fmt"], v["width"], v["height"], v["fps"]) == ("h264", "yuv420p", 64, 48, 24.0)
    assert len(v["frames"]) == 12
    err = np.abs(np.stack(v["frames"]).astype(float) - np.stack(frames)).mean()
    assert err < 4.0  # CRF 18: visually lossless
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary file left


def test_odd_sizes_float_frames_and_fractional_rates(tmp_path):
    import torch

    frames = [torch.rand(1, 33, 47, 3) for _ in range(5)]  # a RenderResult's colours: (1, H, W, 3) in [0, 1]
    v = probe(write_mp4(tmp_path / "odd.mp4", frames, fps=29.97))
    assert (v["width"], v["height"], len(v["frames"])) == (48, 34, 5)  # padded to even sizes
    assert v["fps"] == pytest.approx(29.97, abs=1e-6)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", gradient_frames(3, 16, 16), fps=10)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="renderer died"):
        with Mp4Writer(path, fps=10) as video:
            video.write(gradient_frames(1, 16, 16)[0])
            raise RuntimeError("renderer died")
    with pytest.raises(ValueError, match="frame 1 is 32x16"):
        with Mp4Writer(path, fps=10) as video:
            video.write(gradient_frames(1, 16, 16)[0])
            video.write(gradient_frames(1, 16, 32)[0])
    with pytest.raises(ValueError, match="no frames"):
        with Mp4Writer(path, fps=10):
            pass
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    with pytest.raises(DataError, match="is a folder"):
        write_mp4(tmp_path, gradient_frames(2, 16, 16))


# ------------------------------------------------------------------------------------ a fitted run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("render_video")
    generate_scene(root / "tiny", num_views=9, size=32, seed=1, object="random")
    out = root / "run"
    assert main(["fit", "--data", str(root / "tiny"), "--preset", "quick", "--max-steps", "6",
                 "--orbit-frames", "4", "--out", str(out)]) == 0
    return out


def test_fit_writes_orbit_mp4_beside_the_gif(tiny_run):
    assert (tiny_run / "orbit.gif").is_file()
    v = probe(tiny_run / "orbit.mp4")
    assert len(v["frames"]) == 4 and v["fps"] == 24.0 and (v["width"], v["height"]) == (32, 32)


@pytest.mark.parametrize("kind", ["orbit", "spiral", "interpolate"])
def test_render_path_mp4(tiny_run, tmp_path, kind, capsys):
    out = tmp_path / f"{kind}.mp4"
    assert main(["render", "--run", str(tiny_run), "--path", kind, "--mp4", str(out), "--seconds", "1.5",
                 "--fps", "8", "--size", "41"]) == 0
    v = probe(out)
    assert len(v["frames"]) == 12 and v["fps"] == 8.0 and (v["width"], v["height"]) == (42, 42)
    assert v["codec"] == "h264" and v["pix_fmt"] == "yuv420p"
    assert np.stack(v["frames"]).std() > 1.0  # the model is rendered, not a blank frame
    assert f"wrote {out} ({kind} path, 12 frames, 42x42, 8 fps" in capsys.readouterr().out
    assert not (tiny_run / "renders" / "train").exists()  # a video alone renders no split views
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_render_path_defaults_and_the_viewer(tiny_run, tmp_path):
    from apps import viewer_tab

    out = tmp_path / "r"
    assert main(["render", "--run", str(tiny_run), "--path", "interpolate", "--seconds", "0.5", "--fps", "6",
                 "--out", str(out), "--split", "test"]) == 0
    v = probe(out / "interpolate.mp4")  # default name; the training size (32 px) by default
    assert len(v["frames"]) == 3 and (v["width"], v["height"]) == (32, 32)
    assert len(list((out / "test").glob("*.png"))) == 2  # --split asked for as well
    view = viewer_tab.load_run_view(tiny_run)
    assert view.video == tiny_run / "orbit.mp4" and view.orbit == tiny_run / "orbit.gif"


def test_viewer_falls_back_to_a_rendered_path_video(tmp_path):
    from apps import viewer_tab

    run = tmp_path / "run"
    (run / "renders").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"method": "splat"}))
    (run / "orbit.gif").write_bytes(b"gif")
    assert viewer_tab.load_run_view(run).video is None
    (run / "renders" / "spiral.mp4").write_bytes(b"mp4")
    assert viewer_tab.load_run_view(run).video == run / "renders" / "spiral.mp4"
    (run / "orbit.mp4").symlink_to(tmp_path / "elsewhere.mp4")  # a symlink is never shown
    assert viewer_tab.load_run_view(run).video == run / "renders" / "spiral.mp4"


def test_render_video_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    assert main(["render", "--run", str(tiny_run), "--seconds", "0.1", "--fps", "10", "--mp4",
                 str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--seconds" in err and "at least 2" in err
    (tmp_path / "d.mp4").mkdir()
    assert main(["render", "--run", str(tiny_run), "--mp4", str(tmp_path / "d.mp4")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["render", "--run", str(tmp_path / "nope"), "--path", "spiral"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mp4"]


def test_the_app_viewer_shows_the_mp4_in_place_of_the_gif(tiny_run, tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    from apps.settings import AppSettings
    from apps.ui import build_app

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # restored after the test
    settings = AppSettings(workdir=str(tmp_path / "work"), runs_roots=[str(tiny_run.parent)]).resolved()
    demo = build_app(settings)
    do_open = next(f for f in demo.fns.values() if f.name == "do_open")
    outs = do_open.fn(f"{tiny_run.parent.name}/{tiny_run.name}", None)
    status, gif, video = outs[0], outs[3], outs[4]
    assert "turntable video" in status
    assert gif["visible"] is False and gif["value"] is None
    assert video["visible"] is True and video["value"] == str(tiny_run / "orbit.mp4")
    assert isinstance(next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "viewer-turntable-video"),
                      gr.Video)
    failed = do_open.fn("nope/run", None)  # an error clears both and shows the (empty) GIF slot again
    assert failed[0].startswith("**Error:**") and failed[3]["visible"] is True and failed[4]["visible"] is False
