"""recon3d.io.blender on tiny NeRF-synthetic layouts written here, plus the shared lego_200 scene."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.core.conventions import opencv_to_blender
from recon3d.io import DataError, read_blender
from recon3d.io._testing import ring_poses, write_images

LEGO = Path(__file__).resolve().parents[1].parent / "shared/data/lego_200"
SAMPLE = Path(__file__).resolve().parents[1] / "data/sample_scene"
ANGLE_X = 0.8


def _write_split(root, split, n, start=0, ext=""):
    names = [f"{split}/r_{start + i}" for i in range(n)]
    write_images(root, [nm + ".png" for nm in names], channels=4)
    c2w_gl = opencv_to_blender(torch.from_numpy(ring_poses(n, 4.0)).float())
    frames = [{"file_path": "./" + nm + ext, "rotation": 0.0, "transform_matrix": c2w_gl[i].tolist()}
              for i, nm in enumerate(names)]
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": ANGLE_X, "frames": frames}))
    return c2w_gl


def _dataset(root, splits=(("train", 5), ("val", 2), ("test", 3))):
    return {s: _write_split(root, s, n, ext=".png" if s == "val" else "") for s, n in splits}


def test_reads_splits_intrinsics_and_poses(tmp_path):
    gl = _dataset(tmp_path)
    sc = read_blender(tmp_path)
    assert len(sc) == 10 and sc.source_format == "blender"
    assert sc.train_indices == [0, 1, 2, 3, 4] and sc.val_indices == [5, 6] and sc.test_indices == [7, 8, 9]
    assert sc.image_paths[0].name == "r_0.png"
    f = 0.5 * 8 / math.tan(0.5 * ANGLE_X)
    np.testing.assert_allclose(sc.cameras.fx, f, rtol=1e-6)
    np.testing.assert_allclose(sc.cameras.fy, f, rtol=1e-6)
    np.testing.assert_allclose(sc.cameras.cx, 4.0) and np.testing.assert_allclose(sc.cameras.cy, 3.0)
    # OpenGL looks along -z: the OpenCV forward axis is minus the Blender matrix's third column
    np.testing.assert_allclose(sc.cameras.forward[:5], -gl["train"][:, :3, 2], atol=1e-6)
    np.testing.assert_allclose(sc.cameras.centers[:5], gl["train"][:, :3, 3], atol=1e-6)
    img = sc.image(0)
    assert img.shape == (6, 8, 3)
    rgba = sc.alpha(0)
    assert rgba.shape == (6, 8) and torch.equal(sc.background, torch.ones(3))


def test_downscale_keeps_sizes_consistent(tmp_path):
    _dataset(tmp_path)
    full = read_blender(tmp_path)
    sc = read_blender(tmp_path, downscale=2)
    assert sc.downscale == 2
    assert sc.cameras.width.tolist() == [4] * 10 and sc.cameras.height.tolist() == [3] * 10
    np.testing.assert_allclose(sc.cameras.fx, full.cameras.fx / 2, rtol=1e-6)
    for i in (0, 9):
        assert sc.image(i).shape == (int(sc.cameras.height[i]), int(sc.cameras.width[i]), 3)
    odd = read_blender(tmp_path, downscale=3)  # 8x6 -> 3x2 (round(8/3) = 3)
    assert odd.image(0).shape[:2] == (int(odd.cameras.height[0]), int(odd.cameras.width[0])) == (2, 3)


def test_only_train_holds_out_every_8th(tmp_path):
    _dataset(tmp_path, splits=(("train", 17),))
    sc = read_blender(tmp_path)
    assert sc.test_indices == [0, 8, 16] and len(sc.train_indices) == 14 and sc.val_indices is None


def test_explicit_pixel_intrinsics_and_masks(tmp_path):
    _dataset(tmp_path, splits=(("train", 3),))
    meta = _load_json(tmp_path)
    meta.update(fl_x=14.0, fl_y=15.0, cx=8.5, cy=5.5, w=16, h=12)  # given for 2x larger images
    write_images(tmp_path, ["masks/m0.png"], channels=1)
    meta["frames"][0]["mask_file_path"] = "masks/m0"
    meta["frames"][1]["fl_x"] = 20.0
    _save_json(tmp_path, meta)
    sc = read_blender(tmp_path)
    np.testing.assert_allclose(sc.cameras.fx, [7.0, 10.0, 7.0])
    np.testing.assert_allclose(sc.cameras.fy, 7.5) and np.testing.assert_allclose(sc.cameras.cx, 4.25)
    assert sc.mask_paths[0].name == "m0.png" and sc.mask_paths[1] is None
    assert sc.mask(0).shape == (6, 8) and sc.mask(1) is None


def _load_json(root, split="train"):
    return json.loads((root / f"transforms_{split}.json").read_text())


def _save_json(root, meta, split="train"):
    (root / f"transforms_{split}.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("case, pattern", [
    ("no_angle", "camera_angle_x"),
    ("no_matrix", "frame 1 has no 'transform_matrix'"),
    ("no_file_path", "frame 0 has no 'file_path'"),
    ("nan_matrix", "non-finite"),
    ("bad_shape", "must be 4x4"),
    ("missing_image", "not found"),
    ("frames_not_list", "'frames' must be a list"),
])
def test_bad_json_content(tmp_path, case, pattern):
    _dataset(tmp_path, splits=(("train", 3),))
    meta = _load_json(tmp_path)
    if case == "no_angle":
        del meta["camera_angle_x"]
    elif case == "no_matrix":
        del meta["frames"][1]["transform_matrix"]
    elif case == "no_file_path":
        del meta["frames"][0]["file_path"]
    elif case == "nan_matrix":
        meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    elif case == "bad_shape":
        meta["frames"][2]["transform_matrix"] = [[1, 0], [0, 1]]
    elif case == "missing_image":
        meta["frames"][1]["file_path"] = "./train/nope"
    elif case == "frames_not_list":
        meta["frames"] = {}
    _save_json(tmp_path, meta)
    with pytest.raises(DataError, match=pattern) as e:
        read_blender(tmp_path)
    assert "transforms_train.json" in str(e.value)


def test_malformed_json_reports_line_and_column(tmp_path):
    _dataset(tmp_path, splits=(("train", 2), ("test", 2)))
    (tmp_path / "transforms_test.json").write_text('{\n  "camera_angle_x": 0.5,\n  "frames": [,]\n}')
    with pytest.raises(DataError, match=r"transforms_test.json: malformed JSON at line 3, column \d+"):
        read_blender(tmp_path)


def test_missing_folder_and_train_file(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        read_blender(tmp_path / "nowhere")
    (tmp_path / "transforms_test.json").write_text("{}")
    with pytest.raises(DataError, match="transforms_train.json") as e:
        read_blender(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_corrupt_image_named(tmp_path):
    _dataset(tmp_path, splits=(("train", 2),))
    (tmp_path / "train" / "r_1.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="r_1.png"):
        read_blender(tmp_path)


@pytest.mark.shared_data
@pytest.mark.skipif(not LEGO.is_dir(), reason=f"{LEGO} not present")
def test_shared_lego_200():
    sc = read_blender(LEGO)
    assert len(sc.train_indices) == 87 and len(sc.test_indices) == 13
    assert sc.cameras.width.unique().tolist() == [200] and sc.cameras.height.unique().tolist() == [200]
    np.testing.assert_allclose(sc.cameras.fx, 277.78, atol=0.05)
    to_origin = -sc.cameras.centers / sc.cameras.centers.norm(dim=-1, keepdim=True)
    angle = torch.rad2deg(torch.acos((sc.cameras.forward * to_origin).sum(-1).clamp(-1, 1)))
    assert angle.max() < 1.0
    img = sc.image(sc.test_indices[0])
    assert img.shape == (200, 200, 3) and 0 <= img.min() and img.max() <= 1


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="bundled sample scene not present")
def test_bundled_sample_scene():
    sc = read_blender(SAMPLE)
    assert len(sc) == 48 and sc.has_masks
    f = sc.cameras.forward
    to_origin = -sc.cameras.centers / sc.cameras.centers.norm(dim=-1, keepdim=True)
    assert (f * to_origin).sum(-1).min() > 0.99
    i = sc.test_indices[0]
    assert sc.image(i).shape == sc.mask(i).shape + (3,) == (int(sc.cameras.height[i]), int(sc.cameras.width[i]), 3)
    # the mask marks where the render has coverage
    assert (sc.mask(i) == (sc.alpha(i) > 0.5)).float().mean() > 0.98
