import math

import pytest
import torch

from recon3d.core import Cameras
from tests.conftest import orbit_c2w


def _cams(model="pinhole", dist=None, n=4):
    return Cameras(orbit_c2w(n), fx=80.0, fy=75.0, cx=40.0, cy=31.0, width=80, height=60, distortion=dist, model=model)


def test_rays_pass_through_projected_points(orbit_cameras):
    pts = torch.randn(200, 3) * 0.7
    uv, depth = orbit_cameras.project(pts)
    assert (depth > 0).all()
    for i in range(len(orbit_cameras)):
        rays = orbit_cameras.rays_at(torch.full((200,), i), uv[i])
        t = ((pts - rays.origins) * rays.directions).sum(-1)
        closest = rays.origins + rays.directions * t[:, None]
        assert torch.allclose(closest, pts, atol=1e-4)
        # z_scale converts ray distance into the camera's z-depth
        assert torch.allclose(t * rays.z_scale[:, 0], depth[i], atol=1e-4)


@pytest.mark.parametrize(
    "model,dist",
    [("opencv", [0.08, -0.02, 0.001, -0.0015, 0.003]), ("opencv_fisheye", [0.05, -0.01, 0.002, -0.0005])],
)
def test_distorted_project_unproject_round_trip(model, dist):
    cams = _cams(model, dist)
    pts = torch.randn(300, 3) * 0.5
    uv, z = cams.project(pts)
    back = cams.unproject(uv, z)
    assert torch.allclose(back, pts[None].expand_as(back), atol=1e-4)
    # and rays through the distorted pixel hit the point
    rays = cams.rays_at(torch.zeros(300, dtype=torch.long), uv[0])
    t = ((pts - rays.origins) * rays.directions).sum(-1)
    assert torch.allclose(rays.origins + rays.directions * t[:, None], pts, atol=1e-4)


def test_distortion_changes_pixels():
    p = _cams()
    d = _cams("opencv", [0.2, 0.0, 0.0, 0.0, 0.0])
    pts = torch.tensor([[0.8, 0.5, 0.3]])
    assert not torch.allclose(p.project(pts)[0], d.project(pts)[0])
    assert d.is_distorted and not p.is_distorted


