"""Mesh export: GLB / OBJ(+MTL+PNG) / PLY round trips through trimesh, scale and axes for Blender."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon3d.io.normalize import Normalization
from recon3d.mesh import TriangleMesh, export_mesh, load_mesh, up_from_cameras
from recon3d.mesh.export import rotation_between
from recon3d.mesh.ops import signed_volume

trimesh = pytest.importorskip("trimesh")


def _tetra_cloud():
    """A small closed mesh (octahedron) in world units, standing on z = 0.2 with its top at z = 2.2."""
    V = np.array([[1, 0, 1.2], [-1, 0, 1.2], [0, 1, 1.2], [0, -1, 1.2], [0, 0, 2.2], [0, 0, 0.2]], np.float64)
    F = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return V, F


def _normalization() -> Normalization:
    a = math.radians(30)
    R = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64)
    return Normalization.from_parts(scale=0.25, rotation=R, translation=torch.tensor([0.1, -0.2, 0.3]))


def _normalized_mesh(**kw):
    """The world mesh mapped into the normalized frame, as a method would produce it."""
    V, F = _tetra_cloud()
    norm = _normalization()
    Vn = norm.apply_points(torch.from_numpy(V)).numpy()
    return V, TriangleMesh(Vn, F, **kw), norm


def _blender_import(v: np.ndarray) -> np.ndarray:
    """What Blender's glTF / OBJ (default axes) importers do to file coordinates: Y-up -> Z-up."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


def test_rotation_between_axes():
    R = rotation_between("z", "y")
    np.testing.assert_allclose(R @ [1.0, 2.0, 3.0], [1.0, 3.0, -2.0], atol=1e-12)  # (x, y, z) -> (x, z, -y)
    for a, b in [("z", "y"), ("-y", "y"), ("x", "-x"), ((1.0, 2.0, 3.0), "z")]:
        R = rotation_between(a, b)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        from recon3d.mesh.export import axis_vector

        np.testing.assert_allclose(R @ axis_vector(a), axis_vector(b), atol=1e-12)


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_export_vertex_colors_scale_and_axes(tmp_path, suffix):
    V, F = _tetra_cloud()
    colors = np.linspace(0, 1, 18).reshape(6, 3).astype(np.float32)
    _, mesh, norm = _normalized_mesh(vertex_colors=colors, metadata={"method": "test"})
    paths = export_mesh(mesh, tmp_path / f"obj{suffix}", normalization=norm)
    assert paths[0] == tmp_path / f"obj{suffix}" and paths[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"obj{suffix}"]  # no temp files left behind

    raw = trimesh.load(paths[0], process=False, force="mesh")
    got = np.asarray(raw.vertices)
    assert len(got) == len(V)
    if suffix == ".ply":
        np.testing.assert_allclose(got, V, atol=1e-5)  # Z-up, capture units
    else:
        np.testing.assert_allclose(got, V @ rotation_between("z", "y").T, atol=1e-5)  # +Y up
        np.testing.assert_allclose(_blender_import(got), V, atol=1e-5)  # upright, real size in Blender
        assert got[:, 1].max() == pytest.approx(2.2, abs=1e-5)  # the top is the highest point along +Y
    np.testing.assert_array_equal(np.asarray(raw.faces), F)
    cols = np.asarray(raw.visual.vertex_colors)[:, :3] / 255.0
    if suffix == ".glb":  # glTF stores linear light
        from recon3d.mesh.export import linear_to_srgb

        np.testing.assert_allclose(linear_to_srgb(cols), colors, atol=0.02)  # trimesh reads it as 8-bit
    else:
        np.testing.assert_allclose(cols, colors, atol=1 / 255 + 1e-6)

    back = load_mesh(paths[0], normalization=norm)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_allclose(back.vertex_colors, colors, atol=1e-5 if suffix == ".glb" else 0.5 / 255 + 1e-6)
    assert signed_volume(back) > 0  # winding (outward normals) preserved


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_export_texture_round_trip(tmp_path, suffix):
    V, F = _tetra_cloud()
    rng = np.random.default_rng(0)
    uvs = rng.random((6, 2)).astype(np.float32)
    tex = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    _, mesh, norm = _normalized_mesh(uvs=uvs, texture=tex)
    paths = export_mesh(mesh, tmp_path / f"tex{suffix}", normalization=norm.transform)
    names = sorted(p.name for p in tmp_path.iterdir())
    if suffix == ".obj":
        assert names == ["tex.mtl", "tex.obj", "tex.png"]
        mtl = (tmp_path / "tex.mtl").read_text()
        assert "map_Kd tex.png" in mtl and "Kd 1.0 1.0 1.0" in mtl
        assert "mtllib tex.mtl" in (tmp_path / "tex.obj").read_text()
    else:
        assert names == ["tex.glb"]
    raw = trimesh.load(paths[0], process=False, force="mesh")
    np.testing.assert_allclose(_blender_import(np.asarray(raw.vertices)), V, atol=1e-5)
    np.testing.assert_allclose(np.asarray(raw.visual.uv), uvs, atol=1e-6)
    back = load_mesh(paths[0], normalization=norm)
    np.testing.assert_array_equal(back.texture, tex)
    np.testing.assert_allclose(back.uvs, uvs, atol=1e-6)


