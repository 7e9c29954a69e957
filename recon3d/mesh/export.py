"""Blender-ready mesh export: GLB, OBJ (+ MTL + PNG) and PLY, chosen by the file suffix.

Every mesh recon3d makes lives in the scene's *normalized* frame. :func:`export_mesh` maps it back
to the capture's units (undoing ``scene.normalization``), then rotates it into the axis convention
the file format expects, so that the object stands upright at its real size when imported with
Blender's default importer settings:

=======  ===========  ======================================================================
format   file up      why
=======  ===========  ======================================================================
.glb     +Y           glTF 2.0 mandates +Y up (and -Z forward); Blender's glTF importer
                      converts Y-up -> Z-up with (x, y, z) -> (x, -z, y).
.obj     +Y           Blender's OBJ importer defaults to "Forward -Z, Up Y", the same
                      conversion; most other tools also read OBJ as Y-up.
.ply     +Z           Blender's PLY importer applies no axis conversion (its "Forward Y, Up Z"
                      default is the identity), so the file holds Blender's Z-up coordinates:
                      exactly what its glTF/OBJ importers make of the Y-up files, hence all
                      three formats coincide in Blender. A Z-up capture is written unrotated.
=======  ===========  ======================================================================

``up_axis`` names the capture world's up direction: ``'z'`` (default: Blender, NeRF-synthetic,
nerfstudio and recon3d's synthetic worlds), ``'y'``, ``'-y'`` (COLMAP/OpenCV worlds often have
-y up), ..., or any 3-vector (e.g. :func:`up_from_cameras` for a structure-from-motion world). The
rotation from world up to file up is the smallest one; for the default Z-up world written as Y-up
it is ``(x, y, z) -> (x, z, -y)`` (Blender's glTF/OBJ importers apply exactly the inverse). A
``'z'`` file up (PLY) is that Y-up rotation followed by Blender's Y-up -> Z-up import conversion
``(x, y, z) -> (x, -z, y)``: the identity for Z-up captures, and for other captures the same
orientation the GLB/OBJ files get in Blender (a plain smallest rotation to +Z could differ from it
by a turn about Z).

Appearance: UV textures (``mesh.uvs`` + ``mesh.texture``) go to GLB as an embedded PNG and to OBJ as
``<stem>.mtl`` + ``<stem>.png`` beside the ``.obj``; vertex colours go to GLB ``COLOR_0``, OBJ
``v x y z r g b`` lines and PLY ``red/green/blue``. PLY has no standard texture: a textured mesh
is written with per-vertex colours sampled from its texture.

Colour spaces: ``TriangleMesh`` colours and textures are sRGB. glTF defines ``COLOR_0`` as *linear*
(Blender's glTF importer reads it so), so GLB vertex colours are converted to linear light and
stored as float32 (8-bit linear would lose the darks: sRGB 5/255 would round to 0); OBJ and PLY
colours are read as sRGB by Blender and stay sRGB (8-bit). Textures are sRGB PNGs in every format.

Writes are atomic: files are written to a temporary folder beside the destination and moved into
place only when all of them are complete.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .types import TriangleMesh

FORMATS = (".glb", ".obj", ".ply")
FILE_UP = {".glb": "y", ".obj": "y", ".ply": "z"}  # "z": Blender's Z-up world (see the module docstring)
# Blender's glTF/OBJ importers (default axes) take file Y-up coordinates to its Z-up world by this map
_Y_UP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

_AXES = {
    "x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0),
    "y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
    "z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0),
}

UpAxis = Union[str, Sequence[float], np.ndarray]


# ---------------------------------------------------------------------------------- axes / units
def axis_vector(axis: UpAxis) -> np.ndarray:
    """(3,) float64 unit vector for ``'x' | '-x' | 'y' | '-y' | 'z' | '-z'`` or a 3-vector."""
    if isinstance(axis, str):
        key = axis.strip().lower().lstrip("+")
        if key not in _AXES:
            raise ValueError(f"unknown axis {axis!r}; expected one of {sorted(_AXES)} or a 3-vector")
        return np.asarray(_AXES[key], dtype=np.float64)
    v = np.asarray(axis, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-12:
        raise ValueError(f"an axis must be a name or a non-zero 3-vector, got {axis!r}")
    return v / np.linalg.norm(v)


def rotation_between(src: UpAxis, dst: UpAxis) -> np.ndarray:
    """(3, 3) float64 smallest rotation taking direction ``src`` to ``dst``.

    Opposite directions are related by a half turn about the x axis (about z when they lie on x).
    ``rotation_between('z', 'y')`` is ``(x, y, z) -> (x, z, -y)``.
    """
    a, b = axis_vector(src), axis_vector(dst)
    c = float(a @ b)
    if c > 1.0 - 1e-12:
        return np.eye(3)
    if c < -1.0 + 1e-12:
        axis = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
        axis = axis - (axis @ a) * a
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    v = np.cross(a, b)
    K = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + K + K @ K / (1.0 + c)


def up_from_cameras(c2w) -> np.ndarray:
    """(3,) world "up" of a capture: the mean camera up vector (OpenCV ``-y`` axis), unit length.

    Useful for structure-from-motion worlds whose axes are arbitrary: people hold cameras upright.
    ``c2w``: (N, 4, 4) or (N, 3, 4) OpenCV camera-to-world (numpy or torch).
    """
    m = c2w.detach().cpu().numpy() if hasattr(c2w, "detach") else np.asarray(c2w)
    up = -np.asarray(m, dtype=np.float64)[:, :3, 1].mean(axis=0)
    n = np.linalg.norm(up)
    if n < 1e-9:
        raise ValueError("camera up vectors cancel out; pass up_axis explicitly")
    return up / n


def normalized_to_world(normalization) -> np.ndarray:
    """(4, 4) float64 normalized -> capture-world similarity from a normalization.

    ``normalization``: None (identity), a :class:`recon3d.io.normalize.Normalization`, or its
    (4, 4) world -> normalized ``transform`` (numpy / torch / nested lists).
    """
    if normalization is None:
        return np.eye(4)
    T = getattr(normalization, "transform", normalization)
    if hasattr(T, "detach"):
        T = T.detach().cpu().numpy()
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"normalization must be a Normalization or a finite 4x4 matrix, got shape {T.shape}")
    return np.linalg.inv(T)


def mesh_in_capture_units(mesh: TriangleMesh, normalization) -> TriangleMesh:
    """A copy of ``mesh`` (normalized world) in the capture's own units: ``normalization`` (a
    Normalization, its 4x4 matrix, or None) undone by :func:`normalized_to_world`."""
    if normalization is None or getattr(normalization, "is_identity", False):
        return mesh
    out = mesh.transformed(normalized_to_world(normalization))
    out.metadata = {**mesh.metadata, "units": "source"}
    return out


def export_transform(normalization=None, up_axis: UpAxis = "z", file_up: UpAxis | None = "y") -> np.ndarray:
    """(4, 4) float64 map from the normalized frame to the file's coordinates.

    ``file_up``: None keeps the world's axes; ``'z'`` gives Blender's Z-up world as its Y-up
    importers produce it (``_Y_UP_TO_BLENDER @ rotation_between(up_axis, 'y')``, the identity for a
    Z-up world); any other axis name / 3-vector: the smallest rotation from ``up_axis`` to it.
    """
    T = normalized_to_world(normalization)
    if file_up is not None:
        R = np.eye(4)
        if isinstance(file_up, str) and file_up.strip().lower().lstrip("+") == "z":
            R[:3, :3] = _Y_UP_TO_BLENDER @ rotation_between(up_axis, "y")
        else:
            R[:3, :3] = rotation_between(up_axis, file_up)
        T = R @ T
    return T


# ---------------------------------------------------------------------------------- conversion
def _texture_colors(mesh: TriangleMesh) -> np.ndarray:
    """(V, 3) float32 colours sampled (bilinear) from the texture at each vertex's uv."""
    tex = mesh.texture.astype(np.float32) / 255.0
    H, W = tex.shape[:2]
    u = np.clip(mesh.uvs[:, 0], 0.0, 1.0) * W - 0.5
    v = (1.0 - np.clip(mesh.uvs[:, 1], 0.0, 1.0)) * H - 0.5  # uv origin bottom-left, rows top-down
    x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    xa, xb = np.clip(x0, 0, W - 1), np.clip(x0 + 1, 0, W - 1)
    ya, yb = np.clip(y0, 0, H - 1), np.clip(y0 + 1, 0, H - 1)
    c = (tex[ya, xa] * (1 - fx) * (1 - fy) + tex[ya, xb] * fx * (1 - fy)
         + tex[yb, xa] * (1 - fx) * fy + tex[yb, xb] * fx * fy)
    return c[:, :3].astype(np.float32)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded colours in [0, 1] -> linear light (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear-light colours in [0, 1] -> sRGB encoding (inverse of :func:`srgb_to_linear`)."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


def _colors_u8(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    rgba = np.concatenate([c, np.ones((len(c), 1), np.float32)], axis=1)
    return (rgba * 255.0 + 0.5).astype(np.uint8)


def to_trimesh(mesh: TriangleMesh, texture_name: str = "material_0", keep_texture: bool = True,
               linear_vertex_colors: bool = False):
    """A ``trimesh.Trimesh`` (unprocessed: vertex order kept) with the mesh's colours or texture.

    ``linear_vertex_colors``: store vertex colours as linear light (glTF's COLOR_0 is linear by the
    spec, and Blender's glTF importer reads it so; OBJ/PLY colours are read as sRGB and stay sRGB).
    Textures stay sRGB in every format (glTF base-colour textures are sRGB).
    """
    import trimesh
    from PIL import Image

    kw = {}
    if mesh.vertex_normals is not None:
        kw["vertex_normals"] = mesh.vertex_normals
    tm = trimesh.Trimesh(vertices=mesh.vertices.astype(np.float64), faces=mesh.faces, process=False,
                         validate=False, **kw)
    if mesh.texture is not None and keep_texture:
        img = Image.fromarray(np.ascontiguousarray(mesh.texture[..., :3]), mode="RGB")
        material = trimesh.visual.material.SimpleMaterial(
            image=img, diffuse=[255, 255, 255, 255], ambient=[255, 255, 255, 255], name=texture_name)
        tm.visual = trimesh.visual.TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material)
    elif mesh.vertex_colors is not None or mesh.texture is not None:
        cols = mesh.vertex_colors if mesh.vertex_colors is not None else _texture_colors(mesh)
        if linear_vertex_colors:
            cols = srgb_to_linear(cols)
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=_colors_u8(cols))
    return tm


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# ---------------------------------------------------------------------------------- GLB chunks
_GLB_COMPONENTS = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_GLB_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _glb_split(data: bytes) -> tuple[dict, bytes]:
    """A binary glTF's JSON document and BIN chunk."""
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError("not a glTF 2.0 binary (.glb)")
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    if jtype != b"JSON":
        raise ValueError("the first GLB chunk is not JSON")
    doc = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<I4s", data, off)
        if btype == b"BIN\x00":
            binary = data[off + 8:off + 8 + blen]
    return doc, binary