def test_pixel_centers_and_principal_ray():
    c2w = torch.eye(4)[None]
    cams = Cameras(c2w, fx=10.0, fy=10.0, cx=2.0, cy=1.0, width=4, height=2)
    rays = cams.rays(0)
    assert rays.shape == (2, 4)
    # pixel (row 0, col 1) has center (1.5, 0.5): direction ∝ (-0.05, -0.05, 1)
    d = rays.directions[0, 1]
    expected = torch.tensor([-0.05, -0.05, 1.0])
    assert torch.allclose(d, expected / expected.norm(), atol=1e-6)
    # projecting a point on the optical axis lands on the principal point
    uv, z = cams.project(torch.tensor([[0.0, 0.0, 3.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([2.0, 1.0])) and z.item() == pytest.approx(3.0)


def test_rescale_keeps_projections_consistent():
    cams = _cams()
    half = cams.rescale(0.5)
    assert int(half.width[0]) == 40 and int(half.height[0]) == 30
    pts = torch.randn(50, 3) * 0.5
    uv_full, _ = cams.project(pts)
    uv_half, _ = half.project(pts)
    assert torch.allclose(uv_half, uv_full * 0.5, atol=1e-4)
    exact = cams.rescale(width=20, height=15)
    assert torch.allclose(exact.fx, cams.fx / 4) and torch.allclose(exact.cy, cams.cy / 4)


def test_batching_index_cat_and_K():
    cams = _cams(n=5)
    assert len(cams) == 5 and len(cams[1:3]) == 2 and len(cams[2]) == 1
    both = Cameras.cat([cams[:2], cams[2:]])
    assert torch.equal(both.c2w, cams.c2w)
    K = cams.K
    assert K.shape == (5, 3, 3) and torch.allclose(K[:, 0, 0], cams.fx)
    w2c = cams.w2c
    assert torch.allclose(w2c @ cams.c2w, torch.eye(4).expand(5, 4, 4), atol=1e-5)
    cams.from_K(K, cams.c2w, 80, 60)


def test_fov_and_look_at():
    cams = _cams(n=8)
    fov_x, _ = cams.fov()
    assert torch.allclose(fov_x, torch.full((8,), 2 * math.atan(40 / 80)))
    assert torch.allclose(cams.look_at(), torch.zeros(3), atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="c2w"):
        Cameras(torch.eye(3), 1.0, 1.0, 0.5, 0.5, 1, 1)
    with pytest.raises(ValueError, match="camera model"):
        Cameras(torch.eye(4), 1.0, 1.0, 0.5, 0.5, 1, 1, model="kannala")
    with pytest.raises(ValueError, match="entries"):
        Cameras(torch.eye(4).repeat(2, 1, 1), torch.ones(3), 1.0, 0.5, 0.5, 1, 1)


def test_orbit_path_circles_the_look_at_point():
    from recon3d.core.camera_paths import orbit_path

    cams = _cams(n=8)  # orbit_c2w: radius 4, 30 degrees elevation, looking at the origin, z up
    path = orbit_path(cams, num_frames=12)
    assert len(path) == 12
    assert torch.allclose(path.centers.norm(dim=-1), torch.full((12,), 4.0), atol=1e-3)
    assert torch.allclose(path.centers[:, 2], torch.full((12,), 2.0), atol=1e-3)  # same elevation
    # every frame looks at the origin with image-up = world +z side
    uv, z = path.project(torch.zeros(1, 3))
    assert torch.allclose(uv[:, 0], torch.stack([path.cx, path.cy], -1), atol=1e-3) and (z > 0).all()
    uv_up, _ = path.project(torch.tensor([[0.0, 0.0, 0.5]]))
    assert (uv_up[:, 0, 1] < path.cy).all()


@pytest.mark.parametrize("model,dist", [("pinhole", None), ("opencv", [0.08, -0.02, 0.001, -0.0015, 0.003])])
def test_unproject_depth_projects_back_to_the_pixel_grid(model, dist):
    """Every pixel's depth-unprojected point projects back onto that pixel (at ``pixel_offset``)
    with that z-depth, for all cameras at once or one ``index``; wrong shapes are ValueErrors."""
    cams = _cams(model, dist, n=3)
    depth = 2.0 + torch.rand(3, 60, 80, generator=torch.Generator().manual_seed(0))
    for offset in (0.5, 0.0):
        pts = cams.unproject_depth(depth, pixel_offset=offset)
        assert pts.shape == (3, 60, 80, 3)
        uv, z = cams.project(pts.reshape(3, -1, 3))
        grid = cams.pixel_grid(0, offset).reshape(1, -1, 2)
        assert torch.allclose(uv, grid.expand_as(uv), atol=2e-3) and torch.allclose(z, depth.reshape(3, -1), atol=1e-4)
    one = cams.unproject_depth(depth[1], index=1)
    assert one.shape == (60, 80, 3) and torch.allclose(one, cams.unproject_depth(depth)[1], atol=1e-6)
    assert torch.equal(cams.pixel_grid(0), cams.pixel_centers(0))
    assert torch.equal(cams.pixel_grid(0, 0.0)[1, 2], torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError, match="depth must be"):
        cams.unproject_depth(depth[0])
    with pytest.raises(ValueError, match="60x60 .* 80x60"):
        cams.unproject_depth(depth[..., :60, :60])


def test_unproject_depth_analytic_pinhole():
    """Identity camera, f = 2, principal point (2, 1), depth 3: pixel (row 0, column 3) center (3.5, 0.5)
    -> (3 * 1.5 / 2, 3 * -0.5 / 2, 3); at integer coordinates (3, 0) -> (1.5, -1.5, 3)."""
    cams = Cameras(torch.eye(4)[None], fx=2.0, fy=2.0, cx=2.0, cy=1.0, width=4, height=2)
    depth = torch.full((2, 4), 3.0)
    assert torch.allclose(cams.unproject_depth(depth, 0)[0, 3], torch.tensor([2.25, -0.75, 3.0]))
    assert torch.allclose(cams.unproject_depth(depth, 0, pixel_offset=0.0)[0, 3], torch.tensor([1.5, -1.5, 3.0]))


def test_rays_all_equals_rays_per_camera():
    cams = _cams("opencv", [0.08, -0.02, 0.001, -0.0015, 0.003], n=3)
    everything = cams.rays_all()
    assert everything.shape == (3, 60, 80)
    for i in range(3):
        one = cams.rays(i)
        assert torch.equal(everything.origins[i], one.origins)
        assert torch.allclose(everything.directions[i], one.directions, atol=1e-7)
        assert torch.equal(everything.camera_indices[i], one.camera_indices)
    mixed = Cameras.cat([cams[:1], cams[1:].rescale(0.5)])
    with pytest.raises(ValueError, match="one image size"):
        mixed.rays_all()
