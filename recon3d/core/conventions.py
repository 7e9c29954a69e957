"""Conversions between recon3d's internal camera convention and the ones found at the I/O boundary.

Internal: OpenCV camera axes (x right, y down, z forward), camera-to-world 4x4 (see ``cameras.py``).

* OpenGL / Blender / nerfstudio: camera axes x right, y up, z backward (the camera looks along -z),
  camera-to-world. Converting flips the signs of the rotation's columns 1 and 2. The world frame is
  untouched (nerfstudio and Blender worlds are both z-up; recon3d keeps whatever world it is given).
* PyTorch3D: world-to-view ``R`` (3x3) and ``T`` (3,) in *row-vector* form, ``X_view = X_world @ R + T``,
  with view axes +x left, +y up, +z forward. Intrinsics in screen space (pixels) or NDC.
* COLMAP: world-to-camera (qvec/R, tvec) with OpenCV axes.

All functions accept batched (..., 4, 4) tensors and return new tensors; each pair is an exact inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FLIP_YZ = torch.tensor([1.0, -1.0, -1.0])


def _flip_camera_axes(c2w: Tensor) -> Tensor:
    out = c2w.clone()
    out[..., :3, :3] = c2w[..., :3, :3] * _FLIP_YZ.to(c2w)
    return out


def opengl_to_opencv(c2w_gl: Tensor) -> Tensor:
    """OpenGL/Blender/nerfstudio camera-to-world (..., 4, 4) -> OpenCV camera-to-world."""
    return _flip_camera_axes(torch.as_tensor(c2w_gl, dtype=torch.float32))


def opencv_to_opengl(c2w_cv: Tensor) -> Tensor:
    """OpenCV camera-to-world (..., 4, 4) -> OpenGL/Blender/nerfstudio camera-to-world."""
    return _flip_camera_axes(torch.as_tensor(c2w_cv, dtype=torch.float32))


# nerfstudio and Blender share the OpenGL camera convention; named aliases keep call sites readable.
blender_to_opencv = opengl_to_opencv
opencv_to_blender = opencv_to_opengl
nerfstudio_to_opencv = opengl_to_opencv
opencv_to_nerfstudio = opencv_to_opengl


def rigid_inverse(T: Tensor) -> Tensor:
    """Inverse of rigid (..., 4, 4) transforms."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1.0
    return out


def w2c_to_c2w(w2c: Tensor) -> Tensor:
    """World-to-camera (COLMAP style) -> camera-to-world, both OpenCV axes."""
    return rigid_inverse(torch.as_tensor(w2c, dtype=torch.float32))


c2w_to_w2c = w2c_to_c2w


_CV_TO_P3D = torch.tensor([-1.0, -1.0, 1.0])


def opencv_to_pytorch3d(c2w_cv: Tensor) -> tuple[Tensor, Tensor]:
    """OpenCV camera-to-world (..., 4, 4) -> PyTorch3D (R (..., 3, 3), T (..., 3)).

    PyTorch3D transforms row vectors: ``X_view = X_world @ R + T``; its view x and y axes are the
    negated OpenCV ones.
    """
    w2c = rigid_inverse(torch.as_tensor(c2w_cv, dtype=torch.float32))
    flip = _CV_TO_P3D.to(w2c)
    R_cv = w2c[..., :3, :3]  # X_cv = R_cv @ X_world + t_cv
    t_cv = w2c[..., :3, 3]
    R_p3d_col = R_cv * flip[:, None]  # rows flipped: X_p3d = diag(flip) @ X_cv
    return R_p3d_col.transpose(-1, -2).contiguous(), t_cv * flip


def pytorch3d_to_opencv(R: Tensor, T: Tensor) -> Tensor:
    """PyTorch3D (R (..., 3, 3), T (..., 3)) -> OpenCV camera-to-world (..., 4, 4)."""
    R = torch.as_tensor(R, dtype=torch.float32)
    T = torch.as_tensor(T, dtype=torch.float32)
    flip = _CV_TO_P3D.to(R)
    w2c = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    w2c[..., :3, :3] = R.transpose(-1, -2) * flip[:, None]
    w2c[..., :3, 3] = T * flip
    w2c[..., 3, 3] = 1.0
    return rigid_inverse(w2c)


def intrinsics_to_pytorch3d_ndc(fx, fy, cx, cy, width, height) -> tuple[Tensor, Tensor]:
    """Pixel intrinsics -> PyTorch3D NDC ``focal_length`` (..., 2) and ``principal_point`` (..., 2).

    PyTorch3D's NDC spans [-1, 1] along the shorter image side, +x left and +y up.
    """
    fx, fy, cx, cy, width, height = (torch.as_tensor(v, dtype=torch.float32) for v in (fx, fy, cx, cy, width, height))
    s = torch.minimum(width, height) / 2.0
    focal = torch.stack([fx / s, fy / s], dim=-1)
    pp = torch.stack([-(cx - width / 2.0) / s, -(cy - height / 2.0) / s], dim=-1)
    return focal, pp


def intrinsics_from_pytorch3d_ndc(focal: Tensor, principal_point: Tensor, width, height) -> tuple[Tensor, ...]:
    """Inverse of :func:`intrinsics_to_pytorch3d_ndc`: returns (fx, fy, cx, cy) in pixels."""
    width = torch.as_tensor(width, dtype=torch.float32)
    height = torch.as_tensor(height, dtype=torch.float32)
    s = torch.minimum(width, height) / 2.0
    fx, fy = focal[..., 0] * s, focal[..., 1] * s
    cx = width / 2.0 - principal_point[..., 0] * s
    cy = height / 2.0 - principal_point[..., 1] * s
    return fx, fy, cx, cy


def fov_to_focal(fov: float | Tensor, size: float | Tensor) -> Tensor:
    """Field of view (radians) across ``size`` pixels -> focal length in pixels."""
    return 0.5 * torch.as_tensor(size, dtype=torch.float32) / torch.tan(0.5 * torch.as_tensor(fov, dtype=torch.float32))


def focal_to_fov(focal: float | Tensor, size: float | Tensor) -> Tensor:
    """Focal length in pixels -> field of view (radians) across ``size`` pixels."""
    return 2.0 * torch.atan(0.5 * torch.as_tensor(size, dtype=torch.float32) / torch.as_tensor(focal, dtype=torch.float32))


def qvec_to_rotmat(q: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any norm -> (..., 3, 3) rotation matrices."""
    q = torch.as_tensor(q, dtype=torch.float32)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_qvec(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    R = torch.as_tensor(R, dtype=torch.float32)
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # Four candidate solutions; pick the numerically best per matrix.
    cands = torch.stack(
        [
            torch.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        dim=1,
    )  # (B, 4, 4)
    diag = torch.stack([1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = diag.argmax(dim=-1)
    q = cands[torch.arange(m.shape[0]), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)
