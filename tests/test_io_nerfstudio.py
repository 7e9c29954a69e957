"""recon3d.io.nerfstudio: reading transforms.json variants, bad input, and writer round trips."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from recon3d.core.cameras import OPENCV, OPENCV_FISHEYE, PINHOLE
from recon3d.core.conventions import opencv_to_nerfstudio
from recon3d.io import DataError, Scene, normalize_scene, read_nerfstudio, write_nerfstudio_transforms
from recon3d.io._testing import ring_cameras, ring_poses, write_images
from recon3d.io.ply import write_points_ply

N = 9


def _write(root, meta):
    (root / "transforms.json").write_text(json.dumps(meta))


def _base(root, n=N, model="OPENCV", per_frame=False, masks=False):
    paths = write_images(root, [f"images/frame_{i:03d}.png" for i in range(n)])
    gl = opencv_to_nerfstudio(torch.from_numpy(ring_poses(n)).float())
    intr = {"fl_x": 7.0, "fl_y": 7.5, "cx": 4.1, "cy": 2.9, "w": 8, "h": 6}
    dist = {"k1": 0.01, "k2": -0.002, "p1": 0.001, "p2": 0.0005} if model == "OPENCV" else {}
    meta = {"camera_model": model, **({} if per_frame else {**intr, **dist}), "frames": []}
    for i in range(n):
        fr = {"file_path": f"images/frame_{i:03d}.png", "transform_matrix": gl[i].tolist()}
        if per_frame:
            fr.update(intr, fl_x=6.0 + i, **dist)
        if masks:
            m = np.full((6, 8), 255, np.uint8)
            m[:, :2] = 0
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(m).save(root / "masks" / f"m{i}.png")
            fr["mask_path"] = f"masks/m{i}.png"
        meta["frames"].append(fr)
    _write(root, meta)
    return meta, gl, paths


def test_shared_intrinsics_distortion_masks(tmp_path):
    meta, gl, paths = _base(tmp_path, masks=True)
    sc = read_nerfstudio(tmp_path)
    assert len(sc) == N and sc.cameras.model == OPENCV and sc.source_format == "nerfstudio"
    np.testing.assert_allclose(sc.cameras.fx, 7.0) and np.testing.assert_allclose(sc.cameras.fy, 7.5)
    np.testing.assert_allclose(sc.cameras.cx, 4.1) and np.testing.assert_allclose(sc.cameras.cy, 2.9)
    np.testing.assert_allclose(sc.cameras.distortion[0], [0.01, -0.002, 0.001, 0.0005, 0.0], atol=1e-7)
    np.testing.assert_allclose(sc.cameras.c2w, torch.from_numpy(ring_poses(N)).float(), atol=1e-6)
    assert sc.test_indices == [0, 8] and len(sc.train_indices) == 7
    assert sc.image_paths == paths
    m = sc.mask(3)
    assert m.shape == (6, 8) and not m[:, :2].any() and m[:, 2:].all()
    out = write_nerfstudio_transforms(sc, tmp_path / "copy" / "transforms.json")
    assert json.loads(out.read_text())["frames"][3]["mask_path"] == "../masks/m3.png"
    assert torch.equal(read_nerfstudio(out).mask(3), m)


def test_per_frame_intrinsics_and_fisheye(tmp_path):
    _base(tmp_path, per_frame=True, model="PINHOLE")
    sc = read_nerfstudio(tmp_path / "transforms.json")
    assert sc.cameras.model == PINHOLE
    np.testing.assert_allclose(sc.cameras.fx, 6.0 + torch.arange(N).float())
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta.update(camera_model="OPENCV_FISHEYE", k1=0.1, k2=0.01, k3=0.001, k4=0.0001)
    _write(tmp_path, meta)
    sc = read_nerfstudio(tmp_path)
    assert sc.cameras.model == OPENCV_FISHEYE
    np.testing.assert_allclose(sc.cameras.distortion[0], [0.1, 0.01, 0.001, 0.0001, 0.0], atol=1e-7)


def test_splits_ply_and_applied_transform(tmp_path):
    meta, _, _ = _base(tmp_path)
    pts, cols = torch.randn(30, 3), torch.rand(30, 3)
    write_points_ply(tmp_path / "pc.ply", pts, cols)
    meta.update(ply_file_path="pc.ply", applied_transform=np.eye(4)[:3].tolist(),
                train_filenames=[f"images/frame_{i:03d}.png" for i in (0, 1, 2, 3)],
                test_filenames=["images/frame_005.png", "./images/frame_007.png"])
    _write(tmp_path, meta)
    sc = read_nerfstudio(tmp_path)
    assert sc.train_indices == [0, 1, 2, 3] and sc.test_indices == [5, 7] and sc.val_indices is None
    np.testing.assert_allclose(sc.points, pts, atol=1e-6)
    np.testing.assert_allclose(sc.point_colors, cols, atol=0.5 / 255 + 1e-6)
    assert sc.metadata["applied_transform"] == np.eye(4)[:3].tolist()


@pytest.mark.parametrize("case, pattern", [
    ("model", "unknown or unsupported camera_model 'EQUIRECTANGULAR'"),
    ("no_focal", "frame 0 has no 'fl_x'"),
    ("no_matrix", "frame 2 has no 'transform_matrix'"),
    ("no_file_path", "frame 1 has no 'file_path'"),
    ("missing_image", "frame 4: image 'images/gone.png' not found"),
    ("nan", "frame 3 'transform_matrix' has non-finite"),
    ("split", "'test_filenames' lists 'images/other.png'"),
    ("ply", "'ply_file_path' 'none.ply' not found"),
    ("no_frames", "'frames' must be a non-empty list"),
    ("size", "image is 8x6 but its camera says 16x12"),
    ("mask", "mask file of frame 0 not found"),
])
def test_bad_input(tmp_path, case, pattern):
    meta, _, _ = _base(tmp_path)
    if case == "model":
        meta["camera_model"] = "EQUIRECTANGULAR"
    elif case == "no_focal":
        del meta["fl_x"]
    elif case == "no_matrix":
        del meta["frames"][2]["transform_matrix"]
    elif case == "no_file_path":
        del meta["frames"][1]["file_path"]
    elif case == "missing_image":
        meta["frames"][4]["file_path"] = "images/gone.png"
    elif case == "nan":
        meta["frames"][3]["transform_matrix"][1][1] = float("inf")
    elif case == "split":
        meta["test_filenames"] = ["images/other.png"]
    elif case == "ply":
        meta["ply_file_path"] = "none.ply"
    elif case == "no_frames":
        meta["frames"] = []
    elif case == "size":
        meta.update(w=16, h=12)
    elif case == "mask":
        meta["frames"][0]["mask_path"] = "masks/none.png"
    _write(tmp_path, meta)
    with pytest.raises(DataError, match=pattern.replace("(", r"\(").replace(")", r"\)")) as e:
        read_nerfstudio(tmp_path)
    assert ("transforms.json" in str(e.value)) or case in ("size", "mask")
    assert str(tmp_path) in str(e.value)


def test_missing_and_malformed_json(tmp_path):
    with pytest.raises(DataError, match="transforms.json: file not found"):
        read_nerfstudio(tmp_path)
    (tmp_path / "transforms.json").write_text('{"frames": [1, 2}')
    with pytest.raises(DataError, match=r"transforms.json: malformed JSON at line 1, column 17"):
        read_nerfstudio(tmp_path)


def _scene(tmp_path, n=6, distortion=None, model=PINHOLE):
    cams = ring_cameras(n, model=model, distortion=distortion)
    paths = write_images(tmp_path / "data", [f"img/{i}.png" for i in range(n)])
    return Scene(cams, paths, train_indices=[1, 2, 3, 5], test_indices=[0, 4], val_indices=[4],
                 points=torch.randn(25, 3), point_colors=torch.rand(25, 3))


@pytest.mark.parametrize("model, dist", [(PINHOLE, None), (OPENCV, [0.02, -0.01, 0.001, 0.002, 0.003]),
                                         (OPENCV_FISHEYE, [0.05, 0.01, -0.002, 0.001, 0.0])])
def test_writer_roundtrip(tmp_path, model, dist):
    sc = _scene(tmp_path, distortion=dist, model=model)
    out = write_nerfstudio_transforms(sc, tmp_path / "out")
    meta = json.loads(out.read_text())
    assert meta["camera_model"] == {PINHOLE: "PINHOLE", OPENCV: "OPENCV", OPENCV_FISHEYE: "OPENCV_FISHEYE"}[model]
    assert "fl_x" in meta and "fl_x" not in meta["frames"][0]  # shared intrinsics
    assert meta["frames"][0]["file_path"] == "../data/img/0.png" and meta["ply_file_path"] == "sparse_pc.ply"
    assert meta["test_filenames"] == ["../data/img/0.png", "../data/img/4.png"]
    assert meta["val_filenames"] == ["../data/img/4.png"] and len(meta["train_filenames"]) == 4
    back = read_nerfstudio(out)
    for k in ("c2w", "fx", "fy", "cx", "cy", "distortion"):
        np.testing.assert_allclose(getattr(back.cameras, k), getattr(sc.cameras, k), atol=1e-6, err_msg=k)
    assert back.cameras.model == model and torch.equal(back.cameras.width, sc.cameras.width)
    assert back.train_indices == sc.train_indices and back.test_indices == sc.test_indices and back.val_indices == [4]
    np.testing.assert_allclose(back.points, sc.points, atol=1e-6)
    assert not list(out.parent.glob("*.tmp"))


def test_writer_per_frame_downscaled_and_normalized(tmp_path):
    sc = _scene(tmp_path)
    sc.cameras.fx[2] = 9.0  # intrinsics now differ per frame
    small = normalize_scene(sc.with_downscale(2), target_radius=1.0)
    assert small.cameras.width.tolist() == [4] * 6
    out = write_nerfstudio_transforms(small, tmp_path / "t.json")
    meta = json.loads(out.read_text())
    assert "fl_x" not in meta and meta["frames"][2]["fl_x"] == pytest.approx(9.0) and meta["frames"][0]["w"] == 8
    back = read_nerfstudio(out, downscale=2)  # written against the full-resolution files
    np.testing.assert_allclose(back.cameras.fx, small.cameras.fx, rtol=1e-6)
    np.testing.assert_allclose(back.cameras.c2w, small.cameras.c2w, atol=1e-6)
    np.testing.assert_allclose(back.normalization.transform, small.normalization.transform, atol=1e-9)
    np.testing.assert_allclose(back.normalization.inverse_c2w(back.cameras.c2w), sc.cameras.c2w, atol=1e-5)


def test_writer_from_cameras(tmp_path):
    cams = ring_cameras(3)
    paths = write_images(tmp_path, ["a.png", "b.png", "c.png"])
    out = write_nerfstudio_transforms(cams, tmp_path, paths)
    meta = json.loads(out.read_text())
    assert out.name == "transforms.json" and "train_filenames" not in meta and "ply_file_path" not in meta
    np.testing.assert_allclose(read_nerfstudio(tmp_path).cameras.c2w, cams.c2w, atol=1e-6)
    with pytest.raises(ValueError):
        write_nerfstudio_transforms(cams, tmp_path)
    with pytest.raises(ValueError, match="every frame or for none"):
        write_nerfstudio_transforms(cams, tmp_path, paths, mask_paths=[paths[0], None, None])
    out = write_nerfstudio_transforms(cams, tmp_path, paths, splits={"train": [1, 2], "test": [0]})
    meta = json.loads(out.read_text())
    assert meta["val_filenames"] == meta["test_filenames"] == ["a.png"]


def _process_data_layout(root, masks=True):
    """A folder as ``ns-process-data`` leaves it: images/ + images_2/ (+ masks_2/), colmap/, sparse_pc.ply."""
    meta, gl, paths = _base(root, model="PINHOLE", masks=masks)
    small = write_images(root, [f"images_2/frame_{i:03d}.png" for i in range(N)], height=3, width=4)
    if masks:
        m = np.full((3, 4), 255, np.uint8)
        m[:, 0] = 0
        (root / "masks_2").mkdir()
        for i in range(N):
            Image.fromarray(m).save(root / "masks_2" / f"m{i}.png")
    (root / "colmap" / "sparse" / "0").mkdir(parents=True)
    (root / "colmap" / "database.db").write_bytes(b"")
    applied = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-0.0, -1.0, -0.0, -0.0]]
    write_points_ply(root / "sparse_pc.ply", torch.randn(12, 3), torch.rand(12, 3))
    meta.update(ply_file_path="sparse_pc.ply", applied_transform=applied)
    _write(root, meta)
    return meta, paths, small


def test_process_data_layout_uses_images_2(tmp_path):
    meta, full, small = _process_data_layout(tmp_path)
    sc = read_nerfstudio(tmp_path, downscale=2)
    assert sc.image_paths == small and sc.downscale == 2 and sc.metadata["files_downscale"] == 2
    assert sc.cameras.width.tolist() == [4] * N and sc.cameras.height.tolist() == [3] * N
    np.testing.assert_allclose(sc.cameras.fx, 3.5) and np.testing.assert_allclose(sc.cameras.cx, 2.05, rtol=1e-6)
    np.testing.assert_allclose(sc.cameras.c2w, torch.from_numpy(ring_poses(N)).float(), atol=1e-6)
    img = sc.image(1)  # the images_2 file itself, not a resized copy of images/
    assert img.shape == (3, 4, 3)
    np.testing.assert_allclose(img.numpy(), np.asarray(Image.open(small[1]), np.float32) / 255, atol=1e-6)
    assert sc.mask_paths[0] == tmp_path / "masks_2" / "m0.png" and not sc.mask(0)[:, 0].any()
    assert sc.points.shape == (12, 3) and sc.metadata["applied_transform"] == meta["applied_transform"]
    # splits still match the full-size names the JSON lists
    assert sc.test_indices == [0, 8]
    # factor 4 has no images_4/: the full-size images are shrunk on load instead
    sc4 = read_nerfstudio(tmp_path, downscale=4)
    assert sc4.image_paths == full and sc4.cameras.width.tolist() == [2] * N and "files_downscale" not in sc4.metadata
    # the written copy keeps applied_transform and points at the pre-shrunk files with their intrinsics
    out = write_nerfstudio_transforms(sc, tmp_path / "copy")
    back = json.loads(out.read_text())
    assert back["applied_transform"] == meta["applied_transform"] and back["w"] == 4
    assert back["frames"][0]["file_path"] == "../images_2/frame_000.png"
    np.testing.assert_allclose(read_nerfstudio(out).cameras.fx, sc.cameras.fx, rtol=1e-6)


def test_images_2_incomplete_falls_back_to_full_size(tmp_path):
    _, full, small = _process_data_layout(tmp_path, masks=False)
    small[3].unlink()
    sc = read_nerfstudio(tmp_path, downscale=2)
    assert sc.image_paths == full and sc.cameras.width.tolist() == [4] * N and sc.image(3).shape == (3, 4, 3)


def test_writer_normalized_scene_goes_out_in_capture_world(tmp_path):
    sc = _scene(tmp_path)
    norm_sc = normalize_scene(sc, target_radius=1.0)
    assert not np.allclose(norm_sc.cameras.c2w, sc.cameras.c2w, atol=1e-3)
    out = write_nerfstudio_transforms(norm_sc, tmp_path / "n.json")
    meta = json.loads(out.read_text())
    assert meta["recon3d_world"] == "original"
    written = torch.tensor([fr["transform_matrix"] for fr in meta["frames"]])
    np.testing.assert_allclose(written, opencv_to_nerfstudio(sc.cameras.c2w), atol=1e-5)  # capture units
    from recon3d.io.ply import read_points_ply
    np.testing.assert_allclose(read_points_ply(tmp_path / "sparse_pc.ply")[0], sc.points, atol=1e-5)
    back = read_nerfstudio(out)  # normalized again on reading
    np.testing.assert_allclose(back.cameras.c2w, norm_sc.cameras.c2w, atol=1e-5)
    np.testing.assert_allclose(back.points, norm_sc.points, atol=1e-5)
    # a file from before recon3d_world existed holds normalized poses: taken as they are
    del meta["recon3d_world"]
    meta["frames"] = [{**fr, "transform_matrix": opencv_to_nerfstudio(norm_sc.cameras.c2w[i]).tolist()}
                      for i, fr in enumerate(meta["frames"])]
    _write(tmp_path, {**meta, "ply_file_path": None})  # same folder as n.json: file paths stay valid
    legacy = read_nerfstudio(tmp_path / "transforms.json")
    np.testing.assert_allclose(legacy.cameras.c2w, norm_sc.cameras.c2w, atol=1e-5)


# ------------------------------------------------------------- splat .ply options matching ns-export
def _gaussians(n=20, degree=1):
    from recon3d.methods.splat.model import GaussianModel

    g = torch.Generator().manual_seed(0)
    k = (degree + 1) ** 2
    return GaussianModel(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                         torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g) * 3,
                         torch.randn(n, 1, 3, generator=g) * 0.5, torch.randn(n, k - 1, 3, generator=g) * 0.1, degree)


def test_splat_ply_drops_nonfinite_and_low_opacity(tmp_path):
    from recon3d.methods.splat.ply import load_splat_ply, save_splat_ply

    m = _gaussians()
    with torch.no_grad():
        m.means[2, 1] = float("nan")
        m.log_scales[5, 0] = float("inf")
        m.opacity_logits[7] = -8.0  # opacity 3e-4 < 1/255
    back = load_splat_ply(save_splat_ply(m, tmp_path / "a.ply"))
    assert len(back) == 18 and torch.isfinite(back.means).all()
    keep = [i for i in range(20) if i not in (2, 5)]
    np.testing.assert_allclose(back.opacity_logits.detach(), m.opacity_logits.detach()[keep], atol=1e-6)
    back = load_splat_ply(save_splat_ply(m, tmp_path / "b.ply", min_opacity=1 / 255))
    opac = torch.sigmoid(m.opacity_logits.detach())
    expect = [i for i in keep if opac[i] >= 1 / 255]
    assert len(back) == len(expect) < 18
    np.testing.assert_allclose(back.means.detach(), m.means.detach()[expect], atol=1e-6)


def test_splat_ply_rgb_color_mode(tmp_path):
    from recon3d.core.gaussians.sh import sh0_to_rgb
    from recon3d.methods.splat.ply import load_splat_ply, save_splat_ply

    m = _gaussians(degree=2)
    path = save_splat_ply(m, tmp_path / "rgb.ply", color_mode="rgb")
    raw = path.read_bytes()
    header = raw[:raw.index(b"end_header\n")].decode().splitlines()
    props = [ln.split()[1:] for ln in header if ln.startswith("property")]
    assert [p[1] for p in props] == ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "opacity",
                                     "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert [p[0] for p in props if p[1] in ("red", "green", "blue")] == ["uchar"] * 3
    assert len(raw) - raw.index(b"end_header\n") - 11 == 20 * (14 * 4 + 3)
    back = load_splat_ply(path)
    assert back.max_sh_degree == 0 and len(back) == 20
    want = (sh0_to_rgb(m.sh0.detach()[:, 0]).clamp(0, 1) * 255).to(torch.uint8).float() / 255
    np.testing.assert_allclose(sh0_to_rgb(back.sh0[:, 0]).detach(), want, atol=1e-5)
    np.testing.assert_allclose(back.log_scales.detach(), m.log_scales.detach(), atol=1e-6)
    with pytest.raises(ValueError, match="color_mode"):
        save_splat_ply(m, tmp_path / "x.ply", color_mode="hsv")


def test_nerfstudio_frame_transform(tmp_path):
    from recon3d.io.nerfstudio import nerfstudio_frame_transform

    T = [[0.0, -1.0, 0.0, 0.3], [1.0, 0.0, 0.0, -0.1], [0.0, 0.0, 1.0, 0.2]]
    M = nerfstudio_frame_transform({"transform": T, "scale": 0.5})
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(M[:3, :3] @ x + M[:3, 3], 0.5 * (np.asarray(T)[:, :3] @ x + np.asarray(T)[:, 3]))
    # ns-process-data's COLMAP layout without applied_transform: nerfstudio's legacy default is undone
    _base(tmp_path)
    (tmp_path / "colmap" / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "dp.json").write_text(json.dumps({"transform": T, "scale": 0.5}))
    A = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(nerfstudio_frame_transform(tmp_path / "dp.json", tmp_path) @ A, M, atol=1e-12)
    for bad, pattern in (({"transform": T}, "expected"), ({"transform": [[1, 2]], "scale": 1}, "expected"),
                         ({"transform": T, "scale": -1}, "scale positive")):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match=pattern) as e:
            nerfstudio_frame_transform(tmp_path / "bad.json")
        assert "bad.json" in str(e.value)