def _glb_join(doc: dict, binary: bytes) -> bytes:
    j = json.dumps(doc, separators=(",", ":")).encode()
    j += b" " * (-len(j) % 4)
    b = binary + b"\x00" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(j), b"JSON") + j
    if b:
        chunks += struct.pack("<I4s", len(b), b"BIN\x00") + b
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def _glb_accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """(count, width) values of a tightly packed accessor; normalized integers mapped to [0, 1]."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_GLB_COMPONENTS[acc["componentType"]]).newbyteorder("<")
    width = _GLB_WIDTH[acc["type"]]
    if view.get("byteStride", dtype.itemsize * width) != dtype.itemsize * width:
        raise ValueError("interleaved glTF accessors are not supported")
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    a = np.frombuffer(binary, dtype, acc["count"] * width, start).reshape(-1, width)
    if acc.get("normalized") and dtype.kind == "u":
        return a.astype(np.float32) / np.iinfo(dtype).max
    return a.astype(np.float32)


def _glb_float_colors(data: bytes, linear: np.ndarray) -> bytes:
    """The GLB with its (single) mesh's ``COLOR_0`` replaced by (V, 3) float32 linear colours."""
    doc, binary = _glb_split(data)
    prims = [p for m in doc.get("meshes", []) for p in m["primitives"] if "COLOR_0" in p["attributes"]]
    if len(prims) != 1:
        raise ValueError(f"expected one coloured glTF primitive, found {len(prims)}")
    acc = doc["accessors"][prims[0]["attributes"]["COLOR_0"]]
    if acc["count"] != len(linear) or any(a.get("bufferView") == acc["bufferView"] for a in doc["accessors"]
                                          if a is not acc):
        raise ValueError("the GLB's COLOR_0 accessor does not match the mesh's vertices")
    views = doc["bufferViews"]
    parts = [binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]] for v in views]
    parts[acc["bufferView"]] = np.ascontiguousarray(linear, dtype="<f4").tobytes()
    out = bytearray()
    for v, part in zip(views, parts):  # re-pack, every view 4-byte aligned
        out += b"\x00" * (-len(out) % 4)
        v["byteOffset"], v["byteLength"] = len(out), len(part)
        out += part
    for key in ("normalized", "min", "max", "byteOffset"):
        acc.pop(key, None)
    acc.update(componentType=5126, type="VEC3")
    doc["buffers"][0]["byteLength"] = len(out)
    return _glb_join(doc, bytes(out))


