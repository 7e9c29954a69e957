"""NeuS-style SDF method: unbiased weights on analytic SDFs, geometric init, rendering, meshing, training, resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from recon3d.core.rays import RayBundle
from recon3d.core.sampling import uniform_samples
from recon3d.core.volume_rendering import weights_from_alphas
from recon3d.io import load_scene
from recon3d.io.normalize import normalize_scene
from recon3d.runtime.checkpoint import checkpoint_path
from recon3d.mesh import extract_isosurface
from recon3d.methods.sdf import (
    NeusSamplingConfig, SdfConfig, SdfField, SdfFieldConfig, SdfTrainer, neus_alphas, render_neus,
)
from recon3d.methods.sdf.rendering import neus_alphas_from_edges


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("sdf") / "scene"
    generate_scene(root, num_views=6, size=24, seed=2, object="sphere")
    return normalize_scene(load_scene(root))


@pytest.mark.parametrize("cos", [-1.0, -0.5])
def test_neus_weights_peak_at_plane_crossing(cos):
    # a ray along +t meets the plane f = 0 at t = 0.5 (f > 0 before it, < 0 behind), f = cos * (t - 0.5)
    samples = uniform_samples(torch.zeros(1, 1), torch.ones(1, 1), 200, stratified=False)
    t = samples.t_mid
    sdf = -cos * (0.5 - t)
    for inv_s in (50.0, 500.0):
        a = neus_alphas(sdf, torch.full_like(t, cos), samples.deltas, torch.tensor(inv_s))
        w = weights_from_alphas(a)
        peak = float(t[0, w[0].argmax()])
        assert abs(peak - 0.5) <= 0.5 / 200 + 1e-6
        assert abs(float(w.sum()) - 1.0) < 1e-2  # opaque behind the plane
        mean_t = float((w * t).sum() / w.sum())
        assert abs(mean_t - 0.5) < 0.02  # unbiased: mass centered on the crossing
    # the edge formula agrees on the same ray
    edges = torch.linspace(0, 1, 201)[None]
    w2 = weights_from_alphas(neus_alphas_from_edges(-cos * (0.5 - edges), 500.0))
    assert abs(float(t[0, w2[0].argmax()]) - 0.5) <= 0.5 / 200 + 1e-6


@pytest.mark.parametrize("geometry", ["mlp", "hashgrid"])
def test_geometric_init_is_a_sphere(geometry):
    cfg = SdfFieldConfig(geometry=geometry, init_radius=0.5, num_levels=4, log2_hashmap_size=12, max_resolution=64)
    field = SdfField(torch.tensor([0.1, -0.2, 0.3]), 2.0, cfg)
    xn = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1) * torch.rand(200, 1) * 0.95
    with torch.no_grad():
        f = field.sdf(xn)
    assert torch.allclose(f, xn.norm(dim=-1) - 0.5, atol=0.05)
    c = field.center
    mesh = extract_isosurface(field.world_sdf, torch.stack([c - 2.0, c + 2.0]), resolution=48, device="cpu")
    r = np.linalg.norm(mesh.vertices - c.numpy(), axis=-1)
    assert mesh.num_faces > 500
    assert abs(r.mean() - 1.0) < 0.05 and r.std() < 0.05  # radius 0.5 unit = 1.0 world
    # faces are counter-clockwise seen from outside: positive signed volume
    p = mesh.vertices.astype(np.float64)[mesh.faces] - c.numpy()
    vol = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6
    assert vol == pytest.approx(4 / 3 * np.pi, rel=0.1)


def test_neus_weights_peak_at_sphere_surface():
    """Rays through an analytic sphere SDF: the weights peak where the ray enters the sphere."""
    radius, s_sharp = 0.5, 400.0
    o = torch.tensor([[0.0, 0.0, -2.0], [0.0, 0.3, -2.0], [0.2, -0.25, -2.0]])
    d = torch.tensor([0.0, 0.0, 1.0]).expand(3, 3)
    samples = uniform_samples(torch.full((3, 1), 0.5), torch.full((3, 1), 3.5), 600, stratified=False)
    x = o[:, None, :] + d[:, None, :] * samples.t_mid[..., None]
    sdf = x.norm(dim=-1) - radius
    grad = torch.nn.functional.normalize(x, dim=-1)
    cos = (grad * d[:, None, :]).sum(-1)
    w = weights_from_alphas(neus_alphas(sdf, cos, samples.deltas, torch.tensor(s_sharp)))
    # analytic entry distance: 2 - sqrt(r^2 - rho^2) for a ray at distance rho from the center
    rho = o[:, :2].norm(dim=-1)
    entry = 2.0 - torch.sqrt(radius**2 - rho**2)
    peak = samples.t_mid.gather(1, w.argmax(dim=1, keepdim=True))[:, 0]
    assert torch.allclose(peak, entry, atol=2 * 3.0 / 600), (peak, entry)
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-2)  # the sphere is opaque
    # nothing behind the front surface: the exit crossing (where f rises through 0) gets no weight
    behind = samples.t_mid > entry[:, None] + 0.1
    assert float((w * behind).sum()) < 1e-3


def test_marching_cubes_of_sphere_sdf_gives_its_radius(tiny_scene, tmp_path):
    """The trainer's meshing path on an analytic SDF (the geometric init is exactly |x| - r0)."""
    tr = SdfTrainer(tiny_scene, _tiny_cfg(mesh_resolution=64), tmp_path)
    r_world = tr.field.cfg.init_radius * tr.field.radius
    mesh = tr.extract_mesh(colors=False)
    r = np.linalg.norm(mesh.vertices - tr.field.center.numpy(), axis=-1)
    cell = 2 * tr.field.radius / 63
    assert abs(r.mean() - r_world) < 0.1 * cell and r.std() < 0.1 * cell
    assert mesh.metadata["method"] == "sdf" and mesh.num_faces > 1000


