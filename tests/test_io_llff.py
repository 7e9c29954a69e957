"""recon3d.io.llff on poses_bounds.npy files written here from known OpenCV cameras."""

import numpy as np
import pytest
import torch

from recon3d.io import DataError, read_llff
from recon3d.io._testing import look_at_c2w, write_images

N, H, W, F = 10, 6, 8, 7.5


def _opencv_poses(n=N):
    """Forward-facing rig: cameras on a small grid, all looking down +y at a point 5 units away."""
    eyes = [(0.3 * (i % 4), 0.0, 0.2 * (i // 4)) for i in range(n)]
    return np.stack([look_at_c2w(e, (0.5, 5.0, 0.3)) for e in eyes])


def _to_llff_rows(c2w, near=1.0, far=9.0, hwf=(H, W, F)):
    """The LLFF encoding, written independently: columns (down, right, backwards) = (y, x, -z) of OpenCV."""
    rows = []
    for m in c2w:
        down, right, back = m[:3, 1], m[:3, 0], -m[:3, 2]
        mat = np.stack([down, right, back, m[:3, 3], np.asarray(hwf, dtype=np.float64)], axis=1)  # (3, 5)
        rows.append(np.concatenate([mat.reshape(-1), [near, far]]))
    return np.asarray(rows)


def _scene(root, n=N, **kw):
    c2w = _opencv_poses(n)
    np.save(root / "poses_bounds.npy", _to_llff_rows(c2w, **kw))
    write_images(root / "images", [f"IMG_{i:04d}.JPG" for i in range(n)], H, W)
    return c2w


def test_poses_intrinsics_bounds(tmp_path):
    c2w = _scene(tmp_path)
    sc = read_llff(tmp_path)
    assert sc.source_format == "llff" and len(sc) == N
    np.testing.assert_allclose(sc.cameras.c2w.numpy(), c2w, atol=1e-6)
    assert np.allclose(np.linalg.det(sc.cameras.c2w[:, :3, :3].numpy()), 1.0, atol=1e-5)
    np.testing.assert_allclose(sc.cameras.fx, F) and np.testing.assert_allclose(sc.cameras.cx, W / 2)
    np.testing.assert_allclose(sc.near_far, [[1.0, 9.0]] * N)
    assert sc.test_indices == [0, 8] and len(sc.train_indices) == 8


def test_projection_matches_llff_convention(tmp_path):
    _scene(tmp_path)
    sc = read_llff(tmp_path)
    rows = np.load(tmp_path / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.5 + np.array([0.5, 5.0, 0.3])
    uv, z = sc.cameras.project(torch.from_numpy(pts).float())
    for i, m in enumerate(rows):
        d = pts - m[:, 3]
        down, right, fwd = d @ m[:, 0], d @ m[:, 1], -(d @ m[:, 2])  # LLFF looks along -backwards
        ref = np.stack([F * right / fwd + W / 2, F * down / fwd + H / 2], -1)
        np.testing.assert_allclose(uv[i].numpy(), ref, atol=1e-4)
        np.testing.assert_allclose(z[i].numpy(), fwd, rtol=1e-5)


def test_downscale_with_and_without_presized_folder(tmp_path):
    _scene(tmp_path)
    sc = read_llff(tmp_path, downscale=2)  # no images_2/: shrink on load
    assert sc.cameras.width.tolist() == [4] * N and sc.image(0).shape == (3, 4, 3)
    write_images(tmp_path / "images_2", [f"IMG_{i:04d}.JPG" for i in range(N)], 3, 4)
    sc2 = read_llff(tmp_path, downscale=2)
    assert sc2.image_paths[0].parent.name == "images_2" and sc2.downscale == 2
    np.testing.assert_allclose(sc2.cameras.fx, F / 2) and np.testing.assert_allclose(sc2.cameras.cy, H / 4)
    assert sc2.image(1).shape == (3, 4, 3)
    assert sc2.with_downscale(4).cameras.width.tolist() == [2] * N


def test_hwf_resolution_differs_from_files(tmp_path):
    _scene(tmp_path, hwf=(2 * H, 2 * W, 2 * F))  # poses computed at twice the resolution of the files
    sc = read_llff(tmp_path)
    np.testing.assert_allclose(sc.cameras.fx, F)
    assert sc.cameras.width.tolist() == [W] * N and sc.cameras.height.tolist() == [H] * N


def test_plain_sort_order(tmp_path):
    np.save(tmp_path / "poses_bounds.npy", _to_llff_rows(_opencv_poses(3)))
    write_images(tmp_path / "images", ["a9.png", "a10.png", "a11.png"], H, W)
    assert [p.name for p in read_llff(tmp_path).image_paths] == ["a10.png", "a11.png", "a9.png"]


@pytest.mark.parametrize("case, pattern, culprit", [
    ("count", "has 10 poses but .* holds 9 images", "poses_bounds.npy"),
    ("shape", r"expected an \(N, 17\) array", "poses_bounds.npy"),
    ("nan", "row 3 has non-finite values", "poses_bounds.npy"),
    ("garbage", "cannot read numpy array", "poses_bounds.npy"),
    ("no_images", "image folder not found", "images"),
    ("missing", "file not found", "poses_bounds.npy"),
])
def test_bad_input(tmp_path, case, pattern, culprit):
    _scene(tmp_path)
    npy = tmp_path / "poses_bounds.npy"
    if case == "count":
        next((tmp_path / "images").iterdir()).unlink()
    elif case == "shape":
        np.save(npy, np.zeros((N, 15)))
    elif case == "nan":
        a = np.load(npy)
        a[3, 4] = np.nan
        np.save(npy, a)
    elif case == "garbage":
        npy.write_bytes(b"nope")
    elif case == "no_images":
        for p in (tmp_path / "images").iterdir():
            p.unlink()
        (tmp_path / "images").rmdir()
    elif case == "missing":
        npy.unlink()
    with pytest.raises(DataError, match=pattern) as e:
        read_llff(tmp_path)
    assert culprit in str(e.value).split(":")[0]
