"""Input encodings for neural fields: multiresolution hash grid, spherical harmonics, frequencies.

Hash grid (Instant-NGP style). ``L`` levels with resolutions growing geometrically from
``base_resolution`` to ``max_resolution``; level ``l`` cuts the unit cube into ``N_l`` cells per
axis, so it has ``(N_l + 1)^3`` grid vertices, each owning ``F`` trainable features. A point's
level feature is the trilinear interpolation of its cell's 8 corner features. Vertices are stored

  * densely (index ``x + y (N+1) + z (N+1)^2``) on coarse levels whose ``(N + 1)^3`` vertices fit in
    the level's table of ``2^log2_hashmap_size`` rows: no collisions, no wasted rows;
  * hashed on finer levels: ``(x * 1) xor (y * 2654435761) xor (z * 805459861)``, masked to the
    table size (the spatial hash of Teschner et al. used by Instant-NGP). Collisions are resolved
    by training: gradients of colliding points add up in the shared row.

All levels live in one flat ``(rows, F)`` parameter so a lookup is one gather over ``N * L * 8``
rows. The PyTorch formulation runs on CPU and GPU, is differentiable w.r.t. the table and the input
positions (also twice, for eikonal losses), and fuses well under ``torch.compile``.

On CPU, when the positions need no gradient (NeRF: ray samples), the lookup and its backward run in
the compiled kernel ``recon3d/core/csrc/hashgrid_cpu.cpp`` (:mod:`recon3d.core.native`; the same
indices and weights, threads over points forward and over levels backward, so no write conflicts):
several times faster than the gather and its scatter-add backward
(``scripts/bench_nerf_hot_path.py``). ``RECON3D_HASHGRID=torch`` forces the PyTorch path.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch
from torch import Tensor, nn

from .gaussians.sh import sh_basis

HASH_PRIMES = (1, 2654435761, 805459861)
ENV_HASHGRID = "RECON3D_HASHGRID"  # "auto" (default), "cpp" or "torch"


def _use_native(x: Tensor, table: Tensor) -> bool:
    mode = os.environ.get(ENV_HASHGRID, "auto").strip().lower() or "auto"
    if mode not in ("auto", "cpp", "torch"):
        raise ValueError(f"{ENV_HASHGRID}={mode!r} is not one of auto, cpp, torch")
    if mode == "torch" or x.device.type != "cpu" or x.requires_grad or x.dtype != table.dtype:
        return False
    if table.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling():
        return False
    from .native import native_status

    return native_status().usable


class _HashGridCpp(torch.autograd.Function):
    """``(x (N, 3), table (rows, F)) -> (N, L * F)`` in the compiled kernel (gradient for the table only)."""

    @staticmethod
    def forward(ctx, x, table, params):
        from .native import native_status

        lib = native_status().lib
        res, hashed, strides, offsets, mask, L = params
        x = x.contiguous()
        F = table.shape[1]
        out = torch.empty(x.shape[0], L * F, dtype=table.dtype)
        sfx = "f32" if table.dtype == torch.float32 else "f64"
        res_t = res.to(table.dtype)
        getattr(lib, f"hg_forward_{sfx}")(x.shape[0], x.data_ptr(), L, F, table.data_ptr(), res_t.data_ptr(),
                                          hashed.data_ptr(), strides.data_ptr(), offsets.data_ptr(), mask,
                                          out.data_ptr(), torch.get_num_threads())
        ctx.save_for_backward(x, res_t)
        ctx.params = params
        ctx.table_shape = table.shape
        return out

    @staticmethod
    def backward(ctx, gout):
        from .native import native_status

        lib = native_status().lib
        x, res_t = ctx.saved_tensors
        _, hashed, strides, offsets, mask, L = ctx.params
        rows, F = ctx.table_shape
        g = gout.reshape(x.shape[0], L, F).transpose(0, 1).contiguous().to(res_t.dtype)  # (L, N, F)
        gtab = torch.zeros(rows, F, dtype=res_t.dtype)
        sfx = "f32" if res_t.dtype == torch.float32 else "f64"
        getattr(lib, f"hg_backward_{sfx}")(x.shape[0], x.data_ptr(), L, F, res_t.data_ptr(), hashed.data_ptr(),
                                           strides.data_ptr(), offsets.data_ptr(), mask, g.data_ptr(),
                                           gtab.data_ptr(), torch.get_num_threads())
        return None, gtab, None


def _level_resolutions(num_levels: int, base: int, finest: int) -> list[int]:
    if num_levels == 1:
        return [int(base)]
    growth = math.exp((math.log(finest) - math.log(base)) / (num_levels - 1))
    return [int(math.floor(base * growth**lvl + 1e-6)) for lvl in range(num_levels)]


def _corner_grid(pos: Tensor, res: Tensor, strides: Tensor, hashed: bool, mask: int) -> tuple[Tensor, Tensor]:
    """Row indices and trilinear weights of the 8 cell corners, for one group of levels.

    Args:
        pos: (N, G, 3) positions in grid units (0 .. resolution) for G levels.
        res: (G,) resolutions (cells per axis); points on the far faces (``pos == res``) use the
            last cell (with weight 1 on its far corners), so no vertex index exceeds ``res``.
        strides: (G, 3) int64 per-axis multipliers (dense strides or hash primes).
        hashed: xor-combine (hash) instead of add (dense).
        mask: ``table_size - 1`` (hashed levels only).
    Returns:
        idx: (N, G, 8) int64 row index within each level; w: (N, G, 8) weights (sum to 1).
    Corner ``c = 4 * bz + 2 * by + bx`` is the vertex ``floor(pos) + (bx, by, bz)``.
    """
    n, g = pos.shape[:2]
    p0 = torch.minimum(torch.floor(pos), (res - 1.0)[None, :, None])
    frac = pos - p0
    base = p0.long()
    lohi = torch.stack([base, base + 1], dim=-1) * strides[None, :, :, None]  # (N, G, 3, 2)
    cx, cy, cz = lohi[:, :, 0], lohi[:, :, 1], lohi[:, :, 2]
    if hashed:
        idx = (cz[:, :, :, None, None] ^ cy[:, :, None, :, None] ^ cx[:, :, None, None, :]) & mask
    else:
        idx = cz[:, :, :, None, None] + cy[:, :, None, :, None] + cx[:, :, None, None, :]
    wt = torch.stack([1.0 - frac, frac], dim=-1)  # (N, G, 3, 2)
    w = wt[:, :, 2, :, None, None] * wt[:, :, 1, None, :, None] * wt[:, :, 0, None, None, :]
    return idx.reshape(n, g, 8), w.reshape(n, g, 8)


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding of points in the unit cube.

    Args:
        num_levels: L.
        features_per_level: F.
        log2_hashmap_size: table rows per level (hashed levels); coarse levels use fewer, dense rows.
        base_resolution, max_resolution: cells per axis of the coarsest / finest level.
        init_scale: features start uniform in ``[-init_scale, init_scale]``.
        seed: seed of the initialization (the encoding is deterministic given it).

    Input ``(..., 3)`` positions in [0, 1] (clamped); output ``(..., L * F)`` features, level-major.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, init_scale: float = 1e-4, seed: int = 0):
        super().__init__()
        if num_levels < 1 or features_per_level < 1 or not 4 <= log2_hashmap_size <= 30:
            raise ValueError("need num_levels >= 1, features_per_level >= 1, 4 <= log2_hashmap_size <= 30")
        if not 1 <= base_resolution <= max_resolution:
            raise ValueError(f"need 1 <= base_resolution ({base_resolution}) <= max_resolution ({max_resolution})")
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.resolutions = _level_resolutions(num_levels, base_resolution, max_resolution)
        table_size = 2**log2_hashmap_size
        sizes, self.dense_levels, self.hashed_levels = [], [], []
        for lvl, res in enumerate(self.resolutions):
            if (res + 1) ** 3 <= table_size:
                self.dense_levels.append(lvl)
                sizes.append((res + 1) ** 3)
            else:
                self.hashed_levels.append(lvl)
                sizes.append(table_size)
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        self.level_sizes = sizes
        gen = torch.Generator().manual_seed(seed)
        table = (torch.rand(sum(sizes), features_per_level, generator=gen) * 2 - 1) * init_scale
        self.table = nn.Parameter(table)
        self._groups = []  # (name, levels, hashed)
        for name, levels, hashed in (("dense", self.dense_levels, False), ("hashed", self.hashed_levels, True)):
            if not levels:
                continue
            res = torch.tensor([self.resolutions[lv] for lv in levels], dtype=torch.float32)
            if hashed:
                strides = torch.tensor(HASH_PRIMES, dtype=torch.int64).expand(len(levels), 3).clone()
            else:
                r1 = res.long() + 1
                strides = torch.stack([torch.ones_like(r1), r1, r1 * r1], dim=-1)
            self.register_buffer(f"_{name}_res", res, persistent=False)
            self.register_buffer(f"_{name}_strides", strides, persistent=False)
            self.register_buffer(f"_{name}_offsets", torch.tensor([offsets[lv] for lv in levels]), persistent=False)
            self._groups.append((name, levels, hashed))
        order = [lv for _, levels, _ in self._groups for lv in levels]
        self._perm: Optional[list[int]] = None if order == sorted(order) else [order.index(lv) for lv in range(num_levels)]
        # the groups' per-level parameters in level order, for the compiled kernel
        def level_major(key: str) -> Tensor:
            t = torch.cat([getattr(self, f"_{name}_{key}") for name, _, _ in self._groups])
            return (t if self._perm is None else t[self._perm]).contiguous()

        hashed = torch.tensor([lv in self.hashed_levels for lv in range(num_levels)], dtype=torch.int32)
        self._native_params = (level_major("res"), hashed, level_major("strides"), level_major("offsets"),
                               table_size - 1, num_levels)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def corners(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) unit-cube points -> global row indices (N, L, 8) and trilinear weights (N, L, 8)."""
        x = x.clamp(0.0, 1.0)
        mask = 2**self.log2_hashmap_size - 1
        idxs, ws = [], []
        for name, _, hashed in self._groups:
            res = getattr(self, f"_{name}_res")
            idx, w = _corner_grid(x[:, None, :] * res[None, :, None], res, getattr(self, f"_{name}_strides"), hashed,
                                  mask)
            idxs.append(idx + getattr(self, f"_{name}_offsets")[None, :, None])
            ws.append(w)
        idx, w = (idxs[0], ws[0]) if len(idxs) == 1 else (torch.cat(idxs, 1), torch.cat(ws, 1))
        if self._perm is not None:
            idx, w = idx[:, self._perm], w[:, self._perm]
        return idx, w

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        x = x.reshape(-1, 3)
        if _use_native(x, self.table):
            return _HashGridCpp.apply(x, self.table, self._native_params).reshape(*shape, self.output_dim)
        idx, w = self.corners(x)
        feats = (self.table[idx] * w[..., None].to(self.table.dtype)).sum(dim=2)  # (N, L, F)
        return feats.reshape(*shape, self.output_dim)

    def extra_repr(self) -> str:
        return (f"levels={self.num_levels}, features={self.features_per_level}, log2_T={self.log2_hashmap_size}, "
                f"resolutions={self.resolutions[0]}..{self.resolutions[-1]}, dense_levels={len(self.dense_levels)}")


