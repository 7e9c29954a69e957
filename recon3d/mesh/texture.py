"""UV unwrapping (xatlas), rasterization in UV space, texture baking, and colours from posed images.

* :func:`unwrap` -- xatlas charts + packing; vertices on chart seams are duplicated (per-vertex uvs).
* :func:`rasterize_uv` -- which face (and barycentric coordinates) covers each texel centre.
* :func:`bake_texture` -- a texture whose texels get ``color_fn(points, normals)`` of the surface
  point they cover; empty texels take the nearest baked colour (no dark seams under filtering).
* :func:`project_view_colors` / :func:`view_color_fn` -- colours of surface points from the
  training images: each point is projected into every camera where the mesh does not occlude it
  (depth test against the mesh ray-cast with open3d) and the image colours are blended with
  weights ``max(cos(normal, to-camera), 0) ** sharpness``.

UV convention (as in :class:`TriangleMesh`): origin at the image's bottom-left, so texel row ``r``
(top-down) of an ``H``-row texture covers ``v`` in ``[1 - (r + 1) / H, 1 - r / H]``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .types import TriangleMesh

ColorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------- unwrap
def unwrap(mesh: TriangleMesh, size: int = 1024, padding: int = 2) -> TriangleMesh:
    """The mesh with xatlas uvs (vertices split along seams; colours/normals carried along).

    The returned mesh has ``uvs`` and a blank (grey) ``size x size`` texture; bake it with
    :func:`bake_texture`.
    """
    try:
        import xatlas
    except ImportError as e:  # pragma: no cover
        raise ImportError("UV unwrapping needs xatlas: pip install xatlas") from e
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmap, faces, uvs = atlas[0]
    vmap = np.asarray(vmap, dtype=np.int64)

    def pick(a):
        return None if a is None else a[vmap]

    blank = np.full((size, size, 3), 128, np.uint8)
    return replace(mesh, vertices=mesh.vertices[vmap], faces=np.asarray(faces, np.int64), uvs=np.asarray(uvs, np.float32),
                   texture=blank, vertex_colors=pick(mesh.vertex_colors), vertex_normals=pick(mesh.vertex_normals))


# ---------------------------------------------------------------------------------- rasterize
def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, height: int, width: int | None = None,
                 max_candidates: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre coverage of the uv triangles.

    Args:
        uvs: (V, 2) in [0, 1] (bottom-left origin); faces: (F, 3).
        height, width: texture size in texels (width defaults to height).
    Returns:
        ``face_id`` (H, W) int64, -1 where no face covers the texel centre, and ``bary`` (H, W, 3)
        float32 barycentric coordinates of the texel centre in that face.
    """
    W = int(width or height)
    H = int(height)
    faces = np.asarray(faces, np.int64)
    P = np.asarray(uvs, np.float64)[faces]  # (F, 3, 2)
    x = P[..., 0] * W
    y = (1.0 - P[..., 1]) * H
    face_id = np.full((H, W), -1, np.int64)
    bary = np.zeros((H, W, 3), np.float32)
    c0 = np.clip(np.ceil(x.min(1) - 0.5), 0, W).astype(np.int64)
    c1 = np.clip(np.floor(x.max(1) - 0.5), -1, W - 1).astype(np.int64)
    r0 = np.clip(np.ceil(y.min(1) - 0.5), 0, H).astype(np.int64)
    r1 = np.clip(np.floor(y.max(1) - 0.5), -1, H - 1).astype(np.int64)
    nc = np.maximum(c1 - c0 + 1, 0)
    nr = np.maximum(r1 - r0 + 1, 0)
    counts = nc * nr
    order = np.nonzero(counts)[0]
    csum = np.cumsum(counts[order])
    start = 0
    while start < len(order):
        base = csum[start - 1] if start else 0
        stop = int(np.searchsorted(csum, base + max_candidates, side="right"))
        stop = max(stop, start + 1)
        fs = order[start:stop]
        cnt = counts[fs]
        f = np.repeat(fs, cnt)
        local = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cols = c0[f] + local % nc[f]
        rows = r0[f] + local // nc[f]
        px, py = cols + 0.5, rows + 0.5
        ax, ay, bx, by, cx, cy = x[f, 0], y[f, 0], x[f, 1], y[f, 1], x[f, 2], y[f, 2]
        den = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        ok = np.abs(den) > 1e-20
        den = np.where(ok, den, 1.0)
        l0 = ((by - cy) * (px - cx) + (cx - bx) * (py - cy)) / den
        l1 = ((cy - ay) * (px - cx) + (ax - cx) * (py - cy)) / den
        l2 = 1.0 - l0 - l1
        eps = -1e-9
        inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        face_id[rows[inside], cols[inside]] = f[inside]
        bary[rows[inside], cols[inside]] = np.stack([l0, l1, l2], 1)[inside]
        start = stop
    return face_id, bary


