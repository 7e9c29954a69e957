"""recon3d.sfm: image preparation, pycolmap structure-from-motion on the bundled sample scene, alignment."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon3d.io import DataError, load_scene
from recon3d.sfm import align_similarity, apply_similarity, pose_accuracy, prepare_images, run_sfm, scene_from_images

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample_scene"

# The 16 views whose directions are closest to r_28's: a dense patch of the view sphere (neighbours
# ~20 deg apart). Every 3rd view of train/ would leave ~50 deg gaps that SIFT cannot bridge at 256 px.
SUBSET = ["r_2", "r_7", "r_10", "r_12", "r_15", "r_20", "r_23", "r_25", "r_28", "r_31", "r_33", "r_36",
          "r_38", "r_41", "r_44", "r_46"]


def _sample_file(stem: str) -> Path:
    for folder in ("images", "train", "test"):
        p = SAMPLE / folder / f"{stem}.png"
        if p.is_file():
            return p
    raise FileNotFoundError(stem)


def _write_rgb(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------ SfM on the sample scene
@pytest.fixture(scope="module")
def sfm_run(tmp_path_factory):
    if not SAMPLE.is_dir():
        pytest.skip("data/sample_scene not present")
    root = tmp_path_factory.mktemp("sfm")
    photos = root / "photos"
    photos.mkdir()
    for stem in SUBSET:
        shutil.copy(_sample_file(stem), photos / f"{stem}.png")
    t = time.perf_counter()
    scene, res = scene_from_images(photos, root / "work", num_threads=1)  # 1 thread: reproducible
    return {"photos": photos, "work": root / "work", "scene": scene, "res": res, "seconds": time.perf_counter() - t}


def test_sfm_registers_the_sample_views(sfm_run):
    scene, res = sfm_run["scene"], sfm_run["res"]
    n = len(SUBSET)
    assert res.num_images == n
    assert res.num_registered >= n - 1, res.unregistered_names
    assert len(scene) == res.num_registered == len(res.registered_names)
    assert [p.name for p in scene.image_paths] == res.registered_names
    assert all(p.parent == sfm_run["work"] / "images" for p in scene.image_paths)
    assert 0 < res.mean_reprojection_error < 1.5
    assert res.num_points > 100 and scene.points is not None and len(scene.points) == res.num_points
    assert res.model_dir == sfm_run["work"] / "sparse" / "0"
    assert all((res.model_dir / f).is_file() for f in ("cameras.bin", "images.bin", "points3D.bin"))
    assert not res.cached and set(res.stage_seconds) == {"extract", "match", "map"}
    assert scene.test_indices == list(range(0, len(scene), 8))  # the reader's every-8th hold-out
    assert scene.metadata["sfm"]["num_registered"] == res.num_registered
    assert tuple(scene.image(0).shape) == (256, 256, 3)


def test_sfm_poses_match_ground_truth(sfm_run):
    scene = sfm_run["scene"]
    gt = load_scene(SAMPLE)
    by_name = {p.name: i for i, p in enumerate(gt.image_paths)}
    gt_c2w = gt.cameras.c2w[[by_name[p.name] for p in scene.image_paths]]
    acc = pose_accuracy(scene.cameras.c2w, gt_c2w)
    cam_dist = float(gt_c2w[:, :3, 3].norm(dim=-1).mean())  # the object sits at the origin
    assert acc["mean_center_error"] / cam_dist < 0.02, acc["mean_center_error"] / cam_dist
    assert acc["max_center_error"] / cam_dist < 0.05, acc["max_center_error"] / cam_dist
    assert acc["mean_rotation_error_deg"] < 1.5 and acc["max_rotation_error_deg"] < 4.0
    # shared focal length within 10% of the truth (SIMPLE_RADIAL trades a little focal for k1)
    assert abs(float(scene.cameras.fx[0]) / float(gt.cameras.fx[0]) - 1) < 0.1


def test_sfm_writes_nerfstudio_transforms(sfm_run):
    scene = sfm_run["scene"]
    ns = load_scene(sfm_run["work"] / "transforms.json")
    assert len(ns) == len(scene)
    assert [p.name for p in ns.image_paths] == [p.name for p in scene.image_paths]
    assert torch.allclose(ns.cameras.c2w, scene.cameras.c2w, atol=1e-4)


def test_sfm_cache_is_reused(sfm_run, caplog):
    first = sfm_run["res"]
    t = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="recon3d.sfm"):
        scene, res = scene_from_images(sfm_run["photos"], sfm_run["work"], num_threads=1)
    assert time.perf_counter() - t < 1.0
    assert res.cached and "reusing cached SfM" in caplog.text
    assert res.registered_names == first.registered_names
    assert res.mean_reprojection_error == first.mean_reprojection_error
    assert torch.equal(scene.cameras.c2w, sfm_run["scene"].cameras.c2w)
    cache = json.loads((sfm_run["work"] / "sfm_cache.json").read_text())
    assert cache["result"]["num_registered"] == first.num_registered


# ------------------------------------------------------------------------------ bad input
def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as e:
        prepare_images(tmp_path / "nope", tmp_path / "out")
    assert e.value.path == tmp_path / "nope" and "not found" in str(e.value)


def test_empty_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="found 0 images; structure-from-motion needs at least 3") as e:
        prepare_images(tmp_path / "photos", tmp_path / "out")
    assert e.value.path == tmp_path / "photos"


def test_two_images(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(2):
        _write_rgb(d / f"a{i}.png", seed=i)
    with pytest.raises(DataError, match="found 2 images; structure-from-motion needs at least 3") as e:
        scene_from_images(d, tmp_path / "work")
    assert e.value.path == d


def test_corrupt_jpeg_is_named(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        _write_rgb(d / f"a{i}.png", seed=i)
    (d / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError) as e:
        prepare_images(d, tmp_path / "out")
    assert e.value.path == d / "broken.jpg"


def test_truncated_jpeg_is_named(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        _write_rgb(d / f"a{i}.jpg", w=200, h=150, seed=i)
    data = (d / "a1.jpg").read_bytes()
    (d / "a1.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="decode") as e:
        prepare_images(d, tmp_path / "out")
    assert e.value.path == d / "a1.jpg"


def test_non_image_file_is_skipped_with_warning(tmp_path, caplog):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        _write_rgb(d / f"a{i}.png", seed=i)
    (d / "notes.txt").write_text("hello")
    (d / ".hidden").write_text("x")
    with caplog.at_level(logging.WARNING, logger="recon3d.sfm"):
        out = prepare_images(d, tmp_path / "out")
    assert [p.name for p in out] == ["a0.png", "a1.png", "a2.png"]
    assert "notes.txt" in caplog.text and ".hidden" not in caplog.text


def test_too_few_images_after_skipping(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(2):
        _write_rgb(d / f"a{i}.png", seed=i)
    (d / "readme.md").write_text("x")
    with pytest.raises(DataError, match="found 2 images"):
        prepare_images(d, tmp_path / "out")


def test_sfm_failure_is_one_clear_line(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):  # unrelated noise: nothing matches
        _write_rgb(d / f"n{i}.png", w=96, h=96, seed=10 + i)
    with pytest.raises(DataError, match=r"registered only 0 of 3 images .*try more overlapping photos") as e:
        run_sfm(d, tmp_path / "work", num_threads=1)
    assert e.value.path == d and "\n" not in str(e.value)
    assert not (tmp_path / "work" / "sfm_cache.json").exists()


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="matcher"):
        run_sfm(tmp_path, tmp_path / "w", matcher="vocab_tree")
    with pytest.raises(ValueError, match="camera_model"):
        run_sfm(tmp_path, tmp_path / "w", camera_model="FOV")


# ------------------------------------------------------------------------------ normalization
def test_exif_orientation_is_applied(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    arr = np.zeros((20, 40, 3), np.uint8)  # stored landscape 40x20, red block at the stored top-left
    arr[:, :] = (0, 0, 255)
    arr[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    exif.get_ifd(0x8769)[0x920A] = (35, 1)  # focal length 35 mm: kept for COLMAP
    Image.fromarray(arr).save(d / "rot.jpg", quality=95, exif=exif)
    for i in range(2):
        _write_rgb(d / f"b{i}.png", seed=i)
    out = prepare_images(d, tmp_path / "out")
    rot = tmp_path / "out" / "rot.jpg"
    assert rot in out
    with Image.open(rot) as im:
        assert im.size == (20, 40)  # displayed portrait
        assert im.getexif().get(0x0112, 1) == 1
        assert im.getexif().get_ifd(0x8769).get(0x920A) in (35, (35, 1))
        a = np.asarray(im.convert("RGB")).astype(int)
    # rotating 90 deg clockwise puts the stored top-left corner at the displayed top-right
    assert a[2:8, -8:-2, 0].mean() > 200 and a[2:8, -8:-2, 2].mean() < 60
    assert a[2:8, 2:8, 2].mean() > 200
    manifest = json.loads((tmp_path / "out" / "prepared.json").read_text())
    rec = {r["name"]: r for r in manifest["images"]}["rot.jpg"]
    assert rec["exif_orientation"] == 6 and rec["size"] == [20, 40]


def test_alpha_downscale_and_formats(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white
    rgba[50:150, 100:200] = (10, 200, 30, 255)
    Image.fromarray(rgba, "RGBA").save(d / "obj.png")
    Image.fromarray(np.full((40, 30), 128, np.uint8), "L").save(d / "gray.tif")
    _write_rgb(d / "c.png", w=64, h=48)
    out = prepare_images(d, tmp_path / "out", max_size=150)
    names = [p.name for p in out]
    assert names == ["c.png", "gray.png", "obj.png"]
    with Image.open(tmp_path / "out" / "obj.png") as im:
        assert im.mode == "RGB" and im.size == (150, 100)
        a = np.asarray(im)
    assert (a[0, 0] == 255).all() and abs(int(a[50, 75, 1]) - 200) <= 2
    with Image.open(tmp_path / "out" / "gray.png") as im:
        assert im.mode == "RGB" and im.size == (30, 40)
    assert (tmp_path / "out" / "c.png").read_bytes() == (d / "c.png").read_bytes()  # untouched: copied
    recs = {r["name"]: r for r in json.loads((tmp_path / "out" / "prepared.json").read_text())["images"]}
    assert recs["obj.png"]["has_alpha"] and recs["obj.png"]["scale"] == 0.5 and not recs["c.png"]["has_alpha"]


def test_prepare_is_cached_and_tracks_changes(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(4):
        _write_rgb(d / f"a{i}.jpg", seed=i)
    out = prepare_images(d, tmp_path / "out")
    mtimes = [p.stat().st_mtime_ns for p in out]
    assert prepare_images(d, tmp_path / "out") == out
    assert [p.stat().st_mtime_ns for p in out] == mtimes  # nothing rewritten
    (d / "a3.jpg").unlink()
    out2 = prepare_images(d, tmp_path / "out")
    assert [p.name for p in out2] == ["a0.jpg", "a1.jpg", "a2.jpg"]
    assert not (tmp_path / "out" / "a3.jpg").exists()  # stale output of the removed photo is gone


# ------------------------------------------------------------------------------ alignment
def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_align_similarity_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    R = _rotation([1, 2, 3], 0.7)
    s, t = 2.5, np.array([1.0, -2.0, 0.5])
    dst = s * src @ R.T + t
    s2, R2, t2 = align_similarity(src, torch.from_numpy(dst))
    assert abs(s2 - s) < 1e-9 and np.allclose(R2, R, atol=1e-9) and np.allclose(t2, t, atol=1e-9)
    assert np.allclose(apply_similarity(src, s2, R2, t2), dst, atol=1e-9)
    s3, R3, _ = align_similarity(src, dst, with_scale=False)
    assert s3 == 1.0 and np.isclose(np.linalg.det(R3), 1.0)


def test_align_similarity_never_reflects():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(10, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a mirror image: best proper rotation, det +1
    _, R, _ = align_similarity(src, dst)
    assert np.isclose(np.linalg.det(R), 1.0)
    with pytest.raises(ValueError):
        align_similarity(src[:2], dst[:2])


def test_pose_accuracy_of_a_similar_copy_is_exact():
    from tests.conftest import orbit_c2w

    gt = orbit_c2w(8).double()
    R = torch.from_numpy(_rotation([0, 1, 1], 1.1))
    est = gt.clone()
    est[:, :3, :3] = R @ gt[:, :3, :3]
    est[:, :3, 3] = 0.3 * gt[:, :3, 3] @ R.T + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    acc = pose_accuracy(est, gt)
    assert acc["max_center_error"] < 1e-9 and acc["max_rotation_error_deg"] < 1e-5
    assert abs(acc["scale"] - 1 / 0.3) < 1e-9
