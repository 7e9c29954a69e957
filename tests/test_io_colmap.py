"""recon3d.io.colmap on reconstructions built with pycolmap and written as text and binary."""

import numpy as np
import pytest
import torch

import recon3d  # noqa: F401  (loads Pillow before pycolmap, see recon3d/__init__.py)
import pycolmap  # noqa: E402

from recon3d.core.cameras import OPENCV, OPENCV_FISHEYE, PINHOLE
from recon3d.io import DataError, read_colmap
from recon3d.io._testing import ring_poses, write_images

W, H = 8, 6


def _reconstruction(models, n_images=5, n_points=12, seed=0):
    """pycolmap Reconstruction: one camera per (model, params) entry, images cycling through them."""
    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    for cid, (name, params) in enumerate(models, start=1):
        cam = pycolmap.Camera.create_from_model_name(cid, name, 7.0, W, H)
        cam.params = params
        rec.add_camera_with_trivial_rig(cam)
    c2w = ring_poses(n_images, radius=4.0)
    names = [f"img_{i}.png" for i in range(n_images)][::-1]  # ids in reverse name order
    for i in range(n_images):
        w2c = np.linalg.inv(c2w[i])
        img = pycolmap.Image(name=names[i], camera_id=1 + i % len(models), image_id=i + 1)
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(w2c[:3, :4]))
    xyz = rng.normal(scale=0.4, size=(n_points, 3))
    rgb = rng.integers(0, 256, size=(n_points, 3)).astype(np.uint8)
    for p, c in zip(xyz, rgb):
        rec.add_point3D(p, pycolmap.Track(), c)
    return rec, xyz, rgb


def _write_scene(root, rec, binary=True, sub="sparse/0", n_images=5):
    model = root / sub
    model.mkdir(parents=True)
    rec.write(str(model)) if binary else rec.write_text(str(model))
    write_images(root / "images", [f"img_{i}.png" for i in range(n_images)], H, W)
    return model


def _check_projection(sc, rec, xyz):
    """Every point projects to the same pixel through recon3d's Cameras and pycolmap's camera."""
    by_name = {im.name: im for im in rec.images.values()}
    uv, depth = sc.cameras.project(torch.from_numpy(xyz).float())
    for i, path in enumerate(sc.image_paths):
        im = by_name[path.name]
        cam = rec.cameras[im.camera_id]
        T = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        pc = xyz @ T.rotation.matrix().T + T.translation
        ref = cam.img_from_cam(pc)
        assert (depth[i] > 0).all()
        np.testing.assert_allclose(uv[i].numpy(), ref, atol=2e-4)


MODELS = {
    "pinhole": [("PINHOLE", [7.0, 7.4, 4.1, 2.9]), ("SIMPLE_PINHOLE", [6.5, 4.0, 3.0])],
    "opencv": [("OPENCV", [7.0, 7.4, 4.1, 2.9, 0.02, -0.01, 0.001, 0.002]), ("SIMPLE_RADIAL", [6.8, 4.0, 3.1, 0.03]),
               ("RADIAL", [6.9, 4.0, 3.0, 0.01, 0.005]), ("PINHOLE", [7.0, 7.0, 4.0, 3.0])],
    "full_opencv": [("FULL_OPENCV", [7.0, 7.4, 4.1, 2.9, 0.02, -0.01, 0.001, 0.002, 0.003, 0, 0, 0])],
    "fisheye": [("OPENCV_FISHEYE", [7.0, 7.2, 4.0, 3.0, 0.05, 0.01, -0.002, 0.001]),
                ("SIMPLE_RADIAL_FISHEYE", [6.9, 4.0, 3.0, 0.04]), ("RADIAL_FISHEYE", [7.1, 4.1, 2.9, 0.03, 0.01])],
}
EXPECTED = {"pinhole": PINHOLE, "opencv": OPENCV, "full_opencv": OPENCV, "fisheye": OPENCV_FISHEYE}


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("kind", list(MODELS))
def test_read_and_project(tmp_path, kind, binary):
    rec, xyz, rgb = _reconstruction(MODELS[kind])
    _write_scene(tmp_path, rec, binary=binary)
    sc = read_colmap(tmp_path)
    assert sc.source_format == "colmap" and sc.cameras.model == EXPECTED[kind]
    assert [p.name for p in sc.image_paths] == [f"img_{i}.png" for i in range(5)]
    assert sc.test_indices == [0] and sc.train_indices == [1, 2, 3, 4]
    np.testing.assert_allclose(sc.points.numpy(), xyz, atol=1e-5)
    np.testing.assert_allclose(sc.point_colors.numpy(), rgb / 255.0, atol=1e-6)
    _check_projection(sc, rec, xyz)
    assert sc.image(2).shape == (H, W, 3)


