"""Published VGGT weights: the loader (architecture from the file's shapes, track head skipped, meta
buffers filled), parity with the official code on ``shared/reference`` fixtures, the official
preprocessing, and the VGGT-1B key layout.

Fixtures (``../shared/reference``, see its README): ``vggt_small/`` (random float16 weights in the
published layout, inputs and every output of the official modules), ``vggt_1b_layout.json`` (the
full VGGT-1B state dict: names, shapes), ``vggt_preprocess/`` (official ``load_and_preprocess_images``).
Tolerance per tensor: max|ours - ref| <= 1e-4 * max|ref| (float32).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.feedforward import registry
from recon3d.feedforward.vggt.external import (IGNORED_PREFIXES, infer_config, load_published_state_dict,
                                               official_dpt_layers)
from recon3d.feedforward.vggt.model import VGGT, VGGTConfig, vggt_config
from recon3d.feedforward.vggt.pose_encoding import decode_pose
from recon3d.feedforward.vggt.preprocess import preprocess_images
from recon3d.io.errors import DataError

TOL = 1e-4


def _reference_dir() -> Path | None:
    """``../shared/reference`` next to the repository (CI), else ``$RECON3D_REFERENCE``."""
    for cand in (Path(__file__).resolve().parents[2] / "shared" / "reference", os.environ.get("RECON3D_REFERENCE")):
        if cand and (Path(cand) / "vggt_small" / "model.pt").is_file():
            return Path(cand)
    return None


REF = _reference_dir()


@pytest.fixture(scope="module")
def ref() -> Path:
    if REF is None:
        if os.environ.get("CI"):
            pytest.fail("shared/reference (parity fixtures) is missing in CI")
        pytest.skip("shared/reference (parity fixtures) not present")
    return REF


def rel_err(ours, ref) -> float:
    """max|ours - ref| / max|ref| over the finite entries; the non-finite entries must agree exactly."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    fin = np.isfinite(ref)
    assert np.array_equal(fin, np.isfinite(ours)) and np.array_equal(ours[~fin], ref[~fin])
    return float(np.abs(ours[fin] - ref[fin]).max() / max(np.abs(ref[fin]).max(), 1e-30))


# ------------------------------------------------------------------------------ vggt_small parity
@pytest.fixture(scope="module")
def small(ref):
    """The fixture model loaded through the CLI's loader, its inputs, the official outputs and ours."""
    model = registry.load_model("vggt", ref / "vggt_small" / "model.pt", device="cpu")
    inputs = np.load(ref / "vggt_small" / "inputs.npz")
    expected = dict(np.load(ref / "vggt_small" / "outputs.npz"))
    images = torch.from_numpy(inputs["images"]).float()
    with torch.no_grad():
        layers = model.aggregator(images)
        out = model(images)
        agg = model.aggregator
        frames = ((images - agg._mean) / agg._std)[0]
        tokens = agg.patch_embed(frames)
        h, w = images.shape[-2] // 14, images.shape[-1] // 14
        pos_rows_first = agg.patch_embed._pos_embed(w, h)  # see test_pos_embed_fixture_grid
    return model, images, expected, {"layers": layers, "out": out, "tokens": tokens, "pos": pos_rows_first}


def test_fixture_architecture_is_read_from_the_file(small, ref):
    model = small[0]
    want = VGGTConfig(img_size=518, patch_size=14, embed_dim=64, depth=4, num_heads=4, patch_embed="dinov2",
                      dino_depth=2, dino_num_heads=4, camera_trunk_depth=2, camera_num_heads=4, dpt_features=32,
                      dpt_out_channels=[16, 32, 64, 64], dpt_layer_idx=[0, 1, 2, 3], conv_abs_pos=False,
                      dpt_residual="official", pixel_offset=0.0)
    assert model.config == want  # the README's stated configuration
    info = model.external_checkpoint
    assert (info["tensors"], info["skipped"], info["dtypes"]) == (347, 0, ["float16"])
    assert sum(p.numel() for p in model.parameters()) == 1_609_144
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert all(not b.is_meta for b in model.buffers())