def test_ply_of_textured_mesh_gets_texture_colors(tmp_path):
    V, F = _tetra_cloud()
    tex = np.zeros((4, 4, 3), np.uint8)
    tex[:2] = [255, 0, 0]  # top half red (v > 0.5), bottom half blue
    tex[2:] = [0, 0, 255]
    uvs = np.array([[0.5, 0.9], [0.5, 0.1], [0.5, 0.9], [0.5, 0.1], [0.5, 0.9], [0.5, 0.1]], np.float32)
    mesh = TriangleMesh(V, F, uvs=uvs, texture=tex)
    p = export_mesh(mesh, tmp_path / "m.ply")[0]
    cols = np.asarray(trimesh.load(p, process=False).visual.vertex_colors)[:, :3]
    np.testing.assert_array_equal(cols[0], [255, 0, 0])
    np.testing.assert_array_equal(cols[1], [0, 0, 255])


def test_up_axis_options(tmp_path):
    V, F = _tetra_cloud()
    mesh = TriangleMesh(V, F)
    a = trimesh.load(export_mesh(mesh, tmp_path / "a.glb", up_axis=(0, 0, 2))[0], force="mesh", process=False)
    np.testing.assert_allclose(_blender_import(np.asarray(a.vertices)), V, atol=1e-6)
    b = trimesh.load(export_mesh(mesh, tmp_path / "b.glb", up_axis="y")[0], force="mesh", process=False)
    np.testing.assert_allclose(np.asarray(b.vertices), V, atol=1e-6)  # already Y-up: untouched
    c = trimesh.load(export_mesh(mesh, tmp_path / "c.ply", file_up="y")[0], force="mesh", process=False)
    np.testing.assert_allclose(np.asarray(c.vertices), V @ rotation_between("z", "y").T, atol=1e-6)


def test_up_from_cameras():
    from tests.conftest import orbit_c2w

    up = up_from_cameras(orbit_c2w(8, elevation_deg=20.0))
    assert up[2] > 0.9


def test_export_errors(tmp_path):
    V, F = _tetra_cloud()
    with pytest.raises(ValueError, match="unsupported mesh format"):
        export_mesh(TriangleMesh(V, F), tmp_path / "m.stl")
    with pytest.raises(ValueError, match="no faces"):
        export_mesh(TriangleMesh(V, np.zeros((0, 3), np.int64)), tmp_path / "m.glb")
    with pytest.raises(ValueError, match="unknown axis"):
        export_mesh(TriangleMesh(V, F), tmp_path / "m.glb", up_axis="up")
    assert list(tmp_path.iterdir()) == []


def test_scene_up_axis_and_formats(tmp_path):
    from types import SimpleNamespace

    from recon3d.core import Cameras
    from recon3d.mesh import export_mesh_formats, scene_up_axis
    from tests.conftest import orbit_c2w

    c2w = orbit_c2w(8, elevation_deg=25.0)
    cams = Cameras(c2w, fx=50.0, fy=50.0, cx=16.0, cy=16.0, width=32, height=32)
    assert scene_up_axis(SimpleNamespace(source_format="blender", cameras=cams)) == "z"
    # a COLMAP-like world whose up is -y: rotate the rig by +90 degrees about x (z -> -y)
    Rx = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    colmap = SimpleNamespace(source_format="colmap", cameras=Cameras(Rx @ c2w, fx=50.0, fy=50.0, cx=16.0, cy=16.0,
                                                                      width=32, height=32),
                             normalization=_normalization())
    up = scene_up_axis(colmap)
    world_up = _normalization().inverse().rotation.numpy() @ np.array([0.0, -1.0, 0.0])
    assert up @ world_up > 0.9
    V, F = _tetra_cloud()
    out = export_mesh_formats(TriangleMesh(V, F), tmp_path, "m", formats=("glb", ".ply"))
    assert sorted(out) == ["glb", "ply"] and all(p[0].exists() for p in out.values())


