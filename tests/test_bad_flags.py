"""Every numeric and choice flag is checked where it is parsed: each bad value gets exit status 2, one
line on stderr naming the flag, no traceback, and nothing written (no output folder)."""

from __future__ import annotations

import pytest
import torch

from recon3d.cli import main

NOT_A_NUMBER, NEGATIVE, ZERO, HUGE, NAN = "abc", "-5", "0", "99999999999999999999", "nan"


def _cases():
    fit = ["fit", "--data", "{data}", "--out", "{out}"]
    pred = ["predict", "--model", "lrm", "--images", "{img}", "--out", "{out}"]
    ff = ["ffdata", "--out", "{out}"]
    train = ["train", "lrm", "--data", "{data}", "--out", "{out}"]
    run = ["--run", "{run}"]
    cases = []
    for flag in ("--max-steps", "--downscale", "--mesh-resolution"):
        cases += [(fit + [flag, v], flag) for v in (NOT_A_NUMBER, NEGATIVE, ZERO, HUGE)]
    cases += [(fit + ["--downscale", NAN], "--downscale"), (fit + ["--orbit-frames", NEGATIVE], "--orbit-frames"),
              (fit + ["--orbit-frames", HUGE], "--orbit-frames"), (fit + ["--method", "nerv"], "--method"),
              (fit + ["--preset", "fast"], "--preset"), (fit + ["--device", "foo"], "--device"),
              (fit + ["--backend", "opengl"], "--backend"), (fit + ["--format", "ply"], "--format"),
              (fit + ["--matcher", "magic"], "--matcher"), (fit + ["--poses", "gps"], "--poses"),
              (fit + ["--resume", "--overwrite"], "--overwrite")]
    if not torch.cuda.is_available():
        cases += [(fit + ["--device", "cuda"], "--device"), (pred + ["--device", "cuda"], "--device"),
                  (["render", *run, "--device", "cuda"], "--device"), (["eval", *run, "--device", "cuda"], "--device")]
    cases += [(pred + ["--views", NEGATIVE], "--views"), (pred + ["--mesh-resolution", NEGATIVE], "--mesh-resolution"),
              (pred + ["--texture-size", "-8"], "--texture-size"), (pred + ["--orbit-frames", "-3"], "--orbit-frames"),
              (pred + ["--model", "nope"], "--model"), (pred + ["--device", "foo"], "--device"),
              (pred + ["--views", NOT_A_NUMBER], "--views")]
    cases += [(["render", *run, "--orbit", NEGATIVE], "--orbit"), (["render", *run, "--split", "val2"], "--split"),
              (["render", *run, "--path", "zigzag"], "--path"), (["render", *run, "--mp4", "{out}/v.avi"], "--mp4"),
              (["render", *run, "--size", "8"], "--size"), (["render", *run, "--size", NOT_A_NUMBER], "--size"),
              (["render", *run, "--fps", ZERO], "--fps"), (["render", *run, "--fps", NAN], "--fps"),
              (["render", *run, "--seconds", NEGATIVE], "--seconds"), (["render", *run, "--seconds", HUGE], "--seconds"),
              (["render", *run, "--seconds", "0.1", "--fps", "5", "--mp4", "{out}/v.mp4"], "--seconds"),
              (["export", *run, "--texture-size", "-8"], "--texture-size"),
              (["export", *run, "--mesh-resolution", ZERO], "--mesh-resolution"),
              (["export", *run, "--texture-source", "paint"], "--texture-source"),
              (["eval", *run, "--device", "foo"], "--device"),
              (["info", "--data", "{data}", "--downscale", NEGATIVE], "--downscale"),
              (["info", "--data", "{data}", "--format", "ply"], "--format"),
              (["convert", "--data", "{data}", "--out", "{out}/t.json", "--downscale", ZERO], "--downscale")]
    cases += [(ff + ["--objects", NEGATIVE], "--objects"), (ff + ["--size", "2"], "--size"),
              (ff + ["--fov", "400"], "--fov"), (ff + ["--workers", ZERO], "--workers"),
              (ff + ["--background", "sky"], "--background"), (ff + ["--views", NOT_A_NUMBER], "--views")]
    cases += [(train + ["--steps", NEGATIVE], "--steps"), (train + ["--batch-size", ZERO], "--batch-size"),
              (train + ["--device", "foo"], "--device"), (train + ["--stop-at", HUGE], "--stop-at")]
    cases += [(["--threads", ZERO, "info", "--data", "{data}"], "--threads"),
              (["demo", "--port", "70000"], "--port"), (["demo", "--port", NOT_A_NUMBER], "--port")]
    return cases


def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


@pytest.mark.parametrize("argv,flag", _cases(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_flag_value(argv, flag, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "transforms.json").write_text("{}")
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    run = tmp_path / "run"
    out = tmp_path / "out"
    args = [a.format(data=data, out=out, img=img, run=run) for a in argv]
    assert _run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert flag in err and "Traceback" not in err, err
    assert not out.exists() and not run.exists()


def test_out_naming_a_file_is_refused(tmp_path, capsys):
    from recon3d.io.synthetic import generate_scene

    data = tmp_path / "tiny"
    generate_scene(data, num_views=5, size=16, seed=0, object="random")
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    assert main(["fit", "--data", str(data), "--out", str(f), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a folder" in err and f.read_text() == "keep me"


def test_predict_refuses_an_image_over_the_pixel_cap_before_decoding(tmp_path, capsys):
    """A small PNG can hold a huge image: predict reads the size from the header and stops at once."""
    import time

    from PIL import Image

    from recon3d.io.images import MAX_IMAGE_PIXELS

    big = tmp_path / "big.png"
    Image.new("L", (8000, 7000), 255).save(big)  # 56 MP in a few hundred kB
    assert 8000 * 7000 > MAX_IMAGE_PIXELS
    t = time.perf_counter()
    assert main(["predict", "--model", "lrm", "--images", str(big), "--out", str(tmp_path / "o")]) == 2
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "big.png" in err and "megapixels" in err and not (tmp_path / "o").exists()