def test_vggt_small_matches_every_official_output(small):
    _, images, exp, ours = small
    out = ours["out"]
    H, W = images.shape[-2:]
    errs = {"patch_tokens": rel_err(ours["tokens"], exp["patch_tokens"])}
    for i in range(4):
        errs[f"aggregated_tokens_{i}"] = rel_err(ours["layers"][i], exp[f"aggregated_tokens_{i}"])
        errs[f"pose_enc_iter{i}"] = rel_err(out["pose_enc_list"][i], exp[f"pose_enc_iter{i}"])
    for k in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        errs[k] = rel_err(out[k], exp[k])
    # official pose_encoding_to_extri_intri: no FoV clamp (this random model predicts fov_h = 0: fy = inf)
    extr, K = decode_pose(out["pose_enc"], (H, W), min_fov=0.0)
    errs["extrinsic"], errs["intrinsic"] = rel_err(extr, exp["extrinsic"]), rel_err(K, exp["intrinsic"])
    # official unproject_depth_map_to_point_map: integer pixel coordinates with its K
    from recon3d.core.cameras import Cameras

    c2w = torch.linalg.inv(torch.cat([extr[0], torch.tensor([[[0.0, 0, 0, 1]]]).expand(3, 1, 4)], 1))
    pts = Cameras.from_K(K[0], c2w, W, H).unproject_depth(out["depth"][0, ..., 0], pixel_offset=0.0)
    errs["world_points_from_depth"] = rel_err(pts, exp["world_points_from_depth"])
    errs["patch_embed_pos_interpolated"] = rel_err(ours["pos"], exp["patch_embed_pos_interpolated"])
    print("vggt_small max rel err:", json.dumps({k: float(f"{v:.2e}") for k, v in errs.items()}))
    assert set(errs) == set(exp), set(exp) ^ set(errs)  # every stored output is checked
    bad = {k: v for k, v in errs.items() if not v <= TOL}
    assert not bad, bad


def test_predict_path_gives_the_official_points_and_cameras(small):
    """What ``recon3d predict`` computes from the forward pass: cameras in recon3d's pixel-centre
    convention (principal point + 0.5 for integer-pixel models) whose unprojection is the official
    point map (within the tolerance: predict clamps the FoV at 1e-4 rad, this model's is 0)."""
    from recon3d.feedforward.vggt.predict import unproject_depth

    model, images, exp, ours = small
    H, W = images.shape[-2:]
    c2w, K = model.cameras_from_encoding(ours["out"]["pose_enc"][0], (H, W))
    assert torch.allclose(K[:, 0, 2], torch.full((3,), W / 2 + 0.5)) and torch.allclose(K[:, 1, 2], torch.full((3,), H / 2 + 0.5))
    pts = unproject_depth(ours["out"]["depth"][0, ..., 0], K, c2w)
    assert rel_err(pts, exp["world_points_from_depth"]) <= TOL
    w2c = torch.linalg.inv(c2w)[:, :3]
    assert rel_err(w2c, exp["extrinsic"][0]) <= TOL


def test_pos_embed_fixture_grid(small):
    """The fixture's ``patch_embed_pos_interpolated`` (1, 109, 64) is DINOv2's interpolate_pos_encoding
    called with (168, 126): its first size argument is the row count, so the stored grid is 12 rows x 9
    columns (not the 9 x 12 the README names). The forward pass interpolates to the 9 x 12 patch grid,
    which the patch tokens (equal to the official ones) confirm."""
    model, _, exp, _ = small
    pe = model.aggregator.patch_embed
    assert rel_err(pe._pos_embed(12, 9).detach(), exp["patch_embed_pos_interpolated"]) <= 1e-6
    assert rel_err(pe._pos_embed(9, 12).detach(), exp["patch_embed_pos_interpolated"]) > 1e-2


def test_fixture_model_moves_and_runs_on_every_device(ref):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        model = registry.load_model("vggt", ref / "vggt_small" / "model.pt", device=dev)
        with torch.no_grad():
            out = model(torch.rand(1, 2, 3, 28, 42, device=dev))
        assert out["depth"].device.type == dev and torch.isfinite(out["depth"]).all()


