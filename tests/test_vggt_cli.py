"""``recon3d predict --images FOLDER`` (every model): the images in the folder, in natural order;
``--vggt-preprocess`` / ``--vggt-exif`` with the shipped VGGT model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from recon3d.cli import main
from recon3d.feedforward import registry
from recon3d.runtime.checkpoint import atomic_torch_save
from tests import ff_tiny_models
from tests.ff_tiny_models import NAME, TinyConfig, TinyField


def _photos(folder, names, size=(64, 48), rgba=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        w, h = size
        arr = rng.integers(0, 255, (h, w, 4 if rgba else 3), dtype=np.uint8)
        if rgba:  # an opaque disc on a transparent background (an object cut-out)
            yy, xx = np.mgrid[:h, :w]
            arr[..., 3] = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2, 255, 0)
        Image.fromarray(arr).save(folder / n)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_vggt_predict_takes_a_folder_in_natural_order(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "scan", ["v10.png", "v2.png", "v1.png"])
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", "vggt", "--images", str(folder), "--device", "cpu"]) == 0
    out = tmp_path / "outputs" / "predict" / "vggt-scan"  # the default output folder is named after the folder
    cams = json.loads((out / "cameras.json").read_text())
    assert [f["file"].rsplit("/", 1)[-1] for f in cams["frames"]] == ["v1.png", "v2.png", "v10.png"]
    assert cams["preprocessing"] == {"mode": "crop", "exif": False} and cams["model_resolution_hw"] == [48, 64]


def test_vggt_predict_pad_mode_and_exif_flags(tmp_path):
    folder = _photos(tmp_path / "p", ["a.png", "b.png"], size=(48, 64))  # portrait
    out = tmp_path / "o"
    assert main(["predict", "--model", "vggt", "--images", str(folder), "--out", str(out), "--device", "cpu",
                 "--vggt-preprocess", "pad", "--vggt-exif"]) == 0
    cams = json.loads((out / "cameras.json").read_text())
    assert cams["preprocessing"] == {"mode": "pad", "exif": True} and cams["model_resolution_hw"] == [64, 64]
    f = cams["frames"][0]
    assert (f["width"], f["height"]) == (48, 64)
    # pad mode: the 48 x 64 photo fills the middle 48 columns of the 64 x 64 frame; its principal point
    # maps back to the photo's centre (the tiny model decodes (W/2, H/2) of the frame)
    assert f["cx"] == pytest.approx(24.0, abs=1e-4) and f["cy"] == pytest.approx(32.0, abs=1e-4)
    with pytest.raises(SystemExit):
        main(["predict", "--model", "vggt", "--images", str(folder), "--vggt-preprocess", "stretch"])


def test_radiance_field_predict_takes_a_folder(tmp_path, capsys, monkeypatch):
    import recon3d.feedforward.predict as ffpredict

    seen = []
    real = ffpredict.load_input_images
    monkeypatch.setattr(ffpredict, "load_input_images", lambda paths, *a, **k: (seen.extend(paths), real(paths, *a, **k))[1])
    ff_tiny_models.register()
    try:
        torch.manual_seed(0)
        ckpt = tmp_path / "tiny.pt"
        atomic_torch_save(TinyField(TinyConfig()).checkpoint_payload(), ckpt)
        folder = _photos(tmp_path / "obj", ["img_2.png", "img_10.png", "img_1.png"], rgba=True)
        out = tmp_path / "pred"
        assert main(["predict", "--model", NAME, "--images", str(folder), "--checkpoint", str(ckpt), "--out", str(out),
                     "--views", "1", "--orbit-frames", "0", "--mesh-resolution", "0", "--device", "cpu"]) == 0
        assert sorted(p.name for p in (out / "inputs").iterdir()) == ["input_00.png", "input_01.png", "input_02.png"]
        assert [p.name for p in seen] == ["img_1.png", "img_2.png", "img_10.png"]  # natural order, no notes.txt
        empty = tmp_path / "empty"
        empty.mkdir()
        capsys.readouterr()
        assert main(["predict", "--model", NAME, "--images", str(empty), "--checkpoint", str(ckpt)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "empty: no images in this folder" in err
    finally:
        registry.MODELS.pop(NAME, None)
