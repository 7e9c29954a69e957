"""Feed-forward predict path: input preparation, background removal, cameras, outputs, CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from recon3d.feedforward import registry
from recon3d.feedforward.predict import (CANONICAL_FILL, CANONICAL_RADIUS, canonical_source_cameras, image_to_3d,
                                         load_cameras, load_input_images, remove_background)
from recon3d.io.errors import DataError
from recon3d.runtime.checkpoint import atomic_torch_save
from tests import ff_tiny_models
from tests.ff_tiny_models import NAME, TinyConfig, TinyField


@pytest.fixture(autouse=True)
def tiny_registered():
    ff_tiny_models.register()
    yield
    registry.MODELS.pop(NAME, None)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A synthetic 'photo': a rendered object on a uniform blue-grey background, slight noise; + its true mask."""
    from recon3d.io.synthetic import Renderer, make_part_textured_object, sphere_cameras

    obj = make_part_textured_object(2, "random")
    cams = sphere_cameras(1, radius=3.0, width=120, height=90, seed=1)
    out = Renderer(obj, supersample=3).render(cams, 0)
    a = out["rgba"][..., 3:]
    bg = np.array([0.35, 0.45, 0.75], np.float32)
    rgb = out["rgba"][..., :3] * a + bg * (1 - a)
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 0.01, rgb.shape), 0, 1)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(path)
    return path, a[..., 0] > 0.5, out["rgba"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    atomic_torch_save(TinyField(TinyConfig()).checkpoint_payload(), path)
    return path


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_background_removal_recovers_mask(photo):
    path, truth, _ = photo
    rgb = np.asarray(Image.open(path)).astype(np.float32) / 255
    mask, notes = remove_background(rgb)
    assert _iou(mask, truth) > 0.9 and notes == []
    # a cluttered border is reported
    noisy = np.random.default_rng(1).uniform(0, 1, rgb.shape).astype(np.float32)
    assert "not uniform" in remove_background(noisy)[1][0]


def test_inputs_cropped_like_training_set(photo, tmp_path):
    path, _, rgba = photo
    images, masks, notes = load_input_images([path], 64)
    assert images.shape == (1, 3, 64, 64) and masks.shape == (1, 1, 64, 64)
    assert any("background removed" in n for n in notes)
    # RGBA cut-out: alpha is used, no background removal; the object's box spans CANONICAL_FILL of the side
    rgba_path = tmp_path / "cut.png"
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(rgba_path)
    images2, masks2, notes2 = load_input_images([rgba_path], 64)
    assert notes2 == []
    ys, xs = np.nonzero(masks2[0, 0].numpy() > 0.5)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert abs(side - CANONICAL_FILL * 64) <= 2
    assert abs((ys.max() + ys.min()) / 2 - 31.5) <= 1.5 and abs((xs.max() + xs.min()) / 2 - 31.5) <= 1.5
    assert torch.allclose(images2[0][:, 0, 0], torch.ones(3))  # white outside the object
    assert _iou(masks[0, 0].numpy() > 0.5, masks2[0, 0].numpy() > 0.5) > 0.85  # photo path ~ alpha path


def test_bad_images_raise_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError) as e:
        load_input_images([bad], 64)
    assert "broken.jpg" in str(e.value) and "\n" not in str(e.value)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(blank)
    with pytest.raises(DataError, match=r"blank.png: no object found"):
        load_input_images([blank], 64)


def test_canonical_cameras():
    K, c2w = canonical_source_cameras(4, 64)
    assert K.shape == (4, 3, 3) and c2w.shape == (4, 4, 4)
    assert torch.allclose(K[0, 0, 0], torch.tensor(32 / math.tan(math.radians(20))))
    centers = c2w[:, :3, 3]
    assert torch.allclose(centers.norm(dim=-1), torch.full((4,), CANONICAL_RADIUS), atol=1e-5)
    assert centers[0, 0] > 3 and abs(float(centers[0, 1])) < 1e-5 and centers[0, 2] > 0  # view 0 on +X, above
    assert torch.allclose(centers[1, :2], torch.tensor([0.0, float(centers[0, 0])]), atol=1e-5)  # 90 deg later
    # the origin projects to the image center in every view; image "up" is world +Z
    w2c = torch.linalg.inv(c2w)
    p = (w2c @ torch.tensor([0.0, 0.0, 0.0, 1.0]))[:, :3]
    uv = (K @ p[..., None])[..., 0]
    assert torch.allclose(uv[:, :2] / uv[:, 2:], torch.full((4, 2), 32.0), atol=1e-4)
    assert (c2w[:, 2, 1] < 0).all()  # camera +y (down) points to world -Z


