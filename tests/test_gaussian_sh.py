"""Real spherical harmonics: basis properties, 3DGS sign convention, RGB <-> DC round trips."""

from __future__ import annotations

import math

import pytest
import torch

from recon3d.core.gaussians.sh import (
    C0,
    C1,
    combine_bases,
    eval_sh,
    num_sh_bases,
    rgb_to_sh0,
    sh0_to_rgb,
    sh_basis,
    sh_degree_from_bases,
    sh_to_rgb,
)


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)


def test_num_bases():
    assert [num_sh_bases(d) for d in range(4)] == [1, 4, 9, 16]
    assert [sh_degree_from_bases(k) for k in (1, 4, 9, 16)] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        num_sh_bases(4)
    with pytest.raises(ValueError):
        sh_degree_from_bases(5)


def test_basis_is_orthonormal_on_the_sphere():
    d = fibonacci_sphere(20000)
    Y = sh_basis(3, d)  # (P, 16)
    gram = Y.T @ Y * (4 * math.pi / d.shape[0])
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-3)


def test_3dgs_sign_convention():
    """Band 1 is (-C1 y, C1 z, -C1 x): the ordering/signs of the reference 3DGS code and its .ply files."""
    dirs = torch.eye(3, dtype=torch.float64)  # +x, +y, +z
    Y = sh_basis(1, dirs)
    assert torch.allclose(Y[:, 0], torch.full((3,), C0, dtype=torch.float64))
    assert torch.allclose(Y[0, 1:], torch.tensor([0.0, 0.0, -C1], dtype=torch.float64))
    assert torch.allclose(Y[1, 1:], torch.tensor([-C1, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(Y[2, 1:], torch.tensor([0.0, C1, 0.0], dtype=torch.float64))
    # a few band-2/3 values at a generic direction (closed forms of the real SH)
    v = torch.tensor([[0.48, -0.6, 0.64]], dtype=torch.float64)
    x, y, z = 0.48, -0.6, 0.64
    Y3 = sh_basis(3, v)[0]
    assert math.isclose(Y3[4], 1.0925484305920792 * x * y, rel_tol=1e-12)
    assert math.isclose(Y3[6], 0.31539156525252005 * (3 * z * z - 1), rel_tol=1e-12)
    assert math.isclose(Y3[12], 0.3731763325901154 * z * (5 * z * z - 3), rel_tol=1e-12)
    assert math.isclose(Y3[15], -0.5900435899266435 * x * (x * x - 3 * y * y), rel_tol=1e-12)


def test_direction_norm_does_not_matter():
    d = torch.randn(50, 3, dtype=torch.float64)
    assert torch.allclose(sh_basis(3, d), sh_basis(3, 7.5 * d))


def test_rgb_sh0_round_trip_and_constant_color():
    rgb = torch.rand(10, 3)
    assert torch.allclose(sh0_to_rgb(rgb_to_sh0(rgb)), rgb, atol=1e-6)
    coeffs = torch.zeros(10, 16, 3)
    coeffs[:, 0] = rgb_to_sh0(rgb)
    dirs = torch.randn(10, 3)
    assert torch.allclose(sh_to_rgb(3, coeffs, dirs), rgb, atol=1e-6)


def test_clamp_and_unused_coefficients():
    coeffs = torch.zeros(4, 16, 3)
    coeffs[:, 0] = -10.0
    assert (sh_to_rgb(2, coeffs, torch.randn(4, 3)) == 0).all()
    c = torch.randn(6, 16, 3)
    d = torch.randn(6, 3)
    assert torch.allclose(eval_sh(1, c, d), eval_sh(1, c[:, :4], d))
    with pytest.raises(ValueError):
        eval_sh(2, c[:, :4], d)


@pytest.mark.parametrize("cams", [1, 3])
def test_combine_bases_gradcheck(cams):
    b = torch.randn(cams, 5, 9, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(combine_bases(b, c), torch.einsum("cnk,nkd->cnd", b, c))
    assert torch.autograd.gradcheck(combine_bases, (b, c))
