"""Procedural synthetic scenes: textured objects, CPU ray-cast renders and exact ground truth.

Everything is deterministic from an integer seed and needs only numpy/scipy/open3d (CPU).

World frame and units:
  * world z is up; objects are scaled to fit inside the ball of radius :data:`OBJECT_RADIUS`
    around the origin, hence inside the cube [-1, 1]^3 (world units);
  * cameras follow recon3d's convention (OpenCV axes, camera-to-world, pixel centers at +0.5)
    and sit on a sphere of radius ~3-4 looking at the origin.

Texture: a *solid* (3D) texture evaluated at the ray-hit point in world coordinates (random-coloured
Voronoi cells with dark borders, modulated by a sum of plane waves and a per-part tint), so every
view sees the same surface pattern, with enough corners for SIFT. Shading is Lambertian with a fixed
directional light plus ambient (view independent).

On-disk layout written by :func:`generate_scene` (Blender / NeRF-synthetic, plus ground truth)::

    transforms_train.json, transforms_test.json   camera_angle_x, frames[file_path, transform_matrix]
                                                  (OpenGL/Blender camera-to-world)
    train/r_<i>.png, test/r_<i>.png               RGBA, straight alpha = pixel coverage
    depth/r_<i>.npy | .png                        z-depth along the camera +z axis, world units, 0 = empty;
                                                  .npy float32 (or float16), .png uint16 = depth * 1000
    normals/r_<i>.npy | .png                      unit world-space face normals of gt_mesh, 0 = empty;
                                                  .npy float32 (H, W, 3), .png uint8 RGB = (n + 1) / 2 * 255
    masks/r_<i>.png                               uint8 0/255: the ray through the pixel center hits
    gt_mesh.ply                                   ground-truth mesh, world units, same frame as the cameras
    scene_info.json                               seed, generator version, object, units, counts

``<i>`` is the global view index (unique across splits); view ``i`` is a test view when
``i % num_test_every == 0`` (the repo-wide "every 8th" hold-out rule).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open3d as o3d
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from recon3d.core.cameras import Cameras
from recon3d.core.conventions import opencv_to_blender

from .synthetic_textures import GroundTexture, PartTexture, SolidTexture

GENERATOR_VERSION = "1.0.0"
OBJECT_RADIUS = 0.95  #: objects fit in this ball around the origin (so inside [-1, 1]^3)
OBJECT_KINDS = ("random", "sphere", "box", "torus", "cylinder", "cone")
DEPTH_PNG_SCALE = 1000.0  #: uint16 depth PNG value = round(depth * DEPTH_PNG_SCALE)
DEFAULT_LIGHT = (0.45, -0.35, 0.82)  #: world direction *towards* the light (z up)
DEFAULT_AMBIENT = 0.45


# ---------------------------------------------------------------------------------------- texture
def make_part_textured_object(seed: int = 0, kind: str = "random") -> "SyntheticObject":
    """:func:`make_object` geometry with a :class:`PartTexture` (seeded by ``seed``) instead of the
    fine Voronoi texture; ``description['texture'] == 'part'``."""
    obj = make_object(seed, kind)
    obj.texture = PartTexture(seed, num_parts=len(obj.description["parts"]))
    obj.description["texture"] = "part"
    return obj


def add_ground(obj: "SyntheticObject", seed: int, half_size: float = 6.0) -> "SyntheticObject":
    """``obj`` standing on a textured square ground plane (side ``2 half_size``, at the object's lowest
    z), as a new :class:`SyntheticObject`: the plane is one more part (id = number of parts) with a
    :class:`GroundTexture`; ``description['ground'] = {'z', 'half_size'}``. Real captures have a
    textured surrounding; multi-view pose models learn from it (see ``recon3d ffdata --background``)."""
    V = np.asarray(obj.mesh.vertices)
    F = np.asarray(obj.mesh.triangles)
    ids = np.asarray(obj.mesh.triangle_material_ids, dtype=np.int64)
    z0 = float(V[:, 2].min())
    h = float(half_size)
    gV = np.array([[-h, -h, z0], [h, -h, z0], [h, h, z0], [-h, h, z0]])
    gF = np.array([[0, 1, 2], [0, 2, 3]]) + len(V)
    ground_id = int(ids.max()) + 1 if len(ids) else 0
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.concatenate([V, gV])),
                                     o3d.utility.Vector3iVector(np.concatenate([F, gF]).astype(np.int32)))
    mesh.triangle_material_ids = o3d.utility.IntVector(np.concatenate([ids, [ground_id, ground_id]]).astype(np.int32).tolist())
    mesh.compute_vertex_normals()
    ground = GroundTexture(seed, h)
    inner = obj.texture

    def texture(points: np.ndarray, part_ids: np.ndarray | None = None) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if part_ids is None:
            return inner(p, None)
        pid = np.asarray(part_ids).reshape(-1)
        out = np.empty((len(p), 3), np.float32)
        g = pid == ground_id
        out[g] = ground(p[g])
        if (~g).any():
            out[~g] = inner(p[~g], pid[~g])
        return out

    desc = {**obj.description, "ground": {"z": round(z0, 6), "half_size": h}}
    parts = np.concatenate([obj.vertex_parts, np.full(4, ground_id, np.int64)])
    return SyntheticObject(mesh, texture, parts, desc)


# ---------------------------------------------------------------------------------------- objects
@dataclass
class SyntheticObject:
    """A textured triangle mesh; unpacks as ``mesh, texture = obj``.

    Attributes:
        mesh: open3d legacy TriangleMesh, world units, ``triangle_material_ids`` = part index per face.
        texture: the solid texture (callable on world points and part ids).
        vertex_parts: (V,) int64 part index of every vertex.
        description: JSON-able dict (kind, seed, parts with type/params/4x4 local-to-world transform).
    """

    mesh: o3d.geometry.TriangleMesh
    texture: Callable[..., np.ndarray]
    vertex_parts: np.ndarray
    description: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.mesh, self.texture))

    def vertex_colors(self) -> np.ndarray:
        """(V, 3) float32 texture colours at the vertices (a coarse preview of the solid texture)."""
        return self.texture(np.asarray(self.mesh.vertices), self.vertex_parts)


def _primitive(kind: str, params: dict) -> o3d.geometry.TriangleMesh:
    """Open3D primitive centered at the origin (its local frame)."""
    G = o3d.geometry.TriangleMesh
    if kind == "sphere":
        m = G.create_sphere(params["radius"], resolution=params.get("resolution", 40))
    elif kind == "box":
        w, h, d = params["size"]
        m = G.create_box(w, h, d).translate((-w / 2, -h / 2, -d / 2))
        m = m.subdivide_midpoint(3)  # small faces: texture-independent, but keeps trimming accurate
    elif kind == "torus":
        m = G.create_torus(params["radius"], params["tube"], radial_resolution=48, tubular_resolution=24)
    elif kind == "cylinder":
        m = G.create_cylinder(params["radius"], params["height"], resolution=48, split=6)
    elif kind == "cone":
        m = G.create_cone(params["radius"], params["height"], resolution=48, split=6)
        m = m.translate((0, 0, -params["height"] / 2))
    else:
        raise ValueError(f"unknown primitive {kind!r}")
    return m


def _random_params(kind: str, rng: np.random.Generator) -> dict:
    s = rng.uniform(0.3, 0.55)
    if kind == "sphere":
        return {"radius": s}
    if kind == "box":
        return {"size": [float(x) for x in rng.uniform(0.7, 1.3, 3) * s * 1.4]}
    if kind == "torus":
        return {"radius": s, "tube": s * rng.uniform(0.25, 0.45)}
    return {"radius": s * rng.uniform(0.4, 0.7), "height": s * rng.uniform(1.5, 2.2)}  # cylinder, cone


def make_object(seed: int = 0, kind: str = "random") -> SyntheticObject:
    """Build a textured object without rendering (also for feed-forward training data).

    Args:
        seed: all randomness (shapes, placement, texture) derives from it.
        kind: ``'random'`` (3-5 overlapping primitives: a box, a sphere, a torus or cylinder, more),
            ``'sphere'`` (the unit sphere at the origin, exactly radius 1, for analytic tests), or one of
            ``'box' | 'torus' | 'cylinder' | 'cone'`` (a single randomly sized and oriented primitive).
    Returns:
        :class:`SyntheticObject`; ``mesh, texture = make_object(...)`` works. Random objects are
        normalized to fit the ball of radius :data:`OBJECT_RADIUS`; faces of a part lying entirely
        inside another part are removed (hidden anyway), so the mesh approximates the union surface.
    """
    if kind not in OBJECT_KINDS:
        raise ValueError(f"unknown object kind {kind!r}; expected one of {OBJECT_KINDS}")
    rng = np.random.default_rng([seed, 0])
    parts: list[dict] = []
    if kind == "sphere":
        parts.append({"type": "sphere", "params": {"radius": 1.0, "resolution": 64}, "transform": np.eye(4)})
    else:
        if kind == "random":
            types = ["box", "sphere", str(rng.choice(["torus", "cylinder"]))]
            types += [str(t) for t in rng.choice(["sphere", "box", "torus", "cylinder", "cone"], rng.integers(0, 3))]
        else:
            types = [kind]
        for i, t in enumerate(types):
            T = np.eye(4)
            T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
            if i > 0:
                off = rng.normal(size=3)
                T[:3, 3] = off / np.linalg.norm(off) * rng.uniform(0.15, 0.4)
            parts.append({"type": t, "params": _random_params(t, rng), "transform": T})

    meshes = []
    for p in parts:
        m = _primitive(p["type"], p["params"])
        m.transform(p["transform"])
        meshes.append(m)
    if kind != "sphere":  # normalize into the ball of radius OBJECT_RADIUS
        allv = np.concatenate([np.asarray(m.vertices) for m in meshes])
        center = 0.5 * (allv.min(0) + allv.max(0))
        scale = OBJECT_RADIUS / np.linalg.norm(allv - center, axis=1).max()
        S = np.diag([scale, scale, scale, 1.0])
        S[:3, 3] = -scale * center
        for m, p in zip(meshes, parts):
            m.transform(S)
            p["transform"] = S @ p["transform"]
    mesh, vparts = _merge_trimmed(meshes)
    for p in parts:
        p["transform"] = np.asarray(p["transform"]).round(8).tolist()
    desc = {"kind": kind, "seed": int(seed), "parts": parts, "num_triangles": len(mesh.triangles),
            "bounding_radius": float(np.linalg.norm(np.asarray(mesh.vertices), axis=1).max())}
    return SyntheticObject(mesh, SolidTexture(seed, num_parts=len(parts)), vparts, desc)


def _merge_trimmed(meshes: Sequence[o3d.geometry.TriangleMesh]) -> tuple[o3d.geometry.TriangleMesh, np.ndarray]:
    """Concatenate part meshes, dropping faces whose 3 vertices all lie inside one other part."""
    verts, tris, fparts = [], [], []
    offset = 0
    for i, m in enumerate(meshes):
        V = np.asarray(m.vertices)
        F = np.asarray(m.triangles)
        keep = np.ones(len(F), bool)
        for j, other in enumerate(meshes):
            if j == i:
                continue
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(other))
            inside = scene.compute_occupancy(o3d.core.Tensor(V.astype(np.float32)), nsamples=3).numpy() > 0.5
            keep &= ~inside[F].all(axis=1)
        used = np.unique(F[keep])
        remap = np.full(len(V), -1, np.int64)
        remap[used] = np.arange(len(used)) + offset
        verts.append(V[used])
        tris.append(remap[F[keep]])
        fparts.append(np.full(int(keep.sum()), i, np.int64))
        offset += len(used)
    out = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.concatenate(verts)),
                                    o3d.utility.Vector3iVector(np.concatenate(tris).astype(np.int32)))
    fp = np.concatenate(fparts)
    out.triangle_material_ids = o3d.utility.IntVector(fp.astype(np.int32).tolist())
    out.compute_triangle_normals()
    vparts = np.concatenate([np.full(len(v), i, np.int64) for i, v in enumerate(verts)])
    return out, vparts


def _corner_normals(V: np.ndarray, F: np.ndarray, crease_deg: float = 40.0) -> np.ndarray:
    """(T, 3, 3) per-corner shading normals: area-weighted face normals averaged across smooth edges only."""
    fa = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    fn = fa / np.maximum(np.linalg.norm(fa, axis=1, keepdims=True), 1e-20)
    v = F.reshape(-1)
    face = np.repeat(np.arange(len(F)), 3)
    order = np.argsort(v, kind="stable")
    sv, sf = v[order], face[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sv)) + 1]
    sizes = np.diff(np.r_[starts, len(sv)])
    group = np.repeat(np.arange(len(starts)), sizes)
    reps = sizes[group]
    pair_c = np.repeat(np.arange(len(sv)), reps)  # sorted corner
    pair_p = np.repeat(starts[group], reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    tf, pf = sf[pair_c], sf[pair_p]
    w = ((fn[tf] * fn[pf]).sum(1) > math.cos(math.radians(crease_deg))).astype(np.float64)
    acc = np.stack([np.bincount(pair_c, fa[pf, k] * w, minlength=len(sv)) for k in range(3)], -1)
    out = np.empty_like(acc)
    out[order] = acc
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-20)
    return out.reshape(-1, 3, 3)


# ---------------------------------------------------------------------------------------- rendering
class Renderer:
    """CPU ray-caster (open3d ``RaycastingScene``) for a :class:`SyntheticObject`.

    Args:
        obj: the object.
        supersample: s x s rays per pixel for colour/alpha (box-filtered). Odd ``s`` makes the central
            sub-ray the pixel-center ray, so ``mask`` implies ``alpha >= 1 / s^2``.
        light_dir: world direction towards the directional light; ``ambient`` in [0, 1].
    """

    def __init__(self, obj: SyntheticObject, supersample: int = 3, light_dir=DEFAULT_LIGHT, ambient: float = DEFAULT_AMBIENT):
        self.obj = obj
        self.ss = int(supersample)
        self.light = np.asarray(light_dir, np.float64) / np.linalg.norm(light_dir)
        self.ambient = float(ambient)
        self.V = np.asarray(obj.mesh.vertices)
        self.F = np.asarray(obj.mesh.triangles).astype(np.int64)
        self.face_parts = np.asarray(obj.mesh.triangle_material_ids, dtype=np.int64)
        self.corner_normals = _corner_normals(self.V, self.F)
        self.scene = o3d.t.geometry.RaycastingScene()
        tm = o3d.t.geometry.TriangleMesh(o3d.core.Tensor(self.V.astype(np.float32)), o3d.core.Tensor(self.F.astype(np.int32)))
        self.scene.add_triangles(tm)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> dict:
        """Cast (R, 3) rays; returns t (R,) (inf = miss), hit (R,) bool, face (R,), uv (R, 2), normal (R, 3)."""
        rays = np.concatenate([origins, directions], axis=-1).astype(np.float32)
        r = self.scene.cast_rays(o3d.core.Tensor(rays))
        t = r["t_hit"].numpy()
        hit = np.isfinite(t)
        n = r["primitive_normals"].numpy().astype(np.float64)
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-20)
        return {"t": t, "hit": hit, "face": r["primitive_ids"].numpy().astype(np.int64), "uv": r["primitive_uvs"].numpy(), "normal": n}

    def shade(self, points: np.ndarray, directions: np.ndarray, face: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """(P, 3) colours of hit points: solid texture x (ambient + Lambert with the fixed light)."""
        cn = self.corner_normals[face]
        b = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)
        n = (b[:, :, None] * cn).sum(1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
        n = np.where(((n * directions).sum(1) > 0)[:, None], -n, n)  # face the viewer (back faces)
        lambert = np.clip(n @ self.light, 0.0, None)
        albedo = self.obj.texture(points, self.face_parts[face])
        return albedo * (self.ambient + (1 - self.ambient) * lambert)[:, None]

    def render(self, cameras: Cameras, index: int) -> dict:
        """Render view ``index``.

        Returns dict of numpy arrays: ``rgba`` (H, W, 4) float32 in [0, 1] (straight alpha = coverage),
        ``depth`` (H, W) float32 z-depth in world units (0 = empty), ``normals`` (H, W, 3) float32 unit
        world face normals (0 = empty), ``mask`` (H, W) bool (pixel-center ray hits).
        """
        cam = cameras[index]
        H, W, s = int(cam.height[0]), int(cam.width[0]), self.ss
        sub = cam.rescale(width=W * s, height=H * s) if s > 1 else cam
        rb = sub.rays(0)
        o = rb.origins.reshape(-1, 3).double().numpy()
        d = rb.directions.reshape(-1, 3).double().numpy()
        r = self.cast(o, d)
        color = np.zeros((len(o), 3), np.float64)
        h = r["hit"]
        color[h] = self.shade(o[h] + d[h] * r["t"][h, None], d[h], r["face"][h], r["uv"][h])
        hit_g = h.reshape(H, s, W, s).astype(np.float64)
        cnt = hit_g.sum(axis=(1, 3))
        rgb = (color.reshape(H, s, W, s, 3)).sum(axis=(1, 3)) / np.maximum(cnt, 1)[..., None]
        alpha = cnt / (s * s)
        if s % 2 == 1:  # the central sub-ray is the pixel-center ray
            c = s // 2
            pick = lambda a: a.reshape(H, s, W, s, *a.shape[1:])[:, c, :, c]  # noqa: E731
            t, hit, nrm = pick(r["t"]), pick(h), pick(r["normal"])
            zs = pick(rb.z_scale.reshape(-1).double().numpy())
        else:
            rc = cam.rays(0)
            rr = self.cast(rc.origins.reshape(-1, 3).numpy(), rc.directions.reshape(-1, 3).numpy())
            t, hit, nrm = rr["t"].reshape(H, W), rr["hit"].reshape(H, W), rr["normal"].reshape(H, W, 3)
            zs = rc.z_scale.reshape(H, W).double().numpy()
        depth = np.where(hit, t * zs, 0.0).astype(np.float32)
        normals = np.where(hit[..., None], nrm, 0.0).astype(np.float32)
        rgba = np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32)
        return {"rgba": rgba, "depth": depth, "normals": normals, "mask": hit}


def render_view(obj: SyntheticObject, cameras: Cameras, index: int, **renderer_kw) -> dict:
    """One-off :meth:`Renderer.render` (build a :class:`Renderer` once to render many views)."""
    return Renderer(obj, **renderer_kw).render(cameras, index)


# ---------------------------------------------------------------------------------------- cameras
def look_at(eyes, targets, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """(N, 3) eyes and targets -> (N, 4, 4) OpenCV camera-to-world (x right, y down, z forward; world ``up``)."""
    eyes = torch.as_tensor(np.asarray(eyes), dtype=torch.float64).reshape(-1, 3)
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.float64).reshape(-1, 3).expand_as(eyes)
    fwd = targets - eyes
    fwd = fwd / fwd.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(fwd, torch.tensor(up, dtype=torch.float64).expand_as(fwd))
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(eyes), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, fwd, eyes
    return c2w.float()


def sphere_cameras(n: int, radius: float = 3.6, elevation_range: tuple[float, float] = (-15.0, 75.0),
                   fov_deg: float | None = 40.0, focal: float | None = None, width: int = 256, height: int = 256,
                   seed: int = 0, jitter: float = 0.0, layout: str = "fibonacci") -> Cameras:
    """``n`` pinhole cameras on a sphere around the origin (world z up), looking at the origin.

    Args:
        radius: distance to the origin (world units).
        elevation_range: (min, max) degrees above the xy-plane; a negative minimum adds lower views.
        fov_deg: horizontal field of view; ``focal`` (pixels, fx = fy) overrides it.
        layout: ``'fibonacci'`` (equal-area spiral over the elevation band, spiral start rotated by
            the seed) or ``'random'`` (uniform on the band).
        jitter: 0 = exact layout; 1 = perturb azimuth/elevation (~a fraction of the spacing),
            radius (+-8%) and look-at target (+-0.05).
    Returns:
        :class:`Cameras` with cx = width / 2, cy = height / 2.
    """
    rng = np.random.default_rng([seed, 1])
    z0, z1 = (math.sin(math.radians(e)) for e in elevation_range)
    if layout == "fibonacci":
        z = z0 + (np.arange(n) + 0.5) / n * (z1 - z0)
        az = rng.uniform(0, 2 * np.pi) + np.arange(n) * np.pi * (3.0 - math.sqrt(5.0))
    elif layout == "random":
        z = rng.uniform(z0, z1, n)
        az = rng.uniform(0, 2 * np.pi, n)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected 'fibonacci' or 'random'")
    spacing = math.sqrt(4 * np.pi / max(n, 1))
    az = az + jitter * rng.uniform(-0.3, 0.3, n) * spacing
    z = np.clip(z + jitter * rng.uniform(-0.15, 0.15, n) * spacing, -0.99, 0.99)
    r = radius * (1 + jitter * rng.uniform(-0.08, 0.08, n))
    rho = np.sqrt(1 - z * z)
    eyes = r[:, None] * np.stack([rho * np.cos(az), rho * np.sin(az), z], -1)
    targets = jitter * rng.uniform(-0.05, 0.05, (n, 3))
    f = float(focal) if focal is not None else 0.5 * width / math.tan(0.5 * math.radians(fov_deg))
    return Cameras(look_at(eyes, targets), fx=f, fy=f, cx=width / 2, cy=height / 2, width=width, height=height)


# ---------------------------------------------------------------------------------------- writing
def _save_png(path: Path, arr: np.ndarray, compress_level: int) -> None:
    Image.fromarray(arr).save(path, compress_level=compress_level)


def _write_view(root: Path, name: str, folder: str, out: dict, depth_format: str, normal_format: str, cl: int) -> dict:
    rgba = np.round(np.clip(out["rgba"], 0, 1) * 255).astype(np.uint8)
    _save_png(root / folder / f"{name}.png", rgba, cl)
    _save_png(root / "masks" / f"{name}.png", out["mask"].astype(np.uint8) * 255, cl)
    depth = out["depth"]
    if depth_format == "npy":
        dpath = f"depth/{name}.npy"
        np.save(root / dpath, depth.astype(np.float32))
    elif depth_format == "npy16":
        dpath = f"depth/{name}.npy"
        np.save(root / dpath, depth.astype(np.float16))
    else:
        dpath = f"depth/{name}.png"
        _save_png(root / dpath, np.round(np.clip(depth * DEPTH_PNG_SCALE, 0, 65535)).astype(np.uint16), cl)
    if normal_format == "npy":
        npath = f"normals/{name}.npy"
        np.save(root / npath, out["normals"].astype(np.float32))
    else:
        npath = f"normals/{name}.png"
        enc = np.where(out["mask"][..., None], np.round((out["normals"] + 1) * 127.5), 0).astype(np.uint8)
        _save_png(root / npath, enc, cl)
    return {"file_path": f"./{folder}/{name}", "depth_file_path": f"./{dpath}", "normal_file_path": f"./{npath}",
            "mask_file_path": f"./masks/{name}.png"}


def generate_scene(out_dir, num_views: int = 48, size: int = 256, seed: int = 0, num_test_every: int = 8,
                   object: str | SyntheticObject = "random", *, cameras: Cameras | None = None,
                   radius: float = 3.6, fov_deg: float = 40.0, elevation_range=(-15.0, 75.0), jitter: float = 0.5,
                   supersample: int = 3, depth_format: str = "npy", normal_format: str = "npy",
                   overwrite: bool = False, compress_level: int = 6, image_dir: str | None = None) -> Path:
    """Render a synthetic scene into ``out_dir`` (Blender/NeRF-synthetic layout + ground truth).

    Args:
        num_views, size: square ``size`` x ``size`` images from :func:`sphere_cameras` (``radius``,
            ``fov_deg``, ``elevation_range``, ``jitter``, ``seed``); ignored when ``cameras`` is given
            (then each camera's own size is used; pinhole, cx = W/2, cy = H/2 expected by the Blender format).
        num_test_every: view i goes to the test split when ``i % num_test_every == 0`` (0: no test split).
        object: a kind for :func:`make_object` (built with ``seed``) or a ready :class:`SyntheticObject`.
        depth_format: ``'npy'`` (float32), ``'npy16'`` (float16) or ``'png16'`` (uint16, depth * 1000).
        normal_format: ``'npy'`` (float32 (H, W, 3)) or ``'png'`` (uint8 RGB, (n + 1) / 2 * 255).
        overwrite: replace an existing ``out_dir`` (else FileExistsError).
        image_dir: put every view's RGBA image in this one folder (e.g. ``"images"``, so the folder
            doubles as input for ``recon3d fit --images``) instead of ``train/`` and ``test/``.
    Writes into a temporary sibling folder renamed into place at the end, so an interrupted run
    leaves no half-written scene. Returns ``out_dir`` as a Path. See the module docstring for the layout.
    """
    out_dir = Path(out_dir)
    if depth_format not in ("npy", "npy16", "png16") or normal_format not in ("npy", "png"):
        raise ValueError(f"bad depth_format {depth_format!r} or normal_format {normal_format!r}")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (pass overwrite=True to replace it)")
    obj = make_object(seed, object) if isinstance(object, str) else object
    cameras_given = cameras is not None
    if cameras is None:
        cameras = sphere_cameras(num_views, radius, elevation_range, fov_deg, None, size, size, seed, jitter)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        image_dirs = (image_dir,) if image_dir else ("train", "test")
        for sub in (*image_dirs, "depth", "normals", "masks"):
            (tmp / sub).mkdir(parents=True)
        renderer = Renderer(obj, supersample=supersample)
        blender = opencv_to_blender(cameras.c2w).double().numpy()
        frames: dict[str, list] = {"train": [], "test": []}
        for i in range(len(cameras)):
            split = "test" if num_test_every > 0 and i % num_test_every == 0 else "train"
            entry = _write_view(tmp, f"r_{i}", image_dir or split, renderer.render(cameras, i), depth_format, normal_format, compress_level)
            entry["transform_matrix"] = blender[i].tolist()
            frames[split].append(entry)
        W, fx = float(cameras.width[0]), float(cameras.fx[0])
        intr = {"camera_angle_x": 2 * math.atan(0.5 * W / fx), "fl_x": fx, "fl_y": float(cameras.fy[0]),
                "cx": float(cameras.cx[0]), "cy": float(cameras.cy[0]), "w": int(W), "h": int(cameras.height[0])}
        for split, fr in frames.items():
            (tmp / f"transforms_{split}.json").write_text(json.dumps({**intr, "frames": fr}, indent=2))
        mesh = o3d.geometry.TriangleMesh(obj.mesh)
        mesh.vertex_colors = o3d.utility.Vector3dVector(obj.vertex_colors().astype(np.float64))
        o3d.io.write_triangle_mesh(str(tmp / "gt_mesh.ply"), mesh, write_ascii=False, write_vertex_normals=False)
        info = {
            "generator": "recon3d.io.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
            "object": obj.description, "num_views": len(cameras), "num_train": len(frames["train"]),
            "num_test": len(frames["test"]), "num_test_every": num_test_every,
            "width": int(W), "height": int(cameras.height[0]),
            "cameras": {"radius": radius, "fov_deg": math.degrees(intr["camera_angle_x"]),
                        "elevation_range": list(elevation_range), "jitter": jitter, "given": cameras_given},
            "render": {"supersample": supersample, "light_dir": list(renderer.light), "ambient": renderer.ambient},
            "units": {
                "world": f"world units, z up; object inside the ball of radius {OBJECT_RADIUS} (so in [-1, 1]^3)",
                "transform_matrix": "OpenGL/Blender camera-to-world (camera looks along -z, y up)",
                "depth": "z-depth along the camera +z axis in world units, 0 where no surface"
                         + (f"; png16 stores round(depth * {DEPTH_PNG_SCALE:g})" if depth_format == "png16" else ""),
                "normals": "unit world-space face normals of gt_mesh.ply, 0 where no surface"
                           + ("; png stores round((n + 1) * 127.5)" if normal_format == "png" else ""),
                "masks": "255 where the pixel-center ray hits the object",
                "alpha": "straight alpha = fraction of the supersampled rays that hit",
            },
            "depth_format": depth_format, "normal_format": normal_format,
            "depth_png_scale": DEPTH_PNG_SCALE,
        }
        (tmp / "scene_info.json").write_text(json.dumps(info, indent=2))
        old = None
        if out_dir.exists():  # overwrite: move the old scene aside, swap in the new one, delete the old
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(old / "scene")
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_ground_truth(scene_dir, name: str) -> dict:
    """Read view ``name``'s ground truth: ``depth`` (H, W) float32 world z-depth, ``normals`` (H, W, 3)
    float32 unit world normals, ``mask`` (H, W) bool; zeros/False where empty (any stored format)."""
    root = Path(scene_dir)
    mask = np.asarray(Image.open(root / "masks" / f"{name}.png")) > 127
    if (root / "depth" / f"{name}.npy").exists():
        depth = np.load(root / "depth" / f"{name}.npy").astype(np.float32)
    else:
        depth = np.asarray(Image.open(root / "depth" / f"{name}.png")).astype(np.float32) / DEPTH_PNG_SCALE
    if (root / "normals" / f"{name}.npy").exists():
        normals = np.load(root / "normals" / f"{name}.npy").astype(np.float32)
    else:
        enc = np.asarray(Image.open(root / "normals" / f"{name}.png")).astype(np.float32)
        normals = enc / 127.5 - 1.0
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-8)
        normals[~mask] = 0.0
    return {"depth": depth, "normals": normals, "mask": mask}
