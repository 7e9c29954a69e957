"""pixelNeRF: projection/sampling, view pooling, training, checkpoints, published-key loading, shipped model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from recon3d.feedforward import registry
from recon3d.feedforward.pixelnerf.config import PixelNeRFConfig
from recon3d.feedforward.pixelnerf.model import PixelNeRF
from recon3d.feedforward.pixelnerf.projection import project, sample_features, world_to_camera
from recon3d.feedforward.rendering import RenderOptions, camera_rays, density_mesh, render_view
from recon3d.io.errors import DataError

from .conftest import orbit_c2w

FIXTURE = Path(__file__).parent / "fixtures" / "pixelnerf_published_keys.json"


def _rot(axis: str, a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=torch.float32)


def _odd_camera():
    """A camera with rotation about two axes, translation, non-square image, off-center principal point."""
    c2w = torch.eye(4)
    c2w[:3, :3] = _rot("z", 0.4) @ _rot("y", 0.7) @ _rot("x", 0.3)
    c2w[:3, 3] = torch.tensor([0.5, -1.0, -3.0])
    K = torch.tensor([[70.0, 0.0, 30.2], [0.0, 55.0, 25.7], [0.0, 0.0, 1.0]])
    return K, c2w


def _cell_center_points(K, c2w, H, W, h, w, depth_seed=0):
    """World points whose projections are the centers of the h x w feature cells, at random depths."""
    i = torch.arange(h).repeat_interleave(w)
    j = torch.arange(w).repeat(h)
    u, v = (j + 0.5) * W / w, (i + 0.5) * H / h
    z = torch.rand(h * w, generator=torch.Generator().manual_seed(depth_seed)) * 3 + 1
    p_cam = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], dim=-1)
    return p_cam @ c2w[:3, :3].T + c2w[:3, 3], i, j, u, v


def test_projection_samples_encoder_feature_at_projected_pixel():
    torch.manual_seed(0)
    H, W = 48, 64
    K, c2w = _odd_camera()
    model = PixelNeRF(PixelNeRFConfig.tiny()).eval()
    latent = model.encode(torch.rand(1, 1, 3, H, W), K[None, None], c2w[None, None])
    feats = latent["features"]  # (1, 1, C, 24, 32): stride-2 stem resolution
    h, w = feats.shape[-2:]
    assert (h, w) == (H // 2, W // 2)
    points, i, j, u, v = _cell_center_points(K, c2w, H, W, h, w)
    uv, valid = project(world_to_camera(points[None], c2w[None, None]), K[None, None], H, W)
    assert valid.all()
    assert torch.allclose(uv[0, 0, :, 0], u, atol=1e-3) and torch.allclose(uv[0, 0, :, 1], v, atol=1e-3)
    sampled = sample_features(feats, uv, valid, H, W)[0, 0]  # (N, C)
    assert torch.allclose(sampled, feats[0, 0, :, i, j].T, atol=1e-4)
    # half a cell to the right: the average of two neighbouring cells (bilinear, align_corners=False)
    uv_half = uv.clone()
    uv_half[..., 0] += 0.5 * W / w
    inner = (j < w - 1)
    s_half = sample_features(feats, uv_half, valid, H, W)[0, 0][inner]
    expect = 0.5 * (feats[0, 0, :, i, j] + feats[0, 0, :, i, (j + 1).clamp(max=w - 1)]).T[inner]
    assert torch.allclose(s_half, expect, atol=1e-4)


def test_points_behind_or_outside_get_zero_features():
    H, W = 48, 64
    K, c2w = _odd_camera()
    feats = torch.randn(1, 1, 5, 12, 16) + 3.0  # no zero features by chance
    p_cam = torch.tensor([[0.0, 0.0, -2.0],       # behind the camera
                          [0.0, 0.0, 0.0],        # at the camera center
                          [10.0, 0.0, 1.0],       # far right of the image
                          [0.0, -10.0, 1.0],      # above the image
                          [0.0, 0.0, 2.0]])       # inside
    points = p_cam @ c2w[:3, :3].T + c2w[:3, 3]
    uv, valid = project(world_to_camera(points[None], c2w[None, None]), K[None, None], H, W)
    assert valid[0, 0].tolist() == [False, False, False, False, True]
    assert torch.isfinite(uv).all()
    s = sample_features(feats, uv, valid, H, W)[0, 0]
    assert (s[:4] == 0).all() and (s[4].abs() > 0).all()


def test_query_matches_reference_feature_path():
    """Sampling lin_z-projected maps (the fast path) equals running lin_z on sampled features."""
    torch.manual_seed(1)
    cfg = PixelNeRFConfig.tiny()
    model = PixelNeRF(cfg).eval()
    for p in model.parameters():  # fc_1 starts at zero; make every block matter
        p.data.normal_(0, 0.2)
    c2w = orbit_c2w(3, radius=3.5)[None]
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(1, 3, 3, 3)
    latent = model.encode(torch.rand(1, 3, 3, 32, 32), K, c2w)
    pts = torch.rand(1, 200, 3) * 2.4 - 1.2
    dirs = torch.nn.functional.normalize(torch.randn(1, 200, 3), dim=-1)
    sigma, rgb = model.query(latent, pts, dirs)
    # reference: sample raw features, feed them through lin_z inside the MLP
    from recon3d.feedforward.pixelnerf.projection import rotate_to_camera

    p_cam = world_to_camera(pts, c2w)
    uv, valid = project(p_cam, K, 32, 32)
    feats = sample_features(latent["features"], uv, valid, 32, 32)
    inp = torch.cat([model.code(world_to_camera(pts, c2w, translate=False)), rotate_to_camera(dirs, c2w)], -1)
    out = model.mlp_coarse.forward_features(inp, feats, valid)
    assert valid.any(dim=1).float().mean() > 0.5
    assert torch.allclose(sigma, torch.nn.functional.softplus(out[..., 3] - 1.0), atol=1e-4)
    assert torch.allclose(rgb, torch.sigmoid(out[..., :3]), atol=1e-5)


@pytest.mark.parametrize("masked", [True, False])
def test_view_pooling_is_permutation_invariant(masked):
    torch.manual_seed(2)
    model = PixelNeRF(PixelNeRFConfig.tiny(masked_pooling=masked)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    c2w = orbit_c2w(3, radius=3.5)[None]
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(1, 3, 3, 3)
    images = torch.rand(1, 3, 3, 32, 32)
    pts = torch.rand(1, 300, 3) * 3 - 1.5
    dirs = torch.nn.functional.normalize(torch.randn(1, 300, 3), dim=-1)
    with torch.no_grad():
        s0, c0 = model.query(model.encode(images, K, c2w), pts, dirs)
        perm = torch.tensor([2, 0, 1])
        s1, c1 = model.query(model.encode(images[:, perm], K[:, perm], c2w[:, perm]), pts, dirs)
        s2, _ = model.query(model.encode(images[:, :1], K[:, :1], c2w[:, :1]), pts, dirs)
    assert torch.allclose(s0, s1, atol=1e-5) and torch.allclose(c0, c1, atol=1e-5)
    assert not torch.allclose(s0, s2, atol=1e-3)  # the other views do matter


def _sphere_batch(B=2, V=3, size=16):
    """Views of a sphere (radius 0.6) colored red above z=0 and blue below, on white; analytic."""
    c2w = torch.stack([orbit_c2w(V, radius=3.0, elevation_deg=20.0 + 15 * b) for b in range(B)])
    f = size * 1.2
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]).expand(B, V, 3, 3)
    o, d = camera_rays(K.reshape(-1, 3, 3), c2w.reshape(-1, 4, 4), size, size)
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.36)
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    z = (o + t[..., None] * d)[..., 2]
    color = torch.where((z > 0)[..., None], torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.2, 0.9]))
    rgb = torch.where(hit[..., None], color, torch.ones(3))
    images = rgb.reshape(B, V, size, size, 3).permute(0, 1, 4, 2, 3).contiguous()
    masks = hit.float().reshape(B, V, 1, size, size)
    forward = c2w.reshape(-1, 4, 4)[:, None, :3, 2]
    z_depth = torch.where(hit, t * (d * forward).sum(-1), torch.zeros_like(t))  # camera z, 0 on background
    depths = z_depth.reshape(B, V, 1, size, size)
    return {"images": images, "masks": masks, "depths": depths, "K": K.contiguous(), "c2w": c2w}


def test_sampled_training_rays_match_their_pixels():
    """Rays drawn for supervision carry their own pixel's color, mask and ray distance to the surface."""
    torch.manual_seed(6)
    batch = _sphere_batch(B=2, V=3, size=16)
    model = PixelNeRF(PixelNeRFConfig.tiny(rays_per_object=200))
    rays = model.sample_rays(batch, num_source=1)
    assert rays["origins"].shape == (2, 200, 3) and rays["distance"].shape == (2, 200, 1)
    # the sphere surface point at the target distance: on the sphere of radius 0.6 for object rays
    hit = rays["mask"][..., 0] > 0.5
    surf = rays["origins"] + rays["distance"] * rays["directions"]
    assert hit.float().mean() > 0.3  # foreground-weighted: the sphere covers ~20 % of the pixels
    assert torch.allclose(surf[hit].norm(dim=-1), torch.full_like(surf[hit][:, 0], 0.6), atol=1e-4)
    # colors: red above z=0, blue below, white background
    col = rays["rgb"]
    up = hit & (surf[..., 2] > 0)
    assert torch.allclose(col[up], torch.tensor([0.9, 0.1, 0.1]).expand_as(col[up]))
    assert torch.allclose(col[~hit], torch.ones_like(col[~hit]))


