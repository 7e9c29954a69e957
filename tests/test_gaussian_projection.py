"""EWA projection of 3D Gaussians: covariances, pinhole means (vs Cameras.project), FOV clamp, low-pass,
radii, near/far validity, antialiasing compensation and exact support boxes."""

from __future__ import annotations

import math

import torch

from recon3d.core import Cameras
from recon3d.core.gaussians.projection import (
    ALPHA_MIN,
    EPS2D,
    fov_limits,
    pixel_bbox,
    project_gaussians,
    quat_scale_to_covar,
    quat_to_rotmat,
    support_extent,
)
from tests.conftest import orbit_c2w


def test_rotmat_orthonormal_and_unnormalized_quats():
    q = torch.randn(100, 4, dtype=torch.float64)
    R = quat_to_rotmat(q)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=torch.float64))
    assert torch.allclose(quat_to_rotmat(3.0 * q), R)
    # 90 degrees about z maps x to y
    qz = torch.tensor([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]], dtype=torch.float64)
    assert torch.allclose(quat_to_rotmat(qz)[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1.0, 0], dtype=torch.float64), atol=1e-12)


def test_covariance_from_quat_scale():
    q = torch.randn(20, 4, dtype=torch.float64)
    s = torch.rand(20, 3, dtype=torch.float64) + 0.1
    cov = quat_scale_to_covar(q, s)
    R = quat_to_rotmat(q)
    assert torch.allclose(cov, R @ torch.diag_embed(s**2) @ R.transpose(1, 2))
    assert torch.allclose(torch.linalg.eigvalsh(cov), torch.sort(s**2, dim=-1).values)


def test_means_match_cameras_project_and_depths(orbit_cameras):
    pts = torch.randn(200, 3) * 0.7
    n = pts.shape[0]
    proj = project_gaussians(pts, torch.randn(n, 4), torch.full((n, 3), 0.01), orbit_cameras.w2c,
                             orbit_cameras.K, 64, 48)
    uv, depth = orbit_cameras.project(pts)
    assert torch.allclose(proj.means2d, uv, atol=1e-4)
    assert torch.allclose(proj.depths, depth, atol=1e-5)
    assert proj.valid.all()


def test_isotropic_footprint_and_lowpass():
    f, z, s = 80.0, 4.0, 0.05
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    K = torch.tensor([[[f, 0, 32], [0, f, 24], [0, 0, 1]]], dtype=torch.float64)
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                             torch.full((1, 3), s, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[None],
                             K, 64, 48)
    var = (f * s / z) ** 2 + EPS2D
    assert torch.allclose(proj.cov2d[0, 0], torch.tensor([var, 0.0, var], dtype=torch.float64))
    assert torch.allclose(proj.conics[0, 0], torch.tensor([1 / var, 0.0, 1 / var], dtype=torch.float64))
    assert int(proj.radii[0, 0]) == math.ceil(3 * math.sqrt(var))


def test_anisotropic_radius_uses_largest_eigenvalue():
    means = torch.tensor([[0.0, 0.0, 2.0]])
    scales = torch.tensor([[0.2, 0.01, 0.01]])  # long along camera x
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]])
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]]), scales, torch.eye(4)[None], K, 64, 48)
    a, b, c = proj.cov2d[0, 0].tolist()
    assert a > 10 * c and abs(b) < 1e-6
    assert int(proj.radii[0, 0]) == math.ceil(3 * math.sqrt(a))


def test_fov_clamp_limits_footprint_far_off_axis():
    """Outside 1.3x the FOV the Jacobian stops growing: the footprint of a far off-axis Gaussian equals
    that of the same Gaussian placed at the clamp limit (same depth)."""
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]], dtype=torch.float64)
    lim_xp = fov_limits(64, 48, K[0])[0]
    z = 2.0
    q = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    s = torch.full((2, 3), 0.05, dtype=torch.float64)
    means = torch.tensor([[lim_xp * z, 0, z], [5 * lim_xp * z, 0, z]], dtype=torch.float64)
    proj = project_gaussians(means, q, s, torch.eye(4, dtype=torch.float64)[None], K, 64, 48)
    assert torch.allclose(proj.cov2d[0, 0], proj.cov2d[0, 1])
    # the mean itself is not clamped
    assert torch.allclose(proj.means2d[0, 1, 0], torch.tensor(50.0 * 5 * lim_xp + 32, dtype=torch.float64))