def fill_empty(texture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give every texel outside ``mask`` (H, W bool) the colour of the nearest texel inside it."""
    from scipy.ndimage import distance_transform_edt

    if mask.all() or not mask.any():
        return texture
    _, (ri, ci) = distance_transform_edt(~mask, return_indices=True)
    return texture[ri, ci]


def bake_texture(mesh: TriangleMesh, color_fn: ColorFn, size: int = 1024, padding: int = 2) -> TriangleMesh:
    """A UV-textured copy of ``mesh`` (unwrapped first when it has no uvs).

    ``color_fn(points (M, 3), normals (M, 3)) -> (M, 3)`` colours in [0, 1] of surface points
    (world units, the mesh's frame); normals are interpolated vertex normals (unit).
    """
    from .ops import vertex_normals

    m = mesh if mesh.uvs is not None and mesh.texture is not None else unwrap(mesh, size, padding)
    H, W = (m.texture.shape[:2] if mesh.uvs is not None and mesh.texture is not None else (size, size))
    face_id, bary = rasterize_uv(m.uvs, m.faces, H, W)
    mask = face_id >= 0
    f = m.faces[face_id[mask]]
    b = bary[mask].astype(np.float64)
    V = m.vertices.astype(np.float64)
    pts = (V[f] * b[..., None]).sum(1)
    N = m.vertex_normals if m.vertex_normals is not None else vertex_normals(m.vertices, m.faces)
    nrm = (N[f].astype(np.float64) * b[..., None]).sum(1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    tex = np.zeros((H, W, 3), np.float32)
    if mask.any():
        tex[mask] = np.clip(np.asarray(color_fn(pts.astype(np.float32), nrm.astype(np.float32)), np.float32), 0, 1)
    tex = fill_empty(tex, mask)
    meta = dict(mesh.metadata, texture_size=[int(H), int(W)], texture_coverage=float(mask.mean()))
    return replace(m, texture=(tex * 255.0 + 0.5).astype(np.uint8), metadata=meta)


# ---------------------------------------------------------------------------------- colours from images
def _as_numpy_image(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    a = a.astype(np.float32)
    if a.max() > 1.5:
        a = a / 255.0
    return a[..., :3]


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    H, W = img.shape[:2]
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    xa, xb = np.clip(x0, 0, W - 1), np.clip(x0 + 1, 0, W - 1)
    ya, yb = np.clip(y0, 0, H - 1), np.clip(y0 + 1, 0, H - 1)
    return (img[ya, xa] * (1 - fx) * (1 - fy) + img[ya, xb] * fx * (1 - fy)
            + img[yb, xa] * (1 - fx) * fy + img[yb, xb] * fx * fy)


def mesh_depth_maps(mesh: TriangleMesh, cameras) -> list[np.ndarray]:
    """(H, W) float32 z-depth of ``mesh`` in each camera (inf where no hit), ray-cast with open3d."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    out = []
    for i in range(len(cameras)):
        rays = cameras.rays(i)
        o = rays.origins.detach().cpu().numpy().astype(np.float32)
        d = rays.directions.detach().cpu().numpy().astype(np.float32)
        t = scene.cast_rays(o3d.core.Tensor(np.concatenate([o, d], -1).reshape(-1, 6)))["t_hit"].numpy()
        z = t.reshape(o.shape[:2]) * rays.z_scale.detach().cpu().numpy()[..., 0]
        out.append(z.astype(np.float32))
    return out


def project_view_colors(mesh: TriangleMesh, points: np.ndarray, normals: np.ndarray | None, cameras,
                        images: Sequence, sharpness: float = 4.0, depth_tolerance: float = 0.01,
                        depth_maps: list[np.ndarray] | None = None) -> np.ndarray:
    """(P, 3) colours of surface ``points`` (on ``mesh``) blended from the images they are visible in.

    Args:
        mesh: occluder for the visibility test (the surface the points lie on).
        points: (P, 3); normals: (P, 3) unit outward normals, or None (vertex normals of ``mesh`` are
            used when ``points`` are its vertices, else all views weigh the same).
        cameras: :class:`recon3d.core.Cameras` of the images; images: (H, W, 3) arrays/tensors.
        sharpness: exponent on the cosine weight (higher: closer to the single best view).
        depth_tolerance: a point is visible when its depth is within this fraction of the mesh's
            bounding-box diagonal of the ray-cast depth.
    Points seen by no camera take the colour of the nearest point that is.
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64)
    if normals is None and len(pts) == mesh.num_vertices and np.allclose(pts, mesh.vertices):
        from .ops import vertex_normals

        normals = vertex_normals(mesh.vertices, mesh.faces)
    nrm = None if normals is None else np.asarray(normals, np.float64)
    diag = float(np.linalg.norm(mesh.vertices.max(0) - mesh.vertices.min(0)))
    tol = depth_tolerance * max(diag, 1e-9)
    depths = depth_maps if depth_maps is not None else mesh_depth_maps(mesh, cameras)
    import torch

    cameras = cameras.to("cpu")
    acc = np.zeros((len(pts), 3))
    wsum = np.zeros(len(pts))
    c2w = cameras.c2w.detach().numpy().astype(np.float64)
    for i in range(len(cameras)):
        img = _as_numpy_image(images[i])
        H, W = img.shape[:2]
        uv, z = cameras[i].project(torch.from_numpy(pts.astype(np.float32)))
        uv, z = uv[0].numpy().astype(np.float64), z[0].numpy().astype(np.float64)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        px = np.clip(uv[:, 0].astype(np.int64), 0, W - 1)
        py = np.clip(uv[:, 1].astype(np.int64), 0, H - 1)
        zmap = depths[i][py, px]
        vis = inside & (z <= zmap + tol)
        if nrm is not None:
            to_cam = c2w[i, :3, 3] - pts
            to_cam /= np.maximum(np.linalg.norm(to_cam, axis=1, keepdims=True), 1e-12)
            w = np.clip((nrm * to_cam).sum(1), 0, 1) ** sharpness
        else:
            w = np.ones(len(pts))
        w = np.where(vis, w, 0.0)
        sel = w > 0
        if sel.any():
            acc[sel] += w[sel, None] * _bilinear(img, uv[sel, 0], uv[sel, 1])
            wsum[sel] += w[sel]
    seen = wsum > 1e-12
    out = np.zeros((len(pts), 3), np.float32)
    out[seen] = (acc[seen] / wsum[seen, None]).astype(np.float32)
    if seen.any() and not seen.all():
        _, j = cKDTree(pts[seen]).query(pts[~seen], k=1)
        out[~seen] = out[seen][j]
    elif not seen.any():
        out[:] = 0.5
    return np.clip(out, 0, 1)


def view_color_fn(mesh: TriangleMesh, cameras, images: Sequence, **kw) -> ColorFn:
    """A ``color_fn`` for :func:`bake_texture` that projects the training images (depth maps cached)."""
    depths = mesh_depth_maps(mesh, cameras)

    def fn(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        return project_view_colors(mesh, points, normals, cameras, images, depth_maps=depths, **kw)

    return fn


__all__ = ["unwrap", "rasterize_uv", "fill_empty", "bake_texture", "mesh_depth_maps", "project_view_colors",
           "view_color_fn"]
