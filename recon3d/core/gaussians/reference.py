"""Brute-force reference rasterizer: every pixel against every visible Gaussian, plain autograd.

Deliberately simple and obviously correct (per camera: a dense (pixels, Gaussians) table of alphas,
an exclusive cumulative product for the transmittance, the same skip/clamp/termination rules as the
tile rasterizer and gsplat). It is used by the tests as ground truth for values and gradients and by
``scripts/bench_rasterizer.py`` as the baseline. Memory is O(C * H * W * N): small scenes only.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .common import CONIC, DEPTH, MEAN, OPACITY, RGB, finish, prepare
from .gaussians import Gaussians
from .projection import ALPHA_MAX, ALPHA_MIN, EPS2D, T_MIN


def composite_pixels(
    pix: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor
) -> tuple[Tensor, Tensor]:
    """Composite depth-sorted Gaussians at the given pixel positions.

    Args:
        pix: (P, 2) pixel positions. means2d (G, 2), conics (G, 3), opacities (G,), feats (G, D):
            Gaussians sorted front to back.
    Returns:
        (P, D) sum of w_i feats_i and (P,) sum of w_i (the alpha).
    """
    d = pix[:, None, :] - means2d[None, :, :]  # (P, G, 2)
    dx, dy = d[..., 0], d[..., 1]
    A, B, Cc = conics[:, 0], conics[:, 1], conics[:, 2]
    sigma = 0.5 * (A * dx * dx + Cc * dy * dy) + B * dx * dy
    alpha = torch.clamp(opacities * torch.exp(-sigma), max=ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
    T_after = torch.cumprod(1.0 - alpha, dim=-1)
    T_before = torch.cat([torch.ones_like(T_after[:, :1]), T_after[:, :-1]], dim=-1)
    keep = T_after > T_MIN  # the Gaussian that would bring T to <= T_MIN and all after it are dropped
    w = alpha * T_before * keep
    return w @ feats, w.sum(-1)


def rasterize_reference(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    near: float = 0.01,
    far: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    antialiased: bool = False,
    eps2d: float = EPS2D,
    **_unused,
) -> dict:
    """Same arguments and outputs as :func:`.rasterize_torch.rasterize_torch` (``tile_size`` and
    other extra keywords are ignored)."""
    C = viewmats.shape[0]
    prep = prepare(gaussians, viewmats, Ks, width, height, sh_degree, near, far, antialiased, eps2d,
                   cull_by_support=False)
    dtype, device = gaussians.dtype, gaussians.device
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)
    pairs = prep.pairs
    feats = torch.cat([pairs[:, RGB], pairs[:, DEPTH:DEPTH + 1]], dim=-1)
    outs, accs = [], []
    for c in range(C):
        sel = prep.cam == c  # pairs are already depth-sorted
        out, acc = composite_pixels(pix, pairs[sel, MEAN], pairs[sel, CONIC], pairs[sel, OPACITY], feats[sel])
        outs.append(out.reshape(height, width, -1))
        accs.append(acc.reshape(height, width, 1))
    out = torch.stack(outs)
    alpha = torch.stack(accs)
    return finish(prep, out[..., :-1], out[..., -1:], alpha, backgrounds)
