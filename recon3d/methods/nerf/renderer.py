"""Rendering rays through a NeRF field with occupancy-grid marching, on the shared core.

Bounded scenes march from the ray's entry to its exit of the scene box (:func:`intersect_aabb`)
with ``linear`` candidate spacing; unbounded scenes march from ``near`` to ``far`` with
``contracted`` spacing (fine inside the unit ball, disparity-like beyond), the grid living in
contracted space. Compositing is :func:`recon3d.core.volume_rendering.render_samples`.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from recon3d.core.occupancy import MarchedSamples, OccupancyGrid
from recon3d.core.rays import RayBundle
from recon3d.core.sampling import intersect_aabb
from recon3d.core.volume_rendering import Background, render_samples

from .model import NerfField


@dataclass
class MarchConfig:
    num_steps: int = 512  # candidate bins per ray (between near and far)
    near: float = 0.05  # world units; also the near plane of bounded scenes
    far: float = 1000.0  # unbounded scenes only
    prune: str = "grid"  # drop bins behind opaque matter: "grid" (occupancy-grid estimates, lagged by
    #                     prune_lag_cells cells), "exact" (a no-grad density pass), "none"
    prune_lag_cells: float = 2.0
    transmittance_eps: float = 1e-3
    alpha_threshold: float = 0.0


def ray_segments(rays: RayBundle, grid: OccupancyGrid, cfg: MarchConfig) -> tuple[Tensor, Tensor, str]:
    """(R, 1) nears, (R, 1) fars and the candidate spacing for the rays in the grid's box."""
    box = grid.box
    if box.contraction is None:
        aabb = box.aabb.to(rays.origins.device)
        nears, fars, _ = intersect_aabb(rays.origins, rays.directions, aabb[0], aabb[1], near_min=cfg.near)
        return nears, fars, "linear"
    nears = torch.full_like(rays.origins[:, :1], cfg.near)
    return nears, torch.full_like(nears, cfg.far), "contracted"


def march_rays(field: NerfField, grid: OccupancyGrid, rays: RayBundle, cfg: MarchConfig, stratified: bool,
               generator: Optional[torch.Generator] = None) -> MarchedSamples:
    """Occupied bins of the rays, pruned behind opaque matter when ``cfg.prune``."""
    nears, fars, spacing = ray_segments(rays, grid, cfg)
    m = grid.march(rays, nears, fars, cfg.num_steps, stratified, generator=generator, spacing=spacing)
    if not len(m) or cfg.prune == "none":
        return m
    if cfg.prune == "exact":
        with torch.no_grad():
            sigma = field.density(m.positions(rays))
        return m.prune(sigma, cfg.transmittance_eps, cfg.alpha_threshold)
    if cfg.prune == "grid":
        return m.prune_lagged(m.cell_density, cfg.prune_lag_cells * grid.cell_size(), cfg.transmittance_eps)
    raise ValueError(f"unknown prune mode {cfg.prune!r}; expected 'grid', 'exact' or 'none'")


def render_rays(field: NerfField, grid: OccupancyGrid, rays: RayBundle, cfg: MarchConfig, stratified: bool,
                background: Background = None, generator: Optional[torch.Generator] = None,
                camera_indices: Optional[Tensor] = None) -> dict[str, Tensor]:
    """Render a flat batch of R rays.

    Args:
        rays: RayBundle with (R, 3) origins / unit directions.
        background: as in :func:`recon3d.core.volume_rendering.blend_background` (a (R, 3) tensor,
            a color, ``'white'``...); None keeps premultiplied colors.
        camera_indices: (R,) image indices for the appearance embedding (None: mean embedding).
    Returns:
        dict with ``rgb`` (R, 3), ``opacity`` (R, 1), ``depth`` (R, 1) distance along the ray,
        ``num_samples`` (int, bins shaded with gradient).
    """
    m = march_rays(field, grid, rays, cfg, stratified, generator)
    return shade_samples(field, m, rays, background, camera_indices)


def shade_samples(field: NerfField, m: MarchedSamples, rays: RayBundle, background: Background = None,
                  camera_indices: Optional[Tensor] = None) -> dict[str, Tensor]:
    """Evaluate the field on marched bins and composite them (see :func:`render_rays`)."""
    cams = None if camera_indices is None else camera_indices[m.ray_indices]
    if len(m):
        sigma, rgb = field(m.positions(rays), rays.directions[m.ray_indices], cams)
    else:  # nothing to shade (e.g. every ray misses the occupied cells)
        sigma, rgb = rays.origins.new_zeros(0), rays.origins.new_zeros(0, 3)
    layout = m.layout()
    samples = m.padded_samples(layout)
    # compositing in float32 whatever the networks ran in (mixed precision)
    out = render_samples(m.pad(sigma.float(), layout=layout), m.pad(rgb.float(), layout=layout), samples,
                         background=background)
    out["num_samples"] = len(m)
    return out


def march_step_and_grid_threshold(aabb, num_steps: int, alpha_threshold: float) -> tuple[float, float]:
    """The ray-marching step (the box diagonal / ``num_steps``, world units: the largest candidate
    bin in box scenes) and the occupancy-grid density threshold: the density whose opacity over one
    such step, ``1 - exp(-sigma * step)``, equals ``alpha_threshold`` (1 / world units).
    ``aabb``: (2, 3) tensor, min and max corners."""
    step = float((aabb[1] - aabb[0]).norm()) / num_steps
    return step, -math.log(1.0 - alpha_threshold) / step


def grid_cells_to_update(step: int, warmup_steps: int, num_cells: int, fraction: float) -> Optional[int]:
    """How many occupancy-grid cells a refresh at ``step`` re-estimates (recon3d's schedule): all of
    them (``None``) during the first ``warmup_steps``, then ``int(num_cells * fraction)`` random ones."""
    return None if step < warmup_steps else int(num_cells * fraction)
