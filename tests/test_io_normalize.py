"""recon3d.io.normalize and the Scene object: similarity round trips, invariance of projections, splits."""

import json

import numpy as np
import pytest
import torch

from recon3d.core.cameras import Cameras
from recon3d.io import Normalization, Scene, compute_normalization, normalize_scene
from recon3d.io._testing import look_at_c2w, ring_cameras, write_images
from recon3d.io.normalize import camera_center, up_rotation


def _random_similarity(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return Normalization.from_parts(0.37, q, torch.randn(3, generator=g, dtype=torch.float64))


def test_apply_then_inverse_recovers_points_and_poses():
    n = _random_similarity()
    pts = torch.randn(50, 3)
    cams = ring_cameras(5)
    np.testing.assert_allclose(n.inverse_points(n.apply_points(pts)), pts, atol=1e-5)
    np.testing.assert_allclose(n.inverse_c2w(n.apply_c2w(cams.c2w)), cams.c2w, atol=1e-5)
    R = n.apply_c2w(cams.c2w)[:, :3, :3]
    np.testing.assert_allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert n.scale == pytest.approx(0.37)
    np.testing.assert_allclose(n.then(n.inverse()).transform, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_projections_invariant_under_normalization():
    cams = ring_cameras(6, target=(3.0, -2.0, 1.0), radius=7.0)
    pts = torch.randn(40, 3) * 0.5 + torch.tensor([3.0, -2.0, 1.0])
    norm = compute_normalization(cams, method="cameras", align_up=True)
    ncams = norm.apply_cameras(cams)
    uv, z = cams.project(pts)
    uv2, z2 = ncams.project(norm.apply_points(pts))
    np.testing.assert_allclose(uv2, uv, atol=1e-3)
    np.testing.assert_allclose(z2, z * norm.scale, rtol=1e-4)


def test_cameras_method_centers_and_fits_radius():
    cams = ring_cameras(8, target=(1.0, 2.0, 3.0), radius=5.0)
    norm = compute_normalization(cams, target_radius=2.0)
    ncams = norm.apply_cameras(cams)
    assert ncams.centers.norm(dim=-1).max() == pytest.approx(2.0, rel=1e-4)
    np.testing.assert_allclose(ncams.look_at(), torch.zeros(3), atol=1e-4)
    assert compute_normalization(cams, method="none").is_identity


def test_points_method_is_robust_to_outliers():
    cams = ring_cameras(4)
    pts = torch.randn(1000, 3) + torch.tensor([5.0, 0.0, 0.0])
    pts[:5] = 1e4  # stray SfM points
    norm = compute_normalization(cams, pts, method="points")
    d = norm.apply_points(pts).norm(dim=-1)
    assert float(torch.quantile(d, 0.99)) == pytest.approx(1.0, rel=1e-3)
    assert float(torch.quantile(d, 0.5)) < 1.0
    with pytest.raises(ValueError):
        compute_normalization(cams, None, method="points")


def test_up_alignment_and_forward_facing_center():
    c2w = torch.from_numpy(np.stack([look_at_c2w((x, 0, 0), (x, 5, 0), up=(1, 1, 1)) for x in (0.0, 1.0, 2.0)])).float()
    cams = Cameras(c2w, 5.0, 5.0, 4.0, 3.0, 8, 6)
    up = -(up_rotation(cams) @ cams.c2w[:, :3, 1].double().mean(0))
    np.testing.assert_allclose((up / up.norm()).numpy(), [0, 0, 1], atol=1e-6)
    # parallel optical axes: no look-at point, centre falls back to the mean camera centre
    np.testing.assert_allclose(camera_center(cams), [1.0, 0.0, 0.0], atol=1e-5)


def test_dict_roundtrip_and_validation():
    n = _random_similarity(3)
    d = json.loads(json.dumps(n.to_dict()))
    np.testing.assert_allclose(Normalization.from_dict(d).transform, n.transform, atol=1e-12)
    with pytest.raises(ValueError):
        Normalization(torch.diag(torch.tensor([1.0, 2.0, 1.0, 1.0])))  # non-uniform scale


def _scene(tmp_path, n=10):
    cams = ring_cameras(n, target=(1.0, 1.0, 0.0))
    paths = write_images(tmp_path, [f"{i}.png" for i in range(n)], channels=4)
    return Scene(cams, paths, train_indices=[i for i in range(n) if i % 4], test_indices=list(range(0, n, 4)),
                 points=torch.randn(20, 3), point_colors=torch.rand(20, 3), near_far=torch.ones(n, 2),
                 background="white", name="t")


def test_normalize_scene_composes(tmp_path):
    sc = _scene(tmp_path)
    s1 = normalize_scene(sc, target_radius=3.0)
    s2 = normalize_scene(s1, target_radius=1.0, align_up=True)
    np.testing.assert_allclose(s2.normalization.apply_points(sc.points), s2.points, atol=1e-5)
    np.testing.assert_allclose(s2.normalization.apply_c2w(sc.cameras.c2w), s2.cameras.c2w, atol=1e-5)
    np.testing.assert_allclose(s2.near_far, sc.near_far * s2.normalization.scale, rtol=1e-5)
    assert s2.radius == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(s2.normalization.inverse_points(s2.points), sc.points, atol=1e-4)


def test_scene_lazy_images_splits_subset(tmp_path):
    sc = _scene(tmp_path)
    sc.cache_size = 2
    img = sc.image(3)
    assert img.shape == (6, 8, 3) and sc.image(3) is img
    sc.image(4), sc.image(5)
    assert list(sc._cache) == [4, 5]
    assert sc.alpha(0).shape == (6, 8) and sc.mask(0) is None
    cams, idx = sc.split("test")
    assert idx == [0, 4, 8] and len(cams) == 3
    with pytest.raises(ValueError):
        sc.split("val")
    sub = sc.subset([8, 1, 4])
    assert sub.test_indices == [0, 2] and sub.train_indices == [1]
    assert sub.image_paths[0] == sc.image_paths[8] and torch.equal(sub.cameras.c2w[0], sc.cameras.c2w[8])
    aabb = sc.aabb
    assert aabb.shape == (2, 3) and (aabb[0] <= aabb[1]).all()
    sc.points = None
    assert (sc.aabb[1] - sc.aabb[0]).max() > 4.0  # from the camera ring
    with pytest.raises(ValueError):
        Scene(ring_cameras(3), [tmp_path / "0.png"])  # 3 cameras, 1 path