# ------------------------------------------------------------------------------ official preprocessing
def _preprocess_cases():
    if REF is None:
        return [("crop", "all"), ("pad", "all")]
    files = json.loads((REF / "vggt_preprocess" / "index.json").read_text())["files_in_all_order"]
    return [(m, f) for m in ("crop", "pad") for f in [*files, "all"]]


@pytest.mark.parametrize("mode, name", _preprocess_cases())
def test_preprocessing_matches_load_and_preprocess_images(ref, mode, name):
    folder = ref / "vggt_preprocess"
    files = json.loads((folder / "index.json").read_text())["files_in_all_order"]
    paths = [folder / f for f in (files if name == "all" else [name])]
    expected = np.load(folder / "expected_uint8.npz")[f"{mode}/{name}"].astype(np.float64)
    got = preprocess_images(paths, mode=mode).images.numpy().astype(np.float64) * 255
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    assert diff.max() <= 1.0 + 1e-3 and (diff < 1e-3).mean() > 0.999, (diff.max(), (diff < 1e-3).mean())


def test_preprocessing_geometry_and_exif(ref):
    """Crop keeps the top-left-anchored scale, subtracts the crop; pad adds the padding; the EXIF-6
    photo is fed as stored (official) unless exif=True, which turns it into a portrait."""
    folder = ref / "vggt_preprocess"
    port = preprocess_images([folder / "port_480x640.jpg"], mode="crop")
    assert port.images.shape == (1, 3, 518, 518) and port.sizes == [(640, 480)]
    sx, sy = port.scale[0].tolist()
    assert sx == pytest.approx(518 / 480) and sy == pytest.approx(686 / 640)
    assert port.offset[0].tolist() == [0.0, -84.0] and bool(port.inside.all())
    pad = preprocess_images([folder / "wide_700x394.jpg"], mode="pad")
    assert pad.offset[0].tolist() == [0.0, 112.0] and int(pad.inside[0].sum()) == 518 * 294
    assert torch.all(pad.images[0, :, :112] == 1.0)  # white padding
    mixed = preprocess_images([folder / "land_640x480.jpg", folder / "port_480x640.jpg"], mode="crop")
    assert mixed.images.shape == (2, 3, 518, 518) and mixed.offset[0].tolist() == [0.0, 63.0]
    assert any("padded with white" in n for n in mixed.notes)
    stored = preprocess_images([folder / "exif6_640x480.jpg"])
    assert stored.images.shape == (1, 3, 392, 518) and "EXIF orientation 6 not applied" in stored.notes[0]
    upright = preprocess_images([folder / "exif6_640x480.jpg"], exif=True)
    assert upright.images.shape == (1, 3, 518, 518) and upright.sizes == [(640, 480)] and upright.notes == []


def test_photo_intrinsics_undo_resize_crop_and_pad():
    """A camera point projects to frame pixel q with the frame's K and to photo pixel p with the photo's
    K, and q = p * scale + offset (pixel-corner coordinates)."""
    from recon3d.feedforward.vggt.preprocess import ModelInputs

    K = torch.tensor([[[400.0, 0.0, 259.5], [0.0, 410.0, 259.5], [0.0, 0.0, 1.0]]])
    inputs = ModelInputs(images=torch.zeros(1, 3, 518, 518), inside=torch.ones(1, 518, 518, dtype=torch.bool),
                         sizes=[(640, 480)], scale=torch.tensor([[518 / 480, 686 / 640]], dtype=torch.float64),
                         offset=torch.tensor([[3.0, -84.0]], dtype=torch.float64), mode="crop", exif=False, notes=[])
    Kp = inputs.photo_intrinsics(K)[0].double()
    X = torch.tensor([0.3, -0.2, 2.0], dtype=torch.float64)
    q = (K[0].double() @ X)[:2] / X[2]
    p = (Kp @ X)[:2] / X[2]
    assert torch.allclose(q, p * inputs.scale[0] + inputs.offset[0], atol=1e-4)


