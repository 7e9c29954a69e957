"""``recon3d predict`` options: one dataclass defines the flags, their defaults and checks, and the
predict functions' defaults."""

from __future__ import annotations

import argparse
import inspect

import pytest

from recon3d.feedforward.options import DEFAULT_CONF_THRESHOLD, DEFAULTS, PredictOptions, add_predict_arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recon3d predict")
    add_predict_arguments(p)
    return p


def test_flags_and_defaults_of_recon3d_predict():
    flags = [a.option_strings[0] for a in _parser()._actions if a.option_strings and a.dest != "help"]
    assert flags == ["--model", "--images", "--masks", "--cameras", "--checkpoint", "--variant", "--out", "--device",
                     "--views",
                     "--orbit-frames", "--mesh-resolution", "--threshold", "--texture-size", "--refine-poses",
                     "--vggt-preprocess", "--vggt-exif"]
    args = _parser().parse_args(["--model", "lrm", "--images", "a.png", "b.png"])
    assert (args.device, args.num_views, args.orbit_frames, args.mesh_resolution) == ("auto", 8, 32, 96)
    assert (args.density_threshold, args.texture_size, args.refine_poses) == (None, 0, False)
    assert (args.vggt_preprocess, args.vggt_exif) == ("crop", False)
    assert [str(p) for p in args.images] == ["a.png", "b.png"] and args.masks is None
    assert DEFAULTS.conf_threshold == DEFAULT_CONF_THRESHOLD == 1.5


def test_predict_functions_take_their_defaults_from_the_options():
    from recon3d.feedforward.predict import image_to_3d, predict_radiance_field

    sig = inspect.signature(predict_radiance_field).parameters
    for name, value in PredictOptions().field_kwargs().items():
        assert sig[name].default == value, name
    assert inspect.signature(image_to_3d).parameters["device"].default == DEFAULTS.device


@pytest.mark.parametrize("argv,message", [
    (["--views", "-1"], "--views: '-1' must be 0 or more"),
    (["--orbit-frames", "-2"], "--orbit-frames: '-2' must be 0 or more"),
    (["--mesh-resolution", "1"], "must be 0 (no mesh) or at least 2"),
    (["--texture-size", "9000"], "--texture-size: '9000' must be at most 8192"),
    (["--texture-size", "-1"], "must be 0 or more"),
    (["--threshold", "0"], "--threshold: '0' must be a positive number"),
    (["--device", "gpu"], "--device: 'gpu' is not a device"),
])
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    from recon3d.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", "lrm", "--images", "x.png", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("recon3d predict: error:")


def test_good_edge_values_parse():
    args = _parser().parse_args(["--model", "m", "--images", "x.png", "--views", "0", "--mesh-resolution", "0",
                                 "--texture-size", "8192", "--device", "cuda:1", "--threshold", "2.5"])
    assert (args.num_views, args.mesh_resolution, args.texture_size, args.device) == (0, 0, 8192, "cuda:1")
    assert args.density_threshold == 2.5


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, capsys):
    import torch

    from recon3d.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["predict", "--model", "lrm", "--images", "x.png", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]
