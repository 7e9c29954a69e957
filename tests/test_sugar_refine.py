"""Refinement with Gaussians bound to mesh triangles: geometry of the binding, gradients, descent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon3d.core.gaussians import rasterize_cameras
from recon3d.mesh import TriangleMesh
from recon3d.methods.splat import load_splat_ply, save_splat_ply
from recon3d.methods.sugar._testing import ring_cameras, sphere_of_flat_gaussians
from recon3d.methods.sugar.refine import (
    BoundGaussians, RefineConfig, face_adjacency, normal_consistency_loss, refine_mesh, uniform_laplacian_loss,
)

trimesh = pytest.importorskip("trimesh")


def _ico(radius=0.5, sub=2):
    m = trimesh.creation.icosphere(subdivisions=sub, radius=radius)
    return TriangleMesh(m.vertices, m.faces)


def test_binding_geometry_and_gradients():
    mesh = _ico(sub=1)
    b = BoundGaussians.from_mesh(mesh, per_face=3, thickness=1e-3)
    assert len(b) == 3 * mesh.num_faces
    p = b.gaussians()
    tri = mesh.vertices[mesh.faces]
    expected = (np.array([[4, 1, 1], [1, 4, 1], [1, 1, 4]]) / 6.0) @ tri[0]  # face 0's three Gaussians
    np.testing.assert_allclose(p.means[:3].detach().numpy(), expected, atol=1e-6)
    from recon3d.methods.sugar.density import normals_of

    n = normals_of(p.quats, p.scales).detach().numpy()
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((n.reshape(-1, 3, 3) * fn[:, None]).sum(-1)), 1.0, atol=1e-5)
    assert torch.allclose(p.scales[:, 2], torch.tensor(1e-3))
    p.means.sum().backward()
    assert b.vertices.grad is not None and b.vertices.grad.abs().sum() > 0
    m = b.to_model()
    assert len(m) == len(b) and torch.allclose(m.scales, p.scales.detach(), rtol=1e-5)


def test_mesh_regularizers():
    mesh = _ico(sub=2)
    V = torch.tensor(mesh.vertices, dtype=torch.float32)
    Fc = torch.tensor(mesh.faces)
    adj = torch.tensor(face_adjacency(mesh.faces))
    assert adj.shape == (3 * mesh.num_faces // 2, 2)  # closed mesh: every edge shared by two faces
    smooth_lap, smooth_nc = uniform_laplacian_loss(V, Fc), normal_consistency_loss(V, Fc, adj)
    noisy = V + 0.02 * torch.randn(V.shape, generator=torch.Generator().manual_seed(0))
    assert uniform_laplacian_loss(noisy, Fc) > 2 * smooth_lap
    assert normal_consistency_loss(noisy, Fc, adj) > smooth_nc


def test_refinement_fits_colors_and_moves_vertices(tmp_path):
    cams = ring_cameras(size=20, focal=38.0)
    target = sphere_of_flat_gaussians(800, radius=0.5)
    with torch.no_grad():
        imgs = [rasterize_cameras(target.gaussians(), cams[i], sh_degree=0, backend="torch").colors[0]
                for i in range(len(cams))]
    start = _ico(radius=0.46, sub=2)  # too small, grey
    cfg = RefineConfig(steps=30, vertices_lr=2e-3, sh0_lr=0.05, backend="torch", laplacian_weight=1.0)
    refined, bound, summary = refine_mesh(start, cams, imgs, cfg, per_face=3, thickness=2e-3)
    assert summary["last"]["loss"] < 0.7 * summary["first"]["loss"]
    r0 = np.linalg.norm(start.vertices, axis=1).mean()
    r1 = np.linalg.norm(refined.vertices, axis=1).mean()
    assert abs(r1 - 0.5) < abs(r0 - 0.5)  # the surface moved toward the true sphere
    top = refined.vertices[:, 2] > 0.3
    assert refined.vertex_colors[top, 0].mean() > 0.6 and refined.metadata["method"] == "sugar-refined"
    back = load_splat_ply(save_splat_ply(bound.to_model(), tmp_path / "bound.ply"))
    assert len(back) == len(bound)
