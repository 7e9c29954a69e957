"""Import one mesh file with Blender's own importers and report what Blender sees, as JSON.

Runs inside Blender's Python (the ``bpy`` module of ``.venv-blender``, see
``scripts/setup_blender_env.sh``), never in recon3d's venv:

    .venv-blender/bin/python tests/blender/inspect_in_blender.py mesh.glb [--probe X,Y,Z ...]
        [--out facts.json] [--dump arrays.npz]

Steps: reset Blender to factory settings with an empty scene (and delete any object left), import the
file with the importer Blender uses for its suffix at its default settings (``.glb``/``.gltf``:
``import_scene.gltf``; ``.obj``: ``wm.obj_import``; ``.ply``: ``wm.ply_import``), then report:

* ``objects``: every object (name, type, ``matrix_world`` 4x4, ``dimensions``: Blender's own, i.e. the
  local bounding box times the scale, *before* the object's rotation) and, for
  meshes, vertex / face / loop (face corner) counts and whether all faces are triangles;
* ``world_bbox``: min / max / size of all mesh vertices in Blender's Z-up world, i.e. after the
  importer's object rotation (vertices mapped by ``obj.matrix_world``);
* ``materials``: per material, its image-texture nodes (image name, absolute file path or "packed",
  size, colour space) and what each texture's colour output feeds (node type, socket name);
* ``color_attributes``: name, domain (``POINT`` / ``CORNER``), data type (``FLOAT_COLOR`` /
  ``BYTE_COLOR``) and the active/render flags;
* ``probes``: for each ``--probe`` point (Blender world coordinates), the nearest vertex, its
  distance, its colour in every colour attribute both as ``linear`` (Blender's scene-linear value,
  ``.color``) and ``srgb`` (``.color_srgb``; CORNER attributes: mean over the vertex's corners, plus
  their spread), its UVs (every distinct corner UV, Blender's bottom-left origin) and the texel each UV
  falls on in each material image (``img.pixels`` as stored: sRGB-encoded values for 8-bit sRGB
  images, rows bottom-up).

``--dump`` writes the world-space vertices ``(V, 3)``, triangle indices ``(F, 3)`` (when all faces are
triangles) and per-vertex colours of the first colour attribute (``(V, 4)`` linear and sRGB) to an
``.npz`` for set comparisons in the test.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import bpy
import numpy as np

IMPORTERS = {
    ".glb": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    ".obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
    ".ply": lambda p: bpy.ops.wm.ply_import(filepath=p),
}


def reset_scene() -> None:
    """Factory settings, empty scene, no leftover objects or orphan meshes/materials/images."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for coll in (bpy.data.meshes, bpy.data.materials, bpy.data.images):
        for block in list(coll):
            coll.remove(block)


def _matrix(m) -> np.ndarray:
    return np.array([list(row) for row in m], dtype=np.float64)


def world_vertices(obj) -> np.ndarray:
    """(V, 3) float64 vertex positions of a mesh object in Blender's world (Z-up) coordinates."""
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float64)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    M = _matrix(obj.matrix_world)
    return co @ M[:3, :3].T + M[:3, 3]


def loop_vertex_indices(me) -> np.ndarray:
    idx = np.empty(len(me.loops), np.int64)
    me.loops.foreach_get("vertex_index", idx)
    return idx


