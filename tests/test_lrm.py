"""LRM: triplane axes and sampling, camera modulation, shapes (tiny and published), training, checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon3d.feedforward.lrm import LRM, LRMConfig, published_config
from recon3d.feedforward.lrm.model import CANONICAL_AZIMUTH, yaw_rotation
from recon3d.feedforward.lrm.networks import camera_vector
from recon3d.feedforward.lrm.triplane import PLANE_AXES, cell_center, sample_triplane
from recon3d.feedforward.rendering import RenderOptions, render_view
from recon3d.io.synthetic import look_at

MICRO = dict(image_size=32, patch_size=8, encoder_dim=32, encoder_layers=1, encoder_heads=2,
             camera_embed_dim=16, decoder_dim=32, decoder_layers=1, decoder_heads=2,
             triplane_low_res=4, triplane_high_res=8, triplane_dim=8, mlp_hidden=32,
             num_coarse=16, num_fine=8, rays_per_view=64, val_views=1)


def _cameras(eyes, f=44.0, size=32):
    c2w = look_at(np.asarray(eyes, np.float64), np.zeros((len(eyes), 3)))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]).expand(len(eyes), 3, 3).clone()
    return K, c2w


def _eye(az_deg, el_deg, r=3.6):
    a, e = math.radians(az_deg), math.radians(el_deg)
    return [r * math.cos(e) * math.cos(a), r * math.cos(e) * math.sin(a), r * math.sin(e)]


# ------------------------------------------------------------------------------------- triplanes
def test_triplane_axes_ramp_planes_read_back_point_coordinates():
    """Planes whose 2 channels hold each cell's own (column, row) world coordinates return, at any
    point, the point's coordinates along that plane's axes: XY -> (x, y), XZ -> (x, z), YZ -> (y, z)."""
    R, b = 16, 1.3
    centers = ((2 * torch.arange(R) + 1) / R - 1) * b
    col = centers[None, :].expand(R, R)
    row = centers[:, None].expand(R, R)
    planes = torch.stack([col, row])[None, None].expand(1, 3, 2, R, R).contiguous()
    inner = b * (1 - 1 / R)  # bilinear interpolation of a ramp is exact between cell centres
    pts = (torch.rand(1, 200, 3) * 2 - 1) * inner
    feats = sample_triplane(planes, pts, b)  # (1, 3, N, 2)
    for k, (ac, ar) in enumerate(PLANE_AXES):
        assert torch.allclose(feats[0, k], pts[0][:, [ac, ar]], atol=1e-5)
    # a point on the z axis projects to the centre of XY and to the vertical centre line of XZ / YZ
    on_z = torch.tensor([[[0.0, 0.0, 0.7]]])
    f = sample_triplane(planes, on_z, b)[0, :, 0]
    assert torch.allclose(f, torch.tensor([[0.0, 0.0], [0.0, 0.7], [0.0, 0.7]]), atol=1e-5)


@pytest.mark.parametrize("plane", [0, 1, 2])
def test_feature_painted_in_a_cell_is_read_back_at_the_matching_point(plane):
    R, C, b = 8, 4, 1.0
    planes = torch.zeros(1, 3, C, R, R)
    r, c = 2, 5
    planes[0, plane, 1, r, c] = 1.0
    p = cell_center(plane, r, c, R, b, third=0.37)
    feats = sample_triplane(planes, p[None, None], b)[0, :, 0]  # (3, C)
    expected = torch.zeros(3, C)
    expected[plane, 1] = 1.0
    assert torch.allclose(feats, expected, atol=1e-6)
    # half a cell away along the plane's column axis, the feature is half-interpolated
    q = p.clone()
    q[PLANE_AXES[plane][0]] += b / R
    assert abs(sample_triplane(planes, q[None, None], b)[0, plane, 0, 1].item() - 0.5) < 1e-5
    # the XZ plane's rows run with +Z (row 0 = bottom of the cube)
    if plane == 1:
        assert p[2] < 0 and p[0] > 0


def test_yaw_rotation_moves_source_camera_to_canonical_azimuth():
    _, c2w = _cameras([_eye(az, el) for az, el in [(0, 10), (123, 40), (-170, -15), (90, 60)]])
    R = yaw_rotation(c2w)
    c = torch.einsum("bij,bj->bi", R, c2w[:, :3, 3])
    az = torch.atan2(c[:, 1], c[:, 0])
    assert torch.allclose(az, torch.full_like(az, CANONICAL_AZIMUTH), atol=1e-5)
    assert torch.allclose(c[:, 2], c2w[:, 2, 3], atol=1e-5)  # height kept: rotation about +Z
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-6)


def test_projected_token_features_sample_the_image_where_points_project():
    """Patch tokens holding their own normalized image coordinates read back each point's projection."""
    from recon3d.feedforward.lrm.networks import projected_token_features

    S, g = 64, 8
    c = (torch.arange(g) + 0.5) / g * 2 - 1
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    tokens = torch.stack([uu, vv], -1).reshape(1, g * g, 2)
    K, c2w = _cameras([[0.3, -3.5, 1.0]], f=80.0, size=S)
    pts = torch.tensor([[0.0, 0, 0], [0.2, 0.1, -0.3], [-0.1, 0.3, 0.2]])
    out = projected_token_features(tokens, K, c2w, S, S, pts)[0]
    w2c = torch.linalg.inv(c2w[0])
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    uv = torch.stack([80.0 * pc[:, 0] / pc[:, 2] + S / 2, 80.0 * pc[:, 1] / pc[:, 2] + S / 2], -1) * 2 / S - 1
    assert torch.allclose(out, uv, atol=1e-5)
    assert torch.allclose(out[0], torch.zeros(2), atol=1e-6)  # the cameras look at the origin


