"""SugarTrainer: schedule (entropy -> prune -> SDF/normal), checkpoints and exact resume."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from recon3d.io import load_scene
from recon3d.io.normalize import normalize_scene
from recon3d.runtime.checkpoint import checkpoint_path, latest_checkpoint
from recon3d.methods.splat import SplatConfig, SplatTrainer
from recon3d.methods.splat.strategy import DensifyConfig
from recon3d.methods.sugar import SugarConfig, SugarTrainer, preset


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("sugar") / "scene"
    generate_scene(root, num_views=8, size=32, seed=5, object="random")
    scene = normalize_scene(load_scene(root))
    cfg = SplatConfig(max_steps=40, sh_degree=0, init_num_random=600, init_opacity=0.5, checkpoint_every=0,
                      densify=DensifyConfig(refine_start=10_000, reset_every=10_000), scale_schedule_to_steps=False,
                      backend="torch")
    run = root.parent / "run"
    splat = SplatTrainer(scene, cfg, run)
    splat.fit(progress=False)
    return scene, cfg, latest_checkpoint(run / "checkpoints"), run


def _cfg(**kw) -> SugarConfig:
    base = SugarConfig(steps=10, entropy_steps=4, prune_opacity=0.05, num_samples=3000, knn=8, knn_every=3,
                       checkpoint_every=5, keep_checkpoints=3)
    return replace(base, **kw)


def test_schedule_and_pruning(fitted, tmp_path):
    scene, cfg, ckpt, _ = fitted
    tr = SugarTrainer.from_checkpoint(scene, cfg, ckpt, _cfg(), tmp_path)
    assert tr.sugar_start == 40 and tr.total_steps == 50
    stats = [tr.train_step() for _ in range(4)]
    assert all("entropy" in s and "sdf" not in s for s in stats)
    n_before = len(tr.model)
    low = int((tr.model.opacities < 0.05).sum())
    s = tr.train_step()  # pruning happens at the phase change
    assert tr.pruned and len(tr.model) == n_before - low
    assert "sdf" in s and torch.isfinite(torch.tensor(s["loss"]))
    for name, opt in tr.optimizers.items():  # optimizer state follows the pruned parameters
        p = getattr(tr.model, name)
        assert opt.param_groups[0]["params"][0] is p and opt.state[p]["exp_avg"].shape == p.shape
    assert tr.neighbors is not None and tr.neighbors.shape == (len(tr.model), 8)


def test_checkpoint_resume_is_exact(fitted, tmp_path):
    scene, cfg, ckpt, _ = fitted
    a = SugarTrainer.from_checkpoint(scene, cfg, ckpt, _cfg(), tmp_path / "a")
    summary = a.fit(progress=False)
    assert summary["steps"] == 10 and a.step == 50
    mid = checkpoint_path(tmp_path / "a" / "sugar" / "checkpoints", 45)
    assert mid.exists() and latest_checkpoint(tmp_path / "a" / "sugar" / "checkpoints").name == "step_0000050.pt"
    b = SugarTrainer.from_checkpoint(scene, cfg, ckpt, _cfg(), tmp_path / "b")
    b.load(mid)
    assert b.step == 45 and b.pruned and b.sugar_start == 40
    b.fit(progress=False)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh0"):
        assert torch.equal(getattr(a.model, name), getattr(b.model, name)), name


def test_presets():
    assert preset("quick").steps < preset("default").steps < preset("high").steps
    assert preset("high").num_samples == 1_000_000 and preset("high").entropy_steps == 2_000
    with pytest.raises(ValueError, match="unknown SuGaR preset"):
        preset("nope")
    c = preset("quick", target_faces=1234)
    assert SugarConfig.from_dict(c.to_dict()) == c


def test_export_texture_options(fitted, tmp_path):
    """`recon3d export --texture-size/--texture-source` on a SuGaR run: the run's config with those
    changed bakes a UV texture of that size; a PLY target or a bad size is refused."""
    from types import SimpleNamespace

    from recon3d.cli import _sugar_mesh_config
    from recon3d.io.errors import DataError

    scene, cfg, ckpt, _ = fitted
    tr = SugarTrainer.from_checkpoint(scene, cfg, ckpt, _cfg(steps=6, entropy_steps=2), tmp_path)
    tr.fit(progress=False)
    args = SimpleNamespace(texture_size=None, texture_source=None, mesh=tmp_path / "m.glb")
    assert _sugar_mesh_config(args, tr) is None  # nothing asked: the run's own config
    args.texture_size, args.texture_source = 32, "gaussians"
    c = _sugar_mesh_config(args, tr)
    assert c.texture_size == 32 and c.texture_source == "gaussians" and c.target_faces == tr.sugar_cfg.target_faces
    mesh = tr.extract_mesh(c)
    assert mesh.texture is not None and mesh.texture.shape[:2] == (32, 32) and mesh.uvs is not None
    with pytest.raises(DataError, match="PLY holds no UV texture"):
        _sugar_mesh_config(SimpleNamespace(texture_size=32, texture_source=None, mesh=tmp_path / "m.ply"), tr)
    with pytest.raises(DataError, match="not in"):
        _sugar_mesh_config(SimpleNamespace(texture_size=-1, texture_source=None, mesh=None), tr)
