"""VGGT-style model: pose encoding, network shapes, published checkpoint layout, loader, training."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.feedforward.vggt.external import IGNORED_PREFIXES, load_published_state_dict
from recon3d.feedforward.vggt.layers import RotaryEmbedding2D
from recon3d.feedforward.vggt.losses import normalized_targets
from recon3d.feedforward.vggt.model import VGGT, VGGTConfig, vggt_config
from recon3d.feedforward.vggt.pose_encoding import (
    c2w_to_extrinsics, decode_pose, encode_pose, extrinsics_to_c2w, matrix_to_quaternion, quaternion_to_matrix)
from recon3d.io.errors import DataError

FIXTURE = Path(__file__).parent / "fixtures" / "vggt_1b_params.json.gz"


def random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    q = torch.randn(n, 4, generator=gen)
    return quaternion_to_matrix(q)


def micro_config(**kw) -> VGGTConfig:
    base = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, camera_trunk_depth=1,
                camera_num_heads=2, dpt_features=16, dpt_out_channels=[8, 8, 16, 16], dpt_layer_idx=[0, 0, 1, 1])
    base.update(kw)
    return VGGTConfig(**base)


def look_at_c2w(center: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world looking at the origin from ``center`` with world +Z up."""
    z = -center / center.norm()
    x = torch.linalg.cross(z, torch.tensor([0.0, 0.0, 1.0]))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    m = torch.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, center
    return m


# ------------------------------------------------------------------------------ pose encoding
def test_quaternion_matrix_round_trip_including_half_turns():
    gen = torch.Generator().manual_seed(0)
    R = random_rotations(200, gen)
    half = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # 180 degrees about x: trace -1
    R = torch.cat([R, half[None], torch.eye(3)[None]])
    q = matrix_to_quaternion(R)
    assert torch.all(q[:, 3] >= 0)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(q)), atol=1e-6)
    assert torch.allclose(quaternion_to_matrix(q), R, atol=1e-5)
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    Rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    s = math.sqrt(0.5)
    assert torch.allclose(matrix_to_quaternion(Rz), torch.tensor([0.0, 0.0, s, s]), atol=1e-6)


def test_pose_encoding_round_trip():
    gen = torch.Generator().manual_seed(1)
    n, H, W = 16, 48, 80
    R = random_rotations(n, gen)
    T = torch.randn(n, 3, generator=gen)
    extr = torch.cat([R, T[..., None]], dim=-1)
    f = 30 + 100 * torch.rand(n, 2, generator=gen)
    K = torch.zeros(n, 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f[:, 0], f[:, 1], W / 2, H / 2, 1
    enc = encode_pose(extr, K, (H, W))
    assert enc.shape == (n, 9)
    assert torch.allclose(enc[:, 7], 2 * torch.atan(H / 2 / f[:, 1]))  # fov_h from fy
    extr2, K2 = decode_pose(enc, (H, W))
    assert torch.allclose(extr2, extr, atol=1e-5)
    assert torch.allclose(K2, K, rtol=1e-5, atol=1e-4)
    c2w = extrinsics_to_c2w(extr)
    assert torch.allclose(c2w2 := c2w_to_extrinsics(c2w), extr, atol=1e-5), c2w2
    # c2w maps the camera centre (origin of camera space) to -R^T T
    assert torch.allclose(c2w[:, :3, 3], -(R.transpose(1, 2) @ T[..., None])[..., 0], atol=1e-5)


def test_rope_attention_depends_on_relative_position_only():
    rope = RotaryEmbedding2D(100.0)
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen)

    def dot(pq, pk):
        a = rope(q, torch.tensor([[pq]]))
        b = rope(k, torch.tensor([[pk]]))
        return float((a * b).sum())

    assert dot((2, 3), (5, 7)) == pytest.approx(dot((10, 1), (13, 5)), abs=1e-4)
    assert dot((2, 3), (5, 7)) != pytest.approx(dot((2, 3), (7, 5)), abs=1e-3)
    assert torch.allclose(rope(q, torch.zeros(1, 1, 2, dtype=torch.long)), q)  # position 0: identity


