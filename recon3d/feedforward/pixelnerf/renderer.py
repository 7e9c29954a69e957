"""The official pixelNeRF ray renderer (sxyu/pixel-nerf ``NeRFRenderer``), reimplemented from its description.

Used by :class:`~recon3d.feedforward.pixelnerf.model.PixelNeRF` when ``config.renderer == "official"``
(the released checkpoints). Per ray, with the distance ``t`` along the given direction (the official rays
have unit directions) between the planes ``near`` and ``far``:

- coarse: ``K_c`` samples, one per equal bin of ``[near, far]`` (at a random offset inside its bin when
  stochastic, at the bin centre when deterministic), queried with ``mlp_coarse``;
- fine: ``K_f - K_d`` importance samples drawn from the coarse weights (``+1e-5``): the bin is found by
  inverting their cumulative distribution at ``u`` (random, or ``linspace(0, 1)`` when deterministic) and
  the sample is placed inside that coarse bin (random offset / centre); plus ``K_d`` samples at the coarse
  expected depth (``+ N(0, depth_std^2)`` when stochastic), clamped to ``[near, far]``; all coarse and fine
  samples sorted and queried with ``mlp_fine``;
- compositing: intervals to the next sample, the last one ending at ``far``; ``alpha = 1 - exp(-delta
  sigma)``, transmittance ``prod(1 - alpha + 1e-10)``; rgb = sum of weights x colour (+ the missing
  opacity as white when ``white_background``); depth = sum of weights x ``t`` (not normalised).

``deterministic=True`` replaces only the random draws (bin offsets 0.5, ``u = linspace(0, 1, K)``, no
depth noise): the mode the parity fixture was computed in, and what ``recon3d predict`` uses.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor


def _uniform(shape, like: Tensor, deterministic: bool, generator: Optional[torch.Generator]) -> Tensor:
    if deterministic:
        return torch.full(shape, 0.5, dtype=like.dtype, device=like.device)
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


def sample_coarse(near: Tensor, far: Tensor, n: int, deterministic: bool = True,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """(..., 1) planes -> (..., n) distances, one per equal bin of [near, far]."""
    step = 1.0 / n
    steps = torch.linspace(0, 1 - step, n, dtype=near.dtype, device=near.device).expand(*near.shape[:-1], n)
    steps = steps + _uniform(steps.shape, near, deterministic, generator) * step
    return near * (1 - steps) + far * steps


def sample_fine(near: Tensor, far: Tensor, weights: Tensor, n: int, deterministic: bool = True,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """Importance samples (..., n) from the coarse weights (..., K_c) over the coarse bins of [near, far]."""
    kc = weights.shape[-1]
    w = weights.detach() + 1e-5
    pdf = w / torch.sum(w, -1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)
    if deterministic:
        u = torch.linspace(0, 1, n, dtype=w.dtype, device=w.device).expand(*w.shape[:-1], n).contiguous()
    else:
        u = torch.rand((*w.shape[:-1], n), dtype=w.dtype, device=w.device, generator=generator)
    idx = torch.clamp_min(torch.searchsorted(cdf.contiguous(), u, right=True).to(w.dtype) - 1.0, 0.0)
    steps = (idx + _uniform(idx.shape, w, deterministic, generator)) / kc
    return near * (1 - steps) + far * steps


def sample_depth(near: Tensor, far: Tensor, depth: Tensor, n: int, std: float, deterministic: bool = True,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """``n`` samples (..., n) at the expected depth (...,) (+ Gaussian noise unless deterministic), in [near, far]."""
    z = depth[..., None].expand(*depth.shape, n)
    if not deterministic:
        z = z + torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator) * std
    return torch.maximum(torch.minimum(z, far), near)


def composite(query, origins: Tensor, directions: Tensor, far: Tensor, t: Tensor, white_background: bool,
              coarse: bool) -> dict[str, Tensor]:
    """Query ``query(points (B, M, 3), dirs (B, M, 3), coarse) -> (sigma (B, M), rgb (B, M, 3))`` at the
    samples ``t`` (B, R, K) and composite. Returns ``rgb`` (B, R, 3), ``depth`` (B, R), ``weights`` (B, R, K)."""
    B, R, K = t.shape
    deltas = torch.cat([t[..., 1:] - t[..., :-1], far - t[..., -1:]], -1)
    points = origins[..., None, :] + t[..., None] * directions[..., None, :]  # (B, R, K, 3)
    dirs = directions[..., None, :].expand(B, R, K, 3)
    sigma, rgb = query(points.reshape(B, R * K, 3), dirs.reshape(B, R * K, 3), coarse)
    sigma, rgb = sigma.reshape(B, R, K), rgb.reshape(B, R, K, 3)
    alpha = 1 - torch.exp(-deltas * torch.relu(sigma))
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha + 1e-10], -1), -1)
    weights = alpha * trans[..., :-1]
    out_rgb = torch.sum(weights[..., None] * rgb, -2)
    depth = torch.sum(weights * t, -1)
    if white_background:
        out_rgb = out_rgb + 1 - weights.sum(-1, keepdim=True)
    return {"rgb": out_rgb, "depth": depth, "weights": weights}


def render_official(query, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor, num_coarse: int,
                    num_fine: int, num_fine_depth: int, depth_std: float, white_background: bool,
                    deterministic: bool = True, generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Render rays the official way (module docstring).

    Args:
        query: ``(points, dirs, coarse) -> (sigma, rgb)`` on (B, M, 3) world points / ray directions.
        origins, directions: (B, R, 3) rays (directions as given; the official rays are unit length).
        near, far: (B, R, 1) distances along the ray.
    Returns:
        ``{"coarse": {...}, "fine": {...}}`` (``fine`` only when ``num_fine > 0``), each with ``rgb``
        (B, R, 3), ``depth`` (B, R), ``weights`` (B, R, K) and ``t`` (B, R, K) the sorted sample distances.
    """
    t_coarse = sample_coarse(near, far, num_coarse, deterministic, generator)
    coarse = composite(query, origins, directions, far, t_coarse, white_background, coarse=True)
    coarse["t"] = t_coarse
    out: dict[str, Any] = {"coarse": coarse}
    if num_fine > 0:
        parts = [t_coarse]
        if num_fine - num_fine_depth > 0:
            parts.append(sample_fine(near, far, coarse["weights"], num_fine - num_fine_depth, deterministic,
                                     generator))
        if num_fine_depth > 0:
            parts.append(sample_depth(near, far, coarse["depth"], num_fine_depth, depth_std, deterministic,
                                      generator))
        t_fine, _ = torch.sort(torch.cat(parts, -1), -1)
        fine = composite(query, origins, directions, far, t_fine, white_background, coarse=False)
        fine["t"] = t_fine
        out["fine"] = fine
    return out