class SHEncoding(nn.Module):
    """Real spherical-harmonic basis of unit directions, degrees 0..``degree`` (at most 3).

    Input ``(..., 3)`` directions (normalized here); output ``(..., (degree + 1)^2)``. Same basis
    (ordering, constants) as :func:`recon3d.core.gaussians.sh.sh_basis`.
    """

    def __init__(self, degree: int = 3):
        super().__init__()
        self.degree = degree

    @property
    def output_dim(self) -> int:
        return (self.degree + 1) ** 2

    def forward(self, directions: Tensor) -> Tensor:
        return sh_basis(self.degree, directions)


class FrequencyEncoding(nn.Module):
    """NeRF positional encoding ``[x, sin(2^k x), cos(2^k x)]`` for k = 0 .. num_frequencies - 1.

    Input ``(..., D)``; output ``(..., D * (1 + 2 K))`` (``D * 2 K`` without ``include_input``).
    """

    def __init__(self, in_dim: int = 3, num_frequencies: int = 6, include_input: bool = True):
        super().__init__()
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        self.register_buffer("_freqs", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.in_dim * (2 * self.num_frequencies + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        xf = (x[..., None, :] * self._freqs[:, None]).flatten(-2)  # (..., K * D)
        parts = [torch.sin(xf), torch.cos(xf)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)