# ------------------------------------------------------------------------------ network
def test_forward_shapes_and_single_frame():
    torch.manual_seed(0)
    model = VGGT(micro_config()).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 32, 48))  # non-square works too
        one = model(torch.rand(1, 1, 3, 32, 32))
    assert out["pose_enc"].shape == (2, 3, 9) and len(out["pose_enc_list"]) == 4
    assert out["depth"].shape == (2, 3, 32, 48, 1) and out["depth_conf"].shape == (2, 3, 32, 48)
    assert out["world_points"].shape == (2, 3, 32, 48, 3) and out["world_points_conf"].shape == (2, 3, 32, 48)
    assert bool((out["depth"] > 0).all()) and bool((out["depth_conf"] > 1).all())
    assert bool((out["pose_enc"][..., 7:] >= 0).all())  # FoV through a ReLU
    assert one["depth"].shape == (1, 1, 32, 32, 1)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.rand(1, 1, 3, 30, 32))


def test_first_frame_has_its_own_tokens():
    """Frame 0 gets learned token set 0, every other frame set 1; so frame order changes the output."""
    from recon3d.feedforward.vggt.aggregator import Aggregator

    tok = torch.stack([torch.zeros(1, 4), torch.ones(1, 4)])[None]  # (1, 2, 1, 4)
    flat = Aggregator._frame_tokens(tok, B=2, S=3).reshape(2, 3, 1, 4)
    assert torch.all(flat[:, 0] == 0) and torch.all(flat[:, 1:] == 1)
    torch.manual_seed(0)
    model = VGGT(micro_config(patch_embed="dinov2", dino_depth=1)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)  # undo the 0.01 LayerScale init so the blocks change the tokens visibly
        model.aggregator.camera_token[0, 0].normal_()
        x = torch.rand(1, 2, 3, 32, 32)
        a = model.aggregator(x)[-1]
        b = model.aggregator(x.flip(1))[-1].flip(1)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_published_parameters_match_fixture_on_meta_device():
    doc = json.loads(gzip.open(FIXTURE, "rt", encoding="utf-8").read())
    expected = {k: tuple(v) for k, v in doc["params"].items()}
    with torch.device("meta"):
        model = VGGT(vggt_config("published"))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert all(v.is_meta for v in model.state_dict().values())  # nothing allocated
    assert sorted(set(expected) - set(got)) == [] and sorted(set(got) - set(expected)) == []
    assert {k for k in got if got[k] != expected[k]} == set()
    assert sum(math.prod(s) for s in got.values()) == doc["num_parameters"]
    assert doc["ignored_prefixes"] == list(IGNORED_PREFIXES)


def _fixture_state_dict() -> dict:
    doc = json.loads(gzip.open(FIXTURE, "rt", encoding="utf-8").read())
    sd = {k: torch.empty(v, device="meta") for k, v in doc["params"].items()}
    sd["track_head.feature_extractor.norm.weight"] = torch.empty(2048, device="meta")  # published, not implemented
    return sd


def test_strict_loader_maps_published_state_dict_without_allocating():
    model = VGGT.from_external_checkpoint("model.pt", _fixture_state_dict())
    assert isinstance(model, VGGT)
    assert model.config.embed_dim == 1024 and model.config.depth == 24
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("break_it, message", [
    (lambda sd: sd.pop("aggregator.frame_blocks.3.attn.q_norm.weight"), "1 missing"),
    (lambda sd: sd.__setitem__("aggregator.extra_token", torch.empty(3, device="meta")), "1 unexpected"),
    (lambda sd: sd.__setitem__("camera_head.embed_pose.weight", torch.empty(2048, 8, device="meta")), "other shapes"),
])
def test_strict_loader_rejects_mismatches(break_it, message):
    sd = _fixture_state_dict()
    break_it(sd)
    with pytest.raises(DataError, match=message):
        load_published_state_dict(sd, source="model.pt")


