"""NeRF method: occupancy grid and marching, packed/padded samples, fitting a tiny scene, exact resume, meshing."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recon3d.core.fields import SceneBox
from recon3d.core.occupancy import MarchedSamples, OccupancyGrid
from recon3d.core.rays import RayBundle
from recon3d.core.volume_rendering import weights_from_densities
from recon3d.io import load_scene
from recon3d.io.normalize import normalize_scene
from recon3d.runtime.checkpoint import checkpoint_path
from recon3d.methods.nerf import FieldConfig, MarchConfig, NerfConfig, NerfField, NerfTrainer, render_rays


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("nerf") / "scene"
    generate_scene(root, num_views=6, size=24, seed=1, object="random")
    return normalize_scene(load_scene(root))


def _tiny_cfg(**kw) -> NerfConfig:
    base = NerfConfig(
        max_steps=150, rays_per_batch=256, target_samples=0, lr=3e-2, lr_warmup_steps=10, grid_resolution=32,
        grid_update_every=8, grid_warmup_steps=0, background="scene", checkpoint_every=0,
        field=FieldConfig(num_levels=6, log2_hashmap_size=12, base_resolution=4, max_resolution=64, hidden_dim=32,
                          color_hidden_layers=1, sh_degree=1),
        march=MarchConfig(num_steps=64))
    return replace(base, **kw)


def _ball_grid(radius=0.3, res=32):
    grid = OccupancyGrid(SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), res)

    def density(x):
        return torch.where(x.norm(dim=-1) < radius, 100.0, 0.0)

    return grid, density


def test_occupancy_grid_marks_empty_space():
    grid, density = _ball_grid()
    frac = grid.update(density, threshold=1.0, decay=0.0)
    ball = 4 / 3 * math.pi * 0.3**3 / 8  # fraction of the box
    assert 0.5 * ball < frac < 2.5 * ball
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.1, 0.05], [0.8, 0.8, 0.8], [-0.6, 0.0, 0.0], [3.0, 0.0, 0.0]])
    assert grid.query(pts).tolist() == [True, True, False, False, False]
    # estimates decay: cells that empty are released
    grid.update(lambda x: torch.where(x[:, 0] > 0.0625, 100.0, 0.0), threshold=1.0, decay=0.0)
    assert grid.query(pts[:2]).tolist() == [False, True]


def test_occupancy_grid_partial_update_and_state():
    grid, density = _ball_grid(res=16)
    g = torch.Generator().manual_seed(0)
    grid.update(density, threshold=1.0, decay=0.0)
    occ = grid.occupied.clone()
    grid.update(density, threshold=1.0, decay=0.9, num_cells=64, generator=g)  # keeps what it knew
    assert torch.equal(grid.occupied, occ)
    other = OccupancyGrid(grid.box, 16)
    other.load_state_dict(grid.state_dict())
    assert torch.equal(other.occupied, grid.occupied) and torch.equal(other.density, grid.density)


def test_march_skips_empty_space():
    grid, density = _ball_grid()
    grid.update(density, threshold=1.0, decay=0.0)
    o = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 0.0, 0.9]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rays = RayBundle(o, d)
    nears, fars = torch.full((2, 1), 1.0), torch.full((2, 1), 3.0)
    m = grid.march(rays, nears, fars, num_steps=200, stratified=False)
    counts = m.counts()
    assert counts[1] == 0 and counts[0] > 0
    x = m.positions(rays)
    assert (x[:, 0].abs() < 0.3 + 2 * 2 / 32).all()  # within the ball, up to a cell
    t = m.t_mid
    assert (t[1:] >= t[:-1]).all()  # sorted along the ray


def test_empty_scene_grid_returns_no_samples():
    """An occupancy grid refreshed on an empty scene (zero density) marks no cell, so marching
    returns no samples at all, and rendering through it is transparent."""
    grid = OccupancyGrid(SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), 32)
    assert grid.occupancy_fraction() == 1.0  # before any update every cell may hold matter
    frac = grid.update(lambda x: torch.zeros(len(x)), threshold=0.01, decay=0.95)
    assert frac == 0.0
    g = torch.Generator().manual_seed(0)
    o = torch.randn(64, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -3.0])
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    rays = RayBundle(o, d)
    cfg = MarchConfig(num_steps=128)
    from recon3d.methods.nerf.renderer import march_rays, ray_segments

    nears, fars, spacing = ray_segments(rays, grid, cfg)
    for stratified in (False, True):
        m = grid.march(rays, nears, fars, cfg.num_steps, stratified, generator=g, spacing=spacing)
        assert len(m) == 0 and m.counts().sum() == 0
    field = NerfField(grid.box, FieldConfig(num_levels=2, log2_hashmap_size=10, base_resolution=4, max_resolution=8, hidden_dim=8))
    assert len(march_rays(field, grid, rays, cfg, True, g)) == 0
    out = render_rays(field, grid, rays, cfg, False)
    assert out["num_samples"] == 0 and torch.equal(out["opacity"], torch.zeros(64, 1))


def test_two_level_march_matches_single_level():
    grid, _ = _ball_grid(res=32)
    g = torch.Generator().manual_seed(0)
    grid.update(lambda x: torch.where(((x - 0.2) ** 2).sum(-1) < 0.1, 100.0, 0.0) * (torch.rand(len(x), generator=g) > 0.3),
                threshold=1.0, decay=0.0)
    from recon3d.core.sampling import intersect_aabb

    o = torch.randn(300, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -2.0])
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    rays = RayBundle(o, d)
    nears, fars, _ = intersect_aabb(o, d, grid.box.aabb[0], grid.box.aabb[1])
    one = grid.march(rays, nears, fars, 256, stratified=False, coarse_factor=1)
    two = grid.march(rays, nears, fars, 256, stratified=False, coarse_factor=4)
    assert grid._coarse_cache is not None and len(one) > 100
    assert torch.equal(one.ray_indices, two.ray_indices)
    assert torch.allclose(one.t_starts, two.t_starts, atol=1e-5) and torch.allclose(one.t_ends, two.t_ends, atol=1e-5)
    assert torch.equal(one.cell_density, two.cell_density)
    strat = grid.march(rays, nears, fars, 256, stratified=True, generator=g)
    assert grid.query(strat.positions(rays)).all()


def test_packed_padded_round_trip_and_pruning():
    ray_idx = torch.tensor([0, 0, 0, 2, 2])
    t0 = torch.tensor([0.0, 0.1, 0.5, 0.2, 0.3])
    m = MarchedSamples(ray_idx, t0, t0 + 0.1, 3, torch.tensor([1.0, 1.0, 1.0]))
    vals = torch.arange(5.0)
    padded = m.pad(vals, fill=-1)
    assert padded.shape == (3, 3)
    assert padded.tolist() == [[0, 1, 2], [-1, -1, -1], [3, 4, -1]]
    assert torch.equal(m.unpad(padded), vals)
    samples = m.padded_samples()
    assert torch.allclose(samples.deltas, m.pad(torch.full((5,), 0.1)), atol=1e-6)
    # an opaque first bin hides everything behind it on ray 0; ray 2 is transparent
    dens = torch.tensor([1000.0, 1.0, 1.0, 0.0, 0.0])
    kept = m.prune(dens, eps=1e-3)
    assert kept.ray_indices.tolist() == [0, 2, 2]
    lagged = m.prune_lagged(dens, lag=0.15, eps=1e-3)  # bins starting within 0.15 behind stay
    assert lagged.ray_indices.tolist() == [0, 0, 2, 2]
    w = weights_from_densities(m.pad(dens), samples.deltas)
    assert torch.allclose(w.sum(-1), torch.tensor([1.0, 0.0, 0.0]), atol=1e-4)


def test_nerf_overfits_tiny_scene(tiny_scene, tmp_path):
    tr = NerfTrainer(tiny_scene, _tiny_cfg(), tmp_path)
    assert tr.scene_type == "object" and tr.train_background == "scene"
    summary = tr.fit(progress=False)
    assert summary["steps"] == 150
    ev = tr.evaluate("train", save_renders=False)
    assert ev["psnr"] > 20.0, ev["psnr"]
    assert tr.grid.occupancy_fraction() < 0.5
    res = tr.render(tiny_scene.cameras[:1])
    assert res.colors.shape == (1, 24, 24, 3) and res.depths.shape == (1, 24, 24, 1)
    hit = res.alphas[0, ..., 0] > 0.5
    gt = tiny_scene.mask(0)
    assert (hit == gt).float().mean() > 0.85  # silhouette of the object
    mesh = tr.extract_mesh(resolution=40, threshold=5.0)  # a soft field after 150 steps
    assert mesh.num_faces > 50 and mesh.vertex_colors is not None
    assert np.abs(mesh.vertices).max() < 1.0
    orig = tr.extract_mesh(resolution=24, colors=False, original_units=True)
    assert np.abs(orig.vertices).max() < 1.0 / tiny_scene.normalization.scale


def test_nerf_resume_is_exact(tiny_scene, tmp_path):
    cfg = _tiny_cfg(max_steps=6, checkpoint_every=3, keep_checkpoints=5, grid_update_every=2, background="random",
                    target_samples=2000)
    a = NerfTrainer(tiny_scene, cfg, tmp_path / "a")
    a.fit(progress=False)
    b = NerfTrainer(tiny_scene, replace(cfg, seed=1), tmp_path / "b")
    b.load(checkpoint_path(tmp_path / "a" / "checkpoints", 3))
    assert b.step == 3
    b.fit(progress=False)
    for (n, p), q in zip(a.field.state_dict().items(), b.field.state_dict().values()):
        assert torch.equal(p, q), n
    assert torch.equal(a.grid.density, b.grid.density)
    assert a.rays_per_batch == b.rays_per_batch
    # resume=True picks the latest checkpoint of the run folder and trains no further
    c = NerfTrainer(tiny_scene, cfg, tmp_path / "a")
    c.fit(resume=True, progress=False)
    assert c.step == 6


def test_nerf_unbounded_with_appearance(tiny_scene, tmp_path):
    cfg = _tiny_cfg(max_steps=5, scene_type="unbounded", grid_update_every=2,
                    field=replace(_tiny_cfg().field, appearance_dim=4))
    tr = NerfTrainer(tiny_scene, cfg, tmp_path)
    assert tr.box.contraction == "linf" and tr.field.appearance is not None
    tr.fit(progress=False)
    out = tr.render_rays(tiny_scene.cameras.rays(0).flatten()[:50])
    assert torch.isfinite(out["rgb"]).all() and out["rgb"].shape == (50, 3)
    far = torch.tensor([[50.0, 0.0, 0.0], [0.0, 0.0, 0.1]])  # contracted points stay inside the grid
    u = tr.box.to_unit(far)
    assert ((u >= 0) & (u <= 1)).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nerf_mixed_precision_on_cuda_matches_cpu_quality(tiny_scene, tmp_path):
    """CUDA path: autocast networks (bf16/fp16 with a grad scaler), float32 compositing; the same
    tiny fit reaches the CPU float32 quality, and checkpoints resume onto the GPU."""
    gpu = NerfTrainer(tiny_scene, _tiny_cfg(checkpoint_every=75), tmp_path / "gpu", device="cuda")
    assert gpu.use_amp and gpu.device.type == "cuda"
    gpu.fit(progress=False)
    ev = gpu.evaluate("train", save_renders=False)
    assert ev["psnr"] > 20.0, ev["psnr"]
    out = gpu.render_rays(tiny_scene.cameras.rays(0).flatten()[:64].to("cuda"))
    assert out["rgb"].dtype == torch.float32 and torch.isfinite(out["rgb"]).all()
    again = NerfTrainer(tiny_scene, _tiny_cfg(), tmp_path / "gpu", device="cuda")
    again.load(checkpoint_path(tmp_path / "gpu" / "checkpoints", 75))
    assert again.step == 75 and again.field.encoding.table.device.type == "cuda"
