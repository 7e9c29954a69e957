"""Real spherical harmonics (degrees 0..3) for view-dependent Gaussian colors.

The basis ordering, normalization constants and signs are the ones of the original 3D Gaussian
Splatting code (and therefore of gsplat and of the ``f_dc_*`` / ``f_rest_*`` fields of its .ply
files), so coefficients written by recon3d display correctly in other viewers and vice versa.

Colors are ``max(SH(dir) + 0.5, 0)``: the DC coefficient of a gray of value ``v`` is
``(v - 0.5) / C0`` (see :func:`rgb_to_sh0`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Normalization constants of the real SH basis functions (band 0..3), standard values.
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per color channel for a degree: (degree + 1) ** 2."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of :func:`num_sh_bases` (raises if ``k`` is not a perfect square <= 16)."""
    d = int(round(k**0.5)) - 1
    if d < 0 or d > MAX_SH_DEGREE or (d + 1) ** 2 != k:
        raise ValueError(f"{k} is not a valid number of SH bases (1, 4, 9 or 16)")
    return d


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Evaluate the real SH basis functions.

    Args:
        degree: 0..3.
        dirs: (..., 3) directions (need not be unit length; they are normalized here).
    Returns:
        (..., (degree + 1) ** 2) basis values, same dtype as ``dirs``.
    """
    n = num_sh_bases(degree)
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = d.movedim(-1, 0).contiguous().unbind(0)  # contiguous components: faster elementwise ops
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            C2[0] * x * y,
            C2[1] * y * z,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * x * z,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3.0 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4.0 * zz - xx - yy),
            C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            C3[4] * x * (4.0 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3.0 * yy),
        ]
    assert len(out) == n
    return torch.stack(out, dim=-1)


class _CombineBases(torch.autograd.Function):
    """``out[c, n, :] = sum_k basis[c, n, k] * coeffs[n, k, :]`` with backward as batched matmuls.

    Autograd's version of this (broadcast multiply + sum, or einsum) is several times slower on CPU
    for 100k+ Gaussians; this is the single most expensive part of SH evaluation.
    """

    @staticmethod
    def forward(ctx, basis: Tensor, coeffs: Tensor) -> Tensor:  # (C, N, k), (N, k, 3) -> (C, N, 3)
        ctx.save_for_backward(basis, coeffs)
        return torch.bmm(basis.permute(1, 0, 2), coeffs).permute(1, 0, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        basis, coeffs = ctx.saved_tensors
        gb = gc = None
        g = grad.permute(1, 0, 2)  # (N, C, 3)
        if ctx.needs_input_grad[0]:
            gb = torch.bmm(coeffs, g.transpose(1, 2)).permute(2, 0, 1)  # (C, N, k)
        if ctx.needs_input_grad[1]:
            if basis.shape[0] == 1:
                gc = basis[0, :, :, None] * grad[0, :, None, :]
            else:
                gc = torch.bmm(basis.permute(1, 2, 0), g)  # (N, k, 3)
        return gb, gc


def combine_bases(basis: Tensor, coeffs: Tensor) -> Tensor:
    """(C, N, k) basis values x (N, k, D) coefficients -> (C, N, D) (shared coefficients per camera)."""
    return _CombineBases.apply(basis, coeffs)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Raw SH value ``sum_k coeffs[..., k, :] * Y_k(dir)`` (no +0.5 offset, no clamp).

    Args:
        degree: SH degree actually used (0..3); only the first ``(degree + 1) ** 2`` coefficients
            are read, so higher-degree coefficients may be present and are ignored.
        coeffs: (..., K, C) coefficients, ``K >= (degree + 1) ** 2``.
        dirs: (..., 3) viewing directions (camera -> point), broadcastable with ``coeffs[..., 0, 0]``.
    Returns:
        (..., C)
    """
    n = num_sh_bases(degree)
    if coeffs.shape[-2] < n:
        raise ValueError(f"degree {degree} needs {n} SH coefficients, got {coeffs.shape[-2]}")
    basis = sh_basis(degree, dirs)  # (..., n)
    return (basis[..., :, None] * coeffs[..., :n, :]).sum(-2)


def sh_to_rgb(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """View-dependent colors as 3DGS renders them: ``max(eval_sh + 0.5, 0)``. Shapes as :func:`eval_sh`."""
    return torch.clamp_min(eval_sh(degree, coeffs, dirs) + 0.5, 0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """DC coefficient reproducing a constant color: ``(rgb - 0.5) / C0``. (..., 3) -> (..., 3)."""
    return (rgb - 0.5) / C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_sh0` (no clamping). (..., 3) -> (..., 3)."""
    return sh0 * C0 + 0.5
