"""Learnable camera-pose corrections: joint pose refinement while fitting a scene.

Poses from structure-from-motion, and more so from a feed-forward model, are a little off; a per-scene
optimizer can correct them with the photometric loss it already minimizes, as gsplat's ``pose_opt``
and nerfstudio's camera optimizer do. Each camera gets a 6-vector ``(tx, ty, tz, wx, wy, wz)``
applied on the right of its camera-to-world matrix::

    c2w' = c2w @ [[exp(w), s * t], [0, 1]]

so the correction is expressed in the camera's own (OpenCV) axes: ``w`` is an axis-angle rotation
about the camera center (radians), ``t`` a translation in units of ``s`` (``translation_scale``:
the scene's extent, so one learning rate suits any scene size). Zero is the identity.

:func:`fit_pose` aligns one camera to one image with everything else frozen (the test-time pose
alignment used to evaluate pose-refined reconstructions, whose frame may drift a little from the
given test poses); :func:`rigid_drift` measures that drift from the training cameras.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .cameras import Cameras


def so3_exp(w: Tensor) -> Tensor:
    """(..., 3) axis-angle vectors (radians) -> (..., 3, 3) rotation matrices (Rodrigues).

    Differentiable everywhere, including at zero (series expansion for small angles)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    W = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(W)
    return eye + a * W + b * (W @ W)


