"""NeuS volume rendering of an SDF on the shared core (samplers, weights, compositing).

NeuS turns an SDF ``f`` into opacities with the logistic CDF ``Phi_s(x) = sigmoid(s x)``: for a bin
whose SDF goes from ``f_prev`` to ``f_next`` along the ray,

    ``alpha = max((Phi_s(f_prev) - Phi_s(f_next)) / Phi_s(f_prev), 0)``

which is unbiased (weights peak where the ray crosses ``f = 0``) and occlusion aware. With one SDF
sample per bin (at its midpoint), the end values are extrapolated with the directional derivative
``cos = <d, grad f>``: ``f_prev/next = f -/+ cos * delta / 2``. Early in training ``cos`` is
annealed towards ``-|cos|`` mixed with ``(cos - 1) / 2`` (``cos_anneal_ratio`` from 0 to 1) so
that back-facing geometry still receives gradient. Weights ``T_i alpha_i`` are the core's
:func:`~recon3d.core.volume_rendering.weights_from_alphas`.

All lengths here are in the field's unit coordinates (see :mod:`recon3d.methods.sdf.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from recon3d.core.rays import RayBundle
from recon3d.core.sampling import RaySamples, importance_samples, intersect_sphere, uniform_samples
from recon3d.core.volume_rendering import (
    Background, accumulate_opacity, blend_background, composite, composite_depth, weights_from_alphas,
)

from .model import SdfField


@dataclass
class NeusSamplingConfig:
    num_coarse: int = 32  # uniform bins inside the bounding sphere
    num_importance: int = 32  # bins added where the coarse SDF crosses zero
    min_importance_s: float = 64.0  # sharpness used for placing them (at least this, else the learned s)
    near: float = 0.05  # world units
    eval_prune_weight: float = 1e-4  # rendering without gradient: shade only bins whose weight from the
    #                                  SDF at the bin edges exceeds this (0: shade every bin)


def neus_alphas(sdf: Tensor, cos: Tensor, deltas: Tensor, inv_s: Tensor, cos_anneal_ratio: float = 1.0) -> Tensor:
    """Per-bin NeuS opacities from one SDF sample per bin.

    Args:
        sdf: (..., S) SDF at the bin midpoints; cos: (..., S) ``<ray direction, SDF gradient>``;
        deltas: (..., S) bin lengths (same units as the SDF); inv_s: scalar sharpness s.
        cos_anneal_ratio: 0 (start of training) .. 1 (the exact formula).
    Returns:
        (..., S) alphas in [0, 1].
    """
    relu = torch.nn.functional.relu
    iter_cos = -(relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal_ratio) + relu(-cos) * cos_anneal_ratio)
    half = iter_cos * deltas * 0.5
    prev_cdf = torch.sigmoid((sdf - half) * inv_s)
    next_cdf = torch.sigmoid((sdf + half) * inv_s)
    return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)


def neus_alphas_from_edges(sdf_edges: Tensor, inv_s: Tensor | float) -> Tensor:
    """(..., S + 1) SDF at bin edges -> (..., S) NeuS alphas (the exact discrete formula)."""
    cdf = torch.sigmoid(sdf_edges * inv_s)
    prev, nxt = cdf[..., :-1], cdf[..., 1:]
    return ((prev - nxt + 1e-5) / (prev + 1e-5)).clamp(0.0, 1.0)


def unit_rays(field: SdfField, rays: RayBundle) -> RayBundle:
    """The rays in the field's unit coordinates (same unit directions, distances / radius)."""
    return RayBundle(field.to_unit(rays.origins), rays.directions, rays.z_scale, rays.camera_indices)


@torch.no_grad()
def _visible_bins(field: SdfField, urays: RayBundle, samples: RaySamples, min_weight: float) -> Tensor:
    """(R, S) bool: bins whose NeuS weight, from the SDF at their edges, exceeds ``min_weight``."""
    edges = samples.edges
    f = field.sdf((urays.origins[:, None, :] + urays.directions[:, None, :] * edges[..., None]).reshape(-1, 3))
    return weights_from_alphas(neus_alphas_from_edges(f.reshape(edges.shape), field.inv_s)) > min_weight


