"""SuGaR mesh extraction on an analytic scene: flat opaque Gaussians tiling a sphere of radius 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon3d.core.metrics import chamfer_distance, sample_mesh_points
from recon3d.methods.sugar import preset
from recon3d.methods.sugar._testing import BOTTOM_COLOR, TOP_COLOR, ring_cameras, sphere_of_flat_gaussians
from recon3d.methods.sugar.extract import (
    extract_mesh, level_crossings, sample_surface_points, vertex_colors_from_gaussians,
)

R = 0.5


@pytest.fixture(scope="module")
def scene():
    return sphere_of_flat_gaussians(1500, radius=R), ring_cameras(size=48, focal=90.0)


def _cfg(**kw):
    return preset("quick", **{"points_per_view": 800, "poisson_depth": 6, "target_faces": 2000, **kw})


def test_level_crossings_interpolates_first_rise():
    dens = torch.tensor([[0.0, 0.2, 0.6, 1.0, 0.1], [0.5, 0.9, 1.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.1, 0.0]])
    t = torch.linspace(-2, 2, 5).expand(3, 5)
    valid, tc = level_crossings(dens, t, 0.3)
    assert valid.tolist() == [True, False, False]  # starts above the level / never reaches it
    assert float(tc[0]) == pytest.approx(-1.0 + 0.25)


def test_surface_points_lie_on_the_sphere(scene, surface):
    _, cams = scene
    sp = surface
    r = np.linalg.norm(sp.points, axis=1)
    assert len(sp) > 5000
    # the 0.3 level of discs 0.002 thick lies a few thousandths outside the sphere
    assert abs(np.median(r) - R) < 0.012 and np.quantile(np.abs(r - R), 0.99) < 0.02
    assert ((sp.normals * sp.points).sum(1) > 0).mean() > 0.99  # outward
    assert set(np.unique(sp.view)) == set(range(len(cams)))


@pytest.fixture(scope="module")
def surface(scene):
    model, cams = scene
    return sample_surface_points(model, cams, _cfg(), backend="torch")


@pytest.fixture(scope="module")
def mesh(scene, surface):
    model, cams = scene
    return extract_mesh(model, cams, _cfg(), points=surface)


def test_extract_mesh_matches_sphere_with_colors(mesh):
    assert 0 < mesh.num_faces <= 2000 and mesh.metadata["method"] == "sugar"
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - R) < 0.015 and np.abs(r - R).max() < 0.03
    gt = np.random.default_rng(0).normal(size=(20000, 3))
    gt = R * gt / np.linalg.norm(gt, axis=1, keepdims=True)
    cd = chamfer_distance(sample_mesh_points(mesh.vertices, mesh.faces, 20000), gt)
    assert cd["chamfer"] < 0.02
    assert ((mesh.vertex_normals * mesh.vertices).sum(1) > 0).mean() > 0.99
    top, bottom = mesh.vertices[:, 2] > 0.15, mesh.vertices[:, 2] < -0.15
    np.testing.assert_allclose(mesh.vertex_colors[top].mean(0), TOP_COLOR, atol=0.03)
    np.testing.assert_allclose(mesh.vertex_colors[bottom].mean(0), BOTTOM_COLOR, atol=0.03)


def test_vertex_colors_from_gaussians(scene):
    model, _ = scene
    pts = np.array([[0, 0, R], [0, 0, -R], [R, 0, 0.1]], np.float32)
    cols = vertex_colors_from_gaussians(model, pts)
    np.testing.assert_allclose(cols[0], TOP_COLOR, atol=1e-3)
    np.testing.assert_allclose(cols[1], BOTTOM_COLOR, atol=1e-3)
    np.testing.assert_allclose(cols[2], TOP_COLOR, atol=1e-3)


def test_texture_from_gaussians(scene, mesh):
    pytest.importorskip("xatlas")
    from recon3d.mesh.ops import simplify
    from recon3d.mesh.texture import bake_texture

    model, _ = scene
    small = simplify(mesh, 600)
    tex = bake_texture(small, lambda p, n: vertex_colors_from_gaussians(model, p), size=128)
    assert tex.texture.shape == (128, 128, 3) and tex.uvs is not None
    red = (tex.texture[..., 0] > 200) & (tex.texture[..., 2] < 80)
    blue = (tex.texture[..., 2] > 200) & (tex.texture[..., 0] < 80)
    assert red.mean() > 0.2 and blue.mean() > 0.2