def test_glb_vertex_colors_are_linear_obj_ply_srgb(tmp_path):
    """glTF COLOR_0 is linear light (Blender reads it so); OBJ/PLY colours are sRGB."""
    import trimesh as _tm

    from recon3d.mesh import TriangleMesh, export_mesh
    from recon3d.mesh.export import load_mesh

    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    mesh = TriangleMesh(verts, [[0, 1, 2]], vertex_colors=np.full((3, 3), 0.5, np.float32))
    export_mesh(mesh, tmp_path / "c.glb")
    export_mesh(mesh, tmp_path / "c.ply")
    raw_glb = np.asarray(_tm.load(tmp_path / "c.glb", force="mesh", process=False).visual.vertex_colors)[:, :3]
    raw_ply = np.asarray(_tm.load(tmp_path / "c.ply", force="mesh", process=False).visual.vertex_colors)[:, :3]
    assert np.all(np.abs(raw_glb.astype(int) - 55) <= 1)  # 0.5 sRGB = 0.214 linear
    assert np.all(np.abs(raw_ply.astype(int) - 128) <= 1)
    back = load_mesh(tmp_path / "c.glb")
    assert np.allclose(back.vertex_colors, 0.5, atol=0.01)


def test_glb_colors_are_float_linear_and_keep_darks(tmp_path):
    """COLOR_0 is float32 linear light: dark sRGB values survive (8-bit linear would round 1/255 to 0)."""
    import json
    import struct

    from recon3d.mesh.export import srgb_to_linear

    V, F = _tetra_cloud()
    colors = np.array([[1, 2, 3], [5, 20, 200], [128, 128, 128], [255, 0, 0], [0, 0, 0], [250, 128, 3]],
                      np.float32) / 255
    path = export_mesh(TriangleMesh(V, F, vertex_colors=colors), tmp_path / "dark.glb")[0]
    data = path.read_bytes()
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + jlen])
    (prim,) = doc["meshes"][0]["primitives"]
    acc = doc["accessors"][prim["attributes"]["COLOR_0"]]
    assert (acc["componentType"], acc["type"], acc["count"]) == (5126, "VEC3", 6) and "normalized" not in acc
    view = doc["bufferViews"][acc["bufferView"]]
    binary = data[20 + jlen + 8:]
    assert view["byteOffset"] % 4 == 0 and doc["buffers"][0]["byteLength"] <= len(binary)
    raw = np.frombuffer(binary, "<f4", 18, view["byteOffset"]).reshape(6, 3)
    np.testing.assert_allclose(raw, srgb_to_linear(colors), rtol=1e-6, atol=1e-9)
    back = load_mesh(path)
    np.testing.assert_allclose(back.vertex_colors, colors, atol=1e-5)
    np.testing.assert_allclose(back.vertices, V, atol=1e-6)  # the other buffers survived the re-packing
    np.testing.assert_array_equal(back.faces, F)


@pytest.mark.parametrize("up", ["-y", (0.3, -0.2, 0.9), "x"])
def test_ply_holds_what_blender_makes_of_the_glb(tmp_path, up):
    """Blender's PLY importer applies no axis conversion: the PLY holds Blender's Z-up coordinates,
    the same ones its glTF importer makes of the Y-up GLB, for any capture up axis."""
    from recon3d.mesh.export import axis_vector

    V, F = _tetra_cloud()  # (0, 0, 2.2) is the top in a Z-up world; rotate the world so `up` is up
    R = rotation_between("z", up)
    mesh = TriangleMesh(V @ R.T, F)
    glb = trimesh.load(export_mesh(mesh, tmp_path / "m.glb", up_axis=up)[0], force="mesh", process=False)
    ply = trimesh.load(export_mesh(mesh, tmp_path / "m.ply", up_axis=up)[0], force="mesh", process=False)
    in_blender = _blender_import(np.asarray(glb.vertices))
    np.testing.assert_allclose(np.asarray(ply.vertices), in_blender, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ply.vertices)[:, 2], (V @ R.T) @ axis_vector(up), atol=1e-5)  # heights
    assert np.argmax(np.asarray(ply.vertices)[:, 2]) == 4  # the top is the highest point along +Z
    np.testing.assert_allclose(load_mesh(tmp_path / "m.ply", up_axis=up).vertices, mesh.vertices, atol=1e-5)
