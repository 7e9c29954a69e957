"""Query points into source views: camera-frame coordinates, pixel projection, feature sampling.

Conventions: OpenCV cameras (x right, y down, z forward), camera-to-world ``c2w``, intrinsics ``K`` in
pixels with pixel centers at +0.5 (pixel ``(i, j)`` spans ``[j, j+1) x [i, i+1)``). A point at pixel
coordinates ``(u, v)`` of a ``W x H`` image samples a feature map of any resolution at the normalized
coordinates ``(2 u / W - 1, 2 v / H - 1)`` with ``grid_sample(..., align_corners=False)``: the map
spans the same image rectangle, edges at -1 / +1 (the recon3d-trained model, ``feature_sampling="recon3d"``).

The official networks (``feature_sampling="official"``) sample as sxyu/pixel-nerf does:
:func:`official_pixel_coords` divides by the depth without clamping (points behind a camera project
mirrored, as there) and uses integer pixel centres (official coordinate = recon3d coordinate - 0.5);
:func:`sample_features_official` puts feature cell ``j`` of a map ``w`` wide at official pixel
``j W / w`` (``grid_sample(align_corners=True)``) and keeps border-padded values everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: OpenCV camera axes -> OpenGL camera axes (y up, z backward): flip y and z.
_OPENGL_FLIP = (1.0, -1.0, -1.0)
#: points closer than this (world units) in front of a camera count as behind it.
MIN_DEPTH = 1e-4


def world_to_camera(points: Tensor, c2w: Tensor, translate: bool = True) -> Tensor:
    """World points into each source camera's OpenCV frame.

    Args:
        points: (B, N, 3) world points; c2w: (B, S, 4, 4) camera-to-world.
        translate: True: ``R^T (x - c)`` (camera-frame position); False: ``R^T x`` (rotation only).
    Returns:
        (B, S, N, 3).
    """
    R = c2w[..., :3, :3]
    p = points[:, None]
    if translate:
        p = p - c2w[:, :, None, :3, 3]
    return torch.einsum("bsji,bsnj->bsni", R, p)


def rotate_to_camera(vectors: Tensor, c2w: Tensor) -> Tensor:
    """World directions (B, N, 3) into each source camera's OpenCV frame: (B, S, N, 3)."""
    return torch.einsum("bsji,bsnj->bsni", c2w[..., :3, :3], vectors[:, None].expand(-1, c2w.shape[1], -1, -1))


def to_axes(x_cv: Tensor, axes: str) -> Tensor:
    """OpenCV camera-frame vectors (..., 3) in the requested axes (``"opencv"`` or ``"opengl"``)."""
    if axes == "opencv":
        return x_cv
    return x_cv * x_cv.new_tensor(_OPENGL_FLIP)


def project(points_cam: Tensor, K: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pinhole projection of camera-frame points.

    Args:
        points_cam: (B, S, N, 3) OpenCV camera-frame points; K: (B, S, 3, 3) intrinsics in pixels.
        height, width: source image size in pixels.
    Returns:
        uv: (B, S, N, 2) pixel coordinates (pixel centers at +0.5); finite even behind the camera.
        valid: (B, S, N) bool, True where the point is in front of the camera (z > MIN_DEPTH) and
            projects inside the image rectangle ``[0, W] x [0, H]``.
    """
    z = points_cam[..., 2]
    front = z > MIN_DEPTH
    zs = torch.where(front, z, torch.full_like(z, 1.0))
    x, y = points_cam[..., 0] / zs, points_cam[..., 1] / zs
    u = K[..., None, 0, 0] * x + K[..., None, 0, 1] * y + K[..., None, 0, 2]
    v = K[..., None, 1, 1] * y + K[..., None, 1, 2]
    inside = (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    return torch.stack([u, v], dim=-1), front & inside


def sample_features(features: Tensor, uv: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
    """Bilinear pixel-aligned features; zero where ``valid`` is False.

    Args:
        features: (B, S, C, h, w) feature volumes covering the ``W x H`` source images.
        uv: (B, S, N, 2) pixel coordinates in the source images; valid: (B, S, N) bool.
        height, width: source image size (pixels) the coordinates refer to.
    Returns:
        (B, S, N, C).
    """
    B, S, C, h, w = features.shape
    N = uv.shape[2]
    scale = uv.new_tensor([2.0 / width, 2.0 / height])
    grid = torch.where(valid[..., None], uv * scale - 1.0, torch.zeros_like(uv))
    out = F.grid_sample(features.reshape(B * S, C, h, w), grid.reshape(B * S, N, 1, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)  # (B*S, C, N, 1)
    out = out[..., 0].reshape(B, S, C, N).transpose(2, 3)
    return out * valid[..., None].to(out.dtype)


def official_pixel_coords(points_cam: Tensor, K: Tensor) -> Tensor:
    """Official pinhole projection: (B, S, N, 3) OpenCV camera-frame points, (B, S, 3, 3) recon3d ``K`` ->
    (B, S, N, 2) pixel coordinates with integer pixel centres (``u - 0.5`` of recon3d's). No depth
    clamping: points behind the camera get the mirrored projection, as in the official code."""
    z = points_cam[..., 2]
    x, y = points_cam[..., 0] / z, points_cam[..., 1] / z
    u = K[..., None, 0, 0] * x + K[..., None, 0, 1] * y + (K[..., None, 0, 2] - 0.5)
    v = K[..., None, 1, 1] * y + (K[..., None, 1, 2] - 0.5)
    return torch.stack([u, v], dim=-1)


def sample_features_official(features: Tensor, uv: Tensor, height: int, width: int) -> Tensor:
    """Bilinear features at official pixel coordinates (:func:`official_pixel_coords`), border padding.

    Args:
        features: (B, S, C, h, w) feature volumes of ``W x H`` source images.
        uv: (B, S, N, 2) official pixel coordinates; height, width: the source image size.
    Returns:
        (B, S, N, C). Cell ``(i, j)`` is at official pixel ``(j W / w, i H / h)``; values outside the
        map (also for points outside the image or behind the camera) are the border values.
    """
    B, S, C, h, w = features.shape
    N = uv.shape[2]
    cells = uv.new_tensor([float(w), float(h)])
    scale = cells / (cells - 1.0) * 2.0 / uv.new_tensor([float(width), float(height)])
    grid = uv * scale - 1.0
    out = F.grid_sample(features.reshape(B * S, C, h, w), grid.reshape(B * S, N, 1, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)  # (B*S, C, N, 1)
    return out[..., 0].reshape(B, S, C, N).transpose(2, 3)