def test_render_neus_on_initial_sphere():
    field = SdfField(torch.zeros(3), 1.0, SdfFieldConfig(init_radius=0.5))
    with torch.no_grad():
        field.variance.fill_(0.6)  # sharp: s = e^6
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.8, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = render_neus(field, RayBundle(o, d), NeusSamplingConfig(num_coarse=64, num_importance=32), False,
                      background="white", create_graph=False)
    assert out["rgb"].shape == (2, 3) and out["weights"].shape == (2, 96)
    assert out["opacity"][0] > 0.95 and out["opacity"][1] < 0.05
    assert abs(float(out["depth"][0].detach()) - 2.5) < 0.03
    assert torch.allclose(out["rgb"][1], torch.ones(3), atol=0.05)  # the white background
    assert torch.allclose(out["normals"][0], torch.tensor([0.0, 0.0, -1.0]), atol=0.1)


def test_pruned_rendering_matches_full_rendering():
    """Shading only the bins with visible weight changes the image by almost nothing (and rays that
    miss everything shade no bin at all)."""
    field = SdfField(torch.zeros(3), 1.0, SdfFieldConfig(init_radius=0.5))
    with torch.no_grad():
        field.variance.fill_(0.5)
    g = torch.Generator().manual_seed(0)
    o = torch.randn(200, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, -3.0])
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=g) * 0.15 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    rays = RayBundle(o, d)
    cfg = NeusSamplingConfig(num_coarse=32, num_importance=32, eval_prune_weight=1e-4)
    full = render_neus(field, rays, cfg, False, create_graph=False)
    pruned = render_neus(field, rays, cfg, False, create_graph=False, prune=True)
    assert 0 < int((pruned["weights"] > 0).sum()) < 0.5 * full["weights"].numel()  # most bins skipped
    for k in ("rgb", "opacity", "normals"):
        assert torch.allclose(pruned[k], full[k], atol=5e-3), k
    hit = full["opacity"][:, 0] > 0.5  # depth is normalized by opacity: compare it where the sphere is hit
    assert hit.sum() > 20 and torch.allclose(pruned["depth"][hit], full["depth"][hit], atol=5e-3)
    miss = RayBundle(torch.tensor([[0.0, 5.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    out = render_neus(field, miss, cfg, False, create_graph=False, prune=True)
    assert float(out["opacity"].detach()) == 0.0


def _tiny_cfg(**kw) -> SdfConfig:
    base = SdfConfig(max_steps=30, rays_per_batch=128, checkpoint_every=0, lr=5e-3, lr_warmup_steps=5,
                     cos_anneal_steps=10, field=SdfFieldConfig(hidden_dim=32, num_layers=2, num_frequencies=4,
                                                               color_hidden_dim=32, color_hidden_layers=1),
                     sampling=NeusSamplingConfig(num_coarse=16, num_importance=16), mesh_resolution=32)
    return replace(base, **kw)


def test_sdf_trainer_fits_and_meshes(tiny_scene, tmp_path):
    tr = SdfTrainer(tiny_scene, _tiny_cfg(max_steps=60), tmp_path)
    assert tr.mask_source == "masks"
    assert 0.2 < tr.field.radius < 0.6  # around the object (radius 0.95 / ~3.6 in normalized units)
    first = [tr.train_step()["loss"] for _ in range(5)]
    summary = tr.fit(progress=False, log_every=5)
    assert summary["steps"] == 60
    last = [h["loss"] for h in summary["history"][-3:]]
    assert np.isfinite(last).all()
    assert np.mean(last) < 0.8 * np.mean(first), (first, last)  # the fit lowers the loss
    res = tr.render(tiny_scene.cameras[:1])
    assert res.colors.shape == (1, 24, 24, 3)
    mesh = tr.extract_mesh()
    assert mesh.num_faces > 100 and mesh.vertex_colors is not None
    assert mesh.metadata["method"] == "sdf"
    tr.cfg.mesh_max_faces = 100  # decimated (quadric error), colors carried over, still closed around the object
    small = tr.extract_mesh()
    assert small.num_faces <= 100 < small.metadata["faces_extracted"] == mesh.num_faces
    assert small.vertex_colors is not None and small.vertex_normals is not None
    tr.cfg.mesh_max_faces = 0
    orig = tr.extract_mesh(colors=False, original_units=True)
    back = tiny_scene.normalization.inverse_points(torch.from_numpy(mesh.vertices).double()).numpy()
    assert orig.num_faces == mesh.num_faces and np.allclose(orig.vertices, back, atol=1e-4)


def test_sdf_resume_is_exact(tiny_scene, tmp_path):
    cfg = _tiny_cfg(max_steps=4, checkpoint_every=2, keep_checkpoints=5)
    a = SdfTrainer(tiny_scene, cfg, tmp_path / "a")
    a.fit(progress=False)
    b = SdfTrainer(tiny_scene, replace(cfg, seed=5), tmp_path / "b")
    b.load(checkpoint_path(tmp_path / "a" / "checkpoints", 2))
    b.fit(progress=False)
    for (n, p), q in zip(a.field.state_dict().items(), b.field.state_dict().values()):
        assert torch.equal(p, q), n


@pytest.mark.slow
def test_sdf_recovers_a_shape(tmp_path):
    """A short NeuS fit of a generated object: the mesh lands near the ground truth (world units)."""
    import trimesh

    from recon3d.core.metrics import chamfer_distance, sample_mesh_points
    from recon3d.io.synthetic import generate_scene

    root = generate_scene(tmp_path / "scene", num_views=16, size=48, seed=4, object="box")
    scene = normalize_scene(load_scene(root))
    cfg = _tiny_cfg(max_steps=500, rays_per_batch=256, lr=2e-3, cos_anneal_steps=100, mesh_resolution=96,
                    field=SdfFieldConfig(hidden_dim=64, num_layers=3, num_frequencies=4))
    tr = SdfTrainer(scene, cfg, tmp_path / "run")
    tr.fit(progress=False)
    mesh = tr.extract_mesh(colors=False, original_units=True)
    gt = trimesh.load(root / "gt_mesh.ply", force="mesh", process=False)
    pred = sample_mesh_points(mesh.vertices, mesh.faces, 20_000, seed=0)
    ref = sample_mesh_points(np.asarray(gt.vertices), np.asarray(gt.faces), 20_000, seed=1)
    ch = chamfer_distance(pred, ref)
    diag = float(np.linalg.norm(np.ptp(np.asarray(gt.vertices), axis=0)))
    assert ch["chamfer"] < 0.03 * diag, ch
