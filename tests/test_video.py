"""``recon3d fit --video``: frame selection (sharp, spread), decoding (PyAV), rotation, caching, atomic
writes, one-line errors for bad videos, and the whole pipeline on a video made from the sample scene.

Every video here is written by the test itself with PyAV (H.264 in MP4 unless said otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

av = pytest.importorskip("av")

from recon3d.cli import main  # noqa: E402
from recon3d.io.errors import DataError  # noqa: E402
from recon3d.io import video as vid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample_scene"


# ------------------------------------------------------------------------------------ helpers
def write_video(path: Path, frames, fps: int = 12, codec: str = "libx264", rotation: int | None = None,
                faststart: bool = False) -> Path:
    """Encode (H, W, 3) uint8 frames (even sizes) with PyAV; ``rotation``: display matrix, degrees CCW."""
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "16", "preset": "veryfast"}
        if rotation is not None:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def texture(seed: int, h: int = 64, w: int = 96) -> np.ndarray:
    """A smooth-ish random texture (blocks of 4 px): survives H.264 at crf 16, loses a lot to blur."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST))


def blur(img: np.ndarray, radius: float = 2.5) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def manifest(folder: Path) -> dict:
    return json.loads((folder / vid.MANIFEST).read_text())


# ------------------------------------------------------------------------------------ selection
def test_sharpness_ranks_blur_and_blank():
    img = texture(0).mean(axis=2)
    assert vid.sharpness(img) > 5 * vid.sharpness(blur(texture(0)).mean(axis=2))
    assert vid.is_blank(np.full((32, 32), 17.0)) and not vid.is_blank(img)
    assert vid.sharpness(np.zeros((2, 2))) == 0.0


