"""VGGT's camera encoding ``absT_quaR_FoV`` and conversions to matrices.

A camera is 9 numbers: the translation T (3,) of the OpenCV world-to-camera extrinsic [R | T],
the rotation R as a unit quaternion (4,) in (x, y, z, w) order (scalar last, w >= 0), and the
vertical and horizontal fields of view (fov_h, fov_w) in radians. Intrinsics are a pinhole with
the principal point at the image centre: ``fy = (H / 2) / tan(fov_h / 2)``, ``fx = (W / 2) /
tan(fov_w / 2)``, ``cx = W / 2``, ``cy = H / 2`` (in the model's own pixel convention, see
:data:`PIXEL_OFFSET`).

VGGT predicts world-to-camera extrinsics; recon3d uses camera-to-world. :func:`c2w_to_extrinsics`
and :func:`extrinsics_to_c2w` convert at this boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor

POSE_ENCODING_DIM = 9

#: recon3d's pixel convention, pixels from a pixel's top-left corner to where it is sampled: 0.5,
#: the pixel centre. The training targets (:func:`~.losses.normalized_targets`) unproject the data's
#: depth at it, so models trained by recon3d (the shipped ``vggt.pt``) pair their decoded principal
#: point ``(W/2, H/2)`` with it (``VGGTConfig.pixel_offset = 0.5``). The published VGGT weights pair
#: it with integer pixel coordinates (``pixel_offset = 0.0``, as the official
#: ``unproject_depth_map_to_point_map``); :meth:`~.model.VGGT.cameras_from_encoding` folds the
#: difference into the principal point, and :func:`~.predict.unproject_depth` samples at this value.
PIXEL_OFFSET = 0.5


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternions (x, y, z, w), any norm (normalized here) -> (..., 3, 3) rotations."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    m = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1)
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (x, y, z, w) with w >= 0.

    Uses the best-conditioned of the four candidate formulas per matrix (largest of 1 + trace and
    1 +- the diagonal terms), so it is accurate for rotations near 180 degrees too.
    """
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    cand = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    best = cand.argmax(dim=-1)
    s = 2.0 * cand.gather(1, best[:, None]).squeeze(1).clamp_min(1e-12).sqrt()  # = 4 * |component|
    # (w, x, y, z) for each case
    q_w = torch.stack([s / 4, (m[:, 2, 1] - m[:, 1, 2]) / s, (m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 1, 0] - m[:, 0, 1]) / s], -1)
    q_x = torch.stack([(m[:, 2, 1] - m[:, 1, 2]) / s, s / 4, (m[:, 0, 1] + m[:, 1, 0]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s], -1)
    q_y = torch.stack([(m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 0, 1] + m[:, 1, 0]) / s, s / 4, (m[:, 1, 2] + m[:, 2, 1]) / s], -1)
    q_z = torch.stack([(m[:, 1, 0] - m[:, 0, 1]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s, (m[:, 1, 2] + m[:, 2, 1]) / s, s / 4], -1)
    wxyz = torch.stack([q_w, q_x, q_y, q_z], dim=1).gather(1, best[:, None, None].expand(-1, 1, 4)).squeeze(1)
    wxyz = wxyz * torch.where(wxyz[:, :1] < 0, -1.0, 1.0)
    wxyz = wxyz / wxyz.norm(dim=-1, keepdim=True)
    return torch.cat([wxyz[:, 1:], wxyz[:, :1]], dim=-1).reshape(*R.shape[:-2], 4)


def c2w_to_extrinsics(c2w: Tensor) -> Tensor:
    """(..., 4, 4) camera-to-world -> (..., 3, 4) OpenCV world-to-camera [R | T]."""
    R = c2w[..., :3, :3].transpose(-1, -2)
    T = -(R @ c2w[..., :3, 3:4])
    return torch.cat([R, T], dim=-1)


def extrinsics_to_c2w(extrinsics: Tensor) -> Tensor:
    """(..., 3, 4) (or 4x4) world-to-camera -> (..., 4, 4) camera-to-world."""
    R = extrinsics[..., :3, :3].transpose(-1, -2)
    C = -(R @ extrinsics[..., :3, 3:4])
    bottom = torch.zeros(*extrinsics.shape[:-2], 1, 4, dtype=extrinsics.dtype, device=extrinsics.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([torch.cat([R, C], dim=-1), bottom], dim=-2)


def encode_pose(extrinsics: Tensor, K: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """World-to-camera extrinsics (..., 3, 4) and intrinsics (..., 3, 3) (pixels) -> (..., 9).

    Only the focal lengths of ``K`` are encoded (the principal point is assumed at the centre).
    """
    H, W = image_hw
    T = extrinsics[..., :3, 3]
    quat = matrix_to_quaternion(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((H / 2) / K[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / K[..., 0, 0])
    return torch.cat([T, quat, fov_h[..., None], fov_w[..., None]], dim=-1)


#: smallest field of view (radians) :func:`decode_pose` turns into a focal length by default, so that
#: a degenerate prediction (an untrained head's FoV of 0) gives a finite focal length (~2e4 x the
#: image size) instead of the official code's infinity.
MIN_FOV = 1e-4


def decode_pose(encoding: Tensor, image_hw: tuple[int, int], min_fov: float = MIN_FOV) -> tuple[Tensor, Tensor]:
    """(..., 9) encoding -> (extrinsics (..., 3, 4) world-to-camera, K (..., 3, 3) pixels).

    ``min_fov``: FoVs are clamped to at least this (radians); 0 computes exactly what the official
    ``pose_encoding_to_extri_intri`` does (an infinite focal length for a FoV of 0).
    """
    H, W = image_hw
    T, quat, fov = encoding[..., :3], encoding[..., 3:7], encoding[..., 7:9]
    R = quaternion_to_matrix(quat)
    extr = torch.cat([R, T[..., None]], dim=-1)
    if min_fov > 0:
        fov = fov.clamp_min(min_fov)
    fy = (H / 2) / torch.tan(fov[..., 0] / 2)
    fx = (W / 2) / torch.tan(fov[..., 1] / 2)
    K = torch.zeros(*encoding.shape[:-1], 3, 3, dtype=encoding.dtype, device=encoding.device)
    K[..., 0, 0], K[..., 1, 1] = fx, fy
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = W / 2, H / 2, 1.0
    return extr, K
