"""Iso-surface extraction on a regular grid (marching cubes), for SDFs, densities and occupancies.

One entry point, :func:`extract_isosurface`, shared by the SDF, NeRF and feed-forward methods::

    mesh = extract_isosurface(lambda p: sdf_net(p), aabb=[[-1, -1, -1], [1, 1, 1]], resolution=256,
                              level=0.0, inside="below")          # SDF: negative inside
    mesh = extract_isosurface(density_grid, aabb, level=10.0, inside="above")  # a precomputed grid

The field is evaluated at the grid's nodes (``resolution`` nodes per axis, the first and last on
the box's faces), in chunks, optionally on a GPU. Faces are oriented counter-clockwise seen from
outside, so normals point out of the region ``inside`` names. Uses scikit-image's
``measure.marching_cubes`` (Lewiner et al.).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np

from .types import TriangleMesh

Field = Union[Callable, np.ndarray]


def grid_points(aabb, resolution: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """The node coordinates of a regular grid over ``aabb``.

    Returns ``(axes_min, spacing, shape)``: node (i, j, k) is at ``axes_min + (i, j, k) * spacing``.
    """
    lo, hi = _aabb(aabb)
    res = _resolution(resolution)
    spacing = (hi - lo) / (np.asarray(res, dtype=np.float64) - 1)
    return lo, spacing, res


def _aabb(aabb) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(aabb, "detach"):
        aabb = aabb.detach().cpu().numpy()
    a = np.asarray(aabb, dtype=np.float64)
    if a.shape != (2, 3) or not np.isfinite(a).all() or (a[1] <= a[0]).any():
        raise ValueError(f"aabb must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min, got {a.tolist()}")
    return a[0], a[1]


def _resolution(resolution) -> tuple[int, int, int]:
    r = np.broadcast_to(np.asarray(resolution, dtype=np.int64), (3,))
    if (r < 2).any():
        raise ValueError(f"resolution must be >= 2 nodes per axis, got {resolution}")
    return int(r[0]), int(r[1]), int(r[2])


def evaluate_grid(fn: Callable, aabb, resolution: int | Sequence[int], chunk: int = 262_144,
                  device=None) -> np.ndarray:
    """Evaluate ``fn`` on the grid nodes; returns a (X, Y, Z) float32 array.

    ``fn`` takes (M, 3) points and returns (M,) or (M, 1) values. If ``device`` is given (or ``fn``
    is a ``torch.nn.Module``), points are passed as float32 torch tensors on that device under
    ``torch.no_grad()``; otherwise as float32 numpy arrays. Torch outputs are accepted either way.
    """
    lo, spacing, res = grid_points(aabb, resolution)
    use_torch = device is not None
    torch = None
    if not use_torch:
        try:
            import torch as _torch

            if isinstance(fn, _torch.nn.Module):
                use_torch = True
                device = next(fn.parameters(), _torch.empty(0)).device
        except ImportError:  # pragma: no cover - torch is a hard dependency of recon3d
            pass
    if use_torch:
        import torch
    out = np.empty(int(np.prod(res)), dtype=np.float32)
    nyz = res[1] * res[2]
    xs = lo[0] + np.arange(res[0]) * spacing[0]
    yz = np.stack(np.meshgrid(lo[1] + np.arange(res[1]) * spacing[1], lo[2] + np.arange(res[2]) * spacing[2],
                              indexing="ij"), axis=-1).reshape(-1, 2)
    # chunks are whole x-slabs when they fit, else slices of one slab
    flat_start = 0
    for i in range(res[0]):
        for s in range(0, nyz, max(chunk, 1)):
            e = min(s + chunk, nyz)
            pts = np.concatenate([np.full((e - s, 1), xs[i]), yz[s:e]], axis=1).astype(np.float32)
            if use_torch:
                with torch.no_grad():
                    v = fn(torch.from_numpy(pts).to(device))
            else:
                v = fn(pts)
            if hasattr(v, "detach"):
                v = v.detach().float().cpu().numpy()
            v = np.asarray(v, dtype=np.float32).reshape(-1)
            if v.shape[0] != e - s:
                raise ValueError(f"the field returned {v.shape[0]} values for {e - s} points")
            out[flat_start + s:flat_start + e] = v
        flat_start += nyz
    return out.reshape(res)


def extract_isosurface(
    field: Field,
    aabb,
    resolution: int | Sequence[int] = 128,
    level: float = 0.0,
    inside: str = "below",
    chunk: int = 262_144,
    device=None,
    min_component_faces: int = 0,
) -> TriangleMesh:
    """Triangle mesh of the surface ``field == level`` inside ``aabb``.

    Args:
        field: a callable ``(M, 3) points -> (M,) values`` (numpy, or torch with ``device``), or a
            precomputed (X, Y, Z) grid of values at the nodes of the grid over ``aabb``.
        aabb: (2, 3) box ``[min, max]``, world units (normalized frame).
        resolution: nodes per axis (int or 3 ints); ignored for a precomputed grid.
        level: iso value (0 for SDFs; a density / occupancy threshold otherwise).
        inside: ``"below"`` when the solid is where ``field < level`` (SDFs), ``"above"`` when it is
            where ``field > level`` (densities, occupancies). Normals point out of the solid.
        chunk: points per evaluation call.
        device: torch device for callable fields (see :func:`evaluate_grid`).
        min_component_faces: drop connected components with fewer faces (0 keeps all).
    Returns:
        :class:`TriangleMesh` with vertex normals; ``metadata`` records the grid and level.
    Raises:
        ValueError: the level is not crossed inside the box (no surface), bad arguments.
        ImportError: scikit-image is missing.
    """
    if inside not in ("below", "above"):
        raise ValueError(f"inside must be 'below' or 'above', got {inside!r}")
    try:
        from skimage.measure import marching_cubes
    except ImportError as e:  # pragma: no cover
        raise ImportError("extract_isosurface needs scikit-image: pip install scikit-image") from e
    if callable(field):
        grid = evaluate_grid(field, aabb, resolution, chunk=chunk, device=device)
    else:
        grid = field.detach().cpu().numpy() if hasattr(field, "detach") else np.asarray(field)
        grid = grid.astype(np.float32, copy=False)
        if grid.ndim != 3 or min(grid.shape) < 2:
            raise ValueError(f"a field grid must be (X, Y, Z) with >= 2 nodes per axis, got {grid.shape}")
    lo, spacing, res = grid_points(aabb, grid.shape)
    finite = np.isfinite(grid)
    if not finite.all():  # marching cubes cannot cross NaN/inf: treat them as "outside"
        if not finite.any():
            raise ValueError("no surface: the field has no finite value")
        fill = grid[finite].max() if inside == "below" else grid[finite].min()
        grid = np.where(finite, grid, fill).astype(np.float32)
    gmin, gmax = float(grid.min()), float(grid.max())
    if not (gmin < level < gmax):
        raise ValueError(f"no surface: the field ranges over [{gmin:.4g}, {gmax:.4g}] and never crosses level {level}")
    # skimage: with "descent" faces are counter-clockwise seen from the high-value side ("ascent":
    # from the low-value side), while its normals always point toward decreasing values (both
    # checked in tests/test_mesh_marching_cubes.py).
    verts, faces, normals, _ = marching_cubes(
        grid, level=level, spacing=tuple(float(s) for s in spacing),
        gradient_direction="descent" if inside == "below" else "ascent", allow_degenerate=False)
    if inside == "below":
        normals = -normals
    verts = verts + lo
    mesh = TriangleMesh(verts, faces.astype(np.int64), vertex_normals=normals,
                        metadata={"extraction": "marching_cubes", "level": float(level), "resolution": list(res),
                                  "aabb": [lo.tolist(), (lo + spacing * (np.asarray(res) - 1)).tolist()]})
    if min_component_faces > 0:
        from .ops import remove_small_components

        mesh = remove_small_components(mesh, min_faces=min_component_faces)
    return mesh


__all__ = ["extract_isosurface", "evaluate_grid", "grid_points"]