# ------------------------------------------------------------------------------------- modulation
def test_camera_modulation_changes_the_triplanes():
    torch.manual_seed(0)
    img = torch.rand(1, 1, 3, 32, 32).expand(2, 1, 3, 32, 32)
    model = LRM(LRMConfig(**MICRO, canonical_yaw=False)).eval()
    K, c2w = _cameras([_eye(30, 20), _eye(150, 50)])
    with torch.no_grad():
        planes = model.encode(img, K[:, None], c2w[:, None])["planes"]
    assert (planes[0] - planes[1]).abs().max() > 1e-3
    # the raw camera code itself differs
    assert not torch.allclose(camera_vector(K, c2w, 32, 32)[0], camera_vector(K, c2w, 32, 32)[1])


def test_canonical_yaw_is_equivariant_and_elevation_still_modulates():
    torch.manual_seed(0)
    model = LRM(LRMConfig(**MICRO, canonical_yaw=True)).eval()
    img = torch.rand(1, 1, 3, 32, 32).expand(3, 1, 3, 32, 32)
    K, c2w = _cameras([_eye(30, 20), _eye(110, 20), _eye(30, 55)])
    with torch.no_grad():
        lat = model.encode(img, K[:, None], c2w[:, None])
        planes = lat["planes"]
        assert torch.allclose(planes[0], planes[1], atol=1e-5)  # same view up to a turn about +Z
        assert (planes[0] - planes[2]).abs().max() > 1e-3  # other elevation -> other triplanes
        # turning the source camera by 80 degrees about +Z turns the predicted field with it
        a = math.radians(80)
        Rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
        pts = torch.rand(1, 50, 3) * 1.6 - 0.8
        lat0 = {k: v[:1] for k, v in lat.items()}
        lat1 = {k: v[1:2] for k, v in lat.items()}
        s0, c0 = model.query(lat0, pts, None)
        s1, c1 = model.query(lat1, pts @ Rz.T, None)
    assert torch.allclose(s0, s1, atol=1e-4) and torch.allclose(c0, c1, atol=1e-5)


