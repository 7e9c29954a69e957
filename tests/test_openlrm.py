"""Published OpenLRM v1.1: parity with the official code, the released layouts, the loader and predict.

The parity fixture ``../shared/reference/openlrm_small`` (see its README) holds random float16 weights in
the published layout, inputs, and every output of the official 3DTopia/OpenLRM @3108b69 at that model;
each output must match at max|ours - ref| <= 1e-4 max|ref| (float32). ``openlrm_layouts.json`` lists the
full state dict of the six released models.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.feedforward import registry
from recon3d.feedforward.openlrm import (
    OpenLRM,
    OpenLRMConfig,
    load_checkpoint,
    save_checkpoint,
)
from recon3d.feedforward.openlrm.config import DinoV2Arch, official_encoder_arch
from recon3d.feedforward.openlrm.model import gl_to_cv

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "sample_scene" / "images" / "r_0.png"
TOL = 1e-4


def reference_dir() -> Path:
    """``shared/reference``: $RECON3D_REFERENCE, beside the repository (CI: ../shared), or inside it."""
    here = Path(__file__).resolve()
    cands = [Path(os.environ["RECON3D_REFERENCE"])] if os.environ.get("RECON3D_REFERENCE") else []
    cands += [here.parents[2] / "shared" / "reference", here.parents[1] / "shared" / "reference",
              Path.cwd().parent / "shared" / "reference"]
    for c in cands:
        if (c / "openlrm_small" / "model.safetensors").is_file():
            return c
    if os.environ.get("CI"):
        pytest.fail(f"the OpenLRM parity fixture is missing (looked in {', '.join(map(str, cands))})")
    pytest.skip("shared/reference/openlrm_small not present")


@pytest.fixture(scope="module")
def ref() -> Path:
    return reference_dir()


def rel_err(ours, theirs) -> float:
    ours = ours.detach().cpu().float().numpy() if torch.is_tensor(ours) else np.asarray(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# ------------------------------------------------------------------------------------ fixture parity
@pytest.fixture(scope="module")
def fixture_run(ref):
    """Load the fixture through the CLI's loader and compute every stored output once."""
    torch.set_num_threads(1)
    d = ref / "openlrm_small"
    model = registry.load_model("lrm", d, device="cpu")
    inp = {k: torch.from_numpy(v) for k, v in np.load(d / "inputs.npz").items()}
    outputs = dict(np.load(d / "outputs.npz"))
    ours = {}
    with torch.no_grad():
        ours["encoder_pos_embed_interpolated"] = model.encoder.model.position_embedding(224, 224)
        feats = model.encoder(inp["image"])
        ours["encoder_tokens"] = feats
        cam = model.camera_embedder(inp["source_camera"])
        ours["camera_embedding"] = cam
        tokens = model.forward_transformer(feats, cam)
        ours["transformer_output"] = tokens
        planes = model.reshape_upsample(tokens)
        ours["triplanes"] = planes
        full = model(inp["image"], inp["source_camera"], inp["render_cameras"], inp["render_anchors"],
                     inp["render_resolutions"], inp["render_bg_colors"], int(inp["render_region_size"]))
        assert torch.equal(full["planes"], planes)  # forward_planes == encoder -> transformer -> upsampler
        for k in ("images_rgb", "images_depth", "images_weight"):
            ours[k] = full[k]
        r = model.synthesize(planes, inp["render_cameras"], inp["render_anchors"], inp["render_resolutions"],
                             inp["render_bg_colors"], int(inp["render_region_size"]), keep_samples=True)
        for k in ("ray_origins", "ray_directions", "depths_coarse", "depths_fine"):
            ours[k] = r[k]
        c = model.synthesize(planes, inp["render_cameras"], inp["crop_anchors"], inp["crop_resolutions"],
                             inp["crop_bg_colors"], int(inp["crop_region_size"]))
        for k in ("images_rgb", "images_depth", "images_weight"):
            ours["crop_" + k] = c[k]
        p = model.forward_points(planes, inp["query_points"])
        ours.update(points_features=p["features"], points_sigma_raw=p["sigma_raw"], points_sigma=p["sigma"],
                    points_rgb=p["rgb"])
    return model, inp, outputs, ours


def test_fixture_loads_strictly_as_float32(ref, fixture_run):
    from safetensors.torch import load_file

    model = fixture_run[0]
    assert isinstance(model, OpenLRM) and not model.training
    stored = load_file(str(ref / "openlrm_small" / "model.safetensors"))
    sd = model.state_dict()
    assert list(stored) and set(stored) == set(sd) and len(sd) == 96
    assert all(sd[k].dtype == torch.float32 and torch.equal(sd[k], v.float()) for k, v in stored.items())
    assert sum(v.numel() for v in sd.values()) == 331_084
    arch = model.config.encoder  # from the weight shapes + dinov2_arch.json (heads)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.num_register_tokens, arch.pos_grid) == (48, 2, 3, 4, 37)


