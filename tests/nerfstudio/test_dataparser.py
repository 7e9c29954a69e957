"""recon3d-written transforms.json read by nerfstudio's own NerfstudioDataParser: same cameras.

nerfstudio re-orients, centers and scales the poses it reads and reports that similarity
(``dataparser_transform`` (3, 4), ``dataparser_scale``); every comparison maps recon3d's cameras
through it: ``c2w_ns = [R | t * s]`` of ``T @ c2w_json``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recon3d.core.cameras import OPENCV, OPENCV_FISHEYE
from recon3d.core.conventions import opencv_to_nerfstudio
from recon3d.io import Scene, read_nerfstudio, write_nerfstudio_transforms
from recon3d.io._testing import ring_cameras, write_images

pytestmark = pytest.mark.nerfstudio


def ns_parse(folder, split="train", **cfg):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    parser = NerfstudioDataParserConfig(data=folder, load_3D_points=True, **cfg).setup()
    return parser.get_dataparser_outputs(split=split)


def to_ns_world(c2w_json_gl: torch.Tensor, outputs) -> torch.Tensor:
    """(N, 4, 4) OpenGL c2w in the JSON's world -> (N, 3, 4) in nerfstudio's dataparser world."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3] = outputs.dataparser_transform.double()
    out = (T @ c2w_json_gl.double())[:, :3]
    out[:, :, 3] *= outputs.dataparser_scale
    return out


def matched(outputs, scene: Scene) -> list[int]:
    """recon3d frame index of each nerfstudio image (nerfstudio sorts frames by file name)."""
    index = {p.resolve(): i for i, p in enumerate(scene.image_paths)}
    return [index[p.resolve()] for p in outputs.image_filenames]


def test_recon3d_run_transforms_same_cameras_in_nerfstudio(ns_scene):
    folder, scene = ns_scene
    capture_c2w = scene.normalization.inverse_c2w(scene.cameras.c2w)  # the JSON holds the capture world
    for split, want in (("train", scene.train_indices), ("test", scene.test_indices)):
        out = ns_parse(folder, split)
        idx = matched(out, scene)
        assert sorted(idx) == sorted(want)
        cams = out.cameras
        expect = to_ns_world(opencv_to_nerfstudio(capture_c2w[idx]), out)
        np.testing.assert_allclose(cams.camera_to_worlds.double(), expect, atol=2e-5)
        for ns_name, r3d in (("fx", scene.cameras.fx), ("fy", scene.cameras.fy),
                             ("cx", scene.cameras.cx), ("cy", scene.cameras.cy)):
            np.testing.assert_allclose(getattr(cams, ns_name)[:, 0], r3d[idx], rtol=1e-6, err_msg=ns_name)
        assert cams.width[:, 0].tolist() == scene.cameras.width[idx].tolist()
        assert cams.height[:, 0].tolist() == scene.cameras.height[idx].tolist()
        assert [p.resolve() for p in out.mask_filenames] == [scene.mask_paths[i].resolve() for i in idx]
    # the written points (sparse_pc.ply) land where nerfstudio puts the cameras' world
    pts = out.metadata["points3D_xyz"].double()
    T = out.dataparser_transform.double()
    capture_pts = scene.normalization.inverse_points(scene.points).double()
    np.testing.assert_allclose(pts, (capture_pts @ T[:, :3].T + T[:, 3]) * out.dataparser_scale, atol=2e-5)
    # and the dataparser's own orientation/centering is not the identity (the check is not vacuous)
    assert not torch.allclose(out.dataparser_transform, torch.eye(4)[:3], atol=1e-3)


@pytest.mark.parametrize("model, dist", [(OPENCV, [0.02, -0.01, 0.001, 0.002, 0.003]),
                                         (OPENCV_FISHEYE, [0.05, 0.01, -0.002, 0.001, 0.0])])
def test_distortion_and_per_frame_intrinsics(tmp_path, model, dist):
    from nerfstudio.cameras.cameras import CameraType

    n = 6
    cams = ring_cameras(n, model=model, distortion=dist)
    cams.fx[:] = 6.0 + torch.arange(n).float()  # per-frame intrinsics
    paths = write_images(tmp_path / "data", [f"img/{i}.png" for i in range(n)])
    scene = Scene(cams, paths, train_indices=[1, 2, 3, 5], test_indices=[0, 4])
    out_json = write_nerfstudio_transforms(scene, tmp_path / "data")
    assert "fl_x" in json.loads(out_json.read_text())["frames"][0]
    out = ns_parse(tmp_path / "data", "train")
    idx = matched(out, scene)
    c = out.cameras
    np.testing.assert_allclose(c.camera_to_worlds.double(), to_ns_world(opencv_to_nerfstudio(cams.c2w[idx]), out),
                               atol=2e-5)
    np.testing.assert_allclose(c.fx[:, 0], cams.fx[idx], rtol=1e-6)
    np.testing.assert_allclose(c.cy[:, 0], cams.cy[idx], rtol=1e-6)
    d = cams.distortion[idx]
    if model == OPENCV:  # recon3d (k1, k2, p1, p2, k3) -> nerfstudio (k1, k2, k3, k4, p1, p2)
        assert (c.camera_type == CameraType.PERSPECTIVE.value).all()
        expect = torch.stack([d[:, 0], d[:, 1], d[:, 4], torch.zeros(len(idx)), d[:, 2], d[:, 3]], -1)
    else:  # recon3d (k1, k2, k3, k4, 0) -> nerfstudio (k1, k2, k3, k4, 0, 0)
        assert (c.camera_type == CameraType.FISHEYE.value).all()
        expect = torch.cat([d[:, :4], torch.zeros(len(idx), 2)], -1)
    np.testing.assert_allclose(c.distortion_params, expect, atol=1e-7)


def test_images_2_downscale_matches_nerfstudio(tmp_path):
    """ns-process-data layout (images/ + images_2/): recon3d's downscale=2 picks what nerfstudio picks."""
    n = 5
    cams = ring_cameras(n)  # 8x6 images
    full = write_images(tmp_path, [f"images/frame_{i:05d}.png" for i in range(n)])
    small = write_images(tmp_path, [f"images_2/frame_{i:05d}.png" for i in range(n)], height=3, width=4)
    write_nerfstudio_transforms(Scene(cams, full, train_indices=list(range(n)), test_indices=[]), tmp_path,
                                splits={"train": list(range(n)), "test": [0]})
    out = ns_parse(tmp_path, "train", downscale_factor=2)
    sc = read_nerfstudio(tmp_path, downscale=2)
    assert [p.resolve() for p in out.image_filenames] == [p.resolve() for p in small] == \
        [p.resolve() for p in sc.image_paths]
    out.cameras.rescale_output_resolution(1.0)
    for ns_name in ("fx", "fy", "cx", "cy"):
        np.testing.assert_allclose(getattr(out.cameras, ns_name)[:, 0], getattr(sc.cameras, ns_name), rtol=1e-6)
    assert out.cameras.width[:, 0].tolist() == sc.cameras.width.tolist() == [4] * n
