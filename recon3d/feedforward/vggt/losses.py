"""Training targets and losses of the VGGT-style model (following the VGGT paper, Sec. 3.4).

Ground truth is expressed in the first camera's frame (the first view's camera is the world), then
divided by the mean distance of the valid ground-truth points from that origin, so that every
scene has unit scale; predictions are not normalized (the network learns to predict in that frame).

- camera: Huber (the paper's; default) or L1 (the reference training code's choice) loss between
  predicted and true pose encodings, summed over the camera head's iterations with weights
  ``gamma^(n-1-i)`` (later iterations count more); the quaternion term is sign-invariant (the
  smaller of the losses against ``q*`` and ``-q*``, per camera). Huber with delta 1 is quadratic
  for the small differences of quaternion components (a 30-degree error is ~0.13 per component),
  so its gradient fades near the identity guess; L1's does not.
- depth / points (aleatoric uncertainty): ``mean(c * |x_hat - x| + c * |grad x_hat - grad x| - alpha * log c)``
  over valid pixels, ``c`` the predicted confidence (> 1), gradients finite differences along x and y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.core.cameras import Cameras

from .pose_encoding import PIXEL_OFFSET, c2w_to_extrinsics, encode_pose


def normalized_targets(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Ground truth in the first camera's frame at unit mean point distance.

    Args:
        batch: ``depths`` (B, V, 1, H, W) z-depth (0 = background), ``K`` (B, V, 3, 3), ``c2w``
            (B, V, 4, 4) OpenCV camera-to-world; optional ``masks`` (B, V, 1, H, W).
    Returns:
        dict with ``extrinsics`` (B, V, 3, 4) world(=first camera)-to-camera, ``pose_enc`` (B, V, 9),
        ``depth`` (B, V, H, W), ``points`` (B, V, H, W, 3) in the first camera's frame, ``valid``
        (B, V, H, W) bool, ``scale`` (B,) the divisor applied (world units).
    """
    with torch.autocast(batch["depths"].device.type, enabled=False):  # float32 targets also under mixed precision
        return _normalized_targets(batch)


def _normalized_targets(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    depth = batch["depths"][:, :, 0].float()
    K, c2w = batch["K"].float(), batch["c2w"].float()
    B, V, H, W = depth.shape
    valid = depth > 0
    if "masks" in batch:
        valid = valid & (batch["masks"][:, :, 0] > 0.5)
    # camera i -> first camera: w2c_0 @ c2w_i; points from depth in the first camera's frame
    rel = torch.linalg.inv(c2w[:, :1]) @ c2w  # (B, V, 4, 4) camera-to-first-camera
    cams = Cameras.from_K(K.reshape(B * V, 3, 3), rel.reshape(B * V, 4, 4), W, H)
    pts = cams.unproject_depth(depth.reshape(B * V, H, W), pixel_offset=PIXEL_OFFSET).reshape(B, V, H, W, 3)
    dist = pts.norm(dim=-1)
    n = valid.flatten(1).sum(1).clamp_min(1)
    scale = ((dist * valid).flatten(1).sum(1) / n).clamp_min(1e-6)  # (B,)
    s = scale[:, None, None, None]
    extr = c2w_to_extrinsics(rel)
    extr = torch.cat([extr[..., :3], extr[..., 3:] / scale[:, None, None, None]], dim=-1)
    return {"extrinsics": extr, "pose_enc": encode_pose(extr, K, (H, W)), "depth": depth / s,
            "points": pts / s[..., None], "valid": valid, "scale": scale}


def _elementwise(kind: str):
    if kind == "l1":
        return lambda a, b: (a - b).abs()
    if kind == "huber":
        return lambda a, b: F.huber_loss(a, b, delta=1.0, reduction="none")
    raise ValueError(f"camera loss must be 'l1' or 'huber', got {kind!r}")


def camera_loss(pose_enc_list: list[Tensor], target: Tensor, gamma: float = 0.6,
                kind: str = "huber") -> tuple[Tensor, dict[str, float]]:
    """Weighted ``kind`` ("l1" or "huber") loss of every iteration's (B, S, 9) encoding against
    ``target`` (B, S, 9)."""
    loss = _elementwise(kind)
    n = len(pose_enc_list)
    total = target.new_zeros(())
    parts = {"T": 0.0, "R": 0.0, "FoV": 0.0}
    for i, pred in enumerate(pose_enc_list):
        w = gamma ** (n - 1 - i)
        lt = loss(pred[..., :3], target[..., :3]).mean()
        # q and -q are the same rotation: the target's w >= 0 convention flips sign across w = 0
        # (relative rotations near 180 degrees), so take the nearer of +-q* per camera
        q, q_t = pred[..., 3:7], target[..., 3:7]
        lr = torch.minimum(loss(q, q_t).mean(-1), loss(q, -q_t).mean(-1)).mean()
        lf = loss(pred[..., 7:], target[..., 7:]).mean()
        total = total + w * (lt + lr + 0.5 * lf)
        if i == n - 1:
            parts = {"T": float(lt.detach()), "R": float(lr.detach()), "FoV": float(lf.detach())}
    return total, parts


def _grad_term(x: Tensor, y: Tensor, conf: Tensor, valid: Tensor) -> Tensor:
    """Sum over valid neighbour pairs of ``conf * |grad x - grad y|`` along x and y (x, y (..., H, W, C))."""
    total = x.new_zeros(())
    for dim in (-3, -2):  # H, W axes of (..., H, W, C)
        dx = x.diff(dim=dim) - y.diff(dim=dim)
        sl = [slice(None)] * valid.ndim
        sl[dim + 1] = slice(1, None)
        sl0 = list(sl)
        sl0[dim + 1] = slice(None, -1)
        ok = valid[tuple(sl)] & valid[tuple(sl0)]
        c = conf[tuple(sl)]
        total = total + (c * dx.norm(dim=-1))[ok].sum()
    return total


def confidence_loss(pred: Tensor, conf: Tensor, target: Tensor, valid: Tensor, alpha: float) -> Tensor:
    """Aleatoric-uncertainty regression loss over valid pixels.

    Args:
        pred, target: (B, S, H, W, C) predicted and true values (C = 1 depth, 3 points).
        conf: (B, S, H, W) predicted confidence (> 1).
        valid: (B, S, H, W) bool.
        alpha: weight of the ``-log conf`` term.
    """
    n = valid.sum().clamp_min(1)
    err = (pred - target).norm(dim=-1)
    main = (conf * err - alpha * conf.log())[valid].sum()
    return (main + _grad_term(pred, target, conf, valid)) / n
