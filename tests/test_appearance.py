"""Per-image appearance compensation (recon3d.methods.splat.appearance) in the splat / SuGaR trainers,
its checkpoints, the half-image evaluation, ``auto`` and the ``--appearance`` fit flag."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recon3d.methods.splat import SplatConfig, SplatTrainer
from recon3d.methods.splat.appearance import (
    AppearanceTransforms, apply_affine, composites_background, fit_affine, half_image_metrics, identity_affines,
    resolve_appearance,
)
from recon3d.methods.splat.strategy import DensifyConfig
from tests.conftest import fit_straight_and_resumed


def _cfg(**kw) -> SplatConfig:
    dens = DensifyConfig(refine_start=20, refine_stop=150, refine_every=25, reset_every=10_000, grow_grad2d=4e-5)
    base = SplatConfig(max_steps=250, sh_degree=0, init_num_random=1500, checkpoint_every=10_000, densify=dens,
                       scale_schedule_to_steps=False, backend="torch", appearance="on")
    return replace(base, **kw)


@pytest.fixture(scope="module")
def base_scene(tmp_path_factory):
    """A tiny synthetic object scene (RGBA files) composited on black, normalized."""
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("appearance") / "scene"
    generate_scene(root, num_views=18, size=40, seed=5, object="random")
    return normalize_scene(load_scene(root, background="black"))


@pytest.fixture(scope="module")
def exposed(base_scene, tmp_path_factory):
    """The scene's training views as opaque photos with a random exposure x white-balance gain each;
    (scene, (N, 3) gains applied, 1 for the test views)."""
    from recon3d.io.images import save_image

    rng = np.random.default_rng(0)
    n = len(base_scene)
    gains = rng.uniform(0.6, 1.4, (n, 1)) * rng.uniform(0.85, 1.15, (n, 3))
    gains[list(base_scene.test_indices)] = 1.0
    folder = tmp_path_factory.mktemp("exposed")
    paths = list(base_scene.image_paths)
    for i in base_scene.train_indices:
        img = (base_scene.image(i) * torch.as_tensor(gains[i], dtype=torch.float32)).clamp(0, 1)
        paths[i] = save_image(folder / f"{i:03d}.png", img)
    return replace(base_scene, image_paths=paths), gains


# ---------------------------------------------------------------------- the transform
def test_identity_at_start_and_the_cut_out_background_is_kept():
    g = torch.Generator().manual_seed(0)
    colors, alphas = torch.rand(2, 5, 7, 3, generator=g), torch.rand(2, 5, 7, 1, generator=g)
    bg = torch.tensor([1.0, 1.0, 1.0])
    for composite in (False, True):
        app = AppearanceTransforms(4, composite=composite)
        assert torch.equal(app.affine.detach(), identity_affines(4))
        out = app(colors[0], 2, alphas[0], bg)
        assert torch.allclose(out, colors[0], atol=1e-6), composite
    # cut-outs: a transparent pixel stays the background, an opaque one gets A c + b
    aff = torch.tensor([[0.5, 0.1, 0.0, 0.05], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 1.2, -0.02]])
    fg = torch.tensor([[[0.2, 0.4, 0.6]]])
    opaque = apply_affine(fg, aff, torch.ones(1, 1, 1), bg)
    assert torch.allclose(opaque[0, 0], aff[:, :3] @ fg[0, 0] + aff[:, 3], atol=1e-6)
    clear = apply_affine(bg.reshape(1, 1, 3), aff, torch.zeros(1, 1, 1), bg)
    assert torch.allclose(clear[0, 0], bg)
    whole = apply_affine(bg.reshape(1, 1, 3), aff)  # opaque photos: the backdrop is transformed too
    assert torch.allclose(whole[0, 0], aff[:, :3] @ bg + aff[:, 3])


def test_recentering_keeps_the_mean_transform_at_identity():
    app = AppearanceTransforms(5)
    with torch.no_grad():
        app.affine[:3] *= torch.tensor([0.5, 1.0, 2.0])[:, None, None]
    app.recenter_([0, 1, 2])
    assert torch.allclose(app.affine[:3].mean(0), identity_affines(1)[0], atol=1e-6)
    assert torch.equal(app.affine[3:].detach(), identity_affines(2))  # views not listed are left alone
    # the differences between views survive the re-centring (gains 0.5, 1, 2 -> mean 1)
    g = app.gains([0, 1, 2]).mean(1)
    assert torch.allclose(g[1:] - g[:-1], torch.tensor([0.5, 1.0]), atol=1e-6)


def test_renders_and_first_step_unchanged_when_on(base_scene, tmp_path):
    cfg = _cfg(max_steps=4, init_num_random=300)
    on = SplatTrainer(base_scene, cfg, tmp_path / "on", device="cpu")
    off = SplatTrainer(base_scene, replace(cfg, appearance="off"), tmp_path / "off", device="cpu")
    assert on.appearance is not None and off.appearance is None
    assert on.appearance.composite and composites_background(base_scene)  # RGBA files: cut-outs, bg kept
    cams = base_scene.cameras[list(base_scene.test_indices)[:1]]
    assert torch.equal(on.render(cams).colors, off.render(cams).colors)  # novel views: the identity
    a, b = on.train_step(), off.train_step()
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)


# ---------------------------------------------------------------------- training
def test_learns_the_applied_per_image_gains(exposed, tmp_path):
    scene, gains = exposed
    tr = SplatTrainer(scene, _cfg(), tmp_path / "run", device="cpu")
    assert tr.appearance is not None and not tr.appearance.composite  # opaque photos: the whole image
    tr.fit(progress=False, log_every=10**9)
    train = list(scene.train_indices)
    fitted = tr.appearance.gains(train).numpy()
    corr = np.corrcoef(fitted.mean(1), gains[train].mean(1))[0, 1]
    assert corr > 0.9, corr  # 0.97 at 300 steps
    assert torch.allclose(tr.appearance.affine[train].mean(0), identity_affines(1)[0], atol=1e-4)
    test = list(scene.test_indices)
    assert torch.equal(tr.appearance.affine[test].detach(), identity_affines(len(test)))  # never trained
    facts = tr.model_facts()
    assert facts["appearance_views"] == len(train) and facts["appearance_gain_max"] > facts["appearance_gain_min"]
    ev = tr.evaluate("test", save_renders=False)
    for k in ("psnr_uncompensated", "ssim_uncompensated", "per_view_psnr_uncompensated", "appearance_eval"):
        assert k in ev, k
    assert ev["views"] == len(test) and len(ev["per_view_psnr"]) == len(test)


def test_resume_is_exact_with_appearance_state(exposed, tmp_path):
    scene, _ = exposed
    cfg = _cfg(max_steps=20, checkpoint_every=10, init_num_random=300, appearance_start=3)
    straight, resumed = fit_straight_and_resumed(scene, cfg, tmp_path)
    assert torch.equal(straight.appearance.affine, resumed.appearance.affine)
    assert float((straight.appearance.affine.detach() - identity_affines(len(scene))).abs().max()) > 0
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    sa = straight.appearance_optimizer.state_dict()["state"][0]
    sb = resumed.appearance_optimizer.state_dict()["state"][0]
    assert all(torch.equal(sa[k], sb[k]) for k in ("exp_avg", "exp_avg_sq"))


def test_checkpoint_and_config_must_agree(exposed, tmp_path):
    scene, _ = exposed
    cfg = _cfg(max_steps=4, init_num_random=200)
    plain = SplatTrainer(scene, replace(cfg, appearance="off"), tmp_path / "p", device="cpu")
    plain.train_step()
    plain_ckpt = plain.save(tmp_path / "plain.pt")
    comp = SplatTrainer(scene, cfg, tmp_path / "c", device="cpu")
    comp.train_step()
    comp_ckpt = comp.save(tmp_path / "comp.pt")
    with pytest.raises(ValueError, match="no per-image appearance transforms.*appearance='on'"):
        SplatTrainer(scene, cfg, tmp_path / "x", device="cpu").load(plain_ckpt)
    with pytest.raises(ValueError, match="appearance='off'"):
        SplatTrainer(scene, replace(cfg, appearance="off"), tmp_path / "y", device="cpu").load(comp_ckpt)
    # "auto" follows the checkpoint: a reopened run (its scene.json has no SfM record) keeps its transforms
    auto = SplatTrainer(scene, replace(cfg, appearance="auto"), tmp_path / "z", device="cpu")
    assert auto.appearance is None  # a posed dataset: auto is off
    auto.load(comp_ckpt)
    assert torch.equal(auto.appearance.affine, comp.appearance.affine)
    auto.train_step()  # and keeps training them
    auto.load(plain_ckpt)
    assert auto.appearance is None and auto.appearance_optimizer is None
    # a pre-appearance checkpoint (no "appearance" entry at all) loads with off / auto
    state = torch.load(plain_ckpt, weights_only=False)
    del state["appearance"]
    torch.save(state, tmp_path / "old.pt")
    SplatTrainer(scene, replace(cfg, appearance="auto"), tmp_path / "w", device="cpu").load(tmp_path / "old.pt")


def test_auto_is_on_for_photo_captures_with_enough_views(base_scene):
    assert resolve_appearance("auto", base_scene)[0] is False  # Blender: constant exposure
    photos = replace(base_scene, metadata={**base_scene.metadata, "sfm": {"num_images": 18}})
    on, why = resolve_appearance("auto", photos)
    assert on and "photo capture" in why and len(photos.train_indices) > 8
    few = photos.subset(list(range(8)))
    assert resolve_appearance("auto", few)[0] is False
    assert resolve_appearance("auto", replace(base_scene, source_format="vggt"))[0] is True
    assert resolve_appearance("on", few)[0] is True and resolve_appearance("off", photos)[0] is False
    with pytest.raises(ValueError, match="appearance must be"):
        resolve_appearance("yes", photos)


def test_sugar_trains_and_saves_the_transforms(exposed, tmp_path):
    from recon3d.methods.sugar import SugarTrainer
    from recon3d.methods.sugar.config import SugarConfig

    scene, _ = exposed
    splat = SplatTrainer(scene, _cfg(max_steps=3, init_num_random=300), tmp_path / "run", device="cpu")
    for _ in range(3):
        splat.train_step()
    before = splat.appearance.affine.detach().clone()
    sugar = SugarTrainer.from_splat(splat, SugarConfig(steps=4, entropy_steps=4, checkpoint_every=100))
    for _ in range(4):
        sugar.train_step()
    assert not torch.equal(before, splat.appearance.affine.detach())
    assert sugar.state_dict()["appearance"]["affine"].shape == (len(scene), 3, 4)


# ---------------------------------------------------------------------- evaluation (NeRF-W half-image protocol)
def test_half_image_metrics_fit_on_the_left_and_score_on_the_right():
    g = torch.Generator().manual_seed(0)
    H, W = 24, 32
    pred = torch.rand(H, W, 3, generator=g) * 0.8 + 0.1
    aff = torch.tensor([[0.8, 0.05, 0.0, 0.03], [0.02, 0.9, 0.0, -0.01], [0.0, 0.1, 0.7, 0.05]])
    gt = apply_affine(pred, aff)
    m = half_image_metrics(pred, gt)
    assert m["psnr"] > 60 and m["ssim"] > 0.999 and m["columns"] == W // 2
    assert torch.allclose(m["affine"], aff, atol=1e-3)
    # noise on the right half only: scored there, PSNR = -10 log10(sigma^2); the fit is untouched
    sigma = 0.02
    noisy = gt.clone()
    noisy[:, W // 2:] += sigma * torch.randn(H, W - W // 2, 3, generator=g)
    m2 = half_image_metrics(pred, noisy)
    assert m2["psnr"] == pytest.approx(-10 * math.log10(sigma ** 2), abs=0.5)
    assert torch.allclose(m2["affine"], aff, atol=1e-3)
    # noise on the left half only: the fit degrades a little, the right half is still clean-ish
    noisy_left = gt.clone()
    noisy_left[:, : W // 2] += sigma * torch.randn(H, W // 2, 3, generator=g)
    assert half_image_metrics(pred, noisy_left)["psnr"] > m2["psnr"] + 5
    # the plain PSNR of an uncompensated render is far lower
    from recon3d.core.metrics import psnr

    assert float(psnr(pred, gt)) < m["psnr"] - 30
    # cut-outs: the transform is fitted on the foreground only, the background kept
    bg = torch.tensor([1.0, 1.0, 1.0])
    alpha = (torch.rand(H, W, 1, generator=g) > 0.5).float()
    comp_pred = pred * alpha + bg * (1 - alpha)
    comp_gt = apply_affine(comp_pred, aff, alpha, bg)
    assert torch.equal(comp_gt[alpha[..., 0] == 0], bg.expand(int((alpha == 0).sum()), 3))
    m3 = half_image_metrics(comp_pred, comp_gt, alpha, bg)
    assert m3["psnr"] > 60 and torch.allclose(m3["affine"], aff, atol=3e-3)  # the ridge: ~1e-3
    with pytest.raises(ValueError, match="H, W, 3"):
        half_image_metrics(pred, gt[:, :-1])


def test_fit_affine_is_least_squares_and_flat_halves_stay_near_identity():
    g = torch.Generator().manual_seed(1)
    d = torch.cat([torch.rand(500, 3, generator=g), torch.ones(500, 1)], 1)
    X = torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = d.double() @ X
    assert torch.allclose(fit_affine(d, t, ridge=0.0), X, atol=1e-8)
    flat = torch.cat([torch.full((100, 3), 0.5), torch.ones(100, 1)], 1)  # one colour: ill-posed without the ridge
    Xf = fit_affine(flat, flat[:, :3] * 0.9)
    assert torch.isfinite(Xf).all()
    assert torch.allclose((flat.double() @ Xf)[0], torch.full((3,), 0.45, dtype=torch.float64), atol=1e-3)


# ---------------------------------------------------------------------- the fit flag
def test_registry_maps_the_appearance_option():
    from recon3d.io.errors import DataError
    from recon3d.methods.registry import get_method

    assert get_method("splat").config("quick", appearance="on").appearance == "on"
    assert get_method("splat").config("quick").appearance == "auto"
    assert get_method("sugar").config("quick", appearance="off").splat.appearance == "off"
    with pytest.raises(DataError, match="--appearance"):
        get_method("nerf").config("quick", appearance="on")


def test_fit_flag_on_resume_and_refusals(tiny_blender, tmp_path, capsys):
    from recon3d.cli import main
    from recon3d.methods.splat import preset

    out, cfg = tmp_path / "run", tmp_path / "splat.json"
    preset("quick", init_num_random=1000).save(cfg)
    args = ["--threads", "1", "fit", "--data", str(tiny_blender), "--config", str(cfg), "--max-steps", "6",
            "--orbit-frames", "0", "--out", str(out)]
    assert main(args + ["--appearance", "on"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["appearance_views"] == m["train_views"] and 0 < m["test_psnr"] < 60
    assert json.loads((out / "config.json").read_text())["appearance"] == "on"
    assert json.loads((out / "run.json").read_text())["appearance"] == "on"
    # a resume cannot switch compensation off (its checkpoints hold the transforms)
    capsys.readouterr()
    assert main(args[:-2] + ["--out", str(out), "--resume", "--max-steps", "8", "--appearance", "off"]) == 2
    err = capsys.readouterr().err
    assert "--appearance on" in err and len(err.strip().splitlines()) == 1
    assert main(args[:-2] + ["--out", str(out), "--resume", "--max-steps", "8"]) == 0
    assert main(["eval", "--run", str(out)]) == 0  # reopened from scene.json / config.json / the checkpoint
    assert "test PSNR" in capsys.readouterr().out
    # field methods have no appearance compensation
    assert main(["fit", "--data", str(tiny_blender), "--method", "nerf", "--appearance", "on",
                 "--out", str(tmp_path / "n")]) == 2
    assert "--appearance" in capsys.readouterr().err and not (tmp_path / "n" / "metrics.json").exists()
