"""SuGaR regularization: analytic values of the density, SDF and entropy terms, and descent."""

from __future__ import annotations

import math

import pytest
import torch

from recon3d.core.gaussians import rasterize_cameras
from recon3d.methods.sugar._testing import ring_cameras, sphere_of_flat_gaussians
from recon3d.methods.sugar.density import (
    clamp_density, density, density_gradient, distance_from_density, knn, knn_table, normals_of, std_along,
)
from recon3d.methods.sugar.regularization import (
    flatness_loss, opacity_entropy_loss, sample_in_gaussians, sample_map, sdf_alignment_losses,
)


def _one_flat_gaussian(s_min=0.05):
    q = torch.tensor([[math.cos(0.3), math.sin(0.3), 0.0, 0.0]])  # rotation about x
    scales = torch.tensor([[0.4, s_min, 0.3]])
    return torch.tensor([[0.1, 0.2, 0.3]]), q, scales, torch.tensor([1.0])


def test_entropy_and_flatness_values():
    a = torch.tensor([0.5, 0.5])
    assert float(opacity_entropy_loss(a)) == pytest.approx(math.log(2), rel=1e-5)
    assert float(opacity_entropy_loss(torch.tensor([1e-6, 1 - 1e-6]))) < 2e-5
    a = torch.tensor([0.3, 0.8], requires_grad=True)
    opacity_entropy_loss(a).backward()
    assert a.grad[0] > 0 and a.grad[1] < 0  # descent pushes 0.3 -> 0 and 0.8 -> 1
    s = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 1.0]], requires_grad=True)
    assert float(flatness_loss(s).detach()) == pytest.approx(0.25)
    flatness_loss(s).backward()
    assert s.grad[0, 1] > 0 and s.grad[0, 0] == 0 and s.grad[0, 2] == 0  # only the smallest axis shrinks


def test_density_of_flat_gaussian_and_implied_distance():
    mu, q, sc, op = _one_flat_gaussian()
    n = normals_of(q, sc)
    assert torch.allclose(n.abs(), torch.tensor([[0.0, math.cos(0.6), math.sin(0.6)]]), atol=1e-5)
    t = torch.linspace(-0.12, 0.12, 9)
    pts = mu + t[:, None] * n
    nbr = torch.zeros(9, 1, dtype=torch.long)
    d = density(pts, nbr, mu, q, sc, op)
    assert torch.allclose(d, torch.exp(-0.5 * (t / 0.05) ** 2), atol=1e-6)
    dist = distance_from_density(d, sc.min(dim=-1).values.expand(9))
    assert torch.allclose(dist, t.abs(), atol=1e-4)  # flat, opaque Gaussian: exact distance to its plane
    assert torch.allclose(std_along(q, sc, n), torch.tensor([0.05]), atol=1e-6)


def test_density_gradient_matches_autograd_and_clamp():
    g = torch.Generator().manual_seed(0)
    means, quats = torch.randn(20, 3, generator=g), torch.randn(20, 4, generator=g)
    scales, op = torch.rand(20, 3, generator=g) * 0.5 + 0.2, torch.rand(20, generator=g)
    p = torch.randn(7, 3, generator=g, requires_grad=True)
    nbr = knn(means, p.detach(), 6)
    d, grad = density_gradient(p, nbr, means, quats, scales, op)
    (auto,) = torch.autograd.grad(d.sum(), p)
    assert torch.allclose(grad, auto, atol=1e-5)
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = clamp_density(x)
    assert torch.allclose(y, torch.tensor([0.5, 1.0]))
    y.sum().backward()
    assert x.grad[0] == 1.0 and x.grad[1] == pytest.approx(0.5)


def test_knn_table_and_sampling():
    means = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 3, 0]])
    nb = knn_table(means, 2)
    assert nb[:, 0].tolist() == [0, 1, 2] and nb[0, 1] == 1
    assert knn(means, torch.zeros(1, 3), 5).shape == (1, 5)  # padded when k > N
    q = torch.tensor([[1.0, 0, 0, 0]]).repeat(3, 1)
    sc = torch.tensor([[0.1, 0.2, 0.3]]).repeat(3, 1)
    pts, gi = sample_in_gaussians(means, q, sc, torch.tensor([1]), 4000, 1.5, torch.Generator().manual_seed(0))
    assert (gi == 1).all()
    std = (pts - means[1]).std(0)
    assert torch.allclose(std, 1.5 * sc[0], rtol=0.08)
    img = torch.arange(12.0).reshape(3, 4)
    assert torch.allclose(sample_map(img, torch.tensor([[1.5, 0.5], [2.0, 1.5]])), torch.tensor([1.0, 5.5]))


def _losses(model, cams, n=3000, seed=0):
    out = rasterize_cameras(model.gaussians(), cams[0], sh_degree=0, backend="torch")
    nbr = knn_table(model.means.detach(), 16)
    return sdf_alignment_losses(model.means, model.quats, model.scales, model.opacities, nbr, cams[0],
                                out.depths[0, ..., 0], out.alphas[0, ..., 0], n, 0.1,
                                generator=torch.Generator().manual_seed(seed))


def test_sdf_alignment_small_on_ideal_surface_large_on_messy_one():
    cams = ring_cameras(size=32, focal=60.0)
    with torch.no_grad():
        ideal = _losses(sphere_of_flat_gaussians(600), cams)
        messy = _losses(sphere_of_flat_gaussians(600, thickness=0.03, normal_noise=0.5, offset_noise=0.03), cams)
    assert ideal["num_points"] > 1000 and messy["num_points"] > 500
    assert float(ideal["sdf"]) < 0.8 * float(messy["sdf"])
    assert float(ideal["normal"]) < 0.03
    assert float(messy["normal"]) > 10 * float(ideal["normal"])


def test_regularization_descends_toward_a_clean_surface():
    """Adam on the SDF + normal terms alone flattens, aligns and re-centres noisy discs."""
    cams = ring_cameras(size=24, focal=45.0)
    model = sphere_of_flat_gaussians(400, thickness=0.03, normal_noise=0.4, offset_noise=0.03, seed=1)
    opt = torch.optim.Adam([model.means, model.quats, model.log_scales], lr=0.01)

    def evaluate():
        with torch.no_grad():
            t = _losses(model, cams, n=3000, seed=123)
        return float(t["sdf"]), float(t["normal"])

    sdf0, normal0 = evaluate()
    for it in range(20):
        terms = _losses(model, cams, n=800, seed=it)
        opt.zero_grad()
        (terms["sdf"] + terms["normal"]).backward()
        opt.step()
    sdf1, normal1 = evaluate()
    assert sdf1 < 0.6 * sdf0 and normal1 < 0.5 * normal0