def test_load_cameras_formats(tmp_path):
    K, c2w = canonical_source_cameras(2, 64)
    ours = tmp_path / "cams.json"
    ours.write_text(json.dumps({"frames": [{"file": f"{i}.png", "K": K[i].tolist(), "c2w": c2w[i].tolist(),
                                            "width": 64, "height": 64} for i in range(2)]}))
    a = load_cameras(ours)
    assert torch.allclose(a["c2w"], c2w) and torch.allclose(a["K"], K)
    gl = c2w.clone()
    gl[:, :3, 1:3] *= -1  # OpenCV -> OpenGL camera axes
    ns = tmp_path / "transforms.json"
    ns.write_text(json.dumps({"camera_angle_x": math.radians(40), "w": 64, "h": 64,
                              "frames": [{"file_path": f"{i}.png", "transform_matrix": gl[i].tolist()} for i in range(2)]}))
    b = load_cameras(ns)
    assert torch.allclose(b["c2w"], c2w, atol=1e-6) and torch.allclose(b["K"], K, atol=1e-4)
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [{"K": [[1]]}]}))
    with pytest.raises(DataError, match=r"bad.json: frame 0"):
        load_cameras(tmp_path / "bad.json")


def test_image_to_3d_outputs(photo, checkpoint, tmp_path):
    import trimesh

    path, _, _ = photo
    out = tmp_path / "pred"
    res = image_to_3d(NAME, [path], out, checkpoint=checkpoint, num_views=3, orbit_frames=4, mesh_resolution=32)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"inputs/input_00.png", "views/view_00.png", "views/view_02.png", "orbit.gif", "mesh.glb", "mesh.obj",
            "mesh.ply", "prediction.json"} <= names
    assert not any(n.startswith(".") or ".tmp" in n for n in names)  # atomic writes left no temp files
    assert len(res.views) == 3 and res.orbit == out / "orbit.gif" and Image.open(res.orbit).n_frames == 4
    assert np.asarray(Image.open(res.views[0])).shape == (64, 64, 3)
    glb = trimesh.load(res.meshes["glb"][0], force="mesh")
    assert len(glb.faces) > 100
    # the tiny model's density prior is a ball of radius 0.5 at the origin: the mesh is that ball
    r = np.linalg.norm(glb.vertices, axis=1)
    assert 0.4 < r.min() and r.max() < 0.6
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["model"] == NAME and summary["mesh"]["faces"] == res.mesh.num_faces
    assert summary["meshes"]["glb"] == ["mesh.glb"] and set(summary["timings_s"]) >= {"encode", "mesh", "total"}


def test_cli_predict_and_errors(photo, checkpoint, tmp_path, capsys):
    from recon3d.cli import main

    path, _, _ = photo
    out = tmp_path / "cli"
    rc = main(["predict", "--model", NAME, "--images", str(path), "--checkpoint", str(checkpoint), "--out", str(out),
               "--views", "1", "--orbit-frames", "0", "--mesh-resolution", "24", "--device", "cpu"])
    assert rc == 0 and (out / "mesh.glb").is_file() and not (out / "orbit.gif").exists()
    assert "predicted with tinyff" in capsys.readouterr().out
    bad = tmp_path / "nope.png"
    bad.write_text("text, not pixels")
    rc = main(["predict", "--model", NAME, "--images", str(bad), "--checkpoint", str(checkpoint), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope.png" in err and len(err.splitlines()) == 1
    assert main(["predict", "--model", "no-such-model", "--images", str(path)]) == 2
    assert main(["predict", "--model", NAME, "--images", str(path), "--checkpoint", str(tmp_path / "missing.pt")]) == 2


def test_image_to_3d_uv_texture(photo, checkpoint, tmp_path):
    """texture_size > 0: the predicted mesh is UV-unwrapped and baked from the same field; the texel
    under each vertex's UV has that vertex's colour (same field query), and GLB/OBJ carry the image."""
    from recon3d.mesh import load_mesh

    path, _, _ = photo
    out = tmp_path / "pred"
    res = image_to_3d(NAME, [path], out, checkpoint=checkpoint, num_views=1, orbit_frames=0, mesh_resolution=24,
                      texture_size=64)
    m = res.mesh
    assert m.uvs is not None and m.texture.shape == (64, 64, 3) and m.metadata["texture_size"] == 64
    # uvs origin bottom-left: texel row = (1 - v) * H
    u, v = m.uvs[:, 0], m.uvs[:, 1]
    tex = m.texture[np.clip(((1 - v) * 64).astype(int), 0, 63), np.clip((u * 64).astype(int), 0, 63)]
    err = np.abs(tex / 255.0 - m.vertex_colors).mean()
    assert err < 0.08, err
    back = load_mesh(res.meshes["glb"][0])
    assert back.texture is not None and back.num_faces == m.num_faces
    assert (out / "mesh.png").is_file()  # the OBJ's texture image
