"""Camera-pose corrections (recon3d.core.pose_correction) and joint pose refinement in the splat trainer."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from recon3d.core import Cameras
from recon3d.core.gaussians import Gaussians, rasterize
from recon3d.core.pose_correction import (
    PoseCorrection, correction_matrices, fit_pose, rigid_drift, so3_exp, so3_log,
)
from tests.conftest import fit_straight_and_resumed


def _rot_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(so3_log(a[..., :3, :3].transpose(-1, -2) @ b[..., :3, :3]).norm(dim=-1))


def test_so3_exp_known_rotation_and_log_round_trip():
    R = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(R, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    angles = torch.cat([torch.tensor([0.0, 1e-5, 1e-3, math.pi - 1e-4, math.pi]),
                        torch.rand(59, generator=g) * math.pi])
    w = axes * angles[:, None]
    Rs = so3_exp(w)
    assert torch.allclose(Rs @ Rs.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(Rs), torch.ones(64), atol=1e-5)
    # log(exp(w)) == w (angles in [0, pi]; at exactly pi the axis sign is ambiguous)
    assert torch.allclose(so3_exp(so3_log(Rs)), Rs, atol=1e-4)
    ok = angles < math.pi - 1e-3
    assert torch.allclose(so3_log(Rs)[ok], w[ok], atol=1e-4)


def test_so3_exp_gradient_is_finite_at_zero():
    w = torch.zeros(2, 3, requires_grad=True)
    (so3_exp(w) * torch.randn(2, 3, 3)).sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_correction_is_in_camera_axes_and_zero_is_identity():
    c2w = torch.eye(4)[None].clone()
    c2w[0, :3, :3] = so3_exp(torch.tensor([0.3, -0.2, 0.1]))
    c2w[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    cams = Cameras(c2w, 50.0, 50.0, 32.0, 32.0, 64, 64)
    pc = PoseCorrection(3, translation_scale=2.0)
    same = pc(cams, [1])
    assert torch.allclose(same.c2w, c2w, atol=1e-6)
    with torch.no_grad():
        pc.deltas[1] = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.0, 0.0])  # move 0.5 * 2 along the camera's +z
    moved = pc(cams, [1])
    assert torch.allclose(moved.centers[0], c2w[0, :3, 3] + 1.0 * c2w[0, :3, 2], atol=1e-5)
    rot, trans = pc.magnitudes()
    assert torch.allclose(trans, torch.tensor([0.0, 1.0, 0.0])) and torch.allclose(rot, torch.zeros(3))
    with pytest.raises(ValueError, match="indices"):
        pc(cams, [0, 1])


def _gaussian_scene(n: int = 300, seed: int = 0):
    """A cloud of coloured Gaussians around the origin and a camera looking at it from -z."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.6
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.full((n, 3), 0.06)
    opac = torch.full((n,), 0.9)
    colors = torch.rand(n, 3, generator=g)
    c2w = torch.eye(4)[None].clone()
    c2w[0, 2, 3] = -3.0
    cam = Cameras(c2w, 60.0, 60.0, 32.0, 32.0, 64, 64)
    gaussians = Gaussians(means, quats, scales, opac, colors)

    def render(camera: Cameras) -> torch.Tensor:
        out = rasterize(gaussians, camera.w2c, camera.K, 64, 64, sh_degree=None, backend="torch")
        return out.colors[0]

    return cam, render


def test_fit_pose_recovers_a_perturbed_camera():
    cam, render = _gaussian_scene()
    with torch.no_grad():
        target = render(cam)
    delta = torch.tensor([[0.04, -0.03, 0.02, math.radians(2.0), math.radians(-1.5), math.radians(1.0)]])
    start = replace(cam, c2w=cam.c2w @ correction_matrices(delta))
    before = float(_rot_deg(start.c2w, cam.c2w))
    aligned, d = fit_pose(render, start, target, steps=150, lr=3e-3)
    after = float(_rot_deg(aligned.c2w, cam.c2w))
    shift = float((aligned.centers - cam.centers).norm())
    assert before > 2.0 and after < 0.3 * before, (before, after)
    assert shift < 0.3 * float((start.centers - cam.centers).norm()), shift
    assert d.shape == (6,)
    # already aligned: stays put (the best iterate is kept)
    same, d0 = fit_pose(render, cam, target, steps=5, lr=3e-3)
    assert torch.allclose(same.c2w, cam.c2w, atol=1e-6) and float(d0.abs().max()) == 0.0