def test_array_photos_and_the_shipped_size():
    """Arrays / tensors are accepted (float rounded to 8 bits); the frame size follows the model
    (the shipped tiny model: 64 px wide, height a multiple of its patch 8)."""
    photo = torch.rand(48, 80, 3)
    a = preprocess_images([photo], size=64, patch=8)
    b = preprocess_images([np.rint(photo.numpy().astype(np.float64) * 255).astype(np.uint8)], size=64, patch=8)
    assert a.images.shape == (1, 3, 40, 64) and torch.equal(a.images, b.images)
    with pytest.raises(ValueError, match="mode"):
        preprocess_images([photo], mode="stretch")


# ------------------------------------------------------------------------------ VGGT-1B layout
@pytest.fixture(scope="module")
def layout(ref):
    doc = json.loads((ref / "vggt_1b_layout.json").read_text())
    return doc, {k: torch.empty(shape, device="meta") for k, shape, _ in doc["state_dict"]}


def test_vggt_1b_layout_maps_key_for_key_on_meta(layout):
    doc, state = layout
    model = load_published_state_dict(state, source="model.pt")
    expected = {**vggt_config("published").to_dict(), "dpt_residual": "official", "pixel_offset": 0.0,
                "conv_abs_pos": False}
    assert model.config.to_dict() == expected
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    skipped = {k for k in state if k.startswith(IGNORED_PREFIXES)}
    assert len(skipped) == 394 and len(own) == len(state) - 394 == 1403
    assert own == {k: tuple(v.shape) for k, v in state.items() if k not in skipped}
    assert sum(math.prod(s) for s in own.values()) + sum(state[k].numel() for k in skipped) == doc["n_params"]
    assert model.external_checkpoint["skipped"] == 394 and all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("depth_head.scratch.refinenet2.resConfUnit1.conv1.bias"), "1 missing"),
    (lambda sd: sd.__setitem__("tracker_head.x", torch.empty(3, device="meta")), "1 unexpected"),
    (lambda sd: sd.__setitem__("point_head.projects.0.weight", torch.empty(256, 2048, 3, 3, device="meta")), "other shapes"),
    (lambda sd: sd.pop("aggregator.frame_blocks.0.attn.q_norm.weight"), "no 'aggregator.frame_blocks.0.attn.q_norm"),
    (lambda sd: [sd.pop(k) for k in [k for k in sd if k.startswith("aggregator.global_blocks.23.")]], "24 frame blocks, 23 global"),
])
def test_vggt_1b_layout_strictness(layout, edit, message):
    """Only ``track_head.*`` is skipped: any other missing, unexpected or mis-shaped entry is a DataError."""
    state = dict(layout[1])
    edit(state)
    with pytest.raises(DataError, match=message) as e:
        load_published_state_dict(state, source="model.pt")
    assert str(e.value).startswith("model.pt: ") and "\n" not in str(e.value)


# ------------------------------------------------------------------------------ a small published file, end to end
def small_published_config() -> VGGTConfig:
    """An official-layout architecture small enough for a CPU test (112 px, 2 blocks of width 32)."""
    return VGGTConfig(img_size=112, patch_size=14, embed_dim=32, depth=2, num_heads=2, patch_embed="dinov2",
                      dino_depth=1, dino_num_heads=2, camera_trunk_depth=1, camera_num_heads=2, dpt_features=16,
                      dpt_out_channels=[8, 16, 32, 32], dpt_layer_idx=official_dpt_layers(2), conv_abs_pos=False,
                      dpt_residual="official", pixel_offset=0.0)


def write_published_file(path: Path, seed: int = 0) -> dict:
    """``torch.save`` of a plain state dict as the published ``model.pt`` is (plus a stand-in track head)."""
    torch.manual_seed(seed)
    state = VGGT(small_published_config()).state_dict()
    state["track_head.feature_extractor.norm.weight"] = torch.ones(64)
    state["track_head.tracker.corr_mlp.fc1.bias"] = torch.zeros(8)
    torch.save(state, path)
    return state


