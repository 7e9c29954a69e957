"""Where to look along a ray: ray/volume intersection, bin samplers, and scene contraction.

Conventions (shared with :mod:`recon3d.core.rays` and :mod:`recon3d.core.volume_rendering`):
  * a distance ``t`` is measured along a ray with unit direction, in world units;
  * a ray's samples are ``S`` *bins* ``[t_starts[i], t_ends[i]]``; the samplers here always return
    contiguous, sorted bins (``t_ends[..., i] == t_starts[..., i + 1]``) covering ``[near, far]``;
  * near/far bounds are ``(..., 1)`` tensors, per-sample quantities are ``(..., S)``.

Spacings. A sampler may place its bins uniformly in a warped coordinate ``s`` in ``[0, 1]`` instead of
in ``t`` (mip-NeRF 360 style): ``s = (g(t) - g(near)) / (g(far) - g(near))`` for a monotone ``g``:

  ``linear``      g(t) = t
  ``disparity``   g(t) = 1 / t                   (needs near > 0; dense near the camera)
  ``log``         g(t) = log t                   (needs near > 0)
  ``contracted``  g(t) = t for t < 1, 2 - 1/t    (linear inside the unit ball, disparity beyond:
                                                  matches :func:`contract` for rays from the origin)

:class:`RaySamples` keeps its :class:`Spacing`, so :func:`importance_samples` resamples in ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .rays import RayBundle

SPACINGS = ("linear", "disparity", "log", "contracted")
_T_MIN = 1e-6  # distances are clamped to this before 1/t or log t


# ---------------------------------------------------------------------------------------------
# Ray / volume intersection
# ---------------------------------------------------------------------------------------------
def _finish_interval(t0: Tensor, t1: Tensor, inside: Tensor, near_min: float) -> tuple[Tensor, Tensor, Tensor]:
    """Clamp an entry/exit interval to ``near_min`` and collapse misses to ``near = far = near_min``."""
    nears = torch.clamp(t0, min=near_min)
    hit = inside & (t1 > nears)
    fill = torch.full_like(nears, near_min)
    nears = torch.where(hit, nears, fill)
    fars = torch.where(hit, t1, fill)
    return nears[..., None], fars[..., None], hit


def intersect_aabb(
    origins: Tensor, directions: Tensor, aabb_min, aabb_max, near_min: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Ray / axis-aligned box intersection (slab method).

    Args:
        origins: (..., 3) ray origins, world units.
        directions: (..., 3) ray directions (unit length, so ``t`` is a world distance). Components
            may be exactly zero (axis-parallel rays); no NaNs arise from them.
        aabb_min, aabb_max: (3,) or broadcastable (..., 3) box corners, world units.
        near_min: smallest allowed near distance (e.g. 0 to ignore the part of the box behind the
            origin, or a camera near plane).

    Returns:
        nears, fars: (..., 1) entry / exit distances along the ray, ``near_min <= near < far`` for
            rays that hit. A ray starting inside the box gets ``near = near_min``.
        hit: (...,) bool, True where the ray crosses the box at distances beyond ``near_min``.
            Missing rays get ``near = far = near_min`` (an empty segment: zero-length bins).
    """
    lo = torch.as_tensor(aabb_min, dtype=origins.dtype, device=origins.device)
    hi = torch.as_tensor(aabb_max, dtype=origins.dtype, device=origins.device)
    parallel = directions == 0
    safe_dir = torch.where(parallel, torch.ones_like(directions), directions)
    ta = (lo - origins) / safe_dir
    tb = (hi - origins) / safe_dir
    slab_lo = torch.minimum(ta, tb)
    slab_hi = torch.maximum(ta, tb)
    # A ray parallel to a slab is inside it for all t (if its origin is between the planes) or never.
    in_slab = (origins >= lo) & (origins <= hi)
    inf = torch.full_like(slab_lo, float("inf"))
    slab_lo = torch.where(parallel, torch.where(in_slab, -inf, inf), slab_lo)
    slab_hi = torch.where(parallel, torch.where(in_slab, inf, -inf), slab_hi)
    t0 = slab_lo.amax(dim=-1)
    t1 = slab_hi.amin(dim=-1)
    return _finish_interval(t0, t1, t0 <= t1, near_min)