def _glb_vertex_colors(path: Path, num_vertices: int) -> np.ndarray | None:
    """(V, 3) linear colours of a single-primitive GLB's ``COLOR_0`` at full precision, or None."""
    doc, binary = _glb_split(path.read_bytes())
    prims = [p for m in doc.get("meshes", []) for p in m["primitives"]]
    if len(prims) != 1 or "COLOR_0" not in prims[0]["attributes"]:
        return None
    c = _glb_accessor(doc, binary, prims[0]["attributes"]["COLOR_0"])
    return c[:, :3] if len(c) == num_vertices else None


# ---------------------------------------------------------------------------------- writers
def _write_glb(mesh: TriangleMesh, folder: Path, stem: str) -> list[Path]:
    import trimesh

    tm = to_trimesh(mesh, texture_name=stem, linear_vertex_colors=True)
    tm.metadata = {"recon3d": _jsonable(mesh.metadata)} if mesh.metadata else {}
    scene = trimesh.Scene(geometry={stem: tm})
    data = trimesh.exchange.gltf.export_glb(scene, include_normals=mesh.vertex_normals is not None)
    if mesh.texture is None and mesh.vertex_colors is not None:  # trimesh wrote 8-bit linear: refine
        data = _glb_float_colors(data, srgb_to_linear(mesh.vertex_colors))
    out = folder / f"{stem}.glb"
    out.write_bytes(data)
    return [out]


