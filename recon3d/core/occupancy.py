"""Occupancy-grid ray marching (Instant-NGP style) over a :class:`~recon3d.core.fields.SceneBox`,
in terms of :mod:`recon3d.core.sampling`:

1. candidate bins: :func:`~recon3d.core.sampling.uniform_samples` between the ray's near and far
   (``linear`` spacing inside a bounding box, ``contracted`` spacing for unbounded scenes);
2. a bin is kept when its midpoint falls in an occupied cell; skipped bins count as empty space;
3. (optionally) the kept bins are shaded once without gradient and bins behind an opaque surface
   (transmittance below ``eps``) or nearly transparent ones are dropped, see :meth:`MarchedSamples.prune`.

Kept bins are *packed* (``M`` bins of all rays in ray order, with their ray index); networks run on
the packed points only, and :meth:`MarchedSamples.pad` lays per-bin values out as ``(R, S)`` for the
shared quadrature of :mod:`recon3d.core.volume_rendering` (padding bins have zero length, so zero weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from .cameras import Cameras
from .fields import SceneBox
from .rays import RayBundle
from .sampling import RaySamples, uniform_samples
from .volume_rendering import weights_from_densities


# ---------------------------------------------------------------------------------------------
# Packed samples
# ---------------------------------------------------------------------------------------------
@dataclass
class MarchedSamples:
    """``M`` bins kept by ray marching, packed in ray order.

    Attributes:
        ray_indices: (M,) int64 ray of each bin, non-decreasing.
        t_starts, t_ends: (M,) bin bounds along the ray, world units.
        num_rays: R, the size of the ray batch.
        fill: (R,) distance used for padding bins (each ray's far bound).
        cell_density: optional (M,) occupancy-grid density estimate at each bin (1 / world units).
    """

    ray_indices: Tensor
    t_starts: Tensor
    t_ends: Tensor
    num_rays: int
    fill: Tensor
    cell_density: Optional[Tensor] = None

    def __len__(self) -> int:
        return self.ray_indices.shape[0]

    @property
    def t_mid(self) -> Tensor:
        return 0.5 * (self.t_starts + self.t_ends)

    def positions(self, rays: RayBundle) -> Tensor:
        """(M, 3) world points at the bin midpoints (``rays`` flat, (R,) leading shape)."""
        return rays.origins[self.ray_indices] + rays.directions[self.ray_indices] * self.t_mid[:, None]

    def counts(self) -> Tensor:
        """(R,) bins per ray."""
        return torch.bincount(self.ray_indices, minlength=self.num_rays)

    def select(self, keep: Tensor) -> "MarchedSamples":
        cd = None if self.cell_density is None else self.cell_density[keep]
        return MarchedSamples(self.ray_indices[keep], self.t_starts[keep], self.t_ends[keep], self.num_rays, self.fill, cd)

    def _layout(self) -> tuple[Tensor, int]:
        counts = self.counts()
        width = int(counts.max()) if len(self) else 0
        first = torch.cumsum(counts, 0) - counts  # (R,) index of each ray's first bin
        col = torch.arange(len(self), device=self.ray_indices.device) - first[self.ray_indices]
        return self.ray_indices * max(width, 1) + col, max(width, 1)

    def pad(self, values: Tensor, fill: float = 0.0, layout: Optional[tuple[Tensor, int]] = None) -> Tensor:
        """(M, ...) per-bin values -> (R, S, ...) with ``fill`` in the padding (S = most bins of a ray)."""
        flat, width = self._layout() if layout is None else layout
        out = values.new_full((self.num_rays * width, *values.shape[1:]), fill)
        out = out.index_copy(0, flat, values) if values.requires_grad else out.index_copy_(0, flat, values)
        return out.reshape(self.num_rays, width, *values.shape[1:])

    def unpad(self, padded: Tensor, layout: Optional[tuple[Tensor, int]] = None) -> Tensor:
        """(R, S, ...) -> (M, ...): the inverse of :meth:`pad`."""
        flat, _ = self._layout() if layout is None else layout
        return padded.reshape(-1, *padded.shape[2:])[flat]

    def padded_samples(self, layout: Optional[tuple[Tensor, int]] = None) -> RaySamples:
        """(R, S) RaySamples of the kept bins; padding bins are ``[far, far]`` (zero length)."""
        flat, width = self._layout() if layout is None else layout
        fill = self.fill[:, None].expand(self.num_rays, width).reshape(-1)
        starts = fill.index_copy(0, flat, self.t_starts).reshape(self.num_rays, width)
        ends = fill.index_copy(0, flat, self.t_ends).reshape(self.num_rays, width)
        return RaySamples(starts, ends)

    def layout(self) -> tuple[Tensor, int]:
        """The padding layout, to reuse across several :meth:`pad` calls."""
        return self._layout()

    @torch.no_grad()
    def prune(self, densities: Tensor, eps: float = 1e-4, alpha_threshold: float = 0.0) -> "MarchedSamples":
        """Drop bins that cannot matter: those reached by less than ``eps`` of the light, and those
        whose opacity is at most ``alpha_threshold``.

        Args:
            densities: (M,) densities of the bins (1 / world units), e.g. from a no-grad pass.
        """
        if len(self) == 0:
            return self
        layout = self._layout()
        deltas = self.t_ends - self.t_starts
        w, trans = weights_from_densities(self.pad(densities, layout=layout), self.pad(deltas, layout=layout),
                                          return_transmittance=True)
        trans = self.unpad(trans, layout)
        keep = trans > eps
        if alpha_threshold > 0:
            alpha = -torch.expm1(-(densities * deltas).clamp_min(0))
            keep &= alpha > alpha_threshold
        return self.select(keep)


    @torch.no_grad()
    def prune_lagged(self, densities: Tensor, lag: float, eps: float = 1e-4) -> "MarchedSamples":
        """Drop bins lying more than ``lag`` behind the point where ``densities`` make a ray opaque.

        Meant for cheap, *conservative-ish* estimates such as the occupancy grid's per-cell densities
        (:attr:`cell_density`): a bin at ``t`` is kept while the light left at ``t - lag`` (from
        the estimates) exceeds ``eps``. ``lag`` (world units; e.g. two grid cells) protects the
        bins of a cell whose estimate is high only because of matter at its far side.
        """
        if len(self) == 0:
            return self
        layout = self._layout()
        tau = self.pad(densities.float() * (self.t_ends - self.t_starts), layout=layout).cumsum(dim=-1)  # (R, S)
        samples = self.padded_samples(layout)
        before = (samples.t_starts - lag).contiguous()
        k = torch.searchsorted(samples.t_ends.contiguous(), before, right=True) - 1  # last bin ending by t - lag
        tau_lag = torch.where(k >= 0, tau.gather(-1, k.clamp_min(0)), torch.zeros_like(tau))
        keep = self.unpad(torch.exp(-tau_lag) > eps, layout)
        return self.select(keep)


def _packed_from_mask(samples: RaySamples, keep: Tensor, fill: Tensor, values: Optional[Tensor] = None) -> MarchedSamples:
    rays, cols = keep.nonzero(as_tuple=True)  # row-major: ray order, then along the ray
    extra = None if values is None else values[rays, cols]
    return MarchedSamples(rays, samples.t_starts[rays, cols], samples.t_ends[rays, cols], keep.shape[0], fill, extra)


# ---------------------------------------------------------------------------------------------
# Occupancy grid
# ---------------------------------------------------------------------------------------------
class OccupancyGrid(nn.Module):
    """A ``resolution^3`` grid over a :class:`SceneBox`'s unit cube marking cells that hold matter.

    Each cell keeps a running density estimate (``decay`` times its old value, maxed with fresh
    density samples at random points of the cell); a cell is occupied when its estimate exceeds
    ``min(threshold, mean estimate)``. Cells never seen by a training camera can be masked out for good
    (:meth:`mark_invisible`).

    Buffers (saved in the state dict): ``density`` (R^3,) float32, ``occupied`` (R^3,) bool,
    ``visible`` (R^3,) bool. Cell ``(i, j, k)`` (x, y, z) has flat index ``i + R j + R^2 k``.
    """

    def __init__(self, box: SceneBox, resolution: int = 128):
        super().__init__()
        self.box = box
        self.resolution = int(resolution)
        n = self.resolution**3
        self.register_buffer("density", torch.zeros(n))
        self.register_buffer("occupied", torch.ones(n, dtype=torch.bool))
        self.register_buffer("visible", torch.ones(n, dtype=torch.bool))
        self._compiled_lookup = None
        self._compiled_coarse = None
        self._occ_version = 0
        self._coarse_cache: Optional[tuple] = None
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._bump())

    @property
    def num_cells(self) -> int:
        return self.resolution**3

    def cell_size(self) -> float:
        """Diagonal of a cell in world units (of the inner box for contracted grids)."""
        aabb = self.box.aabb
        ext = (aabb[1] - aabb[0]) * (2.0 if self.box.contraction is not None else 1.0)
        return float(ext.norm()) / self.resolution

    def occupancy_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def _cell_index(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(..., 3) unit coords -> (...) flat cell index (clamped) and (...) inside-[0,1]^3 flag."""
        r = self.resolution
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        ijk = (u * r).long().clamp_(0, r - 1)
        return ijk[..., 0] + r * ijk[..., 1] + r * r * ijk[..., 2], inside

    def query(self, x: Tensor) -> Tensor:
        """(..., 3) world points -> (...) bool, True in occupied cells (False outside the grid)."""
        idx, inside = self._cell_index(self.box.to_unit(x))
        return self.occupied[idx] & inside

    def cell_points(self, cells: Tensor, jitter: bool = True, generator: Optional[torch.Generator] = None) -> Tensor:
        """(K,) flat cell indices -> (K, 3) world points (uniform in the cell, or its center)."""
        r = self.resolution
        ijk = torch.stack([cells % r, (cells // r) % r, cells // (r * r)], dim=-1).float()
        if jitter:
            off = torch.rand(ijk.shape, generator=generator, device="cpu").to(ijk.device)
        else:
            off = torch.full_like(ijk, 0.5)
        return self.box.from_unit((ijk + off) / r)

    @torch.no_grad()
    def mark_invisible(self, cameras: Cameras, near: float = 0.0, coarse: int = 32) -> float:
        """Mark cells that no camera sees (in front of it, inside its image) as permanently empty.

        Visibility is tested on a ``coarse^3`` block grid, conservatively: a block counts as seen
        when a sphere around it (its half diagonal) touches some camera's view. Returns the
        fraction of cells left visible.
        """
        r = self.resolution
        f = max(1, r // max(1, coarse))  # cells per block side
        coarse = -(-r // f)
        cams = cameras.to(self.density.device)
        ijk = torch.stack(torch.meshgrid(*[torch.arange(coarse)] * 3, indexing="ij"), -1).reshape(-1, 3).flip(-1)
        centers = self.box.from_unit((ijk.float().to(self.density.device) * f + 0.5 * f) / r)  # (B, 3), x fastest
        if self.box.contraction is None:
            radius = float((self.box.aabb[1] - self.box.aabb[0]).norm()) * f / r * 0.5
        else:
            radius = float("inf")  # contracted blocks are unbounded: keep everything
        w2c = cams.w2c
        pc = centers[None] @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]  # (C, B, 3)
        z = pc[..., 2]
        zs = z.clamp_min(1e-6)
        u = pc[..., 0] / zs * cams.fx[:, None] + cams.cx[:, None]
        v = pc[..., 1] / zs * cams.fy[:, None] + cams.cy[:, None]
        margin_u = radius / zs * cams.fx[:, None]
        margin_v = radius / zs * cams.fy[:, None]
        w, h = cams.width[:, None].float(), cams.height[:, None].float()
        seen = (z + radius > near) & (u >= -margin_u) & (u <= w + margin_u) & (v >= -margin_v) & (v <= h + margin_v)
        block = seen.any(dim=0).reshape(coarse, coarse, coarse)  # [z, y, x]
        full = block.repeat_interleave(f, 0).repeat_interleave(f, 1).repeat_interleave(f, 2)[:r, :r, :r]
        self.visible.copy_(full.reshape(-1))
        self.occupied &= self.visible
        self._bump()
        return float(self.visible.float().mean())

    @torch.no_grad()
    def carve(self, cameras: Cameras, alphas: list[Tensor], threshold: float = 0.02, max_dilation: int = 16) -> float:
        """Space carving: cells whose center projects onto background (alpha below ``threshold``)
        in any image that sees them, or into no image at all, are marked permanently empty
        (outside the visual hull).

        Args:
            cameras: C cameras; alphas: C (H, W) coverage maps in [0, 1] (alpha or 0/1 masks) of
                their sizes.
            threshold: coverage below which a pixel is background.
            max_dilation: the maps are max-pooled by each cell's projected radius so that cells
                straddling the silhouette survive; cells projecting larger than this many pixels
                are left alone by that view.
        Returns:
            the fraction of cells left visible.
        """
        if self.box.contraction is not None:
            raise ValueError("carving needs a bounded (uncontracted) grid")
        dev = self.density.device
        cams = cameras.to(dev)
        cells = self.visible.nonzero()[:, 0]  # still-possible cells: shrinks as views carve
        x = self.cell_points(cells, jitter=False)
        seen = torch.zeros(len(cells), dtype=torch.bool, device=dev)
        aabb = self.box.aabb.to(dev)
        half_diag = 0.5 * float((aabb[1] - aabb[0]).norm()) / self.resolution
        radii = torch.tensor([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32], device=dev)
        radii = radii[radii <= max_dilation]
        w2c = cams.w2c
        for i in range(len(cams)):
            a = torch.as_tensor(alphas[i], dtype=torch.float32, device=dev)[None, None]
            H, W = a.shape[-2:]
            # coverage max-pooled over each candidate radius: (K, H, W)
            pooled = torch.cat([a if k == 0 else torch.nn.functional.max_pool2d(a, 2 * int(k) + 1, 1, int(k))
                                for k in radii.tolist()], 1)[0]
            pc = x @ w2c[i, :3, :3].T + w2c[i, :3, 3]
            z = pc[:, 2]
            zs = z.clamp_min(1e-6)
            u = torch.floor(pc[:, 0] / zs * cams.fx[i] + cams.cx[i]).long()
            v = torch.floor(pc[:, 1] / zs * cams.fy[i] + cams.cy[i]).long()
            r_px = float(max(cams.fx[i], cams.fy[i])) * half_diag / zs + 0.5  # projected cell radius
            level = torch.searchsorted(radii.float(), r_px.contiguous())
            decidable = level < len(radii)
            inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & decidable
            cov = pooled[level.clamp(max=len(radii) - 1), v.clamp(0, H - 1), u.clamp(0, W - 1)]
            survive = ~(inside & (cov < threshold))
            seen |= (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            cells, x, seen = cells[survive], x[survive], seen[survive]
        cells = cells[seen]  # never in any image: unconstrained, dropped as well
        empty = torch.ones(self.num_cells, dtype=torch.bool, device=dev)
        empty[cells] = False
        self.visible &= ~empty
        self.occupied &= self.visible
        self._bump()
        return float(self.visible.float().mean())

    @torch.no_grad()
    def update(self, density_fn: Callable[[Tensor], Tensor], threshold: float, decay: float = 0.95,
               num_cells: Optional[int] = None, generator: Optional[torch.Generator] = None,
               chunk: int = 1 << 16) -> float:
        """Refresh the density estimates and the occupied set.

        Args:
            density_fn: (K, 3) world points -> (K,) or (K, 1) densities, 1 / world units.
            threshold: density above which a cell is occupied (capped by the mean estimate so that
                an untrained field is never all empty).
            decay: factor applied to every cell's estimate first.
            num_cells: cells to sample (half uniformly, half among the occupied); None, or at least
                the number of visible cells: every visible cell.
        Returns:
            the new occupied fraction.
        """
        dev = self.density.device
        n_visible = int(self.visible.sum())
        if num_cells is None or num_cells >= n_visible:
            cells = self.visible.nonzero()[:, 0]
        else:
            uniform = torch.randint(0, self.num_cells, (num_cells // 2,), generator=generator).to(dev)
            occ = self.occupied.nonzero()[:, 0]
            if len(occ):
                pick = torch.randint(0, len(occ), (num_cells - num_cells // 2,), generator=generator).to(dev)
                cells = torch.cat([uniform, occ[pick]])
            else:
                cells = uniform
        cells = cells[self.visible[cells]]
        x = self.cell_points(cells, jitter=True, generator=generator)
        sigma = torch.cat([density_fn(x[s:s + chunk]).reshape(-1).float() for s in range(0, len(x), chunk)]) \
            if len(x) else torch.zeros(0, device=dev)
        self.density.mul_(decay)
        # duplicates in ``cells`` keep the larger sample
        fresh = torch.zeros_like(self.density).scatter_reduce_(0, cells, sigma, reduce="amax", include_self=True)
        self.density.copy_(torch.maximum(self.density, fresh))
        mean = float(self.density[self.visible].mean()) if bool(self.visible.any()) else 0.0
        thr = min(float(threshold), mean)
        self.occupied.copy_((self.density > thr) & self.visible)
        self._bump()
        return self.occupancy_fraction()

    # ------------------------------------------------------------------ marching
    @torch.no_grad()
    def march(self, rays: RayBundle, nears: Tensor, fars: Tensor, num_steps: int, stratified: bool,
              generator: Optional[torch.Generator] = None, spacing: str = "linear",
              coarse_factor: int = 4) -> MarchedSamples:
        """Bins of the rays that lie in occupied cells.

        Args:
            rays: flat RayBundle of R rays.
            nears, fars: (R, 1) segment to march, world units (e.g. from :func:`intersect_aabb`).
            num_steps: candidate bins per ray, uniform in ``spacing`` between near and far
                (see :func:`recon3d.core.sampling.uniform_samples`).
            stratified: jitter the candidates (training).
            coarse_factor: march in two levels when possible (``linear`` spacing, bins no longer
                than a coarse cell): ``num_steps / coarse_factor`` bins are first tested against a
                coarse grid (occupancy max-pooled by ``coarse_factor`` and dilated by one coarse
                cell, so no occupied fine cell is missed), and only the bins that pass are cut into
                ``coarse_factor`` fine bins tested against this grid. 1 disables it.
        Returns:
            :class:`MarchedSamples` (no gradient: sampling decisions) with the grid's density
            estimates in ``cell_density``.
        """
        coarse = self._coarse_grid(coarse_factor, nears, fars, num_steps, spacing)
        fine = self._compiled_lookup or self._lookup
        if coarse is None:
            cand = uniform_samples(nears, fars, num_steps, stratified, generator=generator, spacing=spacing)
            keep, dens = fine(rays.origins, rays.directions, cand.t_starts, cand.t_ends)
            return _packed_from_mask(cand, keep, fars[:, 0], dens)
        f = coarse_factor
        cand = uniform_samples(nears, fars, num_steps // f, stratified, generator=generator, spacing=spacing)
        test = self._compiled_coarse or self._coarse_lookup
        hit = test(rays.origins, rays.directions, cand.t_starts, cand.t_ends, coarse)
        ray_of, col = hit.nonzero(as_tuple=True)
        s0, s1 = cand.t_starts[ray_of, col], cand.t_ends[ray_of, col]
        cuts = torch.arange(f + 1, device=s0.device, dtype=s0.dtype) / f
        edges = s0[:, None] + (s1 - s0)[:, None] * cuts  # (n, f + 1)
        fine_samples = RaySamples(edges[:, :-1].contiguous(), edges[:, 1:].contiguous())
        keep, dens = fine(rays.origins[ray_of], rays.directions[ray_of], fine_samples.t_starts, fine_samples.t_ends)
        m = _packed_from_mask(fine_samples, keep, fars[:, 0], dens)
        m.ray_indices = ray_of[m.ray_indices]
        m.num_rays = len(rays)
        return m

    def _coarse_grid(self, factor: int, nears: Tensor, fars: Tensor, num_steps: int, spacing: str) -> Optional[Tensor]:
        """The dilated coarse occupancy (Rc^3,) for two-level marching, or None when not applicable."""
        r = self.resolution
        if factor <= 1 or spacing != "linear" or r % factor or num_steps % factor or self.box.contraction:
            return None
        rc = r // factor
        side = float((self.box.aabb[1] - self.box.aabb[0]).min()) / rc
        if len(nears) and float((fars - nears).max()) / (num_steps // factor) > side:
            return None  # a coarse bin could skip over a coarse cell
        key = (factor, self._occ_version)
        if self._coarse_cache is None or self._coarse_cache[0] != key:
            occ = self.occupied.reshape(1, 1, r, r, r).float()
            pooled = torch.nn.functional.max_pool3d(occ, factor, factor)
            dilated = torch.nn.functional.max_pool3d(pooled, 3, 1, 1)
            self._coarse_cache = (key, dilated.reshape(-1) > 0)
        return self._coarse_cache[1]

    def _coarse_lookup(self, origins: Tensor, directions: Tensor, t_starts: Tensor, t_ends: Tensor,
                       coarse: Tensor) -> Tensor:
        """(R, K) bins -> (R, K) flags: the bin's midpoint is in a (dilated) occupied coarse cell."""
        rc = round(coarse.shape[0] ** (1.0 / 3.0))
        t = 0.5 * (t_starts + t_ends)
        u = self.box.to_unit(origins[:, None, :] + directions[:, None, :] * t[..., None])
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        ijk = (u * rc).long().clamp(0, rc - 1)
        idx = ijk[..., 0] + rc * ijk[..., 1] + rc * rc * ijk[..., 2]
        return coarse[idx] & inside & (t_ends > t_starts)

    def _lookup(self, origins: Tensor, directions: Tensor, t_starts: Tensor, t_ends: Tensor) -> tuple[Tensor, Tensor]:
        """(R, S) bins -> (R, S) occupied flags and (R, S) density estimates at their midpoints."""
        t = 0.5 * (t_starts + t_ends)
        x = origins[:, None, :] + directions[:, None, :] * t[..., None]
        idx, inside = self._cell_index(self.box.to_unit(x))
        return self.occupied[idx] & inside & (t_ends > t_starts), self.density[idx]

    def compile(self, enabled: bool = True) -> "OccupancyGrid":  # type: ignore[override]
        """Fuse the per-candidate lookups of :meth:`march` with ``torch.compile`` (dynamic shapes)."""
        self._compiled_lookup = torch.compile(self._lookup, dynamic=True) if enabled else None
        self._compiled_coarse = torch.compile(self._coarse_lookup, dynamic=True) if enabled else None
        return self

    def _bump(self, *args) -> None:
        """Note that ``occupied`` changed (invalidates the coarse grid of :meth:`march`)."""
        self._occ_version += 1