def test_short_training_run_lowers_loss():
    torch.manual_seed(3)
    cfg = PixelNeRFConfig.tiny(rays_per_object=96, train_num_coarse=16, train_num_fine=8, max_source_views=2)
    model = PixelNeRF(cfg).train()
    batch = _sphere_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss, logs = model.training_step(batch, step)
        assert set(logs) >= {"loss", "color_mse", "psnr", "num_source", "mask_mse", "depth_l1"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    model.eval()
    metrics = model.validation_step(batch)
    assert set(metrics) == {"psnr", "ssim"} and math.isfinite(metrics["psnr"]) and 0 < metrics["ssim"] <= 1
    img = model.validation_images(batch)["novel_view"]
    assert img.shape == (16, 48, 3)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(4)
    model = PixelNeRF(PixelNeRFConfig.tiny(mlp_hidden=32)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    path = tmp_path / "pn.pt"
    torch.save(model.checkpoint_payload(), path)
    loaded = registry.load_model("pixelnerf", path)
    assert loaded.config == model.config and loaded.config.mlp_hidden == 32
    batch = _sphere_batch(B=1, V=2)
    pts = torch.rand(1, 64, 3) * 2 - 1
    with torch.no_grad():
        a = model.query(model.encode(batch["images"][:, :1], batch["K"][:, :1], batch["c2w"][:, :1]), pts, None)
        b = loaded.query(loaded.encode(batch["images"][:, :1], batch["K"][:, :1], batch["c2w"][:, :1]), pts, None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # fp16-stored weights (how the shipped file is written) come back as fp32
    payload = model.checkpoint_payload()
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    half = PixelNeRF.from_payload(payload)
    assert all(p.dtype == torch.float32 for p in half.parameters())
    # a checkpoint of another model is refused with the file named
    other = dict(model.checkpoint_payload(), model="lrm")
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(DataError, match="other.pt"):
        registry.load_model("pixelnerf", tmp_path / "other.pt")


@pytest.fixture(scope="module")
def published_state():
    spec = json.loads(FIXTURE.read_text())
    gen = torch.Generator().manual_seed(5)
    state = {}
    for name, shape in spec["keys"]:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.int64)
        elif name.endswith("running_var"):
            state[name] = 1.0 + torch.rand(shape, generator=gen)
        elif name.startswith("code."):  # the reference's buffer values (fixed by the architecture)
            f = 1.5 * 2.0 ** torch.arange(6, dtype=torch.float32)
            state[name] = (f.repeat_interleave(2) if name.endswith("_freqs")
                           else torch.tensor([0.0, math.pi / 2] * 6)).view(shape)
        else:
            state[name] = 0.05 * torch.randn(shape, generator=gen)
    return state


def test_published_checkpoint_loads_strictly(tmp_path, published_state):
    path = tmp_path / "srn_car" / "pixel_nerf_latest"  # the released layout: the folder names the variant
    path.parent.mkdir()
    torch.save(published_state, path)
    model = registry.load_model("pixelnerf", path)  # not a recon3d payload -> from_external_checkpoint
    assert model.config == PixelNeRFConfig.published() == PixelNeRFConfig.released("srn_car")
    assert sum(1 for _ in published_state) == 278
    sd = model.state_dict()
    assert set(sd) == set(published_state)
    for name, value in published_state.items():
        assert torch.equal(sd[name], value), name
    assert model.encoder.latent_size == 512 and model.config.point_input_size == 42
    # the loaded network runs (one view, 64x64) and uses mlp_fine
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]])[None, None]
    c2w = orbit_c2w(1, radius=3.0)[None]
    with torch.no_grad():
        sigma, rgb = model.query(model.encode(torch.rand(1, 1, 3, 64, 64), K, c2w), torch.zeros(1, 5, 3), None)
    assert sigma.shape == (1, 5) and rgb.shape == (1, 5, 3) and torch.isfinite(sigma).all()