def test_loader_reads_real_tensors_into_float32():
    """Same loader on a small architecture with real (half-precision) tensors: values arrive exactly."""
    cfg = micro_config(patch_embed="dinov2", dino_depth=1)
    src = VGGT(cfg)
    sd = {k: v.half() for k, v in src.state_dict().items()}
    model = load_published_state_dict({"model": sd}, source="x.pt", config=cfg)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k].float()), k


# ------------------------------------------------------------------------------ training
def _synthetic_batch(B=2, V=3, size=32, seed=0) -> dict:
    """Cameras on a sphere looking at a sphere of radius 0.5 at the origin; analytic depth maps."""
    gen = torch.Generator().manual_seed(seed)
    f = size * 1.2
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    c2w, depth = [], []
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    for _ in range(B * V):
        d = torch.randn(3, generator=gen)
        d[2] = d[2].abs() * 0.5
        cam = look_at_c2w(2.5 * d / d.norm())
        dirs = torch.stack([(xs - size / 2) / f, (ys - size / 2) / f, torch.ones_like(xs)], -1)
        dw = dirs @ cam[:3, :3].T
        o = cam[:3, 3]
        a, b, c = (dw * dw).sum(-1), 2 * (dw * o).sum(-1), (o * o).sum() - 0.25
        disc = b * b - 4 * a * c
        t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)  # z-depth, as dirs have z = 1
        depth.append(torch.where(disc > 0, t, torch.zeros_like(t)))
        c2w.append(cam)
    depth = torch.stack(depth).reshape(B, V, 1, size, size)
    images = torch.where(depth > 0, 0.3 + 0.2 * depth, torch.ones_like(depth)).expand(B, V, 3, size, size)
    return {"images": images.clone(), "depths": depth, "masks": (depth > 0).float(),
            "K": K.expand(B, V, 3, 3).clone(), "c2w": torch.stack(c2w).reshape(B, V, 4, 4)}


def test_normalized_targets_first_camera_frame_unit_scale():
    batch = _synthetic_batch()
    gt = normalized_targets(batch)
    assert torch.allclose(gt["extrinsics"][:, 0], torch.eye(4)[:3].expand(2, 3, 4), atol=1e-5)
    dist = gt["points"].norm(dim=-1)
    for b in range(2):
        assert float(dist[b][gt["valid"][b]].mean()) == pytest.approx(1.0, abs=1e-4)
    # the first view's points are its own camera-space points: z equals its depth
    v0 = gt["valid"][:, 0]
    assert torch.allclose(gt["points"][:, 0][..., 2][v0], gt["depth"][:, 0][v0], atol=1e-5)
    # rigid consistency: camera-1 points mapped by the normalized extrinsic land on their depth
    R, T = gt["extrinsics"][0, 1, :, :3], gt["extrinsics"][0, 1, :, 3]
    cam = gt["points"][0, 1] @ R.T + T
    v1 = gt["valid"][0, 1]
    assert torch.allclose(cam[..., 2][v1], gt["depth"][0, 1][v1], atol=1e-4)


def test_camera_loss_quaternion_term_is_sign_invariant():
    from recon3d.feedforward.vggt.losses import camera_loss

    torch.manual_seed(0)
    target = torch.randn(2, 3, 9)
    target[..., 3:7] = target[..., 3:7] / target[..., 3:7].norm(dim=-1, keepdim=True)
    flipped = target.clone()
    flipped[0, 1, 3:7] *= -1  # same rotation, other sign
    loss, parts = camera_loss([flipped], target)
    assert parts["R"] == pytest.approx(0.0, abs=1e-7) and float(loss) == pytest.approx(0.0, abs=1e-7)
    wrong = target.clone()
    wrong[0, 1, 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0]) if target[0, 1, 6].abs() < 0.9 else torch.tensor([1.0, 0, 0, 0])
    assert camera_loss([wrong], target)[1]["R"] > 1e-3  # a different rotation still costs


