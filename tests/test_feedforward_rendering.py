"""Shared rendering/meshing of conditioned radiance fields, on an analytic sphere field."""


import numpy as np
import pytest
import torch

from recon3d.feedforward.base import ConditionedRadianceField
from recon3d.feedforward.rendering import RenderOptions, camera_rays, density_mesh, render_view

RADIUS = 0.5
COLOR = (0.2, 0.6, 0.9)


class SphereField(ConditionedRadianceField):
    name = "sphere-test"

    def __init__(self):
        super().__init__(config=None)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, images, K, c2w):
        return images.mean(dim=(1, 2, 3, 4))  # (B,) scale of the density

    def query(self, latent, points, directions):
        inside = points.norm(dim=-1) < RADIUS
        sigma = torch.where(inside, 200.0 * latent[:, None], torch.zeros_like(points[..., 0]))
        rgb = torch.tensor(COLOR).expand(*points.shape[:-1], 3)
        return sigma, rgb

    def training_step(self, batch, step):
        raise NotImplementedError

    def validation_step(self, batch):
        raise NotImplementedError


def _camera(dist=3.0, size=32, f=40.0):
    c2w = torch.eye(4)
    # camera on -Y looking at the origin along +Y, OpenCV axes: x right, y down (-Z world), z forward
    c2w[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    c2w[:3, 3] = torch.tensor([0.0, -dist, 0.0])
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return K[None], c2w[None]


def test_camera_rays_center_pixel_looks_forward():
    K, c2w = _camera(size=2)
    o, d = camera_rays(K, c2w, 2, 2)
    assert o.shape == (1, 4, 3) and d.shape == (1, 4, 3)
    mean_dir = d[0].mean(0)
    assert torch.allclose(mean_dir / mean_dir.norm(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_render_view_sphere_depth_and_background():
    model = SphereField()
    K, c2w = _camera()
    latent = model.encode(torch.ones(1, 1, 3, 4, 4), K[:, None], c2w[:, None])
    out = render_view(model, latent, K, c2w, 32, 32, RenderOptions(num_coarse=64, num_fine=64))
    center = out["opacity"][0, 16, 16, 0]
    assert center > 0.99
    assert abs(out["depth"][0, 16, 16, 0].item() - (3.0 - RADIUS)) < 0.03
    assert torch.allclose(out["rgb"][0, 16, 16], torch.tensor(COLOR), atol=0.02)
    # corner ray misses the sphere: white background, zero depth
    assert out["opacity"][0, 0, 0, 0] < 1e-4
    assert torch.allclose(out["rgb"][0, 0, 0], torch.ones(3), atol=1e-4)
    assert out["depth"][0, 0, 0, 0] == 0


def test_density_mesh_sphere_radius_and_colors():
    model = SphereField()
    latent = torch.ones(1)
    mesh = density_mesh(model, latent, resolution=48, threshold=10.0)
    r = np.linalg.norm(mesh.vertices, axis=1)
    step = 2.0 / 47
    assert abs(r.mean() - RADIUS) < step
    assert np.allclose(mesh.vertex_colors, COLOR, atol=1e-5)


def test_density_mesh_empty_field_raises():
    model = SphereField()
    with pytest.raises(ValueError):
        density_mesh(model, torch.zeros(1), resolution=16)
