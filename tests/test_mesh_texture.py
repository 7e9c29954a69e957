"""UV rasterization, xatlas unwrapping, texture baking, colours projected from posed images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon3d.core import Cameras
from recon3d.mesh import TriangleMesh
from recon3d.mesh.export import _texture_colors
from recon3d.mesh.ops import surface_area, vertex_normals
from recon3d.mesh.texture import bake_texture, fill_empty, project_view_colors, rasterize_uv, unwrap

trimesh = pytest.importorskip("trimesh")


def _sphere(radius=0.5, subdivisions=2) -> TriangleMesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return TriangleMesh(m.vertices, m.faces)


def test_rasterize_uv_covers_square_with_valid_barycentrics():
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    fid, bary = rasterize_uv(uvs, faces, 8, 16)
    assert (fid >= 0).all()
    np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-6)
    # the interpolated uv of each texel is its centre (v measured from the bottom)
    uv = (uvs[faces[fid]] * bary[..., None]).sum(-2)
    rows, cols = np.mgrid[0:8, 0:16]
    np.testing.assert_allclose(uv[..., 0], (cols + 0.5) / 16, atol=1e-6)
    np.testing.assert_allclose(uv[..., 1], 1 - (rows + 0.5) / 8, atol=1e-6)
    half, _ = rasterize_uv(uvs, faces[:1], 8, 8)
    assert 0.4 < (half >= 0).mean() < 0.6


def test_fill_empty_uses_nearest():
    tex = np.zeros((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), bool)
    tex[0, 0], mask[0, 0] = 1.0, True
    tex[3, 3], mask[3, 3] = 0.5, True
    out = fill_empty(tex, mask)
    assert out[0, 1, 0] == 1.0 and out[3, 2, 0] == 0.5


def test_unwrap_and_bake_positions():
    pytest.importorskip("xatlas")
    mesh = _sphere()
    un = unwrap(mesh, size=128)
    assert un.uvs is not None and un.num_faces == mesh.num_faces
    assert surface_area(un) == pytest.approx(surface_area(mesh), rel=1e-5)
    assert (un.uvs >= 0).all() and (un.uvs <= 1).all()

    def color_fn(points, normals):
        return np.clip(points + 0.5, 0, 1)

    baked = bake_texture(mesh, color_fn, size=256)
    assert baked.texture.shape == (256, 256, 3) and baked.metadata["texture_coverage"] > 0.3
    # the colour read back at face centroids (through their uvs) is the colour of the 3D centroid
    cen = baked.vertices[baked.faces].mean(1)
    cen_uv = baked.uvs[baked.faces].mean(1)
    probe = TriangleMesh(cen, np.zeros((0, 3), np.int64), uvs=cen_uv, texture=baked.texture)
    np.testing.assert_allclose(_texture_colors(probe), color_fn(cen, None), atol=0.03)


def _side_cameras(size=32, focal=40.0):
    mats = []
    for sx in (1.0, -1.0):
        eye = np.array([3.0 * sx, 0, 0])
        fwd = -eye / 3.0
        right = np.cross(fwd, [0, 0, 1.0])
        down = np.cross(fwd, right)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
        mats.append(m)
    return Cameras(torch.tensor(np.stack(mats), dtype=torch.float32), fx=focal, fy=focal, cx=size / 2, cy=size / 2,
                   width=size, height=size)


def test_project_view_colors_respects_occlusion():
    mesh = _sphere()
    cams = _side_cameras()
    red = torch.zeros(32, 32, 3)
    red[..., 0] = 1
    blue = torch.zeros(32, 32, 3)
    blue[..., 2] = 1
    cols = project_view_colors(mesh, mesh.vertices, None, cams, [red, blue])
    x = mesh.vertices[:, 0]
    assert (cols[x > 0.1, 0] > 0.99).all() and (cols[x > 0.1, 2] < 0.01).all()
    assert (cols[x < -0.1, 2] > 0.99).all() and (cols[x < -0.1, 0] < 0.01).all()
    # the same through bake_texture's colour callback
    n = vertex_normals(mesh.vertices, mesh.faces)
    again = project_view_colors(mesh, mesh.vertices, n, cams, [red.numpy(), blue.numpy() * 255])
    np.testing.assert_allclose(again[np.abs(x) > 0.1], cols[np.abs(x) > 0.1], atol=1e-5)
    assert math.isfinite(float(again.sum()))
