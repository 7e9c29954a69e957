"""EWA projection of 3D Gaussians into pinhole cameras (OpenCV axes, pixel centers at +0.5).

Shared by every rasterizer backend written in PyTorch (the tile rasterizer and the brute-force
reference), so both see exactly the same 2D Gaussians. All functions are dtype generic (float32 for
training, float64 for gradient checks) and differentiable with autograd.

Conventions:
  * quaternions are (w, x, y, z) and need not be normalized;
  * ``scales`` are standard deviations along the Gaussian's local axes, world units (already
    activated, e.g. ``exp`` of the stored log-scales);
  * ``viewmats`` are world-to-camera 4x4 matrices, ``Ks`` 3x3 pinhole intrinsics in pixels;
  * a 2D covariance ``(a, b, c)`` means ``[[a, b], [b, c]]`` and a conic ``(A, B, C)`` is its inverse,
    so a pixel offset ``d`` has Mahalanobis power ``sigma = 0.5 * (A dx^2 + 2 B dx dy + C dy^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .covariance import projected_covariance

EPS2D = 0.3  # low-pass filter added to the 2D covariance (pixels^2), as in 3DGS / gsplat
ALPHA_MIN = 1.0 / 255.0  # contributions below this opacity are skipped
ALPHA_MAX = 0.999  # per-Gaussian alpha clamp (gsplat's value, so both backends agree)
T_MIN = 1e-4  # a pixel stops compositing once its transmittance would fall to or below this
FOV_CLAMP_MARGIN = 0.3  # x/z, y/z clamped to the image limits + 30% of the half-FOV for the Jacobian


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any norm -> (..., 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def quat_scale_to_factor(quats: Tensor, scales: Tensor) -> Tensor:
    """Square-root factor ``M = R diag(s)`` of the covariance (``Sigma = M M^T``). (N,4),(N,3) -> (N,3,3)."""
    return quat_to_rotmat(quats) * scales[..., None, :]


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space 3D covariances ``R diag(s^2) R^T``. (N, 4), (N, 3) -> (N, 3, 3)."""
    m = quat_scale_to_factor(quats, scales)
    return m @ m.transpose(-1, -2)


@dataclass
class Projected:
    """2D Gaussians for C cameras and N Gaussians (all entries, valid or not).

    Attributes:
        means2d: (C, N, 2) pixel coordinates of the projected centers (zero where not valid).
        depths: (C, N) camera-space z of the centers.
        cov2d: (C, N, 3) 2D covariance (a, b, c) *including* the low-pass ``eps2d``.
        conics: (C, N, 3) inverse of ``cov2d``.
        radii: (C, N) int32 ``ceil(3 * sqrt(largest eigenvalue of cov2d))``, 0 where not valid.
        valid: (C, N) bool: depth in (near, far) and a positive-definite 2D covariance.
        compensation: (C, N) ``sqrt(det(cov2d - eps) / det(cov2d))`` for antialiased mode, else None.
    """

    means2d: Tensor
    depths: Tensor
    cov2d: Tensor
    conics: Tensor
    radii: Tensor
    valid: Tensor
    compensation: Optional[Tensor] = None


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = EPS2D,
    antialiased: bool = False,
) -> Projected:
    """EWA-project N Gaussians into C pinhole cameras.

    The projection Jacobian is evaluated at the center with x/z and y/z clamped to the image's
    extent plus 30% of the half field of view on each side (the usual 1.3x FOV clamp of 3DGS), which
    keeps Gaussians far outside the frustum from producing huge footprints. The projected center
    itself is not clamped.

    Args:
        means: (N, 3) world centers. quats: (N, 4) (w, x, y, z). scales: (N, 3) std-devs, world units.
        viewmats: (C, 4, 4) world-to-camera, OpenCV axes. Ks: (C, 3, 3) intrinsics in pixels.
        width, height: image size in pixels (for the FOV clamp).
        near, far: valid z-depth range (exclusive).
        eps2d: low-pass variance added to the 2D covariance (pixels^2).
        antialiased: also return the Mip-Splatting opacity compensation.
    """
    R = viewmats[:, :3, :3]  # (C, 3, 3)
    t = viewmats[:, :3, 3]  # (C, 3)
    pc = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C, N, 3)
    x, y, z = pc.unbind(-1)
    valid = (z > near) & (z < far)
    z_safe = torch.where(valid, z, torch.ones_like(z))  # keeps invalid entries finite (and their grads zero)
    rz = 1.0 / z_safe

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # (C, 1)
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    half_tan_x = 0.5 * width / fx
    half_tan_y = 0.5 * height / fy
    lim_xp = (width - cx) / fx + FOV_CLAMP_MARGIN * half_tan_x
    lim_xn = cx / fx + FOV_CLAMP_MARGIN * half_tan_x
    lim_yp = (height - cy) / fy + FOV_CLAMP_MARGIN * half_tan_y
    lim_yn = cy / fy + FOV_CLAMP_MARGIN * half_tan_y
    xz = x * rz
    yz = y * rz
    xz_c = torch.minimum(torch.maximum(xz, -lim_xn), lim_xp)
    yz_c = torch.minimum(torch.maximum(yz, -lim_yn), lim_yp)

    zero2 = torch.zeros_like(xz)
    means2d = torch.stack([fx * xz + cx, fy * yz + cy], dim=-1)
    means2d = torch.where(valid[..., None], means2d, zero2[..., None])

    # Rows of J @ R_cam, with J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]] (x, y clamped).
    j0 = fx * rz  # (C, N)
    j2x = -fx * xz_c * rz
    j1 = fy * rz
    j2y = -fy * yz_c * rz
    T0 = j0[..., None] * R[:, None, 0, :] + j2x[..., None] * R[:, None, 2, :]  # (C, N, 3)
    T1 = j1[..., None] * R[:, None, 1, :] + j2y[..., None] * R[:, None, 2, :]
    a0, b, c0 = projected_covariance(quats, scales, T0, T1)  # T Sigma T^T, fused (see covariance.py)
    a = a0 + eps2d
    c = c0 + eps2d
    det = a * c - b * b
    valid = valid & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    inv_det = 1.0 / det_safe
    conics = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)
    cov2d = torch.stack([a, b, c], dim=-1)

    compensation = None
    if antialiased:
        det0 = a0 * c0 - b * b
        compensation = torch.sqrt(torch.clamp_min(det0 * inv_det, 1e-12))  # clamp: finite gradient
        compensation = torch.where(valid, compensation, torch.zeros_like(compensation))

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.01))
        radii = torch.ceil(3.0 * torch.sqrt(lam))
        radii = torch.where(valid, radii, torch.zeros_like(radii)).to(torch.int32)
    return Projected(means2d, z, cov2d, conics, radii, valid, compensation)