def _write_obj(mesh: TriangleMesh, folder: Path, stem: str) -> list[Path]:
    from PIL import Image
    from trimesh.exchange.obj import export_obj

    textured = mesh.texture is not None
    tm = to_trimesh(mesh, texture_name=stem)
    header = "recon3d mesh; +Y up (Blender OBJ import default: forward -Z, up Y)"
    if not textured:
        text = export_obj(tm, include_normals=mesh.vertex_normals is not None, include_color=True,
                          include_texture=False, header=header)
        out = folder / f"{stem}.obj"
        out.write_text(text)
        return [out]
    text, _ = export_obj(tm, include_normals=mesh.vertex_normals is not None, include_texture=True,
                         return_texture=True, mtl_name=f"{stem}.mtl", header=header)
    # Our own MTL: white diffuse so viewers that multiply Kd by map_Kd show the texture unchanged.
    usemtl = [ln.split(None, 1)[1] for ln in text.splitlines() if ln.startswith("usemtl ")]
    mat = usemtl[0] if usemtl else stem
    if not usemtl:
        text = text.replace(f"mtllib {stem}.mtl\n", f"mtllib {stem}.mtl\nusemtl {mat}\n", 1)
    mtl = (f"# recon3d material\nnewmtl {mat}\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\n"
           f"Ns 1.0\nd 1.0\nillum 1\nmap_Kd {stem}.png\n")
    paths = [folder / f"{stem}.obj", folder / f"{stem}.mtl", folder / f"{stem}.png"]
    paths[0].write_text(text)
    paths[1].write_text(mtl)
    Image.fromarray(np.ascontiguousarray(mesh.texture[..., :3]), mode="RGB").save(paths[2], format="PNG")
    return paths


def _write_ply(mesh: TriangleMesh, folder: Path, stem: str) -> list[Path]:
    from trimesh.exchange.ply import export_ply

    tm = to_trimesh(mesh, keep_texture=False)
    out = folder / f"{stem}.ply"
    out.write_bytes(export_ply(tm, encoding="binary", vertex_normal=mesh.vertex_normals is not None))
    return [out]


_WRITERS = {".glb": _write_glb, ".obj": _write_obj, ".ply": _write_ply}


