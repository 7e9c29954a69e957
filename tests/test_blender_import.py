"""recon3d's mesh exports opened by real Blender (bpy 5.0 from PyPI, in ``.venv-blender``).

Each test builds meshes with known geometry, colours and textures in recon3d's normalized frame,
exports them with :func:`recon3d.mesh.export_mesh` (undoing a non-trivial scene normalization),
imports every file with Blender's own importer at default settings in a subprocess
(``tests/blender/inspect_in_blender.py``) and checks what Blender holds:

* one mesh object; vertex and face counts equal to the exported mesh's (all three importers keep
  one Blender vertex per exported vertex: xatlas seams are already split in the files, and Blender's
  glTF importer does not merge vertices by default); the triangles themselves (connectivity and
  winding) and the signed volume (no mirroring, outward normals);
* upright at real scale in Blender's Z-up world: every vertex where the capture puts it (after the
  importer's own object rotation, ``matrix_world``), the known top at +Z;
* vertex colours: a colour attribute whose sRGB value (``color_srgb``) equals the intended sRGB
  colour within ``COLOR_TOL`` = 1/255 (8-bit storage in OBJ/PLY and in Blender's BYTE_COLOR
  attributes rounds by at most 0.5/255);
* textures: a material whose image-texture node (sRGB PNG: the exported ``.png`` for OBJ, packed for
  GLB) feeds the Principled BSDF's Base Color, the known vertex's UV in Blender, and the texel under
  it equal to the intended colour.

Skipped (with the reason) when ``.venv-blender`` is missing: ``make test-blender`` creates it.
Set ``RECON3D_BLENDER_FACTS=DIR`` to keep Blender's JSON reports.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.io.normalize import Normalization
from recon3d.mesh import TriangleMesh, export_mesh
from recon3d.mesh.ops import signed_volume

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[1]
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
SCRIPT = ROOT / "tests" / "blender" / "inspect_in_blender.py"
COLOR_TOL = 1.0 / 255.0 + 1e-4  # sRGB units
POS_TOL = 1e-4  # world units (the meshes span a few units)
FORMATS = (".glb", ".obj", ".ply")


@pytest.fixture(scope="session")
def blender() -> str:
    """Blender's version string; skips when the bpy environment is absent or broken (fails instead
    under ``RECON3D_REQUIRE_BLENDER=1``, as ``make test-blender`` sets, so CI cannot pass by skipping)."""
    give_up = pytest.fail if os.environ.get("RECON3D_REQUIRE_BLENDER") == "1" else pytest.skip
    if not BLENDER_PY.exists():
        give_up(f"no {BLENDER_PY.relative_to(ROOT)}: run scripts/setup_blender_env.sh (make test-blender)")
    r = subprocess.run([str(BLENDER_PY), "-c", "import bpy; print(bpy.app.version_string)"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        give_up(f"bpy does not import in {BLENDER_PY}: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout.strip().splitlines()[-1]


def inspect(path: Path, probes=()) -> tuple[dict, dict]:
    """Blender's JSON facts and dumped arrays (world vertices, faces, colours) for one file."""
    out, dump = path.with_name(path.name + ".facts.json"), path.with_name(path.name + ".arrays.npz")
    cmd = [str(BLENDER_PY), str(SCRIPT), str(path), "--out", str(out), "--dump", str(dump)]
    for p in probes:
        cmd += ["--probe", ",".join(f"{float(x):.9g}" for x in p)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"Blender failed on {path.name}:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    keep = os.environ.get("RECON3D_BLENDER_FACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / f"{path.parent.name}-{path.name}.json")
    with np.load(dump) as z:
        return json.loads(out.read_text()), {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------- test meshes
def _normalization() -> Normalization:
    """World -> normalized: scale 0.25, 30 degrees about z, a shift (as a scene loader would make)."""
    a = math.radians(30)
    R = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64)
    return Normalization.from_parts(scale=0.25, rotation=R, translation=torch.tensor([0.1, -0.2, 0.3]))