def test_fixture_every_output_matches(fixture_run):
    _, _, outputs, ours = fixture_run
    assert set(outputs) == set(ours)
    errs = {k: rel_err(ours[k], outputs[k]) for k in outputs}
    bad = {k: v for k, v in errs.items() if not v <= TOL}
    assert not bad, f"outputs off by more than {TOL} relative: {bad}"


def test_fixture_through_recon3d_cameras(fixture_run):
    """The recon3d face (OpenCV c2w, K in pixels, +0.5 pixel centres) gives the official renders: the
    default source camera is the official one, render cameras converted at the model boundary."""
    model, inp, outputs, _ = fixture_run
    K, c2w = model.default_source_cameras(1, 224)
    from recon3d.feedforward.openlrm.model import source_camera_vector

    assert torch.allclose(source_camera_vector(K, 224, 224, 2.0), inp["source_camera"], atol=1e-7)
    with torch.no_grad():
        latent = model.encode(inp["image"][:, None], K[None], c2w[None])
        assert rel_err(latent["planes"], outputs["triplanes"]) <= TOL
        assert torch.equal(latent["A"][0], torch.eye(3)) and torch.equal(latent["t"][0], torch.zeros(3))
        assert model.scene_bound == 1.0 and model.mesh_density_threshold == 3.0
        cams = inp["render_cameras"][0]
        res = int(inp["render_resolutions"][0, 0, 0])
        c2w_cv = gl_to_cv(cams[:, :16].reshape(-1, 4, 4))
        K_px = cams[:, 16:].reshape(-1, 3, 3).clone()
        K_px[:, :2] *= res
        views = [model.render_view(latent, K_px[i:i + 1], c2w_cv[i:i + 1], res, res, chunk=4096) for i in range(5)]
        rgb = torch.cat([v["rgb"] for v in views]).permute(0, 3, 1, 2)[None]
        depth = torch.cat([v["depth"] for v in views]).permute(0, 3, 1, 2)[None]
        weight = torch.cat([v["opacity"] for v in views]).permute(0, 3, 1, 2)[None]
        assert rel_err(rgb, outputs["images_rgb"]) <= TOL
        assert rel_err(weight, outputs["images_weight"]) <= TOL
        hit = torch.from_numpy(outputs["images_weight"]) > 1e-4  # 8 rays of view 4 miss the cube
        ref_depth = torch.from_numpy(outputs["images_depth"])
        assert rel_err(depth[hit], ref_depth[hit].numpy()) <= TOL
        assert (depth[~hit] == 0).all()  # recon3d: 0 where nothing is hit (official: the call's largest depth)
        sigma, col = model.query(latent, inp["query_points"], None)
        inside = (inp["query_points"].abs() <= 1).all(-1)
        ref_sigma = torch.from_numpy(outputs["points_sigma"][..., 0])
        assert torch.allclose(sigma[inside], ref_sigma[inside], rtol=0, atol=TOL * float(ref_sigma.abs().max()))
        assert (sigma[~inside] == 0).all() and rel_err(col, outputs["points_rgb"]) <= TOL
        # the shared renderer (rendering.render_view -> render_rays_override; recon3d's own rays) renders the
        # same field; predict uses model.render_view (the official ray arithmetic, checked above)
        from recon3d.feedforward.rendering import RenderOptions, render_view

        shared = render_view(model, latent, K_px[:1], c2w_cv[:1], res, res, RenderOptions())
        close = (shared["rgb"] - views[0]["rgb"]).abs().amax(-1) <= 1e-4
        assert close.float().mean() > 0.5  # samples exactly on the cube faces flip with the last bit of a ray


# ----------------------------------------------------------------------------------- released layouts
def released_layouts(ref) -> dict:
    return {k: v for k, v in json.loads((ref / "openlrm_layouts.json").read_text()).items() if not k.startswith("_")}


@pytest.mark.parametrize("name", ["openlrm-obj-small-1.1", "openlrm-mix-small-1.1", "openlrm-obj-base-1.1",
                                  "openlrm-mix-base-1.1", "openlrm-obj-large-1.1", "openlrm-mix-large-1.1"])
def test_released_layout_on_meta(ref, name):
    spec = released_layouts(ref)[name]
    cfg = OpenLRMConfig(**spec["config"], encoder=official_encoder_arch(spec["config"]["encoder_model_name"]))
    with torch.device("meta"):
        model = OpenLRM(cfg)
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert ours == spec["state_dict"]
    assert sum(v.numel() for v in model.state_dict().values()) == spec["n_params"]
    assert not list(model.buffers())  # nothing a meta build could leave unfilled
    assert model.predict_image_size == spec["source_image_res"]
    assert model.predict_render_size == spec["train_render_res"]
    from recon3d.feedforward.openlrm.config import released_config

    size = name.split("-")[2]
    assert released_config(size).official_keys == spec["config"]