@torch.no_grad()
def sample_along_rays(field: SdfField, urays: RayBundle, cfg: NeusSamplingConfig, stratified: bool,
                      generator: Optional[torch.Generator] = None) -> RaySamples:
    """Coarse uniform bins in the unit sphere plus importance bins near the zero crossing.

    Args:
        urays: flat rays in unit coordinates (:func:`unit_rays`).
    Returns:
        RaySamples (R, num_coarse + num_importance), unit-coordinate distances.
    """
    near = cfg.near / field.radius
    nears, fars, _ = intersect_sphere(urays.origins, urays.directions, 0.0, 1.0, near_min=near)
    coarse = uniform_samples(nears, fars, cfg.num_coarse, stratified, generator=generator)
    if cfg.num_importance <= 0:
        return coarse
    edges = coarse.edges  # (R, S + 1)
    pts = urays.origins[:, None, :] + urays.directions[:, None, :] * edges[..., None]
    f = field.sdf(pts.reshape(-1, 3)).reshape(edges.shape)
    s = max(float(field.inv_s), cfg.min_importance_s)
    weights = weights_from_alphas(neus_alphas_from_edges(f, s))
    return importance_samples(coarse, weights, cfg.num_importance, stratified, include_existing=True,
                              generator=generator)


def render_neus(field: SdfField, rays: RayBundle, cfg: NeusSamplingConfig, stratified: bool,
                background: Background = None, cos_anneal_ratio: float = 1.0, create_graph: bool = True,
                generator: Optional[torch.Generator] = None, prune: bool = False) -> dict[str, Tensor]:
    """Render a flat batch of R world-space rays.

    ``prune`` (rendering, not training): a no-gradient pass evaluates the SDF at the bin edges,
    the exact discrete NeuS weights from them mark the bins that matter (weight above
    ``cfg.eval_prune_weight``), and only those are shaded (SDF gradient, color network); the others
    get zero opacity, zero gradient and zero color.

    Returns:
        dict with ``rgb`` (R, 3) (over ``background``, premultiplied when None), ``opacity`` (R, 1),
        ``depth`` (R, 1) world distance along the ray, ``normals`` (R, 3) composited unit-length-ish
        world normals, ``weights`` (R, S), ``gradients`` (R, S, 3) SDF gradients (for the eikonal
        loss; unit coordinates, so ideally of norm 1), ``inside`` (R, S) bool samples in the sphere.
    """
    urays = unit_rays(field, rays)
    samples = sample_along_rays(field, urays, cfg, stratified, generator)
    R, S = samples.t_starts.shape
    pts = urays.at(samples.t_mid)  # (R, S, 3)
    dirs = urays.directions[:, None, :].expand(R, S, 3)
    keep = None
    if prune and cfg.eval_prune_weight > 0:
        keep = _visible_bins(field, urays, samples, cfg.eval_prune_weight)
    sel = (slice(None), slice(None)) if keep is None else keep.nonzero(as_tuple=True)
    f, grad, feat = field.sdf_and_gradient(pts[sel].reshape(-1, 3), create_graph=create_graph)
    rgb_k = field.color(pts[sel].reshape(-1, 3), grad, dirs[sel].reshape(-1, 3), feat)
    cos = (grad * dirs[sel].reshape(-1, 3)).sum(-1)
    alpha_k = neus_alphas(f, cos, samples.deltas[sel].reshape(-1), field.inv_s, cos_anneal_ratio)
    if keep is None:
        alphas, rgb, grad = alpha_k.reshape(R, S), rgb_k.reshape(R, S, 3), grad.reshape(R, S, 3)
    else:  # skipped bins: no opacity
        alphas = alpha_k.new_zeros(R, S).index_put(sel, alpha_k)
        rgb = rgb_k.new_zeros(R, S, 3).index_put(sel, rgb_k)
        grad = grad.new_zeros(R, S, 3).index_put(sel, grad)
    weights = weights_from_alphas(alphas)
    color = composite(weights, rgb)
    opacity = accumulate_opacity(weights)
    normals = composite(weights, torch.nn.functional.normalize(grad, dim=-1))
    out = {"rgb": color, "opacity": opacity, "depth": composite_depth(weights, samples) * field.radius,
           "normals": normals, "weights": weights, "gradients": grad,
           "inside": pts.reshape(R, S, 3).norm(dim=-1) < 1.0}
    if background is not None:
        out["rgb"], out["background"] = blend_background(color, opacity, background)
    return out
