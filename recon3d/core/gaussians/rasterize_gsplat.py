"""CUDA backend: a thin adapter over ``gsplat.rasterization`` (imported lazily, only when used).

gsplat shares recon3d's conventions (OpenCV camera axes, world-to-camera ``viewmats``, pixel centers
at +0.5, wxyz quaternions, SH ordering/constants of 3DGS, alpha clamp 0.999, skip below 1/255,
termination at T <= 1e-4, 0.3 px low-pass), so the adapter only renames arguments and reshapes the
outputs. Known differences with the PyTorch backend:
  * gsplat culls with a 3-sigma box (square before gsplat 1.5, opacity-aware rectangle from 1.5) and
    whole 16 px tiles, the PyTorch backend with the exact ``alpha >= 1/255`` support; images agree to
    float rounding except at the faint fringe (alpha ~ 1/255) of very opaque Gaussians;
  * ``radii`` from gsplat >= 1.5 are per-axis (C, N, 2); they are reduced to their max here.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .gaussians import Gaussians


def gsplat_available() -> bool:
    """True when ``import gsplat`` works (it does not check for a CUDA device)."""
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def rasterize_gsplat(
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
    tile_size: Optional[int] = None,
    eps2d: float = 0.3,
    absgrad: bool = False,
) -> dict:
    """Render ``gaussians`` (see :class:`.gaussians.Gaussians`; CUDA tensors) with gsplat. Arguments
    and outputs as :func:`recon3d.core.gaussians.rasterize` (a dict of the ``RasterOutput`` fields);
    ``absgrad`` is gsplat's option of the same name."""
    try:
        from gsplat import rasterization
    except Exception as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'gsplat' backend needs the gsplat package (pip install 'recon3d[cuda]') and a CUDA "
            f"device; import failed with: {e!r}. Use backend='torch' for the CPU rasterizer."
        ) from e

    g = gaussians
    if backgrounds is not None:
        backgrounds = backgrounds.to(g.means)
    render, alphas, meta = rasterization(
        means=g.means,
        quats=g.quats,
        scales=g.scales,
        opacities=g.opacities,
        colors=g.colors,
        viewmats=viewmats,
        Ks=Ks,
        width=int(width),
        height=int(height),
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,  # dense (C, N, ...) meta: means2d is a (C, N, 2) tensor that can retain_grad
        tile_size=int(tile_size or 16),
        backgrounds=backgrounds,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic",
        absgrad=absgrad,
    )
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5: per-axis radii
        radii = radii.max(dim=-1).values
    radii = radii.to(torch.int32)
    return dict(
        colors=render[..., :3],
        alphas=alphas,
        depths=render[..., 3:4],
        means2d=meta["means2d"],
        radii=radii,
        visible=radii > 0,
        depths_per_gaussian=meta["depths"],
    )
