"""Distorted cameras for Gaussian splatting: views are undistorted to pinhole cameras with COLMAP's
undistorter (pycolmap), recon3d's distortion model agrees with COLMAP's, a splat fit of a strongly
distorted capture beats the pinhole assumption, and no distorted camera is ever rasterized as pinhole."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from recon3d.cli import main
from recon3d.core.cameras import OPENCV, Cameras
from recon3d.io import load_scene
from recon3d.io.nerfstudio import write_nerfstudio_transforms

K1, K2 = -0.32, 0.08  # strong barrel distortion


def _sample(img: np.ndarray, uv: torch.Tensor) -> np.ndarray:
    """Bilinear sample of an (H, W, C) image at (..., 2) pixel coordinates (centres at +0.5)."""
    H, W = img.shape[:2]
    t = torch.from_numpy(img).float().permute(2, 0, 1)[None]
    grid = torch.stack([2 * uv[..., 0] / W - 1, 2 * uv[..., 1] / H - 1], -1)[None].float()
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)[0].permute(1, 2, 0).numpy()


def _distort_view(pinhole_img: np.ndarray, cam: Cameras) -> np.ndarray:
    """The image a distorted lens with ``cam``'s intrinsics (distortion set) sees, from a pinhole image
    with the same fx, fy, cx, cy: each distorted pixel looks up its undistorted direction."""
    H, W = pinhole_img.shape[:2]
    uv = cam.pixel_centers(0)  # (H, W, 2)
    xy_d = torch.stack([(uv[..., 0] - cam.cx[0]) / cam.fx[0], (uv[..., 1] - cam.cy[0]) / cam.fy[0]], -1)
    xy = cam.undistort(xy_d.reshape(1, -1, 2)).reshape(H, W, 2)
    src = torch.stack([xy[..., 0] * cam.fx[0] + cam.cx[0], xy[..., 1] * cam.fy[0] + cam.cy[0]], -1)
    return _sample(pinhole_img, src)


@pytest.fixture(scope="module")
def distorted(tmp_path_factory):
    """A synthetic object capture seen through a strongly distorted lens, as a nerfstudio dataset
    (``distorted/``), the same files declared PINHOLE (``as_pinhole/``), and the pinhole originals."""
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("dist")
    gen = generate_scene(root / "pinhole", num_views=16, size=64, seed=2, object="random", fov_deg=60.0)
    scene = load_scene(gen)
    cams = scene.cameras
    dist = torch.zeros(len(cams), 5)
    dist[:, 0], dist[:, 1] = K1, K2
    dcams = replace(cams, distortion=dist, model=OPENCV)
    img_dir = root / "distorted" / "images"
    img_dir.mkdir(parents=True)
    paths = []
    for i, p in enumerate(scene.image_paths):
        rgba = np.asarray(Image.open(p).convert("RGBA")).astype(np.float32) / 255
        out = _distort_view(rgba, dcams[i])
        path = img_dir / f"{Path_stem(p)}.png"
        Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
        paths.append(path)
    dscene = replace(scene, cameras=dcams, image_paths=paths)
    write_nerfstudio_transforms(dscene, root / "distorted" / "transforms.json")
    (root / "as_pinhole").mkdir()
    (root / "as_pinhole" / "images").symlink_to(img_dir)
    write_nerfstudio_transforms(replace(dscene, cameras=cams), root / "as_pinhole" / "transforms.json")
    return root, scene, dscene


def Path_stem(p) -> str:
    from pathlib import Path

    return Path(p).stem


def test_recon3d_and_colmap_agree_on_the_distortion(distorted, tmp_path):
    """Undistorting with pycolmap what recon3d's model distorted gives back the pinhole view."""
    from recon3d.sfm.undistort import undistort_scene

    _, scene, dscene = distorted
    und, n = undistort_scene(dscene, tmp_path / "u")
    assert n == 16 and not und.cameras.is_distorted and und.cameras.model == "pinhole"
    errs = []
    for i in range(4):
        u = np.asarray(Image.open(und.image_paths[i]).convert("RGBA")).astype(np.float32) / 255
        # the original pinhole view resampled into COLMAP's new pinhole camera (an affine map)
        c = und.cameras[i]
        uv = c.pixel_centers(0)
        src = torch.stack([(uv[..., 0] - c.cx[0]) / c.fx[0] * scene.cameras.fx[i] + scene.cameras.cx[i],
                           (uv[..., 1] - c.cy[0]) / c.fy[0] * scene.cameras.fy[i] + scene.cameras.cy[i]], -1)
        ref = _sample(np.asarray(Image.open(scene.image_paths[i]).convert("RGBA")).astype(np.float32) / 255, src)
        m = 4  # borders: both resamplings clamp there
        errs.append(np.abs(u - ref)[m:-m, m:-m].mean())
    assert max(errs) < 0.02, errs
    # cached: a second call rewrites nothing
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "u" / "images").iterdir()}
    undistort_scene(dscene, tmp_path / "u")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "u" / "images").iterdir()} == before


def test_splat_never_rasterizes_a_distorted_camera(distorted, tmp_path):
    from recon3d.methods.splat import SplatTrainer, preset

    _, _, dscene = distorted
    tr = SplatTrainer(dscene, preset("quick", init_num_random=200), tmp_path, device="cpu")
    with pytest.raises(ValueError, match="undistort"):
        tr.render(dscene.cameras[0])


def test_undistorted_fit_beats_the_pinhole_assumption(distorted, tmp_path):
    root, _, _ = distorted
    common = ["--preset", "quick", "--max-steps", "300", "--orbit-frames", "0"]
    assert main(["fit", "--data", str(root / "distorted"), *common, "--out", str(tmp_path / "u")]) == 0
    assert main(["fit", "--data", str(root / "as_pinhole"), *common, "--out", str(tmp_path / "p")]) == 0
    mu = json.loads((tmp_path / "u" / "metrics.json").read_text())
    mp = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert mu["undistorted_views"] == 16 and "undistorted_views" not in mp
    assert mu["test_psnr"] > mp["test_psnr"] + 2.0, (mu["test_psnr"], mp["test_psnr"])
    # the run reopens on its undistorted cameras
    assert main(["eval", "--run", str(tmp_path / "u")]) == 0
    ev = json.loads((tmp_path / "u" / "eval.json").read_text())
    assert ev["test_psnr"] == pytest.approx(mu["test_psnr"], abs=1e-4)