def support_extent(cov2d: Tensor, opacities: Tensor) -> tuple[Tensor, Tensor]:
    """Half-extents (x, y) in pixels of the region where ``opacity * exp(-sigma) >= ALPHA_MIN``.

    That region is the ellipse ``d^T cov^-1 d <= 2 ln(opacity / ALPHA_MIN)``; its axis-aligned
    bounding box has half-widths ``sqrt(q * a)`` and ``sqrt(q * c)``. Culling with it is exact: no
    pixel outside it can receive a contribution. Zero (empty) when ``opacity < ALPHA_MIN``.

    Args:
        cov2d: (..., 3) (a, b, c) with low-pass. opacities: (...) effective opacities.
    """
    q = 2.0 * torch.log(torch.clamp_min(opacities, 1e-30) / ALPHA_MIN)
    q = torch.clamp_min(q, 0.0)
    return torch.sqrt(q * cov2d[..., 0]), torch.sqrt(q * cov2d[..., 2])


def pixel_bbox(means2d: Tensor, ext_x: Tensor, ext_y: Tensor, width: int, height: int) -> Tensor:
    """Integer pixel ranges ``(x0, x1, y0, y1)`` (ends exclusive, clipped to the image) whose pixel
    centers may lie within ``means2d +- ext``. A 0.01 px safety margin covers rounding. (..., 4) int32.
    """
    mx, my = means2d[..., 0], means2d[..., 1]
    margin = 0.01
    x0 = torch.floor(mx - ext_x - 0.5 - margin) + 1
    x1 = torch.floor(mx + ext_x - 0.5 + margin) + 1
    y0 = torch.floor(my - ext_y - 0.5 - margin) + 1
    y1 = torch.floor(my + ext_y - 0.5 + margin) + 1
    box = torch.stack([x0.clamp(0, width), x1.clamp(0, width), y0.clamp(0, height), y1.clamp(0, height)], -1)
    return box.to(torch.int32)


def visibility(proj: Projected, opacities: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Which (camera, Gaussian) pairs can color at least one pixel, and their pixel boxes.

    Args:
        proj: projection of C cameras x N Gaussians. opacities: (C, N) effective opacities.
    Returns:
        visible (C, N) bool and boxes (C, N, 4) int32 (see :func:`pixel_bbox`).
    """
    with torch.no_grad():
        ex, ey = support_extent(proj.cov2d.detach(), opacities.detach())
        boxes = pixel_bbox(proj.means2d.detach(), ex, ey, width, height)
        nonempty = (boxes[..., 1] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 2])
        visible = proj.valid & nonempty & (ex > 0)
    return visible, boxes


def camera_centers(viewmats: Tensor) -> Tensor:
    """(C, 4, 4) world-to-camera -> (C, 3) camera centers in world coordinates (``-R^T t``)."""
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    return -(R.transpose(1, 2) @ t[..., None])[..., 0]


def fov_limits(width: int, height: int, K: Tensor) -> tuple[float, float, float, float]:
    """Clamp limits (x+, x-, y+, y-) on x/z and y/z used by the Jacobian, for documentation/tests."""
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    htx, hty = 0.5 * width / fx, 0.5 * height / fy
    return (
        (width - cx) / fx + FOV_CLAMP_MARGIN * htx,
        cx / fx + FOV_CLAMP_MARGIN * htx,
        (height - cy) / fy + FOV_CLAMP_MARGIN * hty,
        cy / fy + FOV_CLAMP_MARGIN * hty,
    )


__all__ = [
    "EPS2D", "ALPHA_MIN", "ALPHA_MAX", "T_MIN", "Projected", "project_gaussians", "quat_to_rotmat",
    "quat_scale_to_covar", "quat_scale_to_factor", "support_extent", "pixel_bbox", "visibility",
    "camera_centers", "fov_limits",
]
