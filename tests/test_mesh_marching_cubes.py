"""Marching cubes: analytic spheres (SDF and density conventions), grids, torch fields, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon3d.mesh import extract_isosurface
from recon3d.mesh.ops import remove_small_components, signed_volume

pytest.importorskip("skimage")

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def _sphere_sdf(p, c=(0.1, -0.05, 0.0), r=0.5):
    return np.linalg.norm(p - np.asarray(c, np.float32), axis=-1) - r


def test_sdf_sphere_numpy():
    m = extract_isosurface(_sphere_sdf, BOX, resolution=40, level=0.0, inside="below")
    d = np.linalg.norm(m.vertices - [0.1, -0.05, 0.0], axis=1)
    assert np.abs(d - 0.5).max() < 2e-3  # vertices interpolate the zero crossing on grid edges
    assert signed_volume(m) == pytest.approx(4 / 3 * np.pi * 0.125, rel=0.03)  # outward winding
    outward = ((m.vertices - [0.1, -0.05, 0.0]) * m.vertex_normals).sum(1)
    assert (outward > 0).all()
    assert m.metadata["resolution"] == [40, 40, 40]


def test_density_sphere_grid_and_torch():
    x = np.linspace(-1, 1, 33)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    dens = np.exp(-(X**2 + Y**2 + Z**2) / 0.5)
    level = float(np.exp(-0.25 / 0.5))  # the sphere of radius 0.5
    m_grid = extract_isosurface(dens, BOX, level=level, inside="above")
    m_fn = extract_isosurface(lambda p: torch.exp(-(p**2).sum(-1) / 0.5), BOX, resolution=33, level=level,
                              inside="above", device="cpu", chunk=1000)
    for m in (m_grid, m_fn):
        assert np.abs(np.linalg.norm(m.vertices, axis=1) - 0.5).max() < 5e-3
        assert signed_volume(m) > 0
        assert ((m.vertices * m.vertex_normals).sum(1) > 0).all()
    np.testing.assert_allclose(m_grid.vertices, m_fn.vertices, atol=1e-5)


def test_small_components_and_nan():
    def two_spheres(p):
        return np.minimum(_sphere_sdf(p, (-0.4, 0, 0), 0.4), _sphere_sdf(p, (0.7, 0.7, 0.7), 0.12))

    full = extract_isosurface(two_spheres, BOX, resolution=40)
    big = extract_isosurface(two_spheres, BOX, resolution=40, min_component_faces=full.num_faces // 4)
    assert big.num_faces < full.num_faces
    assert np.linalg.norm(big.vertices - [-0.4, 0, 0], axis=1).max() < 0.41
    only = remove_small_components(full, keep_largest=True)
    assert only.num_faces == big.num_faces

    def with_nan(p):
        v = _sphere_sdf(p)
        v[p[:, 0] > 0.9] = np.nan
        return v

    m = extract_isosurface(with_nan, BOX, resolution=24)
    assert np.isfinite(m.vertices).all() and m.num_faces > 0


def test_no_surface_raises():
    with pytest.raises(ValueError, match="no surface"):
        extract_isosurface(lambda p: np.ones(len(p)), BOX, resolution=8)
    with pytest.raises(ValueError, match="aabb"):
        extract_isosurface(_sphere_sdf, [[0, 0, 0], [0, 1, 1]], resolution=8)
    with pytest.raises(ValueError, match="inside"):
        extract_isosurface(_sphere_sdf, BOX, resolution=8, inside="in")