def test_rigid_drift_recovers_a_world_transform():
    g = torch.Generator().manual_seed(1)
    before = torch.eye(4).repeat(6, 1, 1)
    before[:, :3, :3] = so3_exp(torch.randn(6, 3, generator=g))
    before[:, :3, 3] = torch.randn(6, 3, generator=g)
    D = torch.eye(4)
    D[:3, :3] = so3_exp(torch.tensor([0.05, -0.02, 0.03]))
    D[:3, 3] = torch.tensor([0.1, -0.2, 0.05])
    assert torch.allclose(rigid_drift(before, D @ before), D, atol=1e-5)
    assert torch.allclose(rigid_drift(before, before), torch.eye(4), atol=1e-6)


# ---------------------------------------------------------------------- the splat trainer with pose_opt
@pytest.fixture(scope="module")
def noisy_scene(tmp_path_factory):
    """A tiny synthetic scene whose training poses are perturbed by ~3 degrees; (scene, true c2w)."""
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("pose") / "scene"
    generate_scene(root, num_views=12, size=48, seed=5, object="random")
    scene = normalize_scene(load_scene(root))
    g = torch.Generator().manual_seed(0)
    d = torch.zeros(len(scene.cameras), 6)
    train = list(scene.train_indices)
    d[train, 3:] = torch.randn(len(train), 3, generator=g) * math.radians(3.0) / math.sqrt(3)
    noisy = replace(scene.cameras, c2w=scene.cameras.c2w @ correction_matrices(d))
    return replace(scene, cameras=noisy), scene.cameras.c2w.clone()


def _cfg(**kw):
    from recon3d.methods.splat import SplatConfig
    from recon3d.methods.splat.strategy import DensifyConfig

    dens = DensifyConfig(refine_start=20, refine_stop=200, refine_every=20, reset_every=10_000, grow_grad2d=2e-5)
    base = SplatConfig(max_steps=300, sh_degree=0, init_num_random=2000, checkpoint_every=100, densify=dens,
                       scale_schedule_to_steps=False, backend="torch", pose_opt=True, pose_lr=1e-3,
                       pose_test_steps=20)
    return replace(base, **kw)


def test_splat_pose_opt_moves_training_poses_toward_the_truth(noisy_scene, tmp_path):
    from recon3d.methods.splat import SplatTrainer
    scene, truth = noisy_scene
    train = list(scene.train_indices)
    tr = SplatTrainer(scene, _cfg(max_steps=600), tmp_path / "run", device="cpu")
    tr.fit(progress=False)
    fitted = tr.fitted_cameras().c2w[train]
    before = float(_rot_deg(scene.cameras.c2w[train], truth[train]).mean())
    aligned_truth = rigid_drift(truth[train], fitted) @ truth[train]  # compare up to the frame's drift
    after = float(_rot_deg(fitted, aligned_truth).mean())
    assert after < 0.8 * before, (before, after)  # 2.52 -> 1.79 deg
    summary = tr.pose_summary()
    assert summary["pose_opt"] and summary["pose_rotation_deg_mean"] > 0.3
    # test views keep their given poses in fitted_cameras(); evaluation aligns them first
    test = list(scene.test_indices)
    assert torch.equal(tr.fitted_cameras().c2w[test], scene.cameras.c2w[test])
    ev = tr.evaluate("test", save_renders=False)
    assert ev["test_pose_alignment_steps"] == 20 and ev["views"] == len(test)
    assert all(p.requires_grad for p in tr.model.parameters())  # frozen only during alignment


def test_splat_pose_opt_resumes_exactly_and_refuses_mismatched_checkpoints(noisy_scene, tmp_path):
    from recon3d.runtime.checkpoint import checkpoint_path
    from recon3d.methods.splat import SplatTrainer

    scene, _ = noisy_scene
    cfg = _cfg(max_steps=20, checkpoint_every=10, init_num_random=300)
    straight, resumed = fit_straight_and_resumed(scene, cfg, tmp_path)
    assert torch.equal(straight.pose_correction.deltas, resumed.pose_correction.deltas)
    assert float(straight.pose_correction.deltas.detach().abs().max()) > 0
    plain = SplatTrainer(scene, replace(cfg, pose_opt=False), tmp_path / "c", device="cpu")
    with pytest.raises(ValueError, match="pose"):
        plain.load(checkpoint_path(tmp_path / "b" / "checkpoints", 20))