def test_layouts_and_downscale(tmp_path):
    rec, xyz, _ = _reconstruction(MODELS["opencv"][:1])
    model = _write_scene(tmp_path, rec, sub="sparse")
    full = read_colmap(model)  # the model folder itself; images/ found next to sparse/
    assert len(full) == 5 and full.name == tmp_path.name
    sc = read_colmap(tmp_path, downscale=2)
    assert sc.cameras.width.tolist() == [4] * 5 and sc.image(0).shape == (3, 4, 3)
    np.testing.assert_allclose(sc.cameras.fx, full.cameras.fx / 2, rtol=1e-6)
    # projections scale with the images
    uv_full, _ = full.cameras.project(torch.from_numpy(xyz).float())
    uv_half, _ = sc.cameras.project(torch.from_numpy(xyz).float())
    np.testing.assert_allclose(uv_half, uv_full / 2, atol=1e-4)
    # a resized copy of the images, passed explicitly
    write_images(tmp_path / "images_2", [f"img_{i}.png" for i in range(5)], H // 2, W // 2)
    small = read_colmap(tmp_path, images_dir=tmp_path / "images_2")
    np.testing.assert_allclose(small.cameras.cx, full.cameras.cx / 2, rtol=1e-6)


def test_unsupported_model(tmp_path):
    rec, _, _ = _reconstruction([("FOV", [7.0, 7.0, 4.0, 3.0, 0.1])])
    model = _write_scene(tmp_path, rec, binary=False)
    with pytest.raises(DataError, match="unsupported COLMAP camera model 'FOV'") as e:
        read_colmap(tmp_path)
    assert str(model) in str(e.value)


def test_mixed_fisheye_and_perspective(tmp_path):
    rec, _, _ = _reconstruction([MODELS["fisheye"][0], MODELS["opencv"][0]])
    _write_scene(tmp_path, rec)
    with pytest.raises(DataError, match="mixes fisheye and perspective"):
        read_colmap(tmp_path)


def test_missing_pieces(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_colmap(tmp_path / "nothing")
    with pytest.raises(DataError, match="no COLMAP model found") as e:
        read_colmap(tmp_path)
    assert str(tmp_path) in str(e.value)
    rec, _, _ = _reconstruction(MODELS["pinhole"])
    _write_scene(tmp_path, rec)
    (tmp_path / "images" / "img_3.png").unlink()
    with pytest.raises(DataError, match="img_3.png"):
        read_colmap(tmp_path)


def test_missing_images_folder_and_size_mismatch(tmp_path):
    rec, _, _ = _reconstruction(MODELS["pinhole"])
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    rec.write(str(model))
    with pytest.raises(DataError, match="image folder not found"):
        read_colmap(tmp_path)
    write_images(tmp_path / "images", [f"img_{i}.png" for i in range(5)], H, W + 1)
    with pytest.raises(DataError, match="img_0.png: image is 9x6 but its camera says 8x6"):
        read_colmap(tmp_path)


def test_corrupt_model_file(tmp_path):
    rec, _, _ = _reconstruction(MODELS["pinhole"])
    model = _write_scene(tmp_path, rec, binary=False)
    (model / "cameras.txt").write_text("1 PINHOLE 8 6 1 2\n")  # too few parameters
    with pytest.raises(DataError, match="cannot read COLMAP model") as e:
        read_colmap(tmp_path)
    assert str(model) in str(e.value)
    (model / "images.txt").unlink()
    with pytest.raises(DataError, match="no images.bin or images.txt"):
        read_colmap(tmp_path)
