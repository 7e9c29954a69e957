"""Level-set meshing of neural fields: sample a scalar function on a grid, extract the surface.

``extract_level_set(fn, aabb, resolution, level)`` evaluates ``fn`` on a ``resolution^3`` vertex grid
over the box and extracts ``{fn = level}`` as a :class:`recon3d.mesh.TriangleMesh` whose faces are
counter-clockwise seen from the side where ``fn > level`` ("outside": an SDF's exterior; pass
``-density`` for a density field). Extraction uses ``skimage.measure.marching_cubes`` when
scikit-image is installed, else :func:`marching_tetrahedra` (numpy, below).

Marching tetrahedra: every grid cube is cut into the 6 tetrahedra of the Kuhn (Freudenthal)
triangulation, all sharing the cube's main diagonal; neighbouring cubes then agree on shared faces,
so the surface is watertight wherever the level set stays inside the grid. A tetrahedron with one
vertex on the other side yields one triangle, two against two a quad (two triangles). Vertices lie
on grid-aligned, face-diagonal or body-diagonal edges, linearly interpolated, and are shared between
the tetrahedra that cut the same edge. It makes about twice the triangles of marching cubes.
"""

from __future__ import annotations

import itertools
import logging
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from recon3d.mesh.types import TriangleMesh

log = logging.getLogger(__name__)

# Kuhn triangulation of the unit cube: corner code = x + 2 y + 4 z; tetra = 0 -> +e_a -> +e_b -> 7.
_TETS = np.array([[0, 1 << a, (1 << a) | (1 << b), 7] for a, b, _ in itertools.permutations(range(3))])
_CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)])