def test_released_layout_loads_through_the_shape_reader(ref, tmp_path):
    """The loader infers the DINOv2 size from the weights' shapes and the head count from the name."""
    from recon3d.feedforward.openlrm.config import encoder_arch_from_shapes

    spec = released_layouts(ref)["openlrm-obj-base-1.1"]
    shapes = {k: tuple(s) for k, s, _ in spec["state_dict"]}
    arch = encoder_arch_from_shapes(shapes, "dinov2_vitb14_reg")
    assert arch == official_encoder_arch("dinov2_vitb14_reg")


# -------------------------------------------------------------------------- loader and predict, tiny
def tiny_config(**kw) -> OpenLRMConfig:
    """A small model in the published layout (1 encoder head: 64 wide, as the official 64-wide heads)."""
    arch = DinoV2Arch(embed_dim=64, depth=1, num_heads=1, mlp_hidden=128, pos_grid=37)
    base = dict(camera_embed_dim=16, rendering_samples_per_ray=8, transformer_dim=32, transformer_layers=1,
                transformer_heads=2, triplane_low_res=4, triplane_high_res=8, triplane_dim=4, encoder_type="dinov2",
                encoder_model_name="dinov2_tiny14_reg", encoder_feat_dim=64, encoder_freeze=False, encoder=arch)
    base.update(kw)
    return OpenLRMConfig(**base)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    torch.manual_seed(0)
    model = OpenLRM(tiny_config())
    with torch.no_grad():
        model.synthesizer.decoder.net[-1].bias[0] = 4.0  # a dense field, so a mesh exists at some level
    return save_checkpoint(model, tmp_path / "openlrm-tiny")


def test_save_load_round_trip(tiny_folder):
    model = load_checkpoint(tiny_folder)
    again = registry.load_model("lrm", tiny_folder / "model.safetensors")
    assert isinstance(model, OpenLRM) and model.config.encoder.num_heads == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert json.loads((tiny_folder / "config.json").read_text()) == tiny_config().official_keys