# ------------------------------------------------------------------------------------- shapes
def test_tiny_shapes_render_and_mesh():
    torch.manual_seed(0)
    cfg = LRMConfig()
    model = LRM(cfg).eval()
    K, c2w = _cameras([_eye(10, 20), _eye(80, 30)], size=48)
    imgs = torch.rand(2, 1, 3, 48, 48)  # resized to cfg.image_size inside encode
    with torch.no_grad():
        lat = model.encode(imgs, K[:, None], c2w[:, None])
        assert lat["planes"].shape == (2, 3, cfg.triplane_dim, cfg.triplane_high_res, cfg.triplane_high_res)
        sigma, rgb = model.query(lat, torch.rand(2, 10, 3), None)
        assert sigma.shape == (2, 10) and rgb.shape == (2, 10, 3) and (sigma >= 0).all()
        out = render_view(model, lat, K, c2w, 12, 10, RenderOptions(num_coarse=8, num_fine=4))
    assert out["rgb"].shape == (2, 12, 10, 3)


def test_published_config_shapes_on_meta_device():
    cfg = published_config()
    with torch.device("meta"):
        model = LRM(cfg)
        n = sum(p.numel() for p in model.parameters())
        K, c2w = _cameras([_eye(0, 20)], f=384.0, size=512)
        lat = model.encode(torch.zeros(1, 1, 3, 512, 512), K[:, None].to("meta"), c2w[:, None].to("meta"))
        sigma, rgb = model.query(lat, torch.zeros(1, 7, 3), None)
    assert lat["planes"].shape == (1, 3, 80, 64, 64)
    assert model.encoder.pos.shape == (1, 1 + 32 * 32, 768)
    assert model.decoder.tokens.shape == (1, 3 * 32 * 32, 1024) and len(model.decoder.blocks) == 16
    assert sigma.shape == (1, 7) and rgb.shape == (1, 7, 3)
    assert 4.0e8 < n < 6.5e8, n  # the paper: ~500 M parameters


def test_config_round_trip_and_validation():
    cfg = LRMConfig(**MICRO)
    assert LRMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        LRMConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError):
        LRMConfig(aggregate="max")


# ------------------------------------------------------------------------------------- training
def _sphere_batch(n_views=4, size=32, radius=0.55, color=(0.9, 0.3, 0.1)):
    """Views of an analytic coloured sphere rendered by the shared renderer (3D-consistent targets)."""
    from recon3d.feedforward.base import ConditionedRadianceField

    class Sphere(ConditionedRadianceField):
        def encode(self, images, K, c2w):
            return None

        def query(self, latent, points, directions):
            s = torch.where(points.norm(dim=-1) < radius, 80.0, 0.0)
            return s, torch.tensor(color).expand(*points.shape[:-1], 3)

        def training_step(self, batch, step):
            raise NotImplementedError

        def validation_step(self, batch):
            raise NotImplementedError

    sphere = Sphere(None)
    K, c2w = _cameras([_eye(40 + 85 * i, 10 + 15 * i) for i in range(n_views)], f=44.0, size=size)
    out = render_view(sphere, None, K, c2w, size, size, RenderOptions(num_coarse=64, num_fine=0))
    return {"images": out["rgb"].permute(0, 3, 1, 2)[None], "masks": out["opacity"].permute(0, 3, 1, 2)[None],
            "depths": torch.zeros(1, n_views, 1, size, size), "K": K[None], "c2w": c2w[None],
            "object_index": torch.zeros(1, dtype=torch.int64)}


