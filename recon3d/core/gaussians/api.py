"""The one entry point for rendering 3D Gaussians: :func:`rasterize` (and :func:`rasterize_cameras`).

Backends:
  * ``"gsplat"``: gsplat's CUDA rasterizer (``gsplat.rasterization``), CUDA tensors only.
  * ``"torch"``: recon3d's pure-PyTorch tile rasterizer (:mod:`.rasterize_torch`), any device,
    float32 or float64, hand-written backward.
  * ``"reference"``: brute-force per-pixel renderer (:mod:`.reference`), tests and benchmarks only.
  * ``"auto"`` (default): ``"gsplat"`` when the inputs are CUDA tensors and gsplat imports, else
    ``"torch"``. The environment variable ``RECON3D_RASTER_BACKEND`` (``torch``/``gsplat``/
    ``reference``/``auto``) overrides ``"auto"``; an explicit ``backend=`` argument overrides both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .projection import EPS2D
from .sh import num_sh_bases

BACKENDS = ("auto", "torch", "gsplat", "reference")
ENV_BACKEND = "RECON3D_RASTER_BACKEND"


@dataclass
class RasterOutput:
    """Images and per-Gaussian screen-space data for C cameras, N Gaussians, H x W pixels.

    Attributes:
        colors: (C, H, W, 3) composited RGB, background included.
        alphas: (C, H, W, 1) accumulated opacity ``sum_i w_i`` (``1 - transmittance``).
        depths: (C, H, W, 1) *expected* camera z-depth ``sum_i w_i z_i / max(alpha, 1e-10)``
            (normalized by alpha, so it is a depth even at semi-transparent pixels; ~0 where alpha ~ 0).
        means2d: (C, N, 2) projected centers in pixels (OpenCV, pixel centers at +0.5). A non-leaf
            tensor inside the autograd graph: call ``out.means2d.retain_grad()`` before
            ``loss.backward()``, then ``out.means2d.grad`` holds the screen-space positional gradient
            that densification uses (same convention as gsplat's ``meta["means2d"]``; it is in
            pixel units and summed over the pixels a Gaussian touches).
        radii: (C, N) int32 screen radius ``ceil(3 sigma_max)`` in pixels, 0 where not visible.
        visible: (C, N) bool, the Gaussian can color at least one pixel of that camera.
        depths_per_gaussian: (C, N) camera z of each center (also for invisible ones).
        backend: name of the backend that produced this ("torch", "gsplat" or "reference").
    """

    colors: Tensor
    alphas: Tensor
    depths: Tensor
    means2d: Tensor
    radii: Tensor
    visible: Tensor
    depths_per_gaussian: Tensor
    backend: str


def resolve_backend(backend: str, device: torch.device) -> str:
    """Concrete backend name for a requested one (see the module docstring for the rules)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        env = os.environ.get(ENV_BACKEND, "").strip().lower()
        if env:
            if env not in BACKENDS:
                raise ValueError(f"{ENV_BACKEND}={env!r} is not one of {BACKENDS}")
            backend = env
    if backend == "auto":
        from .rasterize_gsplat import gsplat_available

        backend = "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    return backend


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree):
    N = means.shape[0]
    if means.shape != (N, 3):
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    for name, t, shape in (("quats", quats, (N, 4)), ("scales", scales, (N, 3)), ("opacities", opacities, (N,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must be {shape}, got {tuple(t.shape)}")
    if viewmats.ndim != 3 or viewmats.shape[-2:] != (4, 4):
        raise ValueError(f"viewmats must be (C, 4, 4) world-to-camera, got {tuple(viewmats.shape)}")
    if Ks.shape != (viewmats.shape[0], 3, 3):
        raise ValueError(f"Ks must be ({viewmats.shape[0]}, 3, 3), got {tuple(Ks.shape)}")
    if sh_degree is None:
        if colors.shape != (N, 3):
            hint = " (got SH coefficients? pass sh_degree)" if colors.ndim == 3 else ""
            raise ValueError(f"with sh_degree=None colors must be (N, 3) RGB, got {tuple(colors.shape)}{hint}")
    else:
        need = num_sh_bases(sh_degree)
        if colors.ndim != 3 or colors.shape[0] != N or colors.shape[2] != 3 or colors.shape[1] < need:
            raise ValueError(
                f"sh_degree={sh_degree} needs colors of shape (N, K>={need}, 3), got {tuple(colors.shape)}"
            )


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    near: float = 0.01,
    far: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    backend: str = "auto",
    antialiased: bool = False,
    tile_size: Optional[int] = None,
    eps2d: float = EPS2D,
) -> RasterOutput:
    """Differentiably render N 3D Gaussians into C pinhole cameras.

    Args:
        means: (N, 3) centers, world units.
        quats: (N, 4) rotations as (w, x, y, z) quaternions; need not be normalized.
        scales: (N, 3) standard deviations along the local axes, world units (already activated).
        opacities: (N,) in [0, 1] (already activated).
        colors: (N, 3) RGB when ``sh_degree`` is None, else (N, K, 3) SH coefficients with
            ``K >= (sh_degree + 1) ** 2`` (3DGS convention: color = max(SH(dir) + 0.5, 0), dir from
            the camera center to the Gaussian).
        viewmats: (C, 4, 4) world-to-camera matrices, OpenCV axes (x right, y down, z forward).
        Ks: (C, 3, 3) intrinsics in pixels (principal point from the image corner).
        width, height: image size in pixels (shared by the C cameras).
        sh_degree: SH degree to evaluate (0..3), or None for plain RGB colors.
        near, far: Gaussians whose center z is not in (near, far) are culled.
        backgrounds: (C, 3) or (3,) background colors composited behind; None = black.
        backend: "auto", "torch", "gsplat" or "reference" (see module docstring).
        antialiased: Mip-Splatting style opacity compensation ``sqrt(det(S) / det(S + eps2d I))``
            (gsplat's ``rasterize_mode="antialiased"``); default is the classic 3DGS low-pass.
        tile_size: screen tile size in pixels; None = the backend's default (gsplat 16, torch 4).
        eps2d: low-pass variance (pixels^2) added to each projected covariance.
    Returns:
        :class:`RasterOutput`.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree)
    C = viewmats.shape[0]
    viewmats = viewmats.to(means)
    Ks = Ks.to(means)
    if backgrounds is not None:
        backgrounds = torch.as_tensor(backgrounds).to(means)
        if backgrounds.ndim == 1:
            backgrounds = backgrounds.expand(C, -1)
        if backgrounds.shape != (C, 3):
            raise ValueError(f"backgrounds must be (C, 3) or (3,), got {tuple(backgrounds.shape)}")
    name = resolve_backend(backend, means.device)
    kwargs = dict(sh_degree=sh_degree, near=near, far=far, backgrounds=backgrounds, antialiased=antialiased,
                  tile_size=tile_size, eps2d=eps2d)
    args = (means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height))
    if name == "torch":
        from .rasterize_torch import rasterize_torch as fn
    elif name == "gsplat":
        if not means.is_cuda:
            raise ValueError("the gsplat backend needs CUDA tensors; use backend='torch' on CPU")
        from .rasterize_gsplat import rasterize_gsplat as fn
    else:
        from .reference import rasterize_reference as fn
    return RasterOutput(**fn(*args, **kwargs), backend=name)


def rasterize_cameras(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras,
    sh_degree: Optional[int] = None,
    **kwargs,
) -> RasterOutput:
    """:func:`rasterize` for a :class:`recon3d.core.Cameras` batch (viewmats = ``cameras.w2c``,
    Ks = ``cameras.K``). All cameras must share one image size; lens distortion is not supported by
    the rasterizers (undistort the images first), so distorted cameras raise ``ValueError``.
    Extra keyword arguments go to :func:`rasterize`.
    """
    if cameras.is_distorted:
        raise ValueError(
            f"Gaussian rasterization supports pinhole cameras only; these cameras have a "
            f"'{cameras.model}' model with non-zero distortion. Undistort the images (and use the "
            "undistorted pinhole intrinsics) before rendering."
        )
    widths, heights = cameras.width.unique(), cameras.height.unique()
    if len(widths) != 1 or len(heights) != 1:
        raise ValueError("all cameras of one rasterize_cameras call must share width and height; split the batch")
    cams = cameras.to(means.device)
    return rasterize(
        means, quats, scales, opacities, colors, cams.w2c.to(means), cams.K.to(means),
        int(widths[0]), int(heights[0]), sh_degree=sh_degree, **kwargs,
    )
