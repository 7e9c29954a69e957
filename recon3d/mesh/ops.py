"""Mesh operations shared by every mesher: open3d conversion, Poisson reconstruction, cleaning,
decimation, component filtering, normals.

All functions take and return :class:`TriangleMesh` (or numpy arrays) and never modify their input.
"""

from __future__ import annotations

import logging

import numpy as np

from .types import TriangleMesh

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- open3d bridge
def to_open3d(mesh: TriangleMesh):
    """An ``open3d.geometry.TriangleMesh`` with the same vertices, faces, colours and normals."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
                                  o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)))
    if mesh.vertex_colors is not None:
        m.vertex_colors = o3d.utility.Vector3dVector(np.clip(mesh.vertex_colors, 0, 1).astype(np.float64))
    if mesh.vertex_normals is not None:
        m.vertex_normals = o3d.utility.Vector3dVector(mesh.vertex_normals.astype(np.float64))
    return m


def from_open3d(m, metadata: dict | None = None) -> TriangleMesh:
    """A :class:`TriangleMesh` from an ``open3d.geometry.TriangleMesh`` (colours/normals if present)."""
    V = np.asarray(m.vertices)
    colors = np.asarray(m.vertex_colors) if m.has_vertex_colors() else None
    normals = np.asarray(m.vertex_normals) if m.has_vertex_normals() else None
    return TriangleMesh(V, np.asarray(m.triangles), vertex_colors=colors, vertex_normals=normals,
                        metadata=dict(metadata or {}))


# ---------------------------------------------------------------------------------- geometry helpers
def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit face normals (right-hand rule on the vertex order); zero for degenerate faces."""
    v = np.asarray(vertices, dtype=np.float64)
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 0, n / np.maximum(length, 1e-30), 0.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 area-weighted unit vertex normals."""
    v = np.asarray(vertices, dtype=np.float64)
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(length, 1e-30)).astype(np.float32)


def with_vertex_normals(mesh: TriangleMesh) -> TriangleMesh:
    """The mesh with freshly computed area-weighted vertex normals."""
    from dataclasses import replace

    return replace(mesh, vertex_normals=vertex_normals(mesh.vertices, mesh.faces))


def surface_area(mesh: TriangleMesh) -> float:
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    return float(0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum())


def signed_volume(mesh: TriangleMesh) -> float:
    """Volume enclosed by a closed mesh; positive when faces are counter-clockwise seen from outside."""
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


# ---------------------------------------------------------------------------------- editing
def submesh(mesh: TriangleMesh, keep_vertices: np.ndarray | None = None, keep_faces: np.ndarray | None = None) -> TriangleMesh:
    """The mesh restricted to faces in ``keep_faces`` (bool (F,)) whose vertices are all in
    ``keep_vertices`` (bool (V,)); unused vertices are dropped and attributes re-indexed."""
    from dataclasses import replace

    fmask = np.ones(mesh.num_faces, bool) if keep_faces is None else np.asarray(keep_faces, bool).copy()
    if keep_vertices is not None:
        fmask &= np.asarray(keep_vertices, bool)[mesh.faces].all(axis=1)
    faces = mesh.faces[fmask]
    used = np.zeros(mesh.num_vertices, bool)
    used[faces.reshape(-1)] = True
    remap = np.full(mesh.num_vertices, -1, np.int64)
    remap[used] = np.arange(int(used.sum()))

    def pick(a):
        return None if a is None else a[used]

    return replace(mesh, vertices=mesh.vertices[used], faces=remap[faces], vertex_colors=pick(mesh.vertex_colors),
                   vertex_normals=pick(mesh.vertex_normals), uvs=pick(mesh.uvs),
                   texture=mesh.texture if mesh.uvs is not None else None)


def connected_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) component label of each face (faces sharing a vertex are connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return np.zeros(0, np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(num_vertices, num_vertices))
    _, labels = cc(g, directed=False)
    return labels[f[:, 0]]


def remove_small_components(mesh: TriangleMesh, min_faces: int = 0, min_fraction: float = 0.0,
                            keep_largest: bool = False) -> TriangleMesh:
    """Drop connected components with fewer than ``max(min_faces, min_fraction * F)`` faces
    (or all but the largest one with ``keep_largest``)."""
    if mesh.num_faces == 0:
        return mesh
    labels = connected_components(mesh.faces, mesh.num_vertices)
    counts = np.bincount(labels)
    if keep_largest:
        keep = labels == int(np.argmax(counts))
    else:
        thr = max(int(min_faces), int(np.ceil(min_fraction * mesh.num_faces)))
        keep = counts[labels] >= thr
    if keep.all():
        return mesh
    return submesh(mesh, keep_faces=keep)


def clean(mesh: TriangleMesh) -> TriangleMesh:
    """Remove duplicated / degenerate faces, non-manifold edges and unreferenced vertices (open3d)."""
    m = to_open3d(mesh)
    m.remove_duplicated_vertices()
    m.remove_duplicated_triangles()
    m.remove_degenerate_triangles()
    m.remove_non_manifold_edges()
    m.remove_unreferenced_vertices()
    return from_open3d(m, mesh.metadata)


def simplify(mesh: TriangleMesh, target_faces: int) -> TriangleMesh:
    """Quadric-error decimation to at most ``target_faces`` faces (open3d); colours are carried along.

    A mesh already at or below the target is returned unchanged. UV textures are dropped (decimate
    before unwrapping/baking).
    """
    if target_faces <= 0 or mesh.num_faces <= target_faces:
        return mesh
    m = to_open3d(mesh)
    m = m.simplify_quadric_decimation(target_number_of_triangles=int(target_faces))
    m.remove_degenerate_triangles()
    m.remove_unreferenced_vertices()
    out = from_open3d(m, mesh.metadata)
    if out.vertex_colors is not None:
        out.vertex_colors = np.clip(out.vertex_colors, 0.0, 1.0)
    return out


def poisson_reconstruction(points: np.ndarray, normals: np.ndarray, colors: np.ndarray | None = None,
                           depth: int = 9, density_quantile: float = 0.1, scale: float = 1.1,
                           linear_fit: bool = False, threads: int = -1) -> tuple[TriangleMesh, np.ndarray]:
    """Screened Poisson surface reconstruction (open3d) of oriented points.

    Args:
        points: (P, 3) positions; normals: (P, 3) outward normals (any length > 0);
        colors: optional (P, 3) in [0, 1], interpolated onto the vertices.
        depth: octree depth (resolution ~ bounding cube / 2^depth).
        density_quantile: vertices whose Poisson density (number of supporting samples) is below
            this quantile are removed, with the faces that use them: this trims the surface Poisson
            invents where no sample supports it. 0 keeps everything.
        scale, linear_fit: passed to open3d.
    Returns:
        ``(mesh, densities)``: the trimmed mesh and the (V,) densities of its remaining vertices.
    """
    import open3d as o3d

    pts = np.asarray(points, dtype=np.float64)
    nrm = np.asarray(normals, dtype=np.float64)
    # open3d's Poisson crashes (SIGSEGV) on non-finite input or zero normals: drop those samples
    ok = np.isfinite(pts).all(1) & np.isfinite(nrm).all(1) & (np.linalg.norm(nrm, axis=1) > 1e-12)
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float64)
        ok &= np.isfinite(colors).all(1)
        colors = colors[ok]
    pts, nrm = pts[ok], nrm[ok]
    if len(pts) < 10:
        raise ValueError(f"Poisson reconstruction needs oriented points; got only {len(pts)}")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd.normals = o3d.utility.Vector3dVector(nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(np.clip(np.asarray(colors, dtype=np.float64), 0, 1))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        m, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            pcd, depth=int(depth), scale=float(scale), linear_fit=bool(linear_fit), n_threads=int(threads))
    dens = np.asarray(dens)
    mesh = from_open3d(m, {"extraction": "poisson", "poisson_depth": int(depth)})
    mesh.vertex_normals = None
    if density_quantile > 0 and len(dens):
        keep = dens >= np.quantile(dens, density_quantile)
        mesh = submesh(mesh, keep_vertices=keep)
        dens = dens[keep][_used_mask(keep, m)]
    return mesh, dens


def _used_mask(keep: np.ndarray, m) -> np.ndarray:
    """Among kept vertices, which are still referenced by a face whose vertices are all kept."""
    f = np.asarray(m.triangles)
    fk = keep[f].all(axis=1)
    used = np.zeros(len(keep), bool)
    used[f[fk].reshape(-1)] = True
    return used[keep]


__all__ = ["to_open3d", "from_open3d", "face_normals", "vertex_normals", "with_vertex_normals", "surface_area",
           "signed_volume", "submesh", "connected_components", "remove_small_components", "clean", "simplify",
           "poisson_reconstruction"]


def finish_mesh(mesh, max_faces: int):
    """Decimate ``mesh`` to at most ``max_faces`` faces (quadric error; 0: no limit) and make sure
    it has vertex normals; metadata records the face count before decimation."""
    if mesh.num_faces == 0:
        return mesh
    mesh.metadata["faces_extracted"] = mesh.num_faces
    if max_faces and mesh.num_faces > max_faces:
        mesh = simplify(mesh, max_faces)
    return mesh if mesh.vertex_normals is not None else with_vertex_normals(mesh)