def _to_normalized(world: np.ndarray, norm: Normalization) -> np.ndarray:
    return norm.apply_points(torch.from_numpy(np.asarray(world, np.float64))).numpy()


def _to_world(normalized: np.ndarray, norm: Normalization) -> np.ndarray:
    return norm.inverse_points(torch.from_numpy(np.asarray(normalized, np.float64))).numpy()


# A tall, asymmetric tower in Blender's frame (Z up, capture units): a 0.6 x 0.4 x 2.0 box standing
# on z = 0.5 with a pyramid whose apex (vertex 8, the top) is off-centre towards +x / -y.
TOWER = np.array([[1.0, -2.0, 0.5], [1.6, -2.0, 0.5], [1.6, -1.6, 0.5], [1.0, -1.6, 0.5],
                  [1.0, -2.0, 2.5], [1.6, -2.0, 2.5], [1.6, -1.6, 2.5], [1.0, -1.6, 2.5], [1.45, -1.9, 3.1]])
TOWER_FACES = np.array([[0, 2, 1], [0, 3, 2]] + [f for i in range(4) for f in
                        ([i, (i + 1) % 4, (i + 1) % 4 + 4], [i, (i + 1) % 4 + 4, i + 4])]
                       + [[4 + i, 4 + (i + 1) % 4, 8] for i in range(4)])
APEX = 8
# distinct 8-bit sRGB colours, darks included (8-bit *linear* storage would turn 1/255 into 0)
TOWER_COLORS = np.array([[5, 20, 200], [128, 128, 128], [255, 0, 0], [1, 2, 3], [250, 128, 3], [0, 255, 0],
                         [64, 32, 16], [200, 200, 255], [255, 255, 0]], np.float32) / 255.0

# how each capture world's axes map to Blender's: Blender = world @ M.T
WORLD_TO_BLENDER = {"z": np.eye(3), "-y": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])}  # -y: (x, z, -y)


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``, the index of and distance to the nearest row of ``b``."""
    from scipy.spatial import cKDTree

    d, i = cKDTree(b).query(a)
    return i, d


def _canonical_triangles(faces: np.ndarray) -> np.ndarray:
    """Triangles rotated to start at their smallest index (orientation kept), rows sorted."""
    f = np.asarray(faces)
    k = np.argmin(f, axis=1)
    rolled = np.stack([f[np.arange(len(f)), (k + j) % 3] for j in range(3)], axis=1)
    return rolled[np.lexsort(rolled.T[::-1])]


def check_geometry(facts: dict, arrays: dict, expected: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """One mesh object holding exactly ``expected`` (V, 3) Blender-world vertices and ``faces``.

    Returns, for each Blender vertex, the index of the expected vertex at its position.
    """
    assert facts["mesh_objects"] == 1 and len(facts["objects"]) == 1, facts["objects"]
    obj = facts["objects"][0]
    assert (obj["vertices"], obj["faces"], obj["all_triangles"]) == (len(expected), len(faces), True)
    got = arrays["vertices"]
    idx, d = _closest(got, expected)
    back, d_back = _closest(expected, got)
    assert d.max() < POS_TOL and d_back.max() < POS_TOL, (d.max(), d_back.max())
    # connectivity and winding: the same triangles over the same positions (seam copies merged)
    _, key = np.unique(np.round(expected / POS_TOL).astype(np.int64), axis=0, return_inverse=True)
    key = key.reshape(-1)
    np.testing.assert_array_equal(_canonical_triangles(key[idx][arrays["faces"]]), _canonical_triangles(key[faces]))
    vol = signed_volume(TriangleMesh(got, arrays["faces"]))
    assert vol == pytest.approx(signed_volume(TriangleMesh(expected, faces)), rel=1e-4)
    np.testing.assert_allclose(facts["world_bbox"]["min"], expected.min(0), atol=POS_TOL)
    np.testing.assert_allclose(facts["world_bbox"]["max"], expected.max(0), atol=POS_TOL)
    return idx


def check_vertex_colors(facts: dict, arrays: dict, idx: np.ndarray, intended: np.ndarray) -> None:
    """A colour attribute whose per-vertex sRGB values equal the intended sRGB colours."""
    attrs = facts["objects"][0]["color_attributes"]
    assert len(attrs) == 1 and attrs[0]["domain"] in ("POINT", "CORNER"), attrs
    assert attrs[0]["data_type"] in ("FLOAT_COLOR", "BYTE_COLOR")
    err = np.abs(arrays["colors_srgb"][:, :3] - intended[idx])
    assert err.max() <= COLOR_TOL, f"max sRGB error {err.max() * 255:.2f}/255"
    # and the linear value Blender renders with is the sRGB decoding of it (no double conversion)
    from recon3d.mesh.export import srgb_to_linear

    np.testing.assert_allclose(arrays["colors_linear"][:, :3], srgb_to_linear(arrays["colors_srgb"][:, :3]), atol=2e-3)


def check_texture_material(facts: dict, png: Path | None, size: tuple[int, int]) -> dict:
    """One material whose sRGB image-texture node feeds the Principled BSDF's Base Color."""
    mats = [m for m in facts["materials"] if m["image_textures"]]
    assert len(mats) == 1, facts["materials"]
    assert facts["objects"][0]["materials"] == [mats[0]["name"]]
    tex = mats[0]["image_textures"]
    assert len(tex) == 1 and ["BSDF_PRINCIPLED", "Base Color"] in tex[0]["feeds"], tex
    assert tex[0]["colorspace"] == "sRGB" and tex[0]["size"] == [size[1], size[0]]
    if png is None:
        assert tex[0]["packed"], tex[0]  # GLB: embedded
    else:
        assert Path(tex[0]["filepath"]).resolve() == png.resolve()
    return tex[0]