def test_short_training_run_lowers_the_loss():
    torch.manual_seed(0)
    batch = _sphere_batch()
    model = LRM(LRMConfig(**MICRO))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        loss, logs = model.training_step(batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
        assert set(logs) >= {"loss", "mse", "mask_loss", "psnr"}
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), (losses[:5], losses[-10:])
    model.eval()
    metrics = model.validation_step(batch)
    from recon3d.core.metrics import psnr

    gt = batch["images"][0, 1:2].permute(0, 2, 3, 1)
    white = float(psnr(torch.ones_like(gt), gt).mean())  # an empty (all-background) prediction
    assert metrics["psnr"] > white + 2.0, (metrics, white)
    img = model.validation_images(batch)["input_pred_gt"]
    assert img.shape == (32, 96, 3)


def test_depth_loss_term():
    torch.manual_seed(0)
    batch = _sphere_batch(n_views=2)
    model = LRM(LRMConfig(**MICRO, depth_weight=0.1))
    loss, logs = model.training_step(batch, 0)
    assert "depth_l1" in logs and math.isfinite(loss.item())


# ------------------------------------------------------------------------------------- checkpoint
def test_payload_round_trip_with_fp16_weights(tmp_path):
    from recon3d.feedforward.registry import load_model
    from recon3d.runtime.checkpoint import atomic_torch_save

    model = LRM(LRMConfig(**MICRO))
    payload = model.checkpoint_payload()
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    atomic_torch_save(payload, tmp_path / "lrm.pt")
    loaded = load_model("lrm", tmp_path / "lrm.pt")
    assert loaded.config == model.config
    p = next(loaded.parameters())
    assert p.dtype == torch.float32
    ref = model.decoder.tokens.detach().half().float()
    assert torch.equal(loaded.decoder.tokens.detach(), ref)


def test_shipped_checkpoint_loads_and_meshes_quickly():
    """The shipped model on a bundled sample-scene photo (a held-out object, same camera ranges)."""
    from recon3d.feedforward.registry import data_dir, load_model, shipped_checkpoint
    from recon3d.io.blender import read_blender

    assert shipped_checkpoint("lrm").is_file(), "data/checkpoints/lrm.pt is missing"
    model = load_model("lrm")
    scene = read_blender(data_dir() / "sample_scene", downscale=4)
    cams = scene.cameras
    img = torch.as_tensor(np.asarray(scene.image(0), np.float32))[..., :3].permute(2, 0, 1)
    K = cams.K[:1]
    with torch.no_grad():
        lat = model.encode(img[None, None], K[:, None], cams.c2w[:1, None])
        mesh = model.extract_mesh(lat, resolution=40)
    assert mesh.num_faces > 100
    assert mesh.vertex_colors is not None and mesh.vertex_colors.shape == (mesh.num_vertices, 3)
    assert np.abs(mesh.vertices).max() <= model.scene_bound + 1e-4


def test_uv_textured_mesh_exports_to_glb(tmp_path):
    """A UV-textured mesh (xatlas + baking from the triplane field) survives a GLB round trip."""
    from recon3d.mesh import export_mesh, load_mesh

    torch.manual_seed(0)
    model = LRM(LRMConfig(**MICRO)).eval()
    K, c2w = _cameras([_eye(0, 20)])
    with torch.no_grad():
        lat = model.encode(torch.rand(1, 1, 3, 32, 32), K[:, None], c2w[:, None])
        # a ball of high density: the density MLP's output bias follows the distance from the origin
        model.query = _ball_query(model)  # type: ignore[method-assign]
        mesh = model.extract_mesh(lat, resolution=24, threshold=10.0, texture_size=64)
    assert mesh.uvs is not None and mesh.texture.shape == (64, 64, 3)
    assert mesh.metadata["texture_coverage"] > 0.2
    out = export_mesh(mesh, tmp_path / "m.glb")
    back = load_mesh(out[0])
    assert back.texture is not None and back.num_faces == mesh.num_faces


def _ball_query(model, radius=0.6):
    orig = LRM.query

    def query(latent, points, directions):
        _, rgb = orig(model, latent, points, directions)
        sigma = torch.where(points.norm(dim=-1) < radius, 50.0, 0.0)
        return sigma, rgb

    return query
