"""recon3d.io.load_scene: format detection and dispatch."""

import json

import numpy as np
import pytest
import torch

from recon3d.core.conventions import opencv_to_nerfstudio
from recon3d.io import DataError, detect_format, load_scene, write_nerfstudio_transforms
from recon3d.io._testing import ring_cameras, ring_poses, write_images


def _blender(root):
    write_images(root, ["train/r_0.png", "train/r_1.png"], channels=4)
    gl = opencv_to_nerfstudio(torch.from_numpy(ring_poses(2)).float())
    frames = [{"file_path": f"./train/r_{i}", "transform_matrix": gl[i].tolist()} for i in range(2)]
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))


def test_detects_each_format(tmp_path):
    _blender(tmp_path / "b")
    assert detect_format(tmp_path / "b") == "blender"
    assert detect_format(tmp_path / "b" / "transforms_train.json") == "blender"
    sc = load_scene(tmp_path / "b", background="black")
    assert sc.source_format == "blender" and torch.equal(sc.background, torch.zeros(3))
    assert torch.equal(load_scene(tmp_path / "b").background, torch.ones(3))  # format default: white

    paths = write_images(tmp_path / "n" / "images", ["a.png", "b.png", "c.png"])
    write_nerfstudio_transforms(ring_cameras(3), tmp_path / "n", paths)
    assert detect_format(tmp_path / "n") == "nerfstudio"
    assert load_scene(tmp_path / "n", downscale=2).cameras.width.tolist() == [4, 4, 4]

    (tmp_path / "c" / "sparse" / "0").mkdir(parents=True)
    assert detect_format(tmp_path / "c") == "colmap"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "cameras.txt").write_text("")
    assert detect_format(tmp_path / "m") == "colmap"

    (tmp_path / "l").mkdir()
    np.save(tmp_path / "l" / "poses_bounds.npy", np.zeros((1, 17)))
    assert detect_format(tmp_path / "l") == "llff" == detect_format(tmp_path / "l" / "poses_bounds.npy")


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match="transforms_train.json.*transforms.json.*sparse/.*poses_bounds.npy") as e:
        load_scene(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError, match="not found"):
        load_scene(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match="x.txt"):
        load_scene(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown format"):
        load_scene(tmp_path, format="mystery")


def test_explicit_format(tmp_path):
    _blender(tmp_path)
    with pytest.raises(DataError, match="transforms.json: file not found"):
        load_scene(tmp_path, format="nerfstudio")
    assert len(load_scene(tmp_path, format="blender")) == 2