def _median_density(folder: Path) -> float:
    from recon3d.feedforward.predict import load_input_images

    model = load_checkpoint(folder)
    size = model.predict_image_size
    images, _, _ = load_input_images([EXAMPLE], size, fill=model.predict_fill)
    K, c2w = model.default_source_cameras(1, size)
    with torch.no_grad():
        latent = model.encode(images[None], K[None], c2w[None])
        pts = torch.rand(1, 4096, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return float(model.query(latent, pts, None)[0].median())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_predict_end_to_end_through_cli(tiny_folder, tmp_path, device, capsys):
    from recon3d.cli import main

    level = _median_density(tiny_folder)
    out = tmp_path / "out"
    rc = main(["predict", "--model", "lrm", "--checkpoint", str(tiny_folder), "--images", str(EXAMPLE),
               "--out", str(out), "--device", device, "--views", "2", "--orbit-frames", "2",
               "--mesh-resolution", "20", "--threshold", f"{level:.6g}"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["model"] == "lrm" and summary["render_size"] == 224
    assert [p for p in summary["views"]] == ["views/view_00.png", "views/view_01.png"]
    assert (out / "orbit.gif").is_file() and (out / "inputs" / "input_00.png").is_file()
    assert summary["mesh"] and summary["mesh"]["faces"] > 0
    for f in ("mesh.glb", "mesh.obj", "mesh.ply"):
        assert (out / f).is_file()
    # the source camera is OpenLRM's canonical one: distance 2, f = 0.75 x 224
    K = torch.tensor(summary["source_cameras"]["K"])
    assert torch.allclose(K[0, 0, 0], torch.tensor(168.0))


def test_model_moves_to_device_and_runs(tiny_folder):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = registry.load_model("lrm", tiny_folder, device=dev)
    assert all(p.device.type == dev for p in model.parameters())
    K, c2w = model.default_source_cameras(1, 224)
    with torch.no_grad():
        latent = model.encode(torch.rand(1, 1, 3, 200, 200, device=dev), (K * 200 / 224)[None].to(dev), c2w[None].to(dev))
        out = model.render_view(latent, (K * 16 / 224).to(dev), c2w.to(dev), 16, 16)
    assert out["rgb"].shape == (1, 16, 16, 3) and torch.isfinite(out["rgb"]).all()


def test_known_cameras_map_onto_the_canonical_one(tiny_folder):
    """A source camera elsewhere in the world (distance 4, elevated) is taken onto the canonical one: the
    same image gives the same field, scaled (density per world unit halves at twice the distance)."""
    from recon3d.io.synthetic import look_at

    model = load_checkpoint(tiny_folder)
    K, c2w0 = model.default_source_cameras(1, 224)
    c2w1 = look_at(np.array([[2.0, 2.0, 2.0 * np.sqrt(2)]]), np.zeros((1, 3)))  # distance 4
    img = torch.rand(1, 1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lat0 = model.encode(img, K[None], c2w0[None])
        lat1 = model.encode(img, K[None], c2w1[None].float())
        assert model.scene_bound > 2.0 and abs(model.mesh_density_threshold - 1.5) < 1e-6
        p0 = torch.rand(1, 256, 3, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8  # model frame = world 0
        A, t = lat1["A"][0], lat1["t"][0]
        p1 = ((p0[0] - t) @ torch.linalg.inv(A).T)[None]  # the same model points in world 1
        s0, c0 = model.query(lat0, p0, None)
        s1, c1 = model.query(lat1, p1, None)
    assert torch.allclose(s1, 0.5 * s0, rtol=1e-4, atol=1e-6) and torch.allclose(c1, c0, atol=1e-5)
    # the source camera itself maps onto the canonical camera
    centre = A @ c2w1[0, :3, 3].float() + t
    assert torch.allclose(centre, torch.tensor([0.0, -2.0, 0.0]), atol=1e-5)


# ---------------------------------------------------------------------------------------- bad input
def _cli_error(args: list[str], capsys) -> str:
    from recon3d.cli import main

    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


def _predict(folder) -> list[str]:
    return ["predict", "--model", "lrm", "--checkpoint", str(folder), "--images", str(EXAMPLE), "--device", "cpu",
            "--views", "0", "--orbit-frames", "0", "--mesh-resolution", "0"]


def test_bad_folders_are_one_line_errors(tiny_folder, tmp_path, capsys):
    import shutil

    def copy(name):
        d = tmp_path / name
        shutil.copytree(tiny_folder, d)
        return d

    d = copy("no_config")
    (d / "config.json").unlink()
    assert "config.json: not found" in _cli_error(_predict(d), capsys)

    d = copy("no_weights")
    (d / "model.safetensors").unlink()
    assert "no model.safetensors in this folder" in _cli_error(_predict(d), capsys)

    d = copy("truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "model.safetensors: not a readable safetensors file" in _cli_error(_predict(d), capsys)

    d = copy("garbage")
    (d / "model.safetensors").write_bytes(b"not a checkpoint at all")
    assert "not a readable safetensors file" in _cli_error(_predict(d), capsys)

    d = copy("wrong_config")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "transformer_layers": 2}))
    err = _cli_error(_predict(d), capsys)
    assert "does not match its config.json" in err and "missing (e.g. transformer.layers.1." in err

    d = copy("wrong_dim")
    (d / "config.json").write_text(json.dumps({**cfg, "triplane_dim": 6}))
    assert "of another shape (e.g. upsampler.weight" in _cli_error(_predict(d), capsys)

    d = copy("v10")
    (d / "config.json").write_text(json.dumps({**cfg, "encoder_type": "dino"}))
    assert "encoder_type 'dino' is not supported" in _cli_error(_predict(d), capsys)

    d = copy("not_openlrm")
    (d / "config.json").write_text(json.dumps({"hidden_size": 3}))
    assert "not an OpenLRM config.json: missing camera_embed_dim" in _cli_error(_predict(d), capsys)

    d = copy("bad_json")
    (d / "config.json").write_text("{")
    assert "malformed JSON" in _cli_error(_predict(d), capsys)


def test_recon3d_checkpoint_still_loads_for_lrm():
    """``--model lrm`` without a folder stays the recon3d-trained LRM."""
    from recon3d.feedforward.lrm.model import LRM

    if not registry.shipped_checkpoint("lrm").is_file():
        pytest.skip("no shipped lrm.pt")
    assert type(registry.load_model("lrm")) is LRM


def test_find_checkpoints(tiny_folder, tmp_path):
    from recon3d.feedforward.openlrm.loader import checkpoint_label, find_checkpoints

    snap = tmp_path / "hf" / "models--zxhezexin--openlrm-mix-base-1.1" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in ("model.safetensors", "config.json"):
        (snap / f).write_bytes((tiny_folder / f).read_bytes())
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{}")
    found = find_checkpoints(tmp_path)
    assert found == sorted([tiny_folder, snap])
    assert sorted(checkpoint_label(p) for p in found) == ["openlrm-mix-base-1.1", "openlrm-tiny"]
    assert registry.published_checkpoints(tmp_path) == [("lrm", checkpoint_label(p), p) for p in found]
    assert find_checkpoints(tmp_path / "none") == []