def tower_mesh(up: str = "z", **appearance) -> tuple[TriangleMesh, Normalization, np.ndarray]:
    """The tower in the normalized frame of a capture whose up axis is ``up``; returns it, the
    normalization and the Blender-world positions it must have."""
    M = WORLD_TO_BLENDER[up]
    world = TOWER @ M  # M is orthonormal: Blender = world @ M.T  <=>  world = Blender @ M
    norm = _normalization()
    return TriangleMesh(_to_normalized(world, norm), TOWER_FACES, **appearance), norm, TOWER


def test_tower_faces_are_outward():
    assert signed_volume(TriangleMesh(TOWER, TOWER_FACES)) == pytest.approx(0.6 * 0.4 * 2.0 + 0.6 * 0.4 * 0.6 / 3)


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("up", ["z", "-y"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_vertex_colored_tower_upright_with_exact_colors(blender, tmp_path, suffix, up):
    mesh, norm, expected = tower_mesh(up, vertex_colors=TOWER_COLORS)
    path = export_mesh(mesh, tmp_path / f"tower{suffix}", normalization=norm, up_axis=up)[0]
    facts, arrays = inspect(path, probes=[expected[APEX]])
    idx = check_geometry(facts, arrays, expected, TOWER_FACES)
    # upright at real size: the apex is the top, 2.6 units above the base along Blender's Z
    probe = facts["probes"][0]
    assert probe["distance"] < POS_TOL and arrays["vertices"][probe["vertex"], 2] == pytest.approx(3.1, abs=POS_TOL)
    assert facts["world_bbox"]["size"] == pytest.approx([0.6, 0.4, 2.6], abs=POS_TOL)
    check_vertex_colors(facts, arrays, idx, TOWER_COLORS)
    (color,) = probe["colors"].values()
    np.testing.assert_allclose(color["srgb"][:3], [1.0, 1.0, 0.0], atol=COLOR_TOL)  # the apex is yellow
    assert color["corner_spread"] < 1e-6


def test_tilted_capture_formats_coincide_in_blender(blender, tmp_path):
    """A structure-from-motion-like world whose up is an arbitrary direction: in Blender all three
    files hold the same upright object (height along +Z preserved exactly)."""
    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    a = math.radians(40)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    Rt = np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K  # Blender frame -> capture world
    up = Rt @ [0.0, 0.0, 1.0]
    norm = _normalization()
    mesh = TriangleMesh(_to_normalized(TOWER @ Rt.T, norm), TOWER_FACES, vertex_colors=TOWER_COLORS)
    seen = {}
    for suffix in FORMATS:
        path = export_mesh(mesh, tmp_path / f"tilted{suffix}", normalization=norm, up_axis=up)[0]
        facts, arrays = inspect(path)
        v = arrays["vertices"]
        assert facts["objects"][0]["vertices"] == 9 and facts["objects"][0]["faces"] == 14
        np.testing.assert_allclose(np.sort(v[:, 2]), np.sort(TOWER[:, 2]), atol=POS_TOL)  # heights along +Z
        assert np.argmax(v[:, 2]) == np.argmax(np.abs(arrays["colors_srgb"][:, :3] - [1, 1, 0]).max(1) < COLOR_TOL)
        vol = signed_volume(TriangleMesh(v, arrays["faces"]))
        assert vol == pytest.approx(signed_volume(TriangleMesh(TOWER, TOWER_FACES)), rel=1e-4)
        seen[suffix] = v
    for suffix in (".obj", ".ply"):  # same positions as the GLB's, not just the same heights
        _, d = _closest(seen[suffix], seen[".glb"])
        assert d.max() < POS_TOL, (suffix, d.max())


def _tower_texture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4x4 texture of distinct colours; vertex i's uv at the centre of texel i (row-major from
    the top-left); returns (texture, uvs, intended per-vertex sRGB colours)."""
    rng = np.random.default_rng(3)
    red = rng.choice(256, size=16, replace=False)  # distinct reds
    tex = np.stack([red, red[::-1], (red * 7) % 256], axis=1).astype(np.uint8).reshape(4, 4, 3)
    r, c = np.divmod(np.arange(9), 4)
    uvs = np.stack([(c + 0.5) / 4, 1.0 - (r + 0.5) / 4], axis=1).astype(np.float32)
    return tex, uvs, tex[r, c].astype(np.float32) / 255.0


@pytest.mark.parametrize("suffix", FORMATS)
def test_textured_tower(blender, tmp_path, suffix):
    tex, uvs, intended = _tower_texture()
    mesh, norm, expected = tower_mesh("z", uvs=uvs, texture=tex)
    paths = export_mesh(mesh, tmp_path / f"textured{suffix}", normalization=norm)
    facts, arrays = inspect(paths[0], probes=[expected[APEX], expected[3]])
    idx = check_geometry(facts, arrays, expected, TOWER_FACES)
    if suffix == ".ply":  # no texture in PLY: the colours sampled from it, per vertex
        check_vertex_colors(facts, arrays, idx, intended)
        return
    check_texture_material(facts, tmp_path / "textured.png" if suffix == ".obj" else None, tex.shape[:2])
    assert facts["objects"][0]["color_attributes"] == []
    for probe, v in zip(facts["probes"], (APEX, 3)):
        (layer,) = probe["uvs"].values()
        np.testing.assert_allclose(layer, [uvs[v]], atol=1e-6)  # one uv, Blender's bottom-left origin
        (texel,) = probe["texels"]
        np.testing.assert_allclose(texel["stored"], intended[v], atol=0.5 / 255 + 1e-6)


# ---------------------------------------------------------------------------------- a SuGaR mesh
@pytest.fixture(scope="module")
def sugar_mesh() -> TriangleMesh:
    """A real SuGaR extraction (Poisson, decimation, colours from the Gaussians) of flat Gaussians
    tiling a sphere of radius 0.5 in the normalized frame: red on top (z > 0), blue below."""
    from recon3d.methods.sugar import preset
    from recon3d.methods.sugar._testing import ring_cameras, sphere_of_flat_gaussians
    from recon3d.methods.sugar.extract import extract_mesh

    cfg = preset("quick", points_per_view=800, poisson_depth=6, target_faces=2000)
    mesh = extract_mesh(sphere_of_flat_gaussians(1500, radius=0.5), ring_cameras(size=48, focal=90.0), cfg)
    assert mesh.vertex_colors is not None and mesh.vertex_normals is not None and mesh.num_faces > 500
    return mesh


@pytest.mark.parametrize("suffix", FORMATS)
def test_sugar_mesh_in_blender(blender, tmp_path, sugar_mesh, suffix):
    from recon3d.methods.sugar._testing import BOTTOM_COLOR, TOP_COLOR

    norm = _normalization()
    expected = _to_world(sugar_mesh.vertices, norm)  # Z-up capture: Blender's world is the capture's
    center = _to_world(np.zeros((1, 3)), norm)[0]
    path = export_mesh(sugar_mesh, tmp_path / f"sugar{suffix}", normalization=norm)[0]
    facts, arrays = inspect(path)
    idx = check_geometry(facts, arrays, expected, sugar_mesh.faces)
    assert facts["world_bbox"]["size"][2] == pytest.approx(4 * 2 * 0.5, rel=0.05)  # radius 2 in capture units
    check_vertex_colors(facts, arrays, idx, sugar_mesh.vertex_colors)
    col, z = arrays["colors_srgb"][:, :3], arrays["vertices"][:, 2] - center[2]
    red = np.linalg.norm(col - TOP_COLOR, axis=1) < np.linalg.norm(col - BOTTOM_COLOR, axis=1)
    assert (z[red] > 0).mean() > 0.97 and (z[~red] < 0).mean() > 0.97  # the red cap is on top


@pytest.mark.parametrize("suffix", FORMATS)
def test_baked_sugar_texture_in_blender(blender, tmp_path, sugar_mesh, suffix):
    """xatlas unwrap (seams split) + a baked texture; Blender samples the exported texels."""
    from recon3d.mesh.texture import bake_texture

    def height_ramp(points, normals):
        t = np.clip(points[:, 2:3] + 0.5, 0, 1)  # normalized z in [-0.5, 0.5] -> [0, 1]
        return np.concatenate([t, 0.3 + 0.4 * (normals[:, :1] > 0), 1 - t], axis=1)

    textured = bake_texture(sugar_mesh, height_ramp, size=128)
    assert textured.num_vertices > sugar_mesh.num_vertices  # vertices split along the seams
    norm = _normalization()
    expected = _to_world(textured.vertices, norm)
    top = int(np.argmax(expected[:, 2]))
    path = export_mesh(textured, tmp_path / f"baked{suffix}", normalization=norm)[0]
    facts, arrays = inspect(path, probes=[expected[top]])
    check_geometry(facts, arrays, expected, textured.faces)
    if suffix == ".ply":
        assert len(facts["objects"][0]["color_attributes"]) == 1
        return
    check_texture_material(facts, tmp_path / "baked.png" if suffix == ".obj" else None, (128, 128))
    H, W = textured.texture.shape[:2]
    probe = facts["probes"][0]
    assert probe["distance"] < POS_TOL and probe["texels"]
    for texel in probe["texels"]:  # every corner uv of the top vertex: the texel recon3d wrote there
        u, v = texel["uv"]
        x, y = texel["xy"]
        assert x == min(int(u * W), W - 1) and y == min(int(v * H), H - 1)
        intended = textured.texture[H - 1 - y, x].astype(np.float32) / 255.0  # Blender rows are bottom-up
        np.testing.assert_allclose(texel["stored"], intended, atol=0.5 / 255 + 1e-6)
        assert texel["stored"][0] > 0.9  # the top is red in the ramp
    corner_uvs = np.asarray(next(iter(probe["uvs"].values())))
    ours = textured.uvs[np.linalg.norm(expected - expected[top], axis=1) < POS_TOL]
    _, d = _closest(corner_uvs, ours)
    assert d.max() < 1e-5  # Blender's uvs of the top vertex are the ones recon3d wrote