def so3_log(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle vectors (radians), angles in [0, pi]."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = v.norm(dim=-1) / 2
    theta = torch.atan2(sin, cos)  # better conditioned than acos near 0 and pi
    scale = torch.where(sin < 1e-6, 0.5 + theta**2 / 12, theta / (2 * sin.clamp_min(1e-6)))
    w = v * scale[..., None]
    near_pi = (cos < 0) & (sin < 1e-2)  # v is too small to give the axis: use the symmetric part of R
    if bool(near_pi.any()):
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        # (R + R^T) / 2 = cos I + (1 - cos) a a^T
        aat = ((R + R.transpose(-1, -2)) / 2 - cos[..., None, None] * eye) / (1 - cos).clamp_min(1e-6)[..., None, None]
        k = aat.diagonal(dim1=-2, dim2=-1).argmax(-1)
        col = torch.gather(aat, -1, k[..., None, None].expand(*aat.shape[:-1], 1))[..., 0]
        axis = col / col.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        axis = torch.where((axis * v).sum(-1, keepdim=True) < 0, -axis, axis)  # the sign v still carries
        w = torch.where(near_pi[..., None], axis * theta[..., None], w)
    return w


def correction_matrices(deltas: Tensor, translation_scale: float = 1.0) -> Tensor:
    """(N, 6) corrections ``(t, w)`` -> (N, 4, 4) rigid transforms ``[[exp(w), s * t], [0, 1]]``."""
    T = torch.zeros(*deltas.shape[:-1], 4, 4, dtype=deltas.dtype, device=deltas.device)
    T[..., :3, :3] = so3_exp(deltas[..., 3:])
    T[..., :3, 3] = deltas[..., :3] * translation_scale
    T[..., 3, 3] = 1.0
    return T


def rigid_drift(before: Tensor, after: Tensor) -> Tensor:
    """(4, 4) world transform D that best maps cameras ``before`` onto ``after`` (c2w, each (N, 4, 4)):
    ``D @ before[i] ~ after[i]``; rotation by the mean relative rotation (projected onto SO(3)),
    translation by the camera centers. The identity when nothing moved."""
    R = (after[:, :3, :3] @ before[:, :3, :3].transpose(1, 2)).sum(0)
    U, _, Vh = torch.linalg.svd(R)
    S = torch.eye(3, dtype=R.dtype, device=R.device)
    S[2, 2] = torch.sign(torch.det(U @ Vh))
    rot = U @ S @ Vh
    D = torch.eye(4, dtype=R.dtype, device=R.device)
    D[:3, :3] = rot
    D[:3, 3] = (after[:, :3, 3] - before[:, :3, 3] @ rot.T).mean(0)
    return D


class PoseCorrection(nn.Module):
    """Per-camera pose corrections of a fixed camera set, initialized to the identity.

    Args:
        num_cameras: N, the cameras of the scene (indexed as the scene's views).
        translation_scale: units of the translation part (e.g. the scene extent).
    Attributes:
        deltas: (N, 6) parameter, ``(tx, ty, tz, wx, wy, wz)`` per camera (see the module docstring).
    """

    def __init__(self, num_cameras: int, translation_scale: float = 1.0) -> None:
        super().__init__()
        self.translation_scale = float(translation_scale)
        self.deltas = nn.Parameter(torch.zeros(int(num_cameras), 6))

    def forward(self, cameras: Cameras, indices: Sequence[int] | Tensor) -> Cameras:
        """``cameras`` (the scene's cameras at ``indices``, len(indices) of them) with their corrections
        applied; differentiable with respect to :attr:`deltas`."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.deltas.device).reshape(-1)
        if len(idx) != len(cameras):
            raise ValueError(f"{len(idx)} indices for {len(cameras)} cameras")
        T = correction_matrices(self.deltas[idx], self.translation_scale).to(cameras.c2w)
        return replace(cameras, c2w=cameras.c2w @ T)

    @torch.no_grad()
    def corrected(self, cameras: Cameras) -> Cameras:
        """All N cameras with their corrections applied (no gradient)."""
        return self(cameras, torch.arange(len(cameras)))

    @torch.no_grad()
    def magnitudes(self, indices: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Per-camera correction sizes: (rotation in degrees, translation in scene units), each (M,)."""
        d = self.deltas if indices is None else self.deltas[torch.as_tensor(list(indices), dtype=torch.long)]
        return torch.rad2deg(d[:, 3:].norm(dim=-1)), d[:, :3].norm(dim=-1) * self.translation_scale


def fit_pose(render: Callable[[Cameras], Tensor], camera: Cameras, target: Tensor, steps: int = 100,
             lr: float = 1e-3, translation_scale: float = 1.0, loss: Callable[[Tensor, Tensor], Tensor] | None = None,
             patience: int = 20) -> tuple[Cameras, Tensor]:
    """Align one camera to an image by gradient descent on its pose alone.

    Args:
        render: differentiable ``render(camera) -> (H, W, 3)`` image in [0, 1] (model frozen).
        camera: the starting camera (a batch of one).
        target: (H, W, 3) image in [0, 1].
        steps, lr: Adam iterations and learning rate on the 6-vector correction.
        translation_scale: as in :class:`PoseCorrection`.
        loss: ``loss(pred, target) -> scalar`` (default: mean absolute error).
        patience: stop early after this many steps without a 0.01 % improvement (0: never).
    Returns:
        (the aligned camera, its (6,) correction). The best iterate is kept, so the result is never
        worse than the start by the loss.
    """
    if len(camera) != 1:
        raise ValueError(f"fit_pose aligns one camera, got {len(camera)}")
    loss_fn = loss or (lambda a, b: (a - b).abs().mean())
    delta = torch.zeros(1, 6, device=camera.device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    best = (float("inf"), torch.zeros(1, 6, device=camera.device))
    since = 0
    for _ in range(max(int(steps), 0) + 1):
        T = correction_matrices(delta, translation_scale)
        value = loss_fn(render(replace(camera, c2w=camera.c2w @ T)), target)
        v = float(value.detach())
        since = 0 if v < best[0] * (1 - 1e-4) else since + 1
        if v < best[0]:
            best = (v, delta.detach().clone())
        if patience and since >= patience:
            break
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    d = best[1]
    with torch.no_grad():
        aligned = replace(camera, c2w=camera.c2w @ correction_matrices(d, translation_scale))
    return aligned, d[0]