def test_published_file_loads_like_the_cli_moves_and_runs(tmp_path):
    path = tmp_path / "model.pt"
    state = write_published_file(path)
    assert infer_config(state) == small_published_config()
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model = registry.load_model("vggt", path, device=dev)  # what `recon3d predict --checkpoint` calls
        assert model.external_checkpoint["skipped"] == 2 and not model.training
        for k, v in model.state_dict().items():
            assert torch.equal(v.cpu(), state[k]), k
        with torch.no_grad():
            out = model(torch.rand(1, 2, 3, 56, 84, device=dev))
        assert out["world_points"].shape == (1, 2, 56, 84, 3) and torch.isfinite(out["world_points"]).all()


def test_truncated_or_wrong_file_is_one_line(tmp_path, capsys):
    from recon3d.cli import main

    path = tmp_path / "model.pt"
    write_published_file(path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 80, 40)).save(photo)
    for bad, message in (("cut.pt", "not a readable torch checkpoint"), ("other.pt", "not a published VGGT state dict")):
        rc = main(["predict", "--model", "vggt", "--checkpoint", str(tmp_path / bad), "--images", str(photo),
                   "--out", str(tmp_path / "o"), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and bad in err and message in err, err


def test_predict_and_fit_poses_with_a_published_file(tmp_path):
    """``recon3d predict --model vggt --checkpoint model.pt`` (pad mode, a folder of photos) and
    ``fit --poses vggt --vggt-checkpoint`` read the file through the same loader."""
    from PIL import Image

    from recon3d.cli import main
    from recon3d.sfm.vggt_poses import scene_from_images_vggt

    path = tmp_path / "model.pt"
    write_published_file(path)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(96, 72), (72, 96), (100, 60)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(photos / f"im_{i}.png")
    out = tmp_path / "pred"
    assert main(["predict", "--model", "vggt", "--checkpoint", str(path), "--images", str(photos), "--out", str(out),
                 "--device", "cpu", "--vggt-preprocess", "pad"]) == 0
    cams = json.loads((out / "cameras.json").read_text())
    assert cams["preprocessing"] == {"mode": "pad", "exif": False} and cams["model_resolution_hw"] == [112, 112]
    assert cams["checkpoint"]["skipped"] == 2 and [Path(f["file"]).name for f in cams["frames"]] == [
        "im_0.png", "im_1.png", "im_2.png"]
    assert [(f["width"], f["height"]) for f in cams["frames"]] == [(96, 72), (72, 96), (100, 60)]
    scene, info = scene_from_images_vggt(photos, tmp_path / "work", checkpoint=path)
    assert len(scene) == 3 and info["checkpoint"] == str(path) and info["preprocessing"]["mode"] == "crop"


# ------------------------------------------------------------------------------ recon3d-trained checkpoints
def test_residual_units_and_stored_configs():
    """New models use the official residual unit (relu(x) + f(x)); stored configs without the option
    (the shipped vggt.pt) keep the unit they were trained with (x + f(x)) and the +0.5 pixel centres."""
    from recon3d.feedforward.vggt.heads import ResidualConvUnit

    x = torch.randn(1, 4, 5, 5)
    for kind, skip in (("official", torch.relu(x)), ("identity", x)):
        unit = ResidualConvUnit(4, kind)
        branch = unit.conv2(torch.relu(unit.conv1(torch.relu(x))))
        assert torch.allclose(unit(x), skip + branch)
    assert VGGTConfig().dpt_residual == "official" and VGGTConfig().pixel_offset == 0.5
    stored = VGGTConfig().to_dict()
    stored.pop("dpt_residual")
    assert VGGTConfig.from_dict(stored).dpt_residual == "identity"
    shipped = registry.load_model("vggt")
    assert (shipped.config.dpt_residual, shipped.config.pixel_offset) == ("identity", 0.5)
    _, K = shipped.cameras_from_encoding(torch.zeros(1, 9) + torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1.0]), (64, 48))
    assert K[0, 0, 2] == 24 and K[0, 1, 2] == 32  # recon3d-trained: the decoded centre is already +0.5-based
