"""Masks cut the object out: ``fit --images --masks``, ``masks/`` beside the images of LLFF / COLMAP
datasets (the real turntable capture ../shared/data/mary_rose_tankard), SfM features only inside them,
and held-out PSNR inside the masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon3d.cli import main

ROOT = Path(__file__).resolve().parents[1]
TANKARD = ROOT.parent / "shared" / "data" / "mary_rose_tankard"


@pytest.fixture(scope="module")
def turntable(tmp_path_factory):
    """A synthetic object photographed as on a turntable: opaque RGB photos whose background is a
    different random texture in every view (it does not agree with the poses), and the object masks."""
    sample = ROOT / "data" / "sample_scene" / "images"
    if not sample.is_dir():
        pytest.skip("data/sample_scene not present")
    root = tmp_path_factory.mktemp("tt")
    sources = sorted(sample.glob("*.png"))  # the 48 views, all around
    photos, masks = root / "photos", root / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i, p in enumerate(sources):
        rgba = np.asarray(Image.open(p).convert("RGBA")).astype(np.float32) / 255
        a = rgba[..., 3:]
        blocks = rng.integers(0, 256, (32, 32, 3)).astype(np.float32) / 255  # coarse random blocks
        bg = np.kron(blocks, np.ones((8, 8, 1)))[: rgba.shape[0], : rgba.shape[1]]
        rgb = rgba[..., :3] * a + bg * (1 - a)
        Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(photos / f"view_{i:02d}.jpg", quality=95)
        Image.fromarray(((a[..., 0] > 0.5) * 255).astype(np.uint8)).save(masks / f"view_{i:02d}.png")
    return root


def test_find_masks_by_name_stem_and_colmap_convention(tmp_path):
    from recon3d.io.errors import DataError
    from recon3d.io.images import find_masks

    (tmp_path / "m").mkdir()
    for name in ("a.JPG", "b.png", "c.jpg.png"):
        Image.new("L", (4, 4), 255).save(tmp_path / "m" / name, format="PNG")
    found = find_masks([tmp_path / "a.JPG", tmp_path / "b.jpg", tmp_path / "c.jpg", tmp_path / "d.jpg"], tmp_path / "m")
    assert [None if f is None else f.name for f in found] == ["a.JPG", "b.png", "c.jpg.png", None]
    with pytest.raises(DataError, match="no mask for image d.jpg"):
        find_masks([tmp_path / "d.jpg"], tmp_path / "m", required=True)


def test_fit_images_with_masks_cuts_the_object_out(turntable, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "--images", str(turntable / "photos"), "--masks", str(turntable / "masks"), "--preset", "quick",
                 "--max-steps", "200", "--orbit-frames", "0", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["sfm_registered"] >= 44 and m["masks"] == m["sfm_registered"]
    assert m["background_source"].startswith("masks") and m["background"] == [1.0, 1.0, 1.0]
    assert m["test_psnr_in_masks"] > 14, m  # ~16.5 dB after 200 steps (a grey guess: ~9 dB)
    # the background of the renders is the clean white backdrop, not the moving textures
    render = np.asarray(Image.open(next((out / "renders" / "test").glob("*.png")))).astype(np.float32) / 255
    border = np.concatenate([render[:6].reshape(-1, 3), render[-6:].reshape(-1, 3)])
    assert border.mean() > 0.9, border.mean()
    scene = json.loads((out / "scene.json").read_text())
    assert scene["masks_as_alpha"] and all(f["mask"] for f in scene["frames"])


def test_masks_flag_errors(turntable, tmp_path, capsys):
    assert main(["fit", "--images", str(turntable / "photos"), "--masks", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "--masks" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.skipif(not TANKARD.is_dir(), reason="../shared/data/mary_rose_tankard not present")
def test_llff_masks_beside_the_images_are_read_and_cut_the_object_out():
    from recon3d.io import load_scene
    from recon3d.pipeline.options import FitOptions
    from recon3d.pipeline.scene_source import load_fit_scene

    scene = load_scene(TANKARD)
    assert scene.has_masks and sum(p is not None for p in scene.mask_paths) == 69
    fit_scene, info = load_fit_scene(FitOptions(data=TANKARD), Path("/nonexistent"))
    assert fit_scene.masks_as_alpha and info["masks"] == 69 and info["background_source"].startswith("masks")
    img, mask = fit_scene.image(0), fit_scene.mask(0)
    assert 0.05 < float(mask.float().mean()) < 0.9
    assert bool((img[~mask] == 1.0).all())  # outside the object: the white background
    assert float(fit_scene.alpha(0).sum()) == float(mask.sum())
