"""The one entry point for rendering 3D Gaussians: :func:`rasterize` (and :func:`rasterize_cameras`).

Backends:
  * ``"gsplat"``: gsplat's CUDA rasterizer (``gsplat.rasterization``), CUDA tensors only.
  * ``"cpp"``: recon3d's compiled, multi-threaded CPU rasterizer (:mod:`.rasterize_cpp`, C++/OpenMP
    built with the system compiler by :mod:`recon3d.core.native`), CPU tensors, float32 or float64.
  * ``"torch"``: recon3d's pure-PyTorch tile rasterizer (:mod:`.rasterize_torch`), any device,
    float32 or float64, hand-written backward: the readable twin of ``"cpp"`` and its reference in
    the tests.
  * ``"reference"``: brute-force per-pixel renderer (:mod:`.reference`), tests and benchmarks only.
  * ``"auto"`` (default): for CUDA tensors ``"gsplat"`` when gsplat really works on their device
    (:func:`.rasterize_gsplat.gsplat_status`: its CUDA extension loads and a tiny rasterization
    succeeds; checked once per process and device), else ``"torch"`` on the same device; for CPU
    tensors ``"cpp"`` when the compiled library builds and loads (:func:`recon3d.core.native.native_status`,
    once per process), else ``"torch"``. Each fallback logs a one-line warning (once) saying why and
    how to fix it. The environment variable ``RECON3D_RASTER_BACKEND``
    (``cpp``/``torch``/``gsplat``/``reference``/``auto``) overrides ``"auto"``; an explicit
    ``backend=`` argument overrides both.
  * ``"gsplat"`` or ``"cpp"`` asked for explicitly (argument or environment variable) on tensors it
    cannot render raises a ``ValueError`` (one-line message saying why and how to fix it) instead
    of falling back. :func:`check_backend` runs the same decision up front (before a long fit
    starts).

Every backend renders with autocast disabled (float32 or float64 as given), so calling
:func:`rasterize` inside a ``torch.autocast`` region is safe.

Every backend has the signature ``fn(gaussians, viewmats, Ks, width, height, sh_degree=None, near=0.01,
far=1e10, backgrounds=None, antialiased=False, tile_size=None, eps2d=EPS2D) -> dict`` with a
:class:`~.gaussians.Gaussians` and already checked, device/dtype-matched camera tensors
(``backgrounds`` is None or (C, 3)); the dict holds the :class:`RasterOutput` fields except ``backend``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .gaussians import Gaussians
from .projection import EPS2D
from .rasterize_cpp import CppUnavailableError, require_cpp, warn_cpp_fallback  # noqa: F401 (re-exported)

BACKENDS = ("auto", "cpp", "torch", "gsplat", "reference")
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
        backend: name of the backend that produced this ("cpp", "torch", "gsplat" or "reference").
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
        backend = "torch"
        if device.type == "cpu":
            from ..native import native_status

            status = native_status()
            if status.usable:
                backend = "cpp"
            else:
                warn_cpp_fallback(status.reason)
        elif device.type == "cuda":
            from .rasterize_gsplat import gsplat_status, warn_fallback

            status = gsplat_status(device)
            if status.usable:
                backend = "gsplat"
            else:
                warn_fallback(status)
    return backend


def check_backend(backend: str, device) -> str:
    """The backend :func:`rasterize` will use for tensors on ``device``, decided now: ``"auto"``
    resolves (with its one-line fallback warning), an explicit ``"gsplat"`` that cannot work there
    raises :class:`.rasterize_gsplat.GsplatUnavailableError` (one line). Call it before a long fit so
    a bad ``--backend`` fails at once."""
    device = torch.device(device)
    name = resolve_backend(backend, device)
    if name == "gsplat":
        from .rasterize_gsplat import require_gsplat

        require_gsplat(device)
    elif name == "cpp":
        require_cpp(device)
    return name


def _check_cameras(viewmats: Tensor, Ks: Tensor) -> None:
    if viewmats.ndim != 3 or viewmats.shape[-2:] != (4, 4):
        raise ValueError(f"viewmats must be (C, 4, 4) world-to-camera, got {tuple(viewmats.shape)}")
    if Ks.shape != (viewmats.shape[0], 3, 3):
        raise ValueError(f"Ks must be ({viewmats.shape[0]}, 3, 3), got {tuple(Ks.shape)}")


def _as_gaussians(gaussians, means, quats, scales, opacities, colors) -> Gaussians:
    """The :class:`Gaussians` of a :func:`rasterize` call, from either calling form."""
    legacy = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors}
    given = [k for k, v in legacy.items() if v is not None]
    if gaussians is None:
        missing = [k for k, v in legacy.items() if v is None]
        if missing:
            raise TypeError("rasterize() needs a Gaussians as its first argument (or, in the older keyword "
                            f"form, all of means=, quats=, scales=, opacities=, colors=; missing {missing})")
        return Gaussians(means, quats, scales, opacities, colors)
    if given:
        raise TypeError(f"rasterize() got a Gaussians and also {given}; pass the arrays inside the Gaussians only")
    if not isinstance(gaussians, Gaussians):
        raise TypeError(
            f"rasterize() takes a Gaussians as its first argument, got {type(gaussians).__name__}; wrap the "
            "arrays: rasterize(Gaussians(means, quats, scales, opacities, colors), viewmats, Ks, width, height, ...)"
        )
    return gaussians


def rasterize(
    gaussians: Optional[Gaussians] = None,
    viewmats: Optional[Tensor] = None,
    Ks: Optional[Tensor] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    *,
    sh_degree: Optional[int] = None,
    near: float = 0.01,
    far: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    backend: str = "auto",
    antialiased: bool = False,
    tile_size: Optional[int] = None,
    eps2d: float = EPS2D,
    means: Optional[Tensor] = None,
    quats: Optional[Tensor] = None,
    scales: Optional[Tensor] = None,
    opacities: Optional[Tensor] = None,
    colors: Optional[Tensor] = None,
) -> RasterOutput:
    """Differentiably render N 3D Gaussians into C pinhole cameras.

    Call it as ``rasterize(gaussians, viewmats, Ks, width, height, sh_degree=..., ...)`` (the options
    after ``height`` are keyword-only). The older keyword form ``rasterize(means=..., quats=...,
    scales=..., opacities=..., colors=..., viewmats=..., Ks=..., width=..., height=..., ...)`` is still
    accepted (the five arrays are wrapped into a :class:`Gaussians`, bit-identical results); new code
    should pass a :class:`Gaussians`.

    Args:
        gaussians: the N Gaussians, activated (see :class:`Gaussians` for shapes, units and the
            quaternion/SH conventions). ``gaussians.colors`` must be (N, 3) RGB when ``sh_degree``
            is None, else (N, K, 3) SH coefficients with ``K >= (sh_degree + 1) ** 2``.
        viewmats: (C, 4, 4) world-to-camera matrices, OpenCV axes (x right, y down, z forward).
        Ks: (C, 3, 3) intrinsics in pixels (principal point from the image corner).
        width, height: image size in pixels (shared by the C cameras).
        sh_degree: SH degree to evaluate (0..3), or None for plain RGB colors.
        near, far: Gaussians whose center z is not in (near, far) are culled.
        backgrounds: (C, 3) or (3,) background colors composited behind; None = black.
        backend: "auto", "cpp", "torch", "gsplat" or "reference" (see module docstring).
        antialiased: Mip-Splatting style opacity compensation ``sqrt(det(S) / det(S + eps2d I))``
            (gsplat's ``rasterize_mode="antialiased"``); default is the classic 3DGS low-pass.
        tile_size: screen tile size in pixels; None = the backend's default (gsplat 16, cpp 16: a
            multiple of 8 up to 32, torch 4).
        eps2d: low-pass variance (pixels^2) added to each projected covariance.
        means, quats, scales, opacities, colors: the older keyword form, instead of ``gaussians``
            (same meaning as the :class:`Gaussians` fields).
    Returns:
        :class:`RasterOutput`.
    """
    gaussians = _as_gaussians(gaussians, means, quats, scales, opacities, colors)
    if viewmats is None or Ks is None or width is None or height is None:
        raise TypeError("rasterize() needs viewmats, Ks, width and height")
    _check_cameras(viewmats, Ks)
    gaussians.check_sh_degree(sh_degree)
    ref = gaussians.means
    C = viewmats.shape[0]
    viewmats = viewmats.to(ref)
    Ks = Ks.to(ref)
    if backgrounds is not None:
        backgrounds = torch.as_tensor(backgrounds).to(ref)
        if backgrounds.ndim == 1:
            backgrounds = backgrounds.expand(C, -1)
        if backgrounds.shape != (C, 3):
            raise ValueError(f"backgrounds must be (C, 3) or (3,), got {tuple(backgrounds.shape)}")
    name = resolve_backend(backend, ref.device)
    kwargs = dict(sh_degree=sh_degree, near=near, far=far, backgrounds=backgrounds, antialiased=antialiased,
                  tile_size=tile_size, eps2d=eps2d)
    if name == "torch":
        from .rasterize_torch import rasterize_torch as fn
    elif name == "cpp":
        from .rasterize_cpp import rasterize_cpp as fn  # checks the device and the library (require_cpp)
    elif name == "gsplat":
        from .rasterize_gsplat import rasterize_gsplat as fn
        from .rasterize_gsplat import require_gsplat

        require_gsplat(ref.device)  # CUDA tensors and a gsplat that works there (cached), else one-line error
        if ref.dtype != torch.float32:
            raise ValueError(f"the gsplat backend renders float32 tensors, got {ref.dtype}; use backend='torch'")
    else:
        from .reference import rasterize_reference as fn
    # the backends compute in the inputs' dtype: an enclosing autocast region (mixed-precision training)
    # would turn their matmuls into bf16/fp16 and break the accumulation buffers
    with torch.autocast(device_type=ref.device.type, enabled=False):
        out = fn(gaussians, viewmats, Ks, int(width), int(height), **kwargs)
    return RasterOutput(**out, backend=name)


def rasterize_cameras(gaussians: Gaussians, cameras, *, sh_degree: Optional[int] = None, **kwargs) -> RasterOutput:
    """:func:`rasterize` of ``gaussians`` for a :class:`recon3d.core.Cameras` batch (viewmats =
    ``cameras.w2c``, Ks = ``cameras.K``). All cameras must share one image size; lens distortion is
    not supported by the rasterizers (undistort the images first), so distorted cameras raise
    ``ValueError``. Extra keyword arguments go to :func:`rasterize`.
    """
    if not isinstance(gaussians, Gaussians):
        raise TypeError(f"rasterize_cameras() takes a Gaussians as its first argument, got "
                        f"{type(gaussians).__name__}")
    if cameras.is_distorted:
        raise ValueError(
            f"Gaussian rasterization supports pinhole cameras only; these cameras have a "
            f"'{cameras.model}' model with non-zero distortion. Undistort the images (and use the "
            "undistorted pinhole intrinsics) before rendering."
        )
    widths, heights = cameras.width.unique(), cameras.height.unique()
    if len(widths) != 1 or len(heights) != 1:
        raise ValueError("all cameras of one rasterize_cameras call must share width and height; split the batch")
    ref = gaussians.means
    cams = cameras.to(ref.device)
    return rasterize(
        gaussians, cams.w2c.to(ref), cams.K.to(ref), int(widths[0]), int(heights[0]), sh_degree=sh_degree, **kwargs,
    )