def test_camera_loss_kinds():
    """L1 keeps a constant pull on small quaternion errors where Huber's (the default) fades; both
    weight the iterations by gamma^(n-1-i)."""
    from recon3d.feedforward.vggt.losses import camera_loss

    target = torch.zeros(1, 2, 9)
    target[..., 6] = 1.0  # identity quaternion (x, y, z, w)
    pred = target.clone()
    pred[0, 1, 0] = 0.1  # translation x off by 0.1
    pred[0, 1, 3] = 0.2  # quaternion x off by 0.2
    l1, parts = camera_loss([pred], target, kind="l1")
    assert parts["T"] == pytest.approx(0.1 / 6) and parts["R"] == pytest.approx(0.2 / 8)
    hub, hparts = camera_loss([pred], target)
    assert hparts["R"] == pytest.approx(0.5 * 0.2 ** 2 / 8) and hparts["T"] == pytest.approx(0.5 * 0.1 ** 2 / 6)
    two, _ = camera_loss([target, pred], target, gamma=0.5, kind="l1")  # first iteration exact, weight 0.5 on it
    assert float(two) == pytest.approx(float(l1))
    with pytest.raises(ValueError, match="camera loss"):
        camera_loss([pred], target, kind="l2")


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    model = VGGT(micro_config())
    batch = _synthetic_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        loss, logs = model.training_step(batch, step)
        assert math.isfinite(logs["loss"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    metrics = model.validation_step(batch)
    for k in ("rot_err_deg", "trans_err", "depth_absrel", "point_err", "fov_err_deg"):
        assert math.isfinite(metrics[k])
    img = model.validation_images(batch)["depth"]
    assert img.shape == (32, 96, 3)


# ------------------------------------------------------------------------------ shipped model
def test_shipped_checkpoint_loads_and_predicts(tmp_path):
    from recon3d.feedforward.registry import load_model, shipped_checkpoint
    from recon3d.feedforward.vggt.predict import run_predict
    from recon3d.io.images import save_image

    assert shipped_checkpoint("vggt").is_file(), "data/checkpoints/vggt.pt is missing"
    model = load_model("vggt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    batch = _synthetic_batch(B=1, V=3, size=model.config.img_size)
    paths = []
    for i in range(3):
        paths.append(save_image(tmp_path / "in" / f"v{i}.png", batch["images"][0, i].permute(1, 2, 0)))
    summary = run_predict(model, paths, tmp_path / "out")
    assert summary["images"] == 3
    cams = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert len(cams["frames"]) == 3
    # the world is the first camera's frame: the model learned to predict (nearly) the identity for it
    assert np.allclose(np.array(cams["frames"][0]["c2w"]), np.eye(4), atol=0.05)
    for name in ("transforms.json", "points.ply", "depth/v0.png", "depth/v0.npy", "depth/v0_conf.npy"):
        assert (tmp_path / "out" / name).is_file(), name
    depth = np.load(tmp_path / "out" / "depth" / "v1.npy")
    assert depth.shape == (model.config.img_size, model.config.img_size) and np.isfinite(depth).all()


def _write_views(folder: Path, images: torch.Tensor) -> list[Path]:
    from recon3d.io.images import save_image

    return [save_image(folder / f"view_{i}.png", images[i].permute(1, 2, 0)) for i in range(len(images))]


def test_predict_cli_and_vggt_poses_scene(tmp_path):
    """``recon3d predict --model vggt`` writes its files; ``--poses vggt`` builds a Scene like SfM's."""
    from recon3d.cli import main
    from recon3d.sfm.vggt_poses import scene_from_images_vggt

    batch = _synthetic_batch(B=1, V=9, size=64, seed=3)
    paths = _write_views(tmp_path / "photos", batch["images"][0])
    assert main(["predict", "--model", "vggt", "--images", *map(str, paths), "--out", str(tmp_path / "pred"),
                 "--device", "cpu", "--refine-poses"]) == 0
    ns = json.loads((tmp_path / "pred" / "transforms.json").read_text())
    assert len(ns["frames"]) == 9
    refinement = json.loads((tmp_path / "pred" / "cameras.json").read_text())["pose_refinement"]
    assert refinement["method"].startswith("colored ICP") and len(refinement["fitness"]) == 9
    with pytest.raises(SystemExit, match="--refine-poses is for --model vggt"):
        main(["predict", "--model", "lrm", "--images", str(paths[0]), "--out", str(tmp_path / "lrm"), "--refine-poses"])
    scene, info = scene_from_images_vggt(tmp_path / "photos", tmp_path / "work")
    assert len(scene) == 9 and info["num_images"] == 9
    assert scene.test_indices == [0, 8] and len(scene.train_indices) == 7  # every 8th view held out
    assert int(scene.cameras.width[0]) == 64 and scene.source_format == "vggt"
    assert torch.allclose(scene.cameras.c2w[0], torch.eye(4), atol=0.05)
    assert scene.points is None or (scene.points.shape[1] == 3 and len(scene.points) == len(scene.point_colors))
    assert (tmp_path / "work" / "transforms.json").is_file() and (tmp_path / "work" / "vggt.json").is_file()


def test_fit_vggt_checkpoint_option(tmp_path, caplog):
    """``fit --poses vggt`` warns about the shipped tiny model's rough poses, takes other weights with
    ``--vggt-checkpoint`` (no warning), and refuses that option without ``--poses vggt``."""
    from recon3d.cli import main
    from recon3d.feedforward.registry import shipped_checkpoint
    from recon3d.pipeline.fit import FitOptions, load_fit_scene

    batch = _synthetic_batch(B=1, V=4, size=64, seed=5)
    _write_views(tmp_path / "photos", batch["images"][0])
    with caplog.at_level("WARNING", logger="recon3d.sfm"):
        _, info = load_fit_scene(FitOptions(images=tmp_path / "photos", poses="vggt", device="cpu"), tmp_path / "a")
    assert "rough" in caplog.text and info["checkpoint"] == str(shipped_checkpoint("vggt"))
    caplog.clear()
    weights = tmp_path / "my_vggt.pt"
    weights.write_bytes(shipped_checkpoint("vggt").read_bytes())
    with caplog.at_level("WARNING", logger="recon3d.sfm"):
        _, info = load_fit_scene(FitOptions(images=tmp_path / "photos", poses="vggt", device="cpu",
                                            vggt_checkpoint=weights), tmp_path / "b")
    assert "rough" not in caplog.text and info["checkpoint"] == str(weights)
    assert info["pose_refinement"] is None
    _, info = load_fit_scene(FitOptions(images=tmp_path / "photos", poses="vggt", device="cpu", vggt_refine=True),
                             tmp_path / "d")
    assert info["pose_refinement"]["method"].startswith("colored ICP")
    assert main(["fit", "--images", str(tmp_path / "photos"), "--vggt-refine", "--out", str(tmp_path / "e")]) == 2
    assert main(["fit", "--images", str(tmp_path / "photos"), "--vggt-checkpoint", str(weights),
                 "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c" / "sfm").exists()  # refused before any work


def test_icp_refinement_recovers_a_perturbed_pose():
    """Coloured ICP of depth maps: a view of a rendered floor scene whose camera is rotated 8 degrees
    off (and shifted) is put back within 1 degree; the first view stays; too few points: unchanged."""
    from dataclasses import replace

    from recon3d.feedforward.data import GenerationConfig, render_object
    from recon3d.feedforward.vggt.predict import Geometry, unproject_depth
    from recon3d.feedforward.vggt.refine import refine_poses_icp

    cfg = GenerationConfig(image_size=64, views=2, azimuth_range=(0.0, 25.0), background="ground",
                           elevation_range=(20.0, 40.0))
    gt = render_object(cfg, 3)
    c2w = torch.from_numpy(gt["c2w"]).float()
    c2w = torch.linalg.inv(c2w[0]) @ c2w  # world = first camera
    K = torch.from_numpy(gt["K"]).float()
    depth = torch.from_numpy(gt["depth"].astype(np.float32))
    a = math.radians(8.0)
    rot = torch.tensor([[math.cos(a), 0, math.sin(a), 0], [0, 1, 0, 0], [-math.sin(a), 0, math.cos(a), 0], [0, 0, 0, 1.0]])
    start = c2w.clone()
    start[1] = c2w[1] @ rot
    start[1, :3, 3] += torch.tensor([0.1, -0.05, 0.0])
    conf = torch.where(depth > 0, 5.0, 1.0)
    geo = Geometry(c2w=start, K=K, sizes=[(64, 64)] * 2, model_hw=(64, 64), K_model=K, depth=depth, depth_conf=conf,
                   points=unproject_depth(depth, K, start), points_head=torch.zeros(2, 64, 64, 3),
                   points_conf=torch.ones(2, 64, 64), colors=torch.from_numpy(gt["rgb"]).float() / 255, seconds=0.0)

    def angle(A, B):
        R = A[:3, :3].T @ B[:3, :3]
        return math.degrees(math.acos(max(-1.0, min(1.0, (float(R.trace()) - 1) / 2))))

    assert angle(start[1], c2w[1]) > 7.9
    out, info = refine_poses_icp(geo)
    assert info["refined"] == [1] and info["fitness"][1] > 0.5
    assert angle(out.c2w[1], c2w[1]) < 1.0 and torch.equal(out.c2w[0], start[0])
    assert float((out.c2w[1, :3, 3] - c2w[1, :3, 3]).norm()) < 0.05 * float(c2w[1, :3, 3].norm())
    torch.testing.assert_close(out.points, unproject_depth(depth, K, out.c2w))
    few = replace(geo, depth_conf=torch.ones_like(conf))  # nothing above the confidence threshold
    same, info = refine_poses_icp(few)
    assert info["refined"] == [] and torch.equal(same.c2w, start)
    far = start.clone()
    far[1, :3, 3] += 100.0  # no overlap at all: open3d finds no correspondences
    same, info = refine_poses_icp(replace(geo, c2w=far))
    assert info["refined"] == [] and info["fitness"][1] == 0.0 and torch.equal(same.c2w, far)


def test_depth_unprojection_is_at_pixel_centres_in_training_and_prediction():
    """The model's one pixel convention (PIXEL_OFFSET, the pixel centre): predict's unproject_depth
    is the analytic pinhole back-projection at (j + 0.5, i + 0.5), and the training targets' points
    are the same unprojection expressed in the first camera's frame."""
    from recon3d.feedforward.vggt.pose_encoding import PIXEL_OFFSET
    from recon3d.feedforward.vggt.predict import unproject_depth

    assert PIXEL_OFFSET == 0.5
    K = torch.tensor([[[4.0, 0.0, 3.0], [0.0, 5.0, 2.0], [0.0, 0.0, 1.0]]])
    c2w = torch.eye(4)[None].clone()
    c2w[0, :3, 3] = torch.tensor([1.0, -2.0, 0.5])
    depth = torch.full((1, 4, 6), 2.0)
    pts = unproject_depth(depth, K, c2w)
    # pixel (row 3, column 1): centre (1.5, 3.5) -> camera (2 * (1.5 - 3) / 4, 2 * (3.5 - 2) / 5, 2)
    torch.testing.assert_close(pts[0, 3, 1], torch.tensor([1.0 - 0.75, -2.0 + 0.6, 2.5]))
    batch = _synthetic_batch(B=1, V=3, size=16, seed=4)
    gt = normalized_targets(batch)
    rel = torch.linalg.inv(batch["c2w"][0, :1]) @ batch["c2w"][0]
    expected = unproject_depth(batch["depths"][0, :, 0], batch["K"][0], rel) / gt["scale"][0]
    torch.testing.assert_close(gt["points"][0], expected)