def _build_triangle_table() -> np.ndarray:
    """(16, 2, 3, 2) local edges (vertex pairs) of up to 2 triangles per inside-set case; -1 pads."""
    table = -np.ones((16, 2, 3, 2), dtype=np.int64)
    for case in range(16):
        inside = [v for v in range(4) if case >> v & 1]
        outside = [v for v in range(4) if not case >> v & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table[case, 0] = [[lone, o] for o in others]
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            table[case, 0] = [[a, c], [a, d], [b, d]]
            table[case, 1] = [[a, c], [b, d], [b, c]]
    return table


_TRI_TABLE = _build_triangle_table()


def marching_tetrahedra(volume: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Extract ``{volume = level}`` from a (X, Y, Z) array.

    Returns:
        vertices: (V, 3) float64 in index coordinates (``volume[i, j, k]`` sits at (i, j, k));
        faces: (F, 3) int64, counter-clockwise seen from where ``volume > level``.
    """
    v = np.asarray(volume, dtype=np.float64) - level
    X, Y, Z = v.shape
    if min(X, Y, Z) < 2:
        raise ValueError(f"volume must be at least 2 x 2 x 2, got {v.shape}")
    inside = v < 0
    corner_in = [inside[dx:X - 1 + dx, dy:Y - 1 + dy, dz:Z - 1 + dz] for dx, dy, dz in _CORNERS]
    n_in = sum(c.astype(np.int8) for c in corner_in)
    ci, cj, ck = np.nonzero((n_in > 0) & (n_in < 8))
    if len(ci) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # global vertex ids of each active cube's corners, then of its 6 tetrahedra's vertices
    corner_ijk = np.stack([ci, cj, ck], -1)[:, None, :] + _CORNERS[None]  # (K, 8, 3)
    corner_gid = (corner_ijk[..., 0] * Y + corner_ijk[..., 1]) * Z + corner_ijk[..., 2]  # (K, 8)
    gid = corner_gid[:, _TETS].reshape(-1, 4)  # (K * 6, 4)
    vals = v.reshape(-1)[gid]
    case = ((vals < 0) * np.array([1, 2, 4, 8])).sum(-1)
    keep = (case > 0) & (case < 15)
    gid, vals, case = gid[keep], vals[keep], case[keep]
    tris = _TRI_TABLE[case]  # (T, 2, 3, 2)
    valid = tris[:, :, 0, 0] >= 0  # (T, 2)
    tet_of, slot = np.nonzero(valid)
    edges = tris[tet_of, slot]  # (F, 3, 2) local vertex pairs
    ga = gid[tet_of[:, None], edges[..., 0]]
    gb = gid[tet_of[:, None], edges[..., 1]]
    va = vals[tet_of[:, None], edges[..., 0]]
    vb = vals[tet_of[:, None], edges[..., 1]]
    lo, hi = np.minimum(ga, gb), np.maximum(ga, gb)
    key = lo * (X * Y * Z) + hi
    uniq, first, inverse = np.unique(key.reshape(-1), return_index=True, return_inverse=True)
    faces = inverse.reshape(-1, 3).astype(np.int64)

    def ijk(g: np.ndarray) -> np.ndarray:
        return np.stack([g // (Y * Z), (g // Z) % Y, g % Z], -1).astype(np.float64)

    fa, fb = ga.reshape(-1)[first], gb.reshape(-1)[first]
    wa, wb = va.reshape(-1)[first], vb.reshape(-1)[first]
    t = wa / (wa - wb)
    verts = ijk(fa) + t[:, None] * (ijk(fb) - ijk(fa))
    # orient: normals point from the tetrahedron's inside vertices to its outside ones
    tv = ijk(gid[tet_of])  # (F, 4, 3)
    tin = (vals[tet_of] < 0)[..., None]
    direction = (tv * ~tin).sum(1) / (~tin).sum(1) - (tv * tin).sum(1) / tin.sum(1)
    p = verts[faces]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (normal * direction).sum(-1) < 0
    faces[flip] = faces[flip][:, ::-1]
    area2 = np.linalg.norm(normal, axis=-1)
    return verts, faces[area2 > 1e-12]


def _orient_to_gradient(verts: np.ndarray, faces: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Flip faces whose normal points down the volume's gradient (index coordinates)."""
    grads = np.stack(np.gradient(volume.astype(np.float64)), -1)
    centroid = verts[faces].mean(1)
    idx = np.clip(np.round(centroid).astype(np.int64), 0, np.array(volume.shape) - 1)
    g = grads[idx[:, 0], idx[:, 1], idx[:, 2]]
    p = verts[faces]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (normal * g).sum(-1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def marching_cubes(volume: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, np.ndarray, str]:
    """Level set of a (X, Y, Z) array: skimage's marching cubes if available, else marching tetrahedra.

    Returns (vertices (V, 3) index coordinates, faces (F, 3) CCW seen from ``volume > level``, backend name).
    """
    vol = np.asarray(volume, dtype=np.float32)
    if not (vol.min() < level < vol.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), "none"
    try:
        from skimage.measure import marching_cubes as sk_marching_cubes
    except ImportError:
        verts, faces = marching_tetrahedra(vol, level)
        return verts, faces, "marching_tetrahedra"
    verts, faces, _, _ = sk_marching_cubes(vol, level)
    faces = _orient_to_gradient(verts.astype(np.float64), faces.astype(np.int64), vol)
    return verts.astype(np.float64), faces, "skimage"


@torch.no_grad()
def sample_grid(fn: Callable[[Tensor], Tensor], aabb: Tensor, resolution: int, chunk: int = 1 << 16) -> np.ndarray:
    """``fn`` on the ``resolution^3`` vertices of the box ``aabb`` (2, 3): (R, R, R) float32, [x, y, z] order."""
    aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).cpu()
    axes = [torch.linspace(float(aabb[0, d]), float(aabb[1, d]), resolution) for d in range(3)]
    out = np.empty(resolution**3, dtype=np.float32)
    yz = torch.stack(torch.meshgrid(axes[1], axes[2], indexing="ij"), -1).reshape(-1, 2)
    per_x = yz.shape[0]
    rows = max(1, chunk // per_x)
    for s in range(0, resolution, rows):
        xs = axes[0][s:s + rows]
        pts = torch.cat([xs[:, None, None].expand(-1, per_x, 1), yz[None].expand(len(xs), -1, -1)], -1).reshape(-1, 3)
        vals = torch.cat([fn(pts[c:c + chunk]).reshape(-1).float().cpu() for c in range(0, len(pts), chunk)])
        out[s * per_x:(s + len(xs)) * per_x] = vals.numpy()
    return out.reshape(resolution, resolution, resolution)


def extract_level_set(fn: Callable[[Tensor], Tensor], aabb: Tensor, resolution: int = 256, level: float = 0.0,
                      chunk: int = 1 << 16) -> TriangleMesh:
    """Mesh of ``{fn = level}`` in the box ``aabb`` (2, 3), faces CCW seen from ``fn > level``.

    Args:
        fn: (K, 3) world points -> (K,) values (called in chunks of ``chunk`` points, no gradient).
        resolution: grid vertices per axis.
    Returns:
        TriangleMesh in ``fn``'s world frame (empty if the level set does not cross the grid);
        ``metadata['marching']`` names the extraction backend.
    """
    aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).cpu()
    vol = sample_grid(fn, aabb, resolution, chunk)
    verts, faces, backend = marching_cubes(vol, level)
    spacing = ((aabb[1] - aabb[0]) / (resolution - 1)).double().numpy()
    verts = aabb[0].double().numpy() + verts * spacing
    mesh = TriangleMesh(verts.astype(np.float32), faces)
    mesh.metadata.update({"marching": backend, "level": float(level), "resolution": int(resolution),
                          "aabb": aabb.tolist()})
    return mesh


def mesh_in_original_units(mesh: TriangleMesh, scene) -> TriangleMesh:
    """Undo the scene's normalization (normalized world -> the capture's source units)."""
    norm = getattr(scene, "normalization", None)
    if norm is None or norm.is_identity:
        return mesh
    T = np.linalg.inv(np.asarray(norm.transform, dtype=np.float64))
    out = mesh.transformed(T)
    out.metadata = {**mesh.metadata, "units": "source"}
    return out
