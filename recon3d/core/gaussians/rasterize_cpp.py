"""Compiled, multi-threaded CPU rasterizer: the default backend for CPU tensors (``backend="cpp"``).

Same 2D Gaussians and the same outputs as the PyTorch tile rasterizer (:mod:`.rasterize_torch`, the
readable twin and the reference in the tests), computed in C++/OpenMP
(``recon3d/core/csrc/raster_cpu.cpp``, built by :mod:`recon3d.core.native`):

1. Project (``_ProjectCpp``): EWA projection, SH colours, effective opacities and support boxes,
   fused per Gaussian, threads over Gaussians; its backward is fused too. When the cameras need a
   gradient (pose refinement) the PyTorch projection (:func:`.common.project_visible`) runs instead.
   The visible pairs are depth-sorted in PyTorch (:func:`.common.depth_sorted`).
2. Bin: each depth-sorted pair is listed in every ``tile x tile`` tile its support box touches (two
   linear passes, lists come out front to back).
3. Composite: tiles are spread over threads; per tile, each pair is evaluated only on the rows of its
   box, in 8-pixel SIMD chunks, front to back, with gsplat's rules (alpha clamped at 0.999, skipped at
   or below 1/255, a pixel stops before the pair that would bring its transmittance to <= 1e-4), and
   the tile stops when all its pixels have. Per pixel it keeps the final transmittance and the last
   contributing entry (8 bytes) for the backward pass.
4. Backward: per tile, back to front from the last contributing entry, the transmittance is
   recovered by division, ``dL/dalpha_k = T_k v_k - (sum_{j>k} w_j v_j) / (1 - alpha_k)``, and the
   gradients of mean, conic, opacity, color and depth are summed per list entry, then per pair
   (deterministic, no atomics: the result does not depend on the thread count).

float32 and float64 (for gradient checks) are supported; tensors must be on the CPU. The thread
count is PyTorch's (``torch.set_num_threads``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..native import native_status
from .common import NUM_COLS, depth_sorted, finish_outputs, project_visible
from .gaussians import Gaussians
from .projection import EPS2D
from .sh import num_sh_bases

DEFAULT_TILE_SIZE = 16
_CPP_WARNED = False


class CppUnavailableError(ValueError):
    """``backend="cpp"`` was asked for explicitly but cannot render these tensors."""


def require_cpp(device: torch.device) -> None:
    """Raise :class:`CppUnavailableError` (one line) unless the compiled CPU rasterizer can render on
    ``device``."""
    if torch.device(device).type != "cpu":
        raise CppUnavailableError(f"the cpp rasterizer renders CPU tensors, not {device}; use --backend auto, "
                                  "torch or gsplat there")
    status = native_status()
    if not status.usable:
        raise CppUnavailableError(f"the compiled CPU rasterizer is unavailable: {status.reason}")


def warn_cpp_fallback(reason: str) -> None:
    """The one-line warning (once per process) when ``auto`` cannot use the compiled rasterizer."""
    global _CPP_WARNED
    if not _CPP_WARNED:
        _CPP_WARNED = True
        import logging

        logging.getLogger(__name__).warning(
            "compiled CPU rasterizer unusable (%s); using the PyTorch rasterizer instead (several times slower). "
            "Fix: install a C++ compiler (apt-get install g++) and run `python -m recon3d.core.native`",
            reason)


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def _suffix(dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise ValueError(f"the cpp rasterizer renders float32 or float64 tensors, got {dtype}")


class _Bins:
    """Per-tile lists of pair indices (see ``rc_bin_count`` / ``rc_bin_fill``)."""

    def __init__(self, lib, box: Tensor, cam: Tensor, C: int, W: int, H: int, tile: int):
        M = box.shape[0]
        ntx, nty = (W + tile - 1) // tile, (H + tile - 1) // tile
        ntiles = C * ntx * nty
        self.pair_start = torch.empty(M + 1, dtype=torch.int64)
        counts = torch.zeros(ntiles, dtype=torch.int64)
        L = lib.rc_bin_count(M, _ptr(box), _ptr(cam), W, H, tile, _ptr(self.pair_start), _ptr(counts))
        if L >= 2**31:
            raise ValueError(f"{L} (tile, Gaussian) pairs exceed the cpp rasterizer's 32-bit lists; "
                             "render fewer cameras per call or use a larger tile_size")
        self.tile_start = torch.zeros(ntiles + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=self.tile_start[1:])
        cursor = self.tile_start[:-1].clone()
        self.entries = torch.empty(L, dtype=torch.int32)
        self.entry_pos = torch.empty(L, dtype=torch.int64)
        lib.rc_bin_fill(M, _ptr(box), _ptr(cam), W, H, tile, _ptr(cursor), _ptr(self.entries), _ptr(self.entry_pos))
        self.num_entries = L


class _ProjectCpp(torch.autograd.Function):
    """Gaussians -> dense per-(camera, Gaussian) 2D data, fused in C++ (the twin of
    ``projection.project_gaussians`` + ``common.view_colors`` + ``projection.visibility``).

    forward(means, quats, scales, opacities, colors, viewmats, Ks, settings) -> means2d (C,N,2),
    conics (C,N,3), opac (C,N) effective opacity, rgb (C,N,3), depths (C,N) [differentiable w.r.t. the
    Gaussians], radii (C,N) int32, visible (C,N) bool, boxes (C,N,4) int32. The cameras get no gradient
    (the caller uses the PyTorch projection when they need one).
    """

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, viewmats, Ks, settings):
        lib = native_status().lib
        W, H, nb, near, far, eps2d, antialiased, nthreads = settings
        sfx = _suffix(means.dtype)
        ins = [t.contiguous() for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
        N, C = means.shape[0], viewmats.shape[0]
        K = ins[4].shape[1] if nb > 0 else 0
        kw = dict(dtype=means.dtype)
        means2d, conics = torch.empty(C, N, 2, **kw), torch.empty(C, N, 3, **kw)
        opac, rgb, depths = torch.empty(C, N, **kw), torch.empty(C, N, 3, **kw), torch.empty(C, N, **kw)
        radii = torch.empty(C, N, dtype=torch.int32)
        visible = torch.empty(C, N, dtype=torch.uint8)
        boxes = torch.empty(C, N, 4, dtype=torch.int32)
        getattr(lib, f"rc_project_fwd_{sfx}")(
            N, C, *(_ptr(t) for t in ins[:5]), K, nb, _ptr(ins[5]), _ptr(ins[6]), W, H, near, far, eps2d,
            int(antialiased), _ptr(means2d), _ptr(conics), _ptr(opac), _ptr(rgb), _ptr(depths), _ptr(radii),
            _ptr(visible), _ptr(boxes), nthreads)
        visible = visible.bool()
        ctx.settings = settings
        ctx.K = K
        ctx.save_for_backward(*ins)
        ctx.mark_non_differentiable(radii, visible, boxes)
        return means2d, conics, opac, rgb, depths, radii, visible, boxes

    @staticmethod
    @once_differentiable
    def backward(ctx, g_means2d, g_conics, g_opac, g_rgb, g_depths, *_):
        lib = native_status().lib
        means, quats, scales, opacities, colors, viewmats, Ks = ctx.saved_tensors
        W, H, nb, near, far, eps2d, antialiased, nthreads = ctx.settings
        sfx = _suffix(means.dtype)
        C, N = viewmats.shape[0], means.shape[0]
        shapes = ((C, N, 2), (C, N, 3), (C, N), (C, N, 3), (C, N))  # means2d, conics, opac, rgb, depths
        gs = [torch.zeros(shape, dtype=means.dtype) if g is None else g.contiguous()
              for g, shape in zip((g_means2d, g_conics, g_opac, g_rgb, g_depths), shapes)]
        outs = [torch.empty_like(t) for t in (means, quats, scales, opacities, colors)]
        getattr(lib, f"rc_project_bwd_{sfx}")(
            N, C, *(_ptr(t) for t in (means, quats, scales, opacities, colors)), ctx.K, nb, _ptr(viewmats), _ptr(Ks),
            W, H, near, far, eps2d, int(antialiased), *(_ptr(g) for g in gs), *(_ptr(o) for o in outs), nthreads)
        return (*outs, None, None, None)


class _CompositeCpp(torch.autograd.Function):
    """Dense 2D data of the C x N (camera, Gaussian) pairs -> (C, H, W, 5) per-pixel
    ``sum_k w_k [r, g, b, z, 1]`` over the visible pairs ``flat`` (depth-sorted indices ``c * N + n``);
    see the module docstring."""

    @staticmethod
    def forward(ctx, means2d, conics, opac, rgb, depths, flat, box, cam, geom):
        lib = native_status().lib
        C, H, W, tile, nthreads = geom
        sfx = _suffix(means2d.dtype)
        dense = [t.contiguous() for t in (means2d, conics, opac, rgb, depths)]
        M = flat.shape[0]
        pairs = torch.empty(M, NUM_COLS, dtype=means2d.dtype)
        getattr(lib, f"rc_gather_{sfx}")(M, _ptr(flat), *(_ptr(t) for t in dense), _ptr(pairs), nthreads)
        bins = _Bins(lib, box, cam, C, W, H, tile)
        out = torch.empty(C, H, W, 5, dtype=pairs.dtype)
        tfinal = torch.empty(C, H, W, dtype=pairs.dtype)
        last = torch.empty(C, H, W, dtype=torch.int32)
        getattr(lib, f"rc_forward_{sfx}")(C, H, W, tile, _ptr(pairs), _ptr(box), _ptr(bins.tile_start),
                                           _ptr(bins.entries), _ptr(out), _ptr(tfinal), _ptr(last), nthreads)
        ctx.geom = geom
        ctx.bins = bins
        ctx.shapes = [t.shape for t in dense]
        ctx.save_for_backward(pairs, flat, box, tfinal, last)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        lib = native_status().lib
        pairs, flat, box, tfinal, last = ctx.saved_tensors
        C, H, W, tile, nthreads = ctx.geom
        bins = ctx.bins
        sfx = _suffix(pairs.dtype)
        gout = gout.contiguous().to(pairs.dtype)
        gentries = torch.empty(bins.num_entries, NUM_COLS, dtype=pairs.dtype)
        getattr(lib, f"rc_backward_{sfx}")(C, H, W, tile, _ptr(pairs), _ptr(box), _ptr(bins.tile_start),
                                            _ptr(bins.entries), _ptr(tfinal), _ptr(last), _ptr(gout),
                                            _ptr(gentries), nthreads)
        gpairs = torch.empty_like(pairs)
        M = pairs.shape[0]
        getattr(lib, f"rc_reduce_{sfx}")(M, _ptr(bins.pair_start), _ptr(bins.entry_pos), _ptr(gentries),
                                          _ptr(gpairs), nthreads)
        grads = [torch.zeros(shape, dtype=pairs.dtype) for shape in ctx.shapes]
        getattr(lib, f"rc_scatter_{sfx}")(M, _ptr(flat), _ptr(gpairs), *(_ptr(g) for g in grads), nthreads)
        ctx.bins = None
        return (*grads, None, None, None, None)


def rasterize_cpp(
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
    eps2d: float = EPS2D,
) -> dict:
    """Render ``gaussians`` (N, see :class:`.gaussians.Gaussians`, CPU tensors) into C cameras with
    the compiled rasterizer. Arguments and outputs as :func:`recon3d.core.gaussians.rasterize`
    (returns a dict of the :class:`~.api.RasterOutput` fields). Cameras that require gradients (pose
    refinement) are projected by the PyTorch projection, so their gradients flow; the compositing is
    compiled either way."""
    require_cpp(gaussians.device)
    tile = int(tile_size or DEFAULT_TILE_SIZE)
    max_tile = native_status().lib.rc_max_tile()
    if tile % 8 or not 8 <= tile <= max_tile:
        raise ValueError(f"tile_size must be a multiple of 8 up to {max_tile} for the cpp rasterizer, got {tile}")
    C = viewmats.shape[0]
    _suffix(gaussians.dtype)
    nthreads = torch.get_num_threads()
    width, height = int(width), int(height)
    if viewmats.requires_grad or Ks.requires_grad:
        proj, opac, rgb, visible, boxes = project_visible(gaussians, viewmats, Ks, width, height, sh_degree, near,
                                                          far, antialiased, eps2d)
        dense = proj.means2d, proj.conics, opac, rgb, proj.depths, proj.radii, visible, boxes
    else:
        nb = 0 if sh_degree is None else num_sh_bases(sh_degree)
        settings = (width, height, nb, float(near), float(far), float(eps2d), bool(antialiased), nthreads)
        dense = _ProjectCpp.apply(*gaussians.tensors(), viewmats.detach(), Ks.detach(), settings)
    means2d, conics, opac, rgb, depths, radii, visible, boxes = dense
    flat, cam = depth_sorted(visible, depths)
    cam = cam.to(torch.int32)
    box = boxes.reshape(-1, 4).index_select(0, flat).to(torch.int32).contiguous()
    img = _CompositeCpp.apply(means2d, conics, opac, rgb, depths, flat, box, cam, (C, height, width, tile, nthreads))
    return finish_outputs(means2d, radii, visible, depths, flat.shape[0], img[..., :3], img[..., 3:4], img[..., 4:5],
                          backgrounds)