def intersect_sphere(
    origins: Tensor, directions: Tensor, center=(0.0, 0.0, 0.0), radius: float | Tensor = 1.0, near_min: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Ray / sphere intersection.

    Args:
        origins: (..., 3) ray origins, world units.
        directions: (..., 3) ray directions (need not be unit; ``t`` is in units of their length).
        center: (3,) or broadcastable (..., 3) sphere center, world units.
        radius: scalar or (...,) radius, world units.
        near_min: smallest allowed near distance.

    Returns:
        nears, fars: (..., 1) entry / exit distances (``near = near_min`` for rays starting inside).
        hit: (...,) bool. Missing rays (including tangent rays) get ``near = far = near_min``.
    """
    c = torch.as_tensor(center, dtype=origins.dtype, device=origins.device)
    r = torch.as_tensor(radius, dtype=origins.dtype, device=origins.device)
    oc = origins - c
    a = (directions * directions).sum(-1)
    b = (directions * oc).sum(-1)  # half of the usual linear coefficient
    cc = (oc * oc).sum(-1) - r * r
    disc = b * b - a * cc
    root = torch.sqrt(torch.clamp(disc, min=0.0))
    a_safe = torch.clamp(a, min=torch.finfo(a.dtype).tiny)
    t0 = (-b - root) / a_safe
    t1 = (-b + root) / a_safe
    return _finish_interval(t0, t1, disc > 0, near_min)


# ---------------------------------------------------------------------------------------------
# Spacings: t <-> s in [0, 1]
# ---------------------------------------------------------------------------------------------
def _contracted(t: Tensor) -> Tensor:
    return torch.where(t < 1, t, 2 - 1 / torch.clamp(t, min=1.0))


def _contracted_inv(y: Tensor) -> Tensor:
    return torch.where(y < 1, y, 1 / torch.clamp(2 - y, min=_T_MIN))


def spacing_fn(kind: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """The monotone warp ``g`` of a spacing and its inverse, both elementwise on distances.

    Args:
        kind: one of :data:`SPACINGS`.

    Returns:
        ``(g, g_inv)``. For ``disparity`` and ``log``, ``t`` is clamped to at least 1e-6 first.
    """
    if kind == "linear":
        return (lambda t: t), (lambda y: y)
    if kind == "disparity":
        return (lambda t: 1 / torch.clamp(t, min=_T_MIN)), (lambda y: 1 / y)
    if kind == "log":
        return (lambda t: torch.log(torch.clamp(t, min=_T_MIN))), torch.exp
    if kind == "contracted":
        return _contracted, _contracted_inv
    raise ValueError(f"unknown spacing {kind!r}; expected one of {SPACINGS}")


@dataclass
class Spacing:
    """A per-ray map between distances ``t`` and normalized spacing coordinates ``s`` in [0, 1].

    Attributes:
        kind: one of :data:`SPACINGS`.
        nears, fars: (..., 1) segment bounds, world units; ``s = 0`` at near and ``s = 1`` at far.
    """

    kind: str
    nears: Tensor
    fars: Tensor

    def t_to_s(self, t: Tensor) -> Tensor:
        """(..., S) distances -> (..., S) spacing coordinates (0 on empty segments)."""
        g, _ = spacing_fn(self.kind)
        g_near = g(self.nears)
        span = g(self.fars) - g_near
        empty = span == 0
        return torch.where(empty, torch.zeros_like(t), (g(t) - g_near) / torch.where(empty, 1.0, span))

    def s_to_t(self, s: Tensor) -> Tensor:
        """(..., S) spacing coordinates -> (..., S) distances, exactly near/far at s = 0/1."""
        g, g_inv = spacing_fn(self.kind)
        g_near = g(self.nears)
        t = g_inv(g_near + s * (g(self.fars) - g_near))
        t = torch.where(s <= 0, self.nears, t)
        return torch.where(s >= 1, self.fars, t)


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------
@dataclass
class RaySamples:
    """``S`` bins along each ray of a batch with leading shape ``(...)``.

    Attributes:
        t_starts, t_ends: (..., S) bin bounds as distances along the ray, world units, sorted.
        spacing: the :class:`Spacing` the bins were drawn in, or None (plain ``t``).
    """

    t_starts: Tensor
    t_ends: Tensor
    spacing: Optional[Spacing] = None

    @property
    def shape(self) -> torch.Size:
        """The leading ray shape ``(...)``."""
        return self.t_starts.shape[:-1]

    @property
    def num_samples(self) -> int:
        return self.t_starts.shape[-1]

    @property
    def t_mid(self) -> Tensor:
        """(..., S) bin midpoints, world units."""
        return 0.5 * (self.t_starts + self.t_ends)

    @property
    def deltas(self) -> Tensor:
        """(..., S) bin lengths, world units (the ``delta`` of the volume rendering quadrature)."""
        return self.t_ends - self.t_starts

    @property
    def edges(self) -> Tensor:
        """(..., S + 1) bin edges, assuming contiguous bins."""
        return torch.cat([self.t_starts[..., :1], self.t_ends], dim=-1)

    @property
    def s_starts(self) -> Optional[Tensor]:
        """(..., S) bin starts in spacing coordinates, or None without a spacing."""
        return None if self.spacing is None else self.spacing.t_to_s(self.t_starts)

    @property
    def s_ends(self) -> Optional[Tensor]:
        """(..., S) bin ends in spacing coordinates, or None without a spacing."""
        return None if self.spacing is None else self.spacing.t_to_s(self.t_ends)

    def positions(self, rays: RayBundle) -> Tensor:
        """(..., S, 3) world points at the bin midpoints of ``rays`` (leading shape ``(...)``)."""
        return rays.at(self.t_mid)

    def detach(self) -> "RaySamples":
        return RaySamples(self.t_starts.detach(), self.t_ends.detach(), self.spacing)


def _from_edges(edges: Tensor, spacing: Optional[Spacing]) -> RaySamples:
    return RaySamples(edges[..., :-1].contiguous(), edges[..., 1:].contiguous(), spacing)


def _stratified_grid(shape, num_bins: int, stratified: bool, generator, like: Tensor) -> Tensor:
    """(*shape, num_bins + 1) sorted values in [0, 1] with exact 0 and 1 ends.

    Deterministic: the uniform grid ``k / num_bins``. Stratified: each interior value is drawn
    uniformly within half a cell of its grid value, so values stay sorted and cover [0, 1].
    """
    grid = torch.linspace(0.0, 1.0, num_bins + 1, dtype=like.dtype, device=like.device)
    grid = grid.expand(*shape, num_bins + 1)
    if not stratified or num_bins < 2:
        return grid.contiguous()
    u = torch.rand(*shape, num_bins - 1, generator=generator, dtype=like.dtype, device=like.device)
    inner = grid[..., 1:-1] + (u - 0.5) / num_bins
    return torch.cat([grid[..., :1], inner, grid[..., -1:]], dim=-1)


def uniform_samples(
    nears: Tensor,
    fars: Tensor,
    num: int,
    stratified: bool,
    generator: Optional[torch.Generator] = None,
    spacing: str = "linear",
) -> RaySamples:
    """``num`` contiguous bins per ray between near and far, uniform in the chosen spacing.

    Args:
        nears, fars: (..., 1) segment bounds, world units (``near == far`` gives empty bins).
        num: number of bins S.
        stratified: jitter the interior bin edges by up to half a bin (training); otherwise the bins
            are the regular grid and their midpoints are deterministic (evaluation).
        generator: optional torch.Generator for the jitter (must live on the tensors' device).
        spacing: one of :data:`SPACINGS`; the grid is uniform in ``s`` (see module docstring).

    Returns:
        RaySamples with (..., S) ``t_starts``/``t_ends`` in world units, carrying its Spacing.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    nears, fars = torch.broadcast_tensors(nears, fars)
    sp = Spacing(spacing, nears, fars)
    s = _stratified_grid(nears.shape[:-1], num, stratified, generator, nears)
    return _from_edges(sp.s_to_t(s), sp)


# ---------------------------------------------------------------------------------------------
# Hierarchical (inverse CDF) sampling
# ---------------------------------------------------------------------------------------------
def _invert_cdf(edges: Tensor, cdf: Tensor, u: Tensor) -> Tensor:
    """Piecewise-linear inverse of a CDF given at bin edges.

    Args:
        edges: (N, S + 1) sorted bin edges; cdf: (N, S + 1) from 0 to 1, non-decreasing;
        u: (N, K) sorted query probabilities in [0, 1].

    Returns:
        (N, K) positions.
    """
    num_bins = edges.shape[-1] - 1
    idx = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, num_bins)
    c0, c1 = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    e0, e1 = edges.gather(-1, idx - 1), edges.gather(-1, idx)
    denom = c1 - c0
    frac = torch.where(denom > 0, (u - c0) / torch.where(denom > 0, denom, torch.ones_like(denom)), 0.0)
    return e0 + frac.clamp(0.0, 1.0) * (e1 - e0)


@torch.no_grad()
def importance_samples(
    samples: RaySamples,
    weights: Tensor,
    num: int,
    stratified: bool,
    include_existing: bool = False,
    eps: float = 1e-5,
    generator: Optional[torch.Generator] = None,
) -> RaySamples:
    """Hierarchical sampling: new bins placed by the inverse CDF of a coarse pass's weights.

    The weights define a piecewise-constant PDF over the existing (contiguous) bins, in spacing
    coordinates ``s`` when ``samples`` carries a :class:`Spacing`, else in ``t``. Every bin gets an
    extra ``eps`` of weight, so a ray with all-zero weights falls back to uniform bins. The result is
    computed without gradient (it is a sampling decision, not a function of the weights to train).

    Args:
        samples: RaySamples with (..., S) contiguous bins (as made by this module's samplers).
        weights: (..., S) or (..., S, 1) non-negative rendering weights of those bins.
        num: number of new samples.
        stratified: jitter the probability grid (training); otherwise it is deterministic.
        include_existing: if False, return ``num`` contiguous bins whose ``num + 1`` edges are the
            inverse CDF of a grid from 0 to 1 (so they span exactly [near, far]). If True, ``num``
            new points (inverse CDF of the cell centers ``(k + 0.5) / num``) are inserted as extra
            edges among the existing ``S + 1``, giving ``S + num`` contiguous bins.
        eps: weight added to every bin, relative to a total weight of ~1.
        generator: optional torch.Generator for the jitter.

    Returns:
        RaySamples with (..., num) or (..., S + num) sorted contiguous bins, world units, carrying
        the input's Spacing; detached from ``weights`` and ``samples``.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if weights.dim() == samples.t_starts.dim() + 1:
        weights = weights[..., 0]
    shape, num_bins = samples.shape, samples.num_samples
    t_edges = samples.edges.reshape(-1, num_bins + 1)
    spacing = samples.spacing
    edges = t_edges if spacing is None else samples.spacing.t_to_s(samples.edges).reshape(-1, num_bins + 1)

    w = torch.clamp(torch.nan_to_num(weights.detach(), nan=0.0), min=0.0).reshape(-1, num_bins) + eps
    cdf = torch.cumsum(w, dim=-1)
    cdf = torch.clamp(cdf / cdf[..., -1:], max=1.0)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf[..., :-1], torch.ones_like(cdf[..., :1])], dim=-1)

    n_rays = t_edges.shape[0]
    if include_existing:
        u = (torch.arange(num, dtype=w.dtype, device=w.device) + 0.5) / num
        u = u.expand(n_rays, num)
        if stratified:
            u = u + (torch.rand(n_rays, num, generator=generator, dtype=w.dtype, device=w.device) - 0.5) / num
    else:
        u = _stratified_grid((n_rays,), num, stratified, generator, w)
    new = _invert_cdf(edges, cdf, u)
    if spacing is not None:
        new = spacing.s_to_t(new.reshape(*shape, -1)).reshape(n_rays, -1)
    if include_existing:
        new = torch.cat([t_edges, new], dim=-1)
    new, _ = torch.sort(new, dim=-1)
    return _from_edges(new.reshape(*shape, -1), spacing)


# ---------------------------------------------------------------------------------------------
# Scene contraction (mip-NeRF 360)
# ---------------------------------------------------------------------------------------------
def _norm(x: Tensor, mode: str) -> Tensor:
    if mode == "l2":
        return torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if mode == "linf":
        return x.abs().amax(dim=-1, keepdim=True)
    raise ValueError(f"unknown contraction norm {mode!r}; expected 'l2' or 'linf'")


def contract(x: Tensor, mode: str = "l2") -> Tensor:
    """Map unbounded space into a ball (``l2``) or cube (``linf``) of radius 2.

    ``x`` is unchanged where ``|x| <= 1``; beyond, ``x -> (2 - 1/|x|) x / |x|``. Continuous with a
    continuous first derivative across ``|x| = 1``; differentiable everywhere (gradients finite at 0).

    Args:
        x: (..., 3) points, world units (scene normalized so the foreground is in the unit ball).
        mode: ``l2`` (Euclidean norm) or ``linf`` (max-abs norm; output in the cube [-2, 2]^3).

    Returns:
        (..., 3) contracted points, norm < 2.
    """
    n = _norm(x, mode)
    n_out = torch.clamp(n, min=1.0)  # keeps the unused branch finite (and its gradient zero) inside
    return torch.where(n <= 1, x, (2 - 1 / n_out) * (x / n_out))


def contract_inverse(y: Tensor, mode: str = "l2", max_norm: float = 2 - 1e-6) -> Tensor:
    """Inverse of :func:`contract`: (..., 3) contracted points -> (..., 3) world points.

    Args:
        y: (..., 3) points with norm < 2 (norms are clamped to ``max_norm`` to stay finite).
        mode: the norm used by :func:`contract`.
    """
    m = _norm(y, mode)
    m_out = torch.clamp(m, min=1.0, max=max_norm)
    return torch.where(m <= 1, y, y * (1 / (2 - m_out)) / m_out)