def test_a_blurred_frame_is_not_picked():
    """30 frames, 10 windows of 3; in every window one frame is blurred (score far lower): never picked."""
    rng = np.random.default_rng(0)
    times = np.arange(30) / 30.0
    scores = 100 + rng.normal(0, 5, 30)
    blurred = [3 * k + k % 3 for k in range(10)]  # first, middle or last of its window
    scores[blurred] = 10.0
    picks = vid.select_frames(times, scores, 10)
    assert len(picks) == 10 and not set(picks) & set(blurred)
    assert [p // 3 for p in picks] == list(range(10))  # one per window: spread over the clip


def test_picks_stay_spread_when_one_part_is_sharper():
    """The sharpest frames all lie in the first third; a global top-N would take only those."""
    times = np.arange(90) / 30.0
    scores = np.where(np.arange(90) < 30, 500.0, 50.0) + np.arange(90) % 7
    picks = vid.select_frames(times, scores, 9)
    assert len(picks) == 9
    assert np.all(np.diff(picks) >= 4) and np.all(np.diff(picks) <= 19)  # windows of 10 frames
    assert picks[0] < 10 and picks[-1] >= 80
    top9 = np.argsort(-scores)[:9]
    assert max(top9) < 30  # what windows avoid


def test_selection_edges():
    assert vid.select_frames([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], 300) == [0, 1, 2, 3, 4]  # short clip: all
    assert vid.select_frames([], [], 5) == []
    usable = [False, True, False, False, True, True]
    assert vid.select_frames(range(6), [9, 1, 9, 9, 1, 2], 3, usable=usable) == [1, 5]  # blanks never picked
    same = vid.select_frames([0, 0, 0, 0], [1, 3, 3, 2], 4)  # no time span: one window
    assert same == [1]
    with pytest.raises(ValueError):
        vid.FramePicker(0, 0, 1)


# ------------------------------------------------------------------------------------ decoding
def test_extract_keeps_sharp_spread_frames_and_reuses_them(tmp_path):
    frames = []
    for k in range(12):  # 36 frames: each view as blurred, sharp, more blurred (the sharp one moves)
        sharp = texture(k)
        trio = [blur(sharp, 2.0), sharp, blur(sharp, 3.0)]
        frames += trio[k % 3:] + trio[:k % 3]
    sharp_index = [3 * k + (1 - k % 3) % 3 for k in range(12)]
    v = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "run" / vid.FRAMES_DIR
    got = vid.extract_video_frames(v, out, frames=12)
    assert not got.reused and got.decoded == 36 and got.kept == 12
    assert [r["index"] for r in got.records] == sharp_index
    assert sorted(p.name for p in out.iterdir()) == sorted([vid.MANIFEST] + [p.name for p in got.paths])
    for k, p in enumerate(got.paths):  # each written frame shows its own view (held frames are not reused)
        img = np.asarray(Image.open(p)).astype(float)
        assert img.shape == (64, 96, 3)
        assert int(np.argmin([np.abs(img - texture(j)).mean() for j in range(12)])) == k
    info = got.info()
    assert info["video_frames_kept"] == 12 and info["video_frames_decoded"] == 36 and info["video_mean_sharpness"] > 0
    assert out.stat().st_mode & 0o777 == vid._DIR_MODE  # as mkdir makes it, not mkdtemp's 0700

    again = vid.extract_video_frames(v, out, frames=12)  # same file, same N: reused
    assert again.reused and again.paths == got.paths and again.decoded == 36
    fewer = vid.extract_video_frames(v, out, frames=6)  # another N: extracted anew, old set replaced
    assert not fewer.reused and fewer.kept == 6 and len(list(out.glob("*.jpg"))) == 6
    st = v.stat()
    os.utime(v, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed (mtime)
    assert not vid.extract_video_frames(v, out, frames=6).reused
    (out / fewer.paths[0].name).unlink()  # a frame went missing: not trusted
    assert not vid.extract_video_frames(v, out, frames=6).reused
    assert [p.name for p in out.parent.iterdir()] == [vid.FRAMES_DIR]  # no temporary folders left


def test_webm_and_mkv_decode(tmp_path):
    frames = [texture(k) for k in range(8)]
    for name, codec in (("c.webm", "libvpx-vp9"), ("c.mkv", "libx264")):
        got = vid.extract_video_frames(write_video(tmp_path / name, frames, codec=codec), tmp_path / f"out_{name}",
                                       frames=5)
        assert got.kept == 5 and got.decoded == 8


def test_display_rotation_is_applied(tmp_path):
    """A phone's portrait clip: frames stored landscape, the display matrix says rotate 90 deg clockwise."""
    upright = np.zeros((96, 64, 3), np.uint8)  # H 96, W 64 (portrait)
    upright[:, :, 2] = 200
    upright[:24, :16] = (255, 0, 0)  # red top-left corner
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the sensor recorded (64 x 96)
    v = write_video(tmp_path / "portrait.mp4", [stored] * 6, rotation=-90)  # -90: shown rotated clockwise
    info = vid.probe_video(v)
    assert (info.width, info.height, info.rotation) == (96, 64, 270) and info.display_size == (64, 96)
    got = vid.extract_video_frames(v, tmp_path / "f", frames=3)
    img = np.asarray(Image.open(got.paths[0]))
    assert img.shape == (96, 64, 3)
    assert img[5, 5, 0] > 200 and img[5, 5, 2] < 60  # red where the upright frame is red
    assert img[90, 60, 2] > 150 and img[90, 60, 0] < 60


def test_large_frames_are_downscaled(tmp_path):
    frames = [np.asarray(Image.fromarray(texture(k)).resize((320, 192))) for k in range(4)]
    got = vid.extract_video_frames(write_video(tmp_path / "big.mp4", frames), tmp_path / "f", frames=4, max_size=160)
    assert Image.open(got.paths[0]).size == (160, 96)


# ------------------------------------------------------------------------------------ atomic writes
def test_an_interrupted_extraction_leaves_nothing_trusted(tmp_path, monkeypatch):
    v = write_video(tmp_path / "clip.mp4", [texture(k) for k in range(10)])
    out = tmp_path / "run" / vid.FRAMES_DIR
    good = vid.extract_video_frames(v, out, frames=5)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = vid._write_frame, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-way
        return real(*a, **k)

    monkeypatch.setattr(vid, "_write_frame", dying)
    with pytest.raises(KeyboardInterrupt):
        vid.extract_video_frames(v, out, frames=8)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the complete old set, untouched
    assert [p.name for p in out.parent.iterdir()] == [vid.FRAMES_DIR]
    shutil.rmtree(out)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        vid.extract_video_frames(v, out, frames=5)
    assert not out.exists() and not list(out.parent.iterdir())
    monkeypatch.setattr(vid, "_write_frame", real)
    assert not vid.extract_video_frames(v, out, frames=5).reused and good.kept == 5


def test_a_killed_process_temp_folder_is_cleaned_by_the_run_folder():
    from recon3d.pipeline.run_folder import _STALE

    assert _STALE.match(f".{vid.FRAMES_DIR}.tmp-abc123") and _STALE.match(f".{vid.FRAMES_DIR}.old-x1y2")


# ------------------------------------------------------------------------------------ bad input
@pytest.fixture
def bad_videos(tmp_path):
    good = [texture(k) for k in range(30)]
    d = tmp_path / "bad"
    d.mkdir()
    (d / "notes.mp4").write_text("this is a text file, not a video\n")
    (d / "empty.mp4").write_bytes(b"")
    full = write_video(tmp_path / "full.mp4", good)
    (d / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # index (moov) lost
    fast = write_video(tmp_path / "fast.mp4", good, faststart=True)
    (d / "truncated_faststart.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])  # data cut
    mkv = write_video(tmp_path / "full.mkv", good)
    (d / "truncated.mkv").write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    write_video(d / "two_frames.mp4", good[:2])
    Image.fromarray(good[0]).save(d / "still.mp4", format="PNG")  # an image renamed .mp4: one frame
    (d / "folder.mp4").mkdir()
    return d


@pytest.mark.parametrize("name, problem", [
    ("notes.mp4", "not a readable video"), ("empty.mp4", "is empty"), ("truncated.mp4", "not a readable video"),
    ("truncated_faststart.mp4", "is truncated or damaged"), ("truncated.mkv", "is truncated or damaged"),
    ("two_frames.mp4", "has 2 video frames"), ("still.mp4", "has 1 video frame;"), ("missing.mp4", "no such"),
    ("folder.mp4", "is a folder")])
def test_bad_videos_give_one_line_errors(bad_videos, name, problem, tmp_path, capsys):
    path = bad_videos / name
    with pytest.raises(DataError) as e:
        vid.probe_video(path)
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value) and "\n" not in str(e.value)
    out = tmp_path / "run"
    with pytest.raises(DataError):
        vid.extract_video_frames(path, out / vid.FRAMES_DIR, frames=10)
    assert not out.exists()
    assert main(["fit", "--video", str(path), "--out", str(out), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon3d fit: error: ") and str(path) in err and "\n" not in err
    assert not out.exists()  # refused before the run folder was made


def test_blank_video_has_too_few_usable_frames(tmp_path, capsys):
    v = write_video(tmp_path / "black.mp4", [np.zeros((64, 96, 3), np.uint8)] * 10)
    with pytest.raises(DataError, match=r"black.mp4: 0 usable frames of 10 decoded"):
        vid.extract_video_frames(v, tmp_path / "f" / vid.FRAMES_DIR, frames=5)
    assert not (tmp_path / "f").exists() or not list((tmp_path / "f").iterdir())
    out = tmp_path / "run"
    assert main(["fit", "--video", str(v), "--out", str(out), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "0 usable frames" in err and "\n" not in err
    assert not (out / vid.FRAMES_DIR).exists() and not (out / "run.json").exists()


def test_source_flags(tmp_path, capsys):
    v = write_video(tmp_path / "clip.mp4", [texture(k) for k in range(4)])
    (tmp_path / "photos").mkdir()
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        main(["fit", "--video", str(v), "--images", str(tmp_path / "photos")])
    assert e.value.code == 2 and "--images: not allowed with argument --video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fit", "--video", str(v), "--frames", "2"])
    assert e.value.code == 2 and "--frames: '2' must be in [3, 10000]" in capsys.readouterr().err
    assert main(["fit", "--images", str(tmp_path / "photos"), "--frames", "10", "--out", str(tmp_path / "o")]) == 2
    assert "--frames: goes with --video" in capsys.readouterr().err
    from recon3d.pipeline.options import FitOptions, default_out_dir

    assert default_out_dir(FitOptions(video=v, method="sugar")) == Path("outputs") / "clip-sugar"
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ the whole pipeline
def _sample_cameras() -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "test"):
        for f in json.loads((SAMPLE / f"transforms_{split}.json").read_text())["frames"]:
            out[Path(f["file_path"]).name] = np.asarray(f["transform_matrix"], dtype=np.float64)[:3, 3]
    return out


def orbit_views(n: int, center: str = "r_28") -> list[str]:
    """The ``n`` sample views nearest ``center``'s direction, in the order a camera walking from one to
    its nearest unvisited neighbour passes them (a dense patch: SIFT matches at 256 px)."""
    d = {k: v / np.linalg.norm(v) for k, v in _sample_cameras().items()}
    near = sorted(d, key=lambda k: -float(d[k] @ d[center]))[:n]
    path = [min(near, key=lambda k: float(np.arctan2(d[k][1], d[k][0])))]
    left = set(near) - set(path)
    while left:
        path.append(max(sorted(left), key=lambda k: float(d[k] @ d[path[-1]])))
        left.remove(path[-1])
    return path


def sample_video(path: Path, n: int = 24) -> Path:
    """A clip of ``n`` sample views in orbit order, each shown twice: sharp and blurred (order alternating)."""
    frames = []
    for i, stem in enumerate(orbit_views(n)):
        rgba = Image.open(SAMPLE / "images" / f"{stem}.png").convert("RGBA")
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        sharp, blurred = np.asarray(rgb), np.asarray(rgb.filter(ImageFilter.GaussianBlur(2.5)))
        frames += [sharp, blurred] if i % 2 == 0 else [blurred, sharp]
    return write_video(path, frames)


def test_fit_from_a_video_of_the_sample_scene(tmp_path):
    if not (SAMPLE / "images").is_dir():
        pytest.skip("data/sample_scene not present")
    v = sample_video(tmp_path / "orbit.mp4")
    out = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["fit", "--video", str(v), "--preset", "quick", "--max-steps", "30", "--frames", "24",
                 "--orbit-frames", "0", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["source"] == m["video"] == str(v)
    assert m["video_frames_decoded"] == 48 and m["video_frames_kept"] == 24 and m["video_mean_sharpness"] > 0
    assert m["sfm_images"] == 24 and m["sfm_registered"] >= 20, m
    assert m["steps"] == 30 and "test_psnr" in m
    picked = [r["index"] for r in manifest(out / vid.FRAMES_DIR)["frames"]]
    assert picked == [2 * i + i % 2 for i in range(24)]  # the sharp copy of every view
    run = json.loads((out / "run.json").read_text())
    assert run["video"] == str(v) and run["frames"] == 24 and run["images"] is None
    again = vid.extract_video_frames(v, out / vid.FRAMES_DIR, frames=24)
    assert again.reused  # a later run with the same video and --frames starts from these frames
    print(f"video fit: {time.perf_counter() - t0:.0f} s, {m['sfm_registered']}/24 registered, "
          f"test PSNR {m['test_psnr']:.2f} dB")


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_longer_audio_track_is_not_truncation(tmp_path, ext):
    """1 s of video with 3 s of sound: complete, not "truncated"."""
    path = tmp_path / f"with_sound.{ext}"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        for k in range(12):
            for p in v.encode(av.VideoFrame.from_ndarray(texture(k), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        for t in range(0, 3 * 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, t
            for p in a.encode(frame):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    assert vid.probe_video(path).frames == 12
    assert vid.extract_video_frames(path, tmp_path / "f", frames=4).kept == 4
