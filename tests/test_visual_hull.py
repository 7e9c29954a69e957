"""Visual hull from silhouettes (recon3d.core.visual_hull), checked against analytic spheres: the
exact silhouettes of a ball seen from cameras all around, whose hull must hold the ball and hug it."""

from __future__ import annotations

import math

import pytest
import torch

from recon3d.core.visual_hull import EmptyHullError, carve, surface_colors, visual_hull
from recon3d.io.synthetic import sphere_cameras

RADIUS = 0.5


def ball_views(n: int = 24, size: int = 96, center=(0.0, 0.0, 0.0)):
    """Cameras all around the origin and the exact silhouettes of the ball (radius RADIUS at ``center``),
    plus images coloured by which side of x = center_x the ray first hits the ball (red +x, blue -x)."""
    cams = sphere_cameras(n, radius=3.0, elevation_range=(-70.0, 80.0), fov_deg=30.0, width=size, height=size)
    c = torch.tensor(center)
    sils, images = [], []
    for i in range(n):
        rays = cams.rays(i)
        o, d = rays.origins, rays.directions
        t = ((c - o) * d).sum(-1)  # closest approach along the ray
        dist = (o + t[..., None] * d - c).norm(dim=-1)
        sil = dist <= RADIUS
        t_hit = t - torch.sqrt((RADIUS ** 2 - dist ** 2).clamp_min(0))
        hit = o + t_hit[..., None] * d
        img = torch.ones(size, size, 3)
        red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
        img[sil] = torch.where((hit[sil][:, :1] - c[0]) > 0, red, blue)
        sils.append(sil)
        images.append(img)
    return cams, sils, images


def test_the_hull_of_a_ball_holds_it_and_hugs_it():
    cams, sils, _ = ball_views()
    hull = visual_hull(cams, sils, resolution=64)
    assert hull.resolution[0] >= 64
    idx = hull.occupied.nonzero()
    r = hull.centers(idx).norm(dim=-1)
    # every voxel well inside the ball survives (the hull is conservative) ...
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in hull.resolution], indexing="ij"), -1).reshape(-1, 3)
    inner = hull.centers(grid).norm(dim=-1) < RADIUS - hull.voxel
    assert bool(hull.occupied.reshape(-1)[inner].all())
    # ... and nothing far outside it does: 24 views around a ball carve it to within a few voxels
    assert float(r.max()) < RADIUS * 1.12 + 2 * hull.voxel, float(r.max())
    vol = len(idx) * hull.voxel ** 3
    assert 1.0 < vol / (4 / 3 * math.pi * RADIUS ** 3) < 1.35
    pts, normals = hull.sample_surface(2000, generator=torch.Generator().manual_seed(0))
    rp = pts.norm(dim=-1)
    assert float(rp.min()) > RADIUS - 2 * hull.voxel and float(rp.max()) < RADIUS * 1.12 + 3 * hull.voxel
    assert float((normals * pts / rp[:, None]).sum(-1).mean()) > 0.95  # outward


def test_the_hull_follows_an_off_center_ball():
    cams, sils, _ = ball_views(center=(0.3, -0.2, 0.1))
    hull = visual_hull(cams, sils, resolution=48)
    center = hull.centers(hull.occupied.nonzero()).mean(0)
    assert torch.allclose(center, torch.tensor([0.3, -0.2, 0.1]), atol=0.02), center


def test_one_wrong_mask_is_forgiven_but_not_when_no_miss_is_allowed():
    cams, sils, _ = ball_views()
    sils[5] = torch.zeros_like(sils[5])  # a mask that lost the object: every voxel misses it
    hull = visual_hull(cams, sils, resolution=48)  # 1 miss in 24 views is within miss_fraction 0.05
    assert float(hull.centers(hull.occupied.nonzero()).norm(dim=-1).max()) < RADIUS * 1.2
    with pytest.raises(EmptyHullError, match="carve away"):
        visual_hull(cams, sils, resolution=48, miss_fraction=0.0)


def test_silhouettes_that_do_not_match_the_poses_raise():
    cams, sils, _ = ball_views(n=12)
    corner = []
    for s in sils:  # every mask a blob in the image's top-left corner: rays from all around that never meet
        m = torch.zeros_like(s)
        m[:12, :12] = True
        corner.append(m)
    with pytest.raises(EmptyHullError, match="masks that do not match the poses"):
        visual_hull(cams, corner, resolution=32)
    with pytest.raises(ValueError, match="12 cameras but 11 silhouettes"):
        carve(cams, sils[:11], torch.full((3,), -1.0), torch.ones(3), 8)


def test_surface_colors_come_from_the_views_that_face_each_point():
    cams, sils, images = ball_views()
    hull = visual_hull(cams, sils, resolution=48)
    pts, normals = hull.sample_surface(3000, generator=torch.Generator().manual_seed(1))
    cols = surface_colors(pts, normals, cams, lambda i: images[i], range(len(cams)))
    right, left = pts[:, 0] > 0.15, pts[:, 0] < -0.15
    assert float(cols[right, 0].mean()) > 0.9 and float(cols[right, 2].mean()) < 0.1
    assert float(cols[left, 2].mean()) > 0.9 and float(cols[left, 0].mean()) < 0.1
