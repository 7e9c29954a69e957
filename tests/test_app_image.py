"""Image to 3D through the app's code path, with a real (untrained, tiny) LRM checkpoint in a temp data folder."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from apps import image_tab
from apps.safety import is_within
from apps.settings import AppSettings
from recon3d.io.errors import DataError
from tests.browser.helpers import EXAMPLE, untrained_lrm_data


@pytest.fixture
def settings(tmp_path):
    return AppSettings(workdir=str(tmp_path / "work"), runs_roots=[], mesh_resolution=24, orbit_frames=2,
                       num_views=1).resolved()


@pytest.fixture
def lrm_data(tmp_path, monkeypatch):
    """``$RECON3D_DATA/checkpoints/lrm.pt``: an untrained tiny LRM; returns an iso-level sure to give a surface."""
    level = untrained_lrm_data(tmp_path / "data")
    monkeypatch.setenv("RECON3D_DATA", str(tmp_path / "data"))
    return level


def test_models_listed_only_with_a_checkpoint(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("RECON3D_DATA", str(tmp_path / "empty"))
    assert image_tab.available_models() == []
    with pytest.raises(DataError, match="no image-to-3D checkpoint is installed"):
        image_tab.run_image_to_3d(settings, EXAMPLE, "lrm")


def test_examples_fall_back_to_sample_scene_views(tmp_path):
    s = AppSettings(example_dirs=[str(tmp_path / "none")])
    ex = image_tab.list_examples(s)
    assert [p.name for p in ex] == ["r_0.png", "r_13.png", "r_30.png"] and all(p.is_file() for p in ex)
    (tmp_path / "mine").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "mine" / "cup.png")
    assert [p.name for p in image_tab.list_examples(AppSettings(example_dirs=[str(tmp_path / "mine")]))] == ["cup.png"]


def test_image_to_3d_end_to_end(settings, lrm_data, tmp_path):
    import trimesh

    settings.density_threshold = lrm_data
    assert image_tab.available_models() == ["lrm"]
    r = image_tab.run_image_to_3d(settings, EXAMPLE, "lrm", user_name="../My Object.png")
    files = [r.model_input, r.glb, r.obj_zip, r.ply, r.turntable, *r.views]
    assert all(p is not None and p.is_file() and is_within(p, settings.workdir) for p in files)
    assert r.job_dir.parent == settings.jobs_dir and "My_Object" in r.job_dir.name
    mesh = trimesh.load(r.glb, force="mesh")
    assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all()
    obj_parts = {p.name for p in (r.job_dir / "out").glob("mesh.*") if p.suffix in (".obj", ".mtl", ".png")}
    with zipfile.ZipFile(r.obj_zip) as zf:
        assert "mesh.obj" in obj_parts and set(zf.namelist()) == obj_parts
        zf.extractall(tmp_path / "unzipped")
    assert len(trimesh.load(tmp_path / "unzipped" / "mesh.obj", force="mesh").faces) == len(mesh.faces)
    assert r.downloads == [r.glb, r.obj_zip, r.ply] and len(r.views) == 1
    assert "made a" in r.summary and "`My_Object.png`" in r.summary


def test_image_to_3d_with_uv_texture(settings, lrm_data, tmp_path):
    """The "UV texture" option: the GLB carries a texture image of the configured size and the OBJ
    download zips the texture PNG with the mesh; without it, vertex colours only."""
    from recon3d.mesh import load_mesh

    settings.density_threshold = lrm_data
    settings.texture_size = 64
    r = image_tab.run_image_to_3d(settings, EXAMPLE, "lrm", texture=True)
    m = load_mesh(r.glb)
    assert m.texture is not None and m.texture.shape[:2] == (64, 64) and m.num_faces > 0
    with zipfile.ZipFile(r.obj_zip) as zf:
        assert {"mesh.obj", "mesh.mtl", "mesh.png"} <= set(zf.namelist())
    plain = image_tab.run_image_to_3d(settings, EXAMPLE, "lrm")
    assert load_mesh(plain.glb).texture is None
    assert image_tab.predict_options(settings)["texture_size"] == 0
    assert image_tab.predict_options(settings, texture=True)["texture_size"] == 64


def test_bad_uploads_fail_before_the_model_runs(settings, lrm_data, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(blank)
    cases = [(None, "upload a photo"), (tmp_path / "notes.txt", "notes.txt: is not an image file"),
             (tmp_path / "broken.png", "broken.png: is corrupt or truncated|broken.png: is not a readable image"),
             (blank, "blank.png: no object found")]
    for upload, msg in cases:
        with pytest.raises(DataError, match=msg) as e:
            image_tab.run_image_to_3d(settings, upload, "lrm")
        assert str(settings.workdir) not in str(e.value)
    assert not any(settings.jobs_dir.iterdir())  # refused requests leave no job folder behind
    with pytest.raises(DataError, match="unknown model 'vggt'"):
        image_tab.run_image_to_3d(settings, EXAMPLE, "vggt")


def test_16bit_grayscale_photo_is_read_not_whitened(settings, lrm_data, tmp_path):
    """A 16-bit grayscale PNG (PIL mode I;16) used to reach the model all white ("no object found")."""
    from recon3d.io.images import load_image

    settings.density_threshold = lrm_data
    gray = load_image(EXAMPLE, background="white").numpy().mean(axis=-1)  # the object on white
    src = tmp_path / "gray16.png"
    Image.fromarray(np.round(gray * 65535).astype(np.uint16)).save(src)
    assert Image.open(src).mode == "I;16"
    r = image_tab.run_image_to_3d(settings, src, "lrm")
    assert r.glb is not None and "made a" in r.summary
    copy = next((r.job_dir / "inputs").glob("*.png"))
    assert np.abs(load_image(copy).numpy() - load_image(src).numpy()).max() <= 0.5 / 255 + 1e-6