def test_positional_encoding_layout_matches_published_buffers(published_state):
    from recon3d.feedforward.pixelnerf.mlp import PositionalEncoding

    pe = PositionalEncoding(6, 3, 1.5)
    assert torch.allclose(pe._freqs, published_state["code._freqs"]) and torch.allclose(pe._phases, published_state["code._phases"])
    x = torch.tensor([[0.3, -0.2, 0.7]])
    out = pe(x)
    assert out.shape == (1, 39)
    assert torch.allclose(out[0, :3], x[0])
    for k in range(6):  # frequency-major blocks: sin(f_k x) then cos(f_k x), 3 values each
        f = 1.5 * 2**k
        assert torch.allclose(out[0, 3 + 6 * k:6 + 6 * k], torch.sin(f * x[0]), atol=1e-5)
        assert torch.allclose(out[0, 6 + 6 * k:9 + 6 * k], torch.cos(f * x[0]), atol=1e-5)


def test_published_loader_reports_mismatches(published_state):
    state = dict(published_state)
    del state["mlp_fine.lin_out.bias"]
    state["encoder.model.fc.weight"] = torch.zeros(1000, 512)
    state["mlp_fine.lin_in.weight"] = torch.zeros(512, 39)  # the architecture is read from mlp_coarse
    with pytest.raises(DataError) as err:
        PixelNeRF.from_external_checkpoint("ckpt/sn64/pixel_nerf_latest", state)
    msg = str(err.value)
    assert msg.startswith("ckpt/sn64/pixel_nerf_latest:") and len(msg.splitlines()) == 1
    assert "1 missing key(s): mlp_fine.lin_out.bias" in msg
    assert "1 unexpected key(s): encoder.model.fc.weight" in msg
    assert "mlp_fine.lin_in.weight (512, 39) != (512, 42)" in msg
    # DataParallel prefixes are stripped; a wrapped {"state_dict": ...} is unwrapped
    wrapped = {"state_dict": {"module." + k: v for k, v in published_state.items()}, "epoch": 3}
    assert PixelNeRF.from_external_checkpoint("x", wrapped, variant="dtu").config.variant == "dtu"
    with pytest.raises(DataError, match="no state dict"):
        PixelNeRF.from_external_checkpoint("x", {"epoch": 3}, variant="dtu")