def test_validity_near_far_and_behind():
    means = torch.tensor([[0.0, 0, 0.005], [0, 0, 1.0], [0, 0, -1.0], [0, 0, 50.0]])
    n = 4
    proj = project_gaussians(means, torch.randn(n, 4), torch.full((n, 3), 0.1), torch.eye(4)[None],
                             torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]]), 64, 48, near=0.01, far=10.0)
    assert proj.valid[0].tolist() == [False, True, False, False]
    assert (proj.radii[0] > 0).tolist() == [False, True, False, False]
    assert torch.isfinite(proj.means2d).all() and torch.isfinite(proj.conics).all()


def test_antialiased_compensation():
    means = torch.tensor([[0.0, 0, 2.0], [0.1, 0, 2.0]])
    scales = torch.tensor([[0.001, 0.001, 0.001], [0.2, 0.2, 0.2]])
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]])
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]] * 2), scales, torch.eye(4)[None], K, 64, 48,
                             antialiased=True)
    a, b, c = proj.cov2d[0].unbind(-1)
    expect = torch.sqrt(((a - EPS2D) * (c - EPS2D) - b * b) / (a * c - b * b))
    assert torch.allclose(proj.compensation[0], expect, atol=1e-6)
    assert proj.compensation[0, 0] < 0.01 < 0.95 < proj.compensation[0, 1] <= 1


def test_support_extent_is_exact():
    cov = torch.tensor([[4.0, 1.5, 2.0]], dtype=torch.float64)
    o = torch.tensor([0.6], dtype=torch.float64)
    ex, ey = support_extent(cov, o)
    conic = torch.linalg.inv(torch.tensor([[4.0, 1.5], [1.5, 2.0]], dtype=torch.float64))
    # the extreme x of the ellipse d^T conic d = 2 ln(o / ALPHA_MIN) is at the computed half-width
    q = 2 * math.log(0.6 / ALPHA_MIN)
    t = torch.linspace(0, 2 * math.pi, 100001, dtype=torch.float64)
    L = torch.linalg.cholesky(torch.linalg.inv(conic))
    pts = (L @ torch.stack([torch.cos(t), torch.sin(t)]) * math.sqrt(q)).T
    assert torch.isclose(pts[:, 0].max(), ex[0], rtol=1e-6) and torch.isclose(pts[:, 1].max(), ey[0], rtol=1e-6)
    assert support_extent(cov, torch.tensor([0.5 * ALPHA_MIN], dtype=torch.float64))[0][0] == 0


def test_pixel_bbox_covers_pixel_centers():
    m = torch.tensor([[10.0, 5.0], [0.2, 47.9], [-30.0, 10.0]])
    ex = torch.tensor([2.0, 3.0, 5.0])
    box = pixel_bbox(m, ex, ex, 64, 48)
    # pixel j is inside when |j + 0.5 - mx| <= ex
    assert box[0].tolist() == [8, 12, 3, 7]
    assert box[1].tolist() == [0, 3, 45, 48]
    assert box[2, 1] <= box[2, 0]  # empty: entirely left of the image


def test_orbit_cameras_all_valid():
    cams = Cameras(orbit_c2w(3), fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)
    n = 30
    proj = project_gaussians(torch.randn(n, 3) * 0.3, torch.randn(n, 4), torch.rand(n, 3) * 0.05 + 0.01,
                             cams.w2c, cams.K, 64, 48)
    assert proj.valid.all() and (proj.radii > 0).all()
    det = proj.cov2d[..., 0] * proj.cov2d[..., 2] - proj.cov2d[..., 1] ** 2
    assert (det > EPS2D**2 * 0.99).all()  # the low-pass bounds the footprint from below


def test_fused_covariance_matches_autograd_formulation():
    from recon3d.core.gaussians.covariance import projected_covariance
    from recon3d.core.gaussians.projection import quat_scale_to_factor

    g = torch.Generator().manual_seed(0)
    for cams in (1, 3):
        q = torch.randn(6, 4, dtype=torch.float64, generator=g).requires_grad_()
        s = (torch.rand(6, 3, dtype=torch.float64, generator=g) + 0.1).requires_grad_()
        T0 = torch.randn(cams, 6, 3, dtype=torch.float64, generator=g).requires_grad_()
        T1 = torch.randn(cams, 6, 3, dtype=torch.float64, generator=g).requires_grad_()
        M = quat_scale_to_factor(q, s)
        U0, U1 = torch.einsum("cnj,njk->cnk", T0, M), torch.einsum("cnj,njk->cnk", T1, M)
        a, b, c = projected_covariance(q, s, T0, T1)
        assert torch.allclose(a, (U0 * U0).sum(-1)) and torch.allclose(b, (U0 * U1).sum(-1))
        assert torch.allclose(c, (U1 * U1).sum(-1))
        assert torch.autograd.gradcheck(projected_covariance, (q, s, T0, T1))