def export_mesh(
    mesh: TriangleMesh,
    path: str | os.PathLike,
    normalization=None,
    up_axis: UpAxis = "z",
    file_up: UpAxis | None | str = "auto",
) -> list[Path]:
    """Write ``mesh`` to ``path`` (.glb / .obj / .ply by suffix), in the capture's units and Blender-ready axes.

    Args:
        mesh: a :class:`TriangleMesh` in the normalized frame (vertices (V, 3), normalized units).
        path: destination; the suffix picks the format. An OBJ with a texture also writes
            ``<stem>.mtl`` and ``<stem>.png`` beside it.
        normalization: the scene's world -> normalized similarity (``scene.normalization``, or its
            (4, 4) matrix) to undo, or None when the mesh is already in world units.
        up_axis: the capture world's up direction (``'z'`` by default; see the module docstring).
        file_up: the up axis written to the file: ``'auto'`` (+Y for GLB/OBJ, Blender's Z-up world
            for PLY), None (no rotation), or an axis name / 3-vector.
    Returns:
        The written paths (the mesh file first).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(f"unsupported mesh format {path.suffix!r} for {path}; use one of {', '.join(FORMATS)}")
    if mesh.num_faces == 0:
        raise ValueError(f"cannot export {path.name}: the mesh has no faces")
    target = FILE_UP[suffix] if (isinstance(file_up, str) and file_up == "auto") else file_up
    T = export_transform(normalization, up_axis, target)
    out_mesh = mesh.transformed(T) if not np.allclose(T, np.eye(4)) else mesh
    if out_mesh.vertex_normals is not None:
        n = out_mesh.vertex_normals
        out_mesh.vertex_normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent))
    try:
        written = _WRITERS[suffix](out_mesh, tmp, path.stem)
        for f in written:
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        final = []
        # the mesh file goes last, so a reader never sees it before its material / texture
        for f in written[1:] + written[:1]:
            dst = path.parent / f.name
            os.replace(f, dst)
            final.append(dst)
        return final[-1:] + final[:-1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_mesh(path: str | os.PathLike, normalization=None, up_axis: UpAxis = "z",
              file_up: UpAxis | None | str = "auto") -> TriangleMesh:
    """Read a file written by :func:`export_mesh` back into the normalized frame (inverse transforms).

    Colours / textures / uvs are read when present. Meant for round trips and tests; any mesh file
    trimesh reads works, with the same axis convention assumed.
    """
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    loaded = trimesh.load(path, process=False, force="mesh")
    verts = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    colors = uvs = texture = None
    vis = loaded.visual
    if isinstance(vis, trimesh.visual.TextureVisuals) and vis.uv is not None:
        img = getattr(vis.material, "image", None)
        if img is None and hasattr(vis.material, "baseColorTexture"):
            img = vis.material.baseColorTexture
        if img is not None:
            uvs = np.asarray(vis.uv, dtype=np.float32)
            texture = np.asarray(img.convert("RGB"), dtype=np.uint8)
    elif getattr(vis, "kind", None) == "vertex":
        colors = np.asarray(vis.vertex_colors, dtype=np.float32)[:, :3] / 255.0
        if suffix in (".glb", ".gltf"):  # stored linear (see _write_glb), float32 when recon3d wrote it
            exact = _glb_vertex_colors(path, len(verts)) if suffix == ".glb" else None
            colors = linear_to_srgb(colors if exact is None else exact)
    mesh = TriangleMesh(verts, faces, vertex_colors=colors, uvs=uvs, texture=texture)
    target = FILE_UP.get(suffix) if (isinstance(file_up, str) and file_up == "auto") else file_up
    T = export_transform(normalization, up_axis, target)
    return mesh.transformed(np.linalg.inv(T))


def export_mesh_formats(mesh: TriangleMesh, folder: str | os.PathLike, stem: str = "mesh",
                        formats: Sequence[str] = ("glb", "obj", "ply"), normalization=None,
                        up_axis: UpAxis = "z") -> dict[str, list[Path]]:
    """:func:`export_mesh` to ``folder/stem.<format>`` for each format; returns {format: paths}."""
    out = {}
    for fmt in formats:
        fmt = fmt.lower().lstrip(".")
        out[fmt] = export_mesh(mesh, Path(folder) / f"{stem}.{fmt}", normalization=normalization, up_axis=up_axis)
    return out


def scene_up_axis(scene) -> UpAxis:
    """The capture world's up axis for a :class:`recon3d.io.Scene`: ``'z'`` for Blender / nerfstudio
    datasets (and recon3d's synthetic scenes), else the mean camera up vector in the capture's world
    (structure-from-motion / COLMAP / LLFF worlds have arbitrary axes)."""
    if getattr(scene, "source_format", "") in ("blender", "nerfstudio"):
        return "z"
    c2w = scene.cameras.c2w
    norm = getattr(scene, "normalization", None)
    if norm is not None:
        c2w = norm.inverse_c2w(c2w.double())
    return up_from_cameras(c2w)


def mesh_to_bytes(mesh: TriangleMesh, file_type: str = "glb", **kw) -> bytes:
    """The GLB/PLY bytes :func:`export_mesh` would write (for viewers/apps that want a buffer)."""
    with tempfile.TemporaryDirectory() as d:
        p = export_mesh(mesh, Path(d) / f"mesh.{file_type.lstrip('.')}", **kw)[0]
        return p.read_bytes()


__all__ = ["export_mesh", "export_mesh_formats", "scene_up_axis", "load_mesh", "mesh_to_bytes", "to_trimesh", "export_transform", "rotation_between",
           "axis_vector", "up_from_cameras", "normalized_to_world", "FORMATS"]