def attribute_colors(me, attr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex (V, 4) linear and sRGB colours of a colour attribute, and the (V,) max spread of
    the corner values around each vertex (0 for POINT attributes)."""
    n = len(attr.data)
    lin = np.empty(n * 4, np.float32)
    srgb = np.empty(n * 4, np.float32)
    attr.data.foreach_get("color", lin)
    attr.data.foreach_get("color_srgb", srgb)
    lin, srgb = lin.reshape(-1, 4), srgb.reshape(-1, 4)
    V = len(me.vertices)
    if attr.domain == "POINT":
        return lin, srgb, np.zeros(V, np.float32)
    if attr.domain != "CORNER":
        raise ValueError(f"colour attribute {attr.name!r} has unsupported domain {attr.domain}")
    vi = loop_vertex_indices(me)
    count = np.bincount(vi, minlength=V).astype(np.float64)[:, None]
    out = []
    for c in (lin, srgb):
        s = np.zeros((V, 4), np.float64)
        np.add.at(s, vi, c)
        out.append((s / np.maximum(count, 1)).astype(np.float32))
    spread = np.zeros(V, np.float32)
    np.maximum.at(spread, vi, np.abs(lin - out[0][vi]).max(axis=1))
    return out[0], out[1], spread


def image_facts(img) -> dict:
    packed = img.packed_file is not None
    return {
        "name": img.name,
        "filepath": "packed" if packed else bpy.path.abspath(img.filepath),
        "packed": packed,
        "size": [int(img.size[0]), int(img.size[1])],
        "colorspace": img.colorspace_settings.name,
    }


def image_pixels(img) -> np.ndarray:
    """(H, W, 4) float32 ``img.pixels`` (rows bottom-up, as Blender stores them)."""
    W, H = int(img.size[0]), int(img.size[1])
    buf = np.empty(W * H * 4, np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(H, W, 4)


def material_facts(mat) -> dict:
    tex = []
    tree = mat.node_tree
    bsdf_base = None
    if tree is not None:
        for node in tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                feeds = [[l.to_node.type, l.to_socket.name] for l in tree.links if l.from_node == node]
                tex.append({"node": node.name, "feeds": feeds, **image_facts(node.image)})
            if node.type == "BSDF_PRINCIPLED":
                links = [l for l in tree.links if l.to_node == node and l.to_socket.name == "Base Color"]
                bsdf_base = [links[0].from_node.type, links[0].from_socket.name] if links else None
    return {"name": mat.name, "image_textures": tex, "principled_base_color_from": bsdf_base}


def probe_facts(obj, verts: np.ndarray, point, images) -> dict:
    me = obj.data
    p = np.asarray(point, np.float64)
    d = np.linalg.norm(verts - p, axis=1)
    vi = int(np.argmin(d))
    out = {"point": list(map(float, p)), "vertex": vi, "distance": float(d[vi]),
           "vertex_world": [float(x) for x in verts[vi]], "colors": {}, "uvs": {}, "texels": []}
    for attr in me.color_attributes:
        lin, srgb, spread = attribute_colors(me, attr)
        out["colors"][attr.name] = {"linear": [round(float(x), 6) for x in lin[vi]],
                                    "srgb": [round(float(x), 6) for x in srgb[vi]],
                                    "corner_spread": float(spread[vi])}
    corners = np.nonzero(loop_vertex_indices(me) == vi)[0]
    for layer in me.uv_layers:
        uv = np.empty(len(me.loops) * 2, np.float32)
        layer.data.foreach_get("uv", uv)
        uv = uv.reshape(-1, 2)[corners]
        distinct = np.unique(np.round(uv, 6), axis=0)
        out["uvs"][layer.name] = distinct.tolist()
        for img in images:
            px = image_pixels(img)
            H, W = px.shape[:2]
            for u, v in distinct:
                x = int(np.clip(np.floor(u * W), 0, W - 1))
                y = int(np.clip(np.floor(v * H), 0, H - 1))  # Blender rows are bottom-up, like uv v
                out["texels"].append({"image": img.name, "uv": [float(u), float(v)], "xy": [x, y],
                                      "stored": [round(float(c), 6) for c in px[y, x, :3]]})
    return out


def inspect(path: Path, probes: list, dump: Path | None) -> dict:
    suffix = path.suffix.lower()
    if suffix not in IMPORTERS:
        raise SystemExit(f"{path}: no Blender importer for {suffix!r}")
    reset_scene()
    before = len(bpy.data.objects)
    result = IMPORTERS[suffix](str(path))
    facts = {"file": str(path), "blender_version": bpy.app.version_string, "importer_result": sorted(result),
             "objects_before_import": before, "objects": []}
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    for obj in bpy.data.objects:
        f = {"name": obj.name, "type": obj.type, "matrix_world": _matrix(obj.matrix_world).round(6).tolist(),
             "dimensions": [round(float(x), 6) for x in obj.dimensions]}
        if obj.type == "MESH":
            me = obj.data
            f.update(vertices=len(me.vertices), faces=len(me.polygons), loops=len(me.loops),
                     all_triangles=all(len(p.vertices) == 3 for p in me.polygons),
                     materials=[m.name for m in me.materials if m is not None],
                     uv_layers=[l.name for l in me.uv_layers],
                     color_attributes=[{"name": a.name, "domain": a.domain, "data_type": a.data_type,
                                        "active": a.name == getattr(me.color_attributes.active_color, "name", None),
                                        "render": me.color_attributes.render_color_index
                                        == list(me.color_attributes).index(a)}
                                       for a in me.color_attributes])
        facts["objects"].append(f)
    facts["mesh_objects"] = len(meshes)
    facts["mesh_datablocks"] = len(bpy.data.meshes)
    facts["materials"] = [material_facts(m) for m in bpy.data.materials]
    if not meshes:
        return facts
    allv = np.concatenate([world_vertices(o) for o in meshes])
    lo, hi = allv.min(0), allv.max(0)
    facts["world_bbox"] = {"min": lo.round(6).tolist(), "max": hi.round(6).tolist(), "size": (hi - lo).round(6).tolist()}
    obj = meshes[0]
    verts = world_vertices(obj)
    images = [bpy.data.images[t["name"]] for m in facts["materials"] for t in m["image_textures"]]
    facts["probes"] = [probe_facts(obj, verts, p, images) for p in probes]
    if dump is not None:
        me = obj.data
        arrays = {"vertices": verts}
        if all(len(p.vertices) == 3 for p in me.polygons):
            tri = np.empty(len(me.polygons) * 3, np.int64)
            me.polygons.foreach_get("vertices", tri)
            arrays["faces"] = tri.reshape(-1, 3)
        if len(me.color_attributes):
            lin, srgb, _ = attribute_colors(me, me.color_attributes[0])
            arrays.update(colors_linear=lin, colors_srgb=srgb)
        np.savez(dump, **arrays)
    return facts


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--probe", action="append", default=[], help="X,Y,Z in Blender world coordinates")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    ap.add_argument("--dump", type=Path, help="write world vertices / faces / colours to this .npz")
    args = ap.parse_args(argv)
    if not args.path.is_file():
        raise SystemExit(f"{args.path}: no such file")
    probes = [[float(x) for x in p.split(",")] for p in args.probe]
    facts = inspect(args.path.resolve(), probes, args.dump)
    text = re.sub(r"\[\s+([-+\d.eE,\s]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  json.dumps(facts, indent=1))  # numeric lists on one line
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