def test_shipped_checkpoint_predicts_view_and_mesh():
    path = registry.shipped_checkpoint("pixelnerf")
    if not path.is_file():
        pytest.skip(f"shipped checkpoint {path} absent (train it: see data/checkpoints/pixelnerf.md)")
    from recon3d.feedforward.data import GenerationConfig, render_object, split_assignment

    model = registry.load_model("pixelnerf")
    cfg = GenerationConfig(views=2, supersample=1)
    index = split_assignment(GenerationConfig()).index("test")  # an object held out from training
    obj = render_object(cfg, index)
    images = torch.from_numpy(obj["rgb"]).permute(0, 3, 1, 2).float()[None] / 255
    K, c2w = torch.from_numpy(obj["K"])[None], torch.from_numpy(obj["c2w"])[None]
    # render the second view at half resolution from the first
    K_half = K[:, 1].clone()
    K_half[:, :2] *= 0.5
    with torch.no_grad():
        latent = model.encode(images[:, :1], K[:, :1], c2w[:, :1])
        out = render_view(model, latent, K_half, c2w[:, 1], 32, 32, RenderOptions(num_coarse=32, num_fine=16))
    gt = torch.nn.functional.interpolate(images[:, 1], size=(32, 32), mode="area")[0].permute(1, 2, 0)
    pred = out["rgb"][0]
    mse_model = float(((pred - gt) ** 2).mean())
    mse_white = float(((1 - gt) ** 2).mean())
    assert mse_model < 0.7 * mse_white, (mse_model, mse_white)
    assert out["opacity"].max() > 0.5
    mesh = density_mesh(model, latent, resolution=40, threshold=model.mesh_density_threshold)
    assert len(mesh.faces) > 100 and mesh.vertex_colors is not None
