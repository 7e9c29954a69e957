"""Pieces shared by the PyTorch backends (tile rasterizer and brute-force reference).

``prepare`` projects the Gaussians, decides visibility and gathers, for every visible
(camera, Gaussian) pair, everything the compositing needs; ``finish`` turns composited sums into the
public outputs. Keeping these in one place guarantees that both PyTorch backends see exactly the same
2D Gaussians and apply the same background/depth conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .gaussians import Gaussians
from .projection import EPS2D, Projected, camera_centers, project_gaussians, visibility
from .sh import combine_bases, num_sh_bases, sh_basis

# Column layout of ``Prepared.pairs``.
MEAN = slice(0, 2)  # pixel coordinates of the center
CONIC = slice(2, 5)  # (A, B, C) inverse 2D covariance
OPACITY = 5  # effective opacity (antialiasing compensation applied)
RGB = slice(6, 9)  # view-dependent color
DEPTH = 9  # camera z of the center
NUM_COLS = 10


@dataclass
class Prepared:
    """Visible (camera, Gaussian) pairs, sorted front to back by depth (stable, ties by index).

    Attributes:
        proj: full projection (C, N, ...); ``proj.means2d`` is the tensor exposed as ``means2d``.
        visible: (C, N) bool. boxes: (C, N, 4) int32 pixel boxes (see ``projection.pixel_bbox``).
        cam, gid: (M,) int64 camera and Gaussian index of each pair, depth-sorted.
        pairs: (M, 10) differentiable per-pair data, columns ``MEAN, CONIC, OPACITY, RGB, DEPTH``.
        box: (M, 4) int64 pixel box of each pair.
    """

    proj: Projected
    visible: Tensor
    boxes: Tensor
    cam: Tensor
    gid: Tensor
    pairs: Tensor
    box: Tensor


def view_colors(colors: Tensor, sh_degree: Optional[int], means: Tensor, viewmats: Tensor) -> Tensor:
    """(C, N, 3) colors seen from each camera: plain RGB broadcast, or ``max(SH(dir) + 0.5, 0)``
    with ``dir`` from the camera center to the Gaussian (3DGS convention)."""
    C = viewmats.shape[0]
    if sh_degree is None:
        return colors[None].expand(C, -1, -1)
    k = num_sh_bases(sh_degree)
    dirs = means[None, :, :] - camera_centers(viewmats)[:, None, :]  # (C, N, 3)
    basis = sh_basis(sh_degree, dirs)  # (C, N, k)
    raw = combine_bases(basis, colors[:, :k, :])
    return torch.clamp_min(raw + 0.5, 0.0)


def depth_order(d: Tensor) -> Tensor:
    """Stable argsort of depths. Positive IEEE floats order like their bit patterns, and PyTorch
    sorts integers much faster (radix sort) than floats."""
    if d.numel() > 0 and d.dtype in (torch.float32, torch.float64) and bool(d.min() > 0):
        d = d.view(torch.int32 if d.dtype == torch.float32 else torch.int64)
    return torch.sort(d, stable=True)[1]


def project_visible(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int],
    near: float,
    far: float,
    antialiased: bool,
    eps2d: float = EPS2D,
) -> tuple[Projected, Tensor, Tensor, Tensor, Tensor]:
    """Every (camera, Gaussian) of ``gaussians`` for the C cameras ``viewmats`` (C, 4, 4) / ``Ks``
    (C, 3, 3), differentiable (through the cameras too): the EWA projection, effective opacities
    (C, N) (antialiasing compensation applied), view-dependent colours (C, N, 3), and the visibility
    (C, N) bool and pixel boxes (C, N, 4) of :func:`.projection.visibility`."""
    means, quats, scales, opacities, colors = gaussians.tensors()
    C = viewmats.shape[0]
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d, antialiased)
    opac = opacities[None, :].expand(C, -1)
    if proj.compensation is not None:
        opac = opac * proj.compensation
    visible, boxes = visibility(proj, opac, width, height)
    rgb = view_colors(colors, sh_degree, means, viewmats)
    return proj, opac, rgb, visible, boxes


def depth_sorted(keep: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
    """The kept (camera, Gaussian) pairs front to back: flat indices ``c * N + n`` (M,) int64 of the
    True entries of ``keep`` (C, N), stably sorted by ``depths`` (C, N), and their camera index (M,)."""
    with torch.no_grad():
        flat = keep.reshape(-1).nonzero()[:, 0]
        flat = flat[depth_order(depths.detach().reshape(-1)[flat])]
        return flat, torch.div(flat, keep.shape[1], rounding_mode="floor")


def prepare(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int],
    near: float,
    far: float,
    antialiased: bool,
    eps2d: float = EPS2D,
    cull_by_support: bool = True,
) -> Prepared:
    """Project and gather the visible pairs of ``gaussians`` (see :class:`.gaussians.Gaussians`) for
    the C cameras ``viewmats`` (C, 4, 4) / ``Ks`` (C, 3, 3). With ``cull_by_support=False`` every pair
    with a valid depth is kept, even if no pixel can see it (the brute-force reference uses this, so
    the tests verify that support-box culling never changes the image)."""
    C, N = viewmats.shape[0], gaussians.means.shape[0]
    proj, opac, rgb, visible, boxes = project_visible(gaussians, viewmats, Ks, width, height, sh_degree, near, far,
                                                      antialiased, eps2d)
    flat, cam = depth_sorted(visible if cull_by_support else proj.valid, proj.depths)
    gid = flat - cam * N
    dense = torch.cat(
        [proj.means2d, proj.conics, opac[..., None], rgb, proj.depths[..., None]], dim=-1
    )  # (C, N, 10)
    pairs = dense.reshape(C * N, NUM_COLS).index_select(0, flat)
    return Prepared(proj, visible, boxes, cam, gid, pairs, boxes.reshape(C * N, 4).index_select(0, flat).long())


def finish(
    prep: Prepared, rgb: Tensor, depth_acc: Tensor, alpha: Tensor, backgrounds: Optional[Tensor]
) -> dict:
    """Composite sums -> public outputs (see :func:`finish_outputs`)."""
    proj = prep.proj
    return finish_outputs(proj.means2d, proj.radii, prep.visible, proj.depths, prep.pairs.shape[0], rgb, depth_acc,
                          alpha, backgrounds)


def finish_outputs(
    means2d: Tensor, radii: Tensor, visible: Tensor, depths: Tensor, num_pairs: int, rgb: Tensor, depth_acc: Tensor,
    alpha: Tensor, backgrounds: Optional[Tensor],
) -> dict:
    """Composite sums -> public outputs.

    Args:
        means2d: (C, N, 2), radii: (C, N) int32, visible: (C, N) bool, depths: (C, N) of the projection.
        num_pairs: number of visible pairs composited.
        rgb: (C, H, W, 3) sum of w_i c_i. depth_acc: (C, H, W, 1) sum of w_i z_i. alpha: (C, H, W, 1)
        sum of w_i. backgrounds: (C, 3) or None (black).
    """
    if num_pairs == 0:
        # Nothing visible: keep the outputs in the autograd graph anyway (a zero that depends on the
        # inputs), so that ``loss.backward()`` does not fail on an empty view.
        zero = 0.0 * means2d.sum()
        rgb, depth_acc, alpha = rgb + zero, depth_acc + zero, alpha + zero
    if backgrounds is not None:
        rgb = rgb + (1.0 - alpha) * backgrounds[:, None, None, :]
    depth = depth_acc / alpha.clamp_min(1e-10)
    radii = torch.where(visible, radii, torch.zeros_like(radii))
    return dict(
        colors=rgb,
        alphas=alpha,
        depths=depth,
        means2d=means2d,
        radii=radii,
        visible=visible,
        depths_per_gaussian=depths,
    )
