"""Synthetic scene generator: analytic depth, ground-truth consistency, determinism, Blender round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import open3d as o3d
import pytest
import torch
from PIL import Image

from recon3d.core.cameras import Cameras
from recon3d.core.conventions import blender_to_opencv
from recon3d.io.synthetic import (
    Renderer, generate_scene, load_ground_truth, look_at, make_object, sphere_cameras,
)


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """4 views of 32x32 of a random object, full-precision ground truth, plus the generating cameras."""
    cams = sphere_cameras(4, radius=3.5, width=32, height=32, seed=3, jitter=0.5)
    root = generate_scene(tmp_path_factory.mktemp("syn") / "scene", seed=3, num_test_every=2, cameras=cams)
    return root, cams


def _read_rgba(root, frame) -> np.ndarray:
    return np.asarray(Image.open(root / (frame["file_path"] + ".png")))


def _frames(root):
    out = []
    for split in ("train", "test"):
        out += json.loads((root / f"transforms_{split}.json").read_text())["frames"]
    return sorted(out, key=lambda f: int(f["file_path"].rsplit("_", 1)[1]))


def test_unit_sphere_center_depth():
    d = 3.0
    eye = np.array([[d * 0.6, -d * 0.64, d * math.sqrt(1 - 0.6**2 - 0.64**2)]])
    cams = Cameras(look_at(eye, np.zeros((1, 3))), fx=40.0, fy=40.0, cx=16.5, cy=16.5, width=33, height=33)
    for ss in (1, 2, 3):
        out = Renderer(make_object(0, "sphere"), supersample=ss).render(cams, 0)
        tol = d / 40.0  # one pixel's footprint at the object
        assert abs(out["depth"][16, 16] - (d - 1.0)) < min(tol, 5e-3)
        assert out["mask"][16, 16] and not out["mask"][0, 0] and out["depth"][0, 0] == 0
        n = out["normals"][16, 16]
        assert np.allclose(n, eye[0] / d, atol=0.05)


def test_layout_and_blender_round_trip(tiny_scene):
    root, cams = tiny_scene
    info = json.loads((root / "scene_info.json").read_text())
    assert info["num_views"] == 4 and info["num_train"] == 2 and info["num_test"] == 2 and info["seed"] == 3
    assert info["object"]["bounding_radius"] <= 1.0
    frames = _frames(root)
    assert [f["file_path"] for f in frames] == ["./test/r_0", "./train/r_1", "./test/r_2", "./train/r_3"]
    c2w = blender_to_opencv(torch.tensor([f["transform_matrix"] for f in frames]))
    assert torch.allclose(c2w, cams.c2w, atol=1e-6)
    meta = json.loads((root / "transforms_train.json").read_text())
    fx = 0.5 * 32 / math.tan(0.5 * meta["camera_angle_x"])
    assert fx == pytest.approx(float(cams.fx[0]), rel=1e-6)
    assert not list(root.parent.glob(".scene.*"))  # no temp folders left behind


def test_depth_unprojects_onto_gt_mesh(tiny_scene):
    root, cams = tiny_scene
    mesh = o3d.io.read_triangle_mesh(str(root / "gt_mesh.ply"))
    assert np.abs(np.asarray(mesh.vertices)).max() <= 1.0
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    uv = cams.pixel_centers(0).reshape(1, -1, 2)
    total = 0
    for i, f in enumerate(_frames(root)):
        gt = load_ground_truth(root, f"r_{i}")
        m = gt["mask"].reshape(-1)
        assert np.array_equal(m, gt["depth"].reshape(-1) > 0)
        pts = cams[i].unproject(uv, torch.from_numpy(gt["depth"].reshape(1, -1)))[0][torch.from_numpy(m)]
        dist = scene.compute_distance(o3d.core.Tensor(pts.numpy())).numpy()
        assert dist.max() < 1e-4
        assert np.allclose(np.linalg.norm(gt["normals"][gt["mask"]], axis=-1), 1.0, atol=1e-4)
        total += m.sum()
    assert total > 50


def test_alpha_consistent_with_mask(tiny_scene):
    root, _ = tiny_scene
    for i, f in enumerate(_frames(root)):
        alpha = _read_rgba(root, f)[..., 3]
        mask = load_ground_truth(root, f"r_{i}")["mask"]
        assert (alpha[mask] > 0).all()  # the pixel-center ray is one of the 3x3 sub-rays
        assert (alpha[~mask] < 255).all()
        assert (np.abs(alpha / 255.0 - mask) > 0.5).mean() < 0.05
        assert mask.any() and not mask.all()


def test_deterministic_and_textured(tmp_path, tiny_scene):
    root, cams = tiny_scene
    again = generate_scene(tmp_path / "again", seed=3, num_test_every=2, cameras=cams)
    other = generate_scene(tmp_path / "other", seed=4, num_test_every=2, cameras=cams)
    for f in _frames(root):
        assert np.array_equal(_read_rgba(root, f), _read_rgba(again, f))
    assert not np.array_equal(_read_rgba(root, _frames(root)[1]), _read_rgba(other, _frames(root)[1]))
    # the solid texture is not flat: strong colour variation between nearby surface points
    mesh, texture = make_object(3)
    pts = np.asarray(mesh.vertices)
    rgb = texture(pts)
    assert rgb.shape == (len(pts), 3) and rgb.std(axis=0).min() > 0.08
    assert np.array_equal(rgb, make_object(3).texture(pts))
    with pytest.raises(FileExistsError):
        generate_scene(root, cameras=cams)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    import recon3d.io.synthetic as syn

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(syn, "_write_view", boom)
    cams = sphere_cameras(2, width=8, height=8)
    with pytest.raises(RuntimeError):
        syn.generate_scene(tmp_path / "scene", cameras=cams, object="sphere")
    assert list(tmp_path.iterdir()) == []


def test_objects_inside_unit_cube_and_cameras_look_at_origin():
    for seed in range(3):
        obj = make_object(seed)
        assert np.abs(np.asarray(obj.mesh.vertices)).max() <= 1.0
        assert len(obj.mesh.triangle_material_ids) == len(obj.mesh.triangles)
    cams = sphere_cameras(12, radius=3.5, elevation_range=(-10, 60), seed=1)
    c = cams.centers
    assert torch.allclose(c.norm(dim=-1), torch.full((12,), 3.5), atol=1e-4)
    assert torch.allclose(cams.forward, -c / 3.5, atol=1e-5)
    el = torch.rad2deg(torch.asin(c[:, 2] / 3.5))
    assert el.min() >= -10 - 1e-3 and el.max() <= 60 + 1e-3
    R = cams.c2w[:, :3, :3]
    assert torch.allclose(torch.linalg.det(R), torch.ones(12), atol=1e-5)
    assert (R[:, 2, 1] < 0).all()  # image "down" points down in the z-up world
