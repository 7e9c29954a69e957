import math

import pytest
import torch

from recon3d.core.sampling import RaySamples, uniform_samples
from recon3d.core.volume_rendering import (
    accumulate_opacity,
    alphas_from_densities,
    blend_background,
    composite,
    composite_depth,
    composite_normals,
    render_samples,
    transmittance_from_alphas,
    transmittance_from_densities,
    weights_from_alphas,
    weights_from_densities,
)

F64 = torch.float64


def _bins(near, far, num, jitter_seed=None):
    """(1, num) float64 bins on [near, far], regular or randomly sized."""
    if jitter_seed is None:
        return uniform_samples(torch.tensor([[near]], dtype=F64), torch.tensor([[far]], dtype=F64), num, False)
    cuts, _ = torch.sort(torch.rand(num - 1, generator=torch.Generator().manual_seed(jitter_seed), dtype=F64))
    edges = near + (far - near) * torch.cat([torch.zeros(1, dtype=F64), cuts, torch.ones(1, dtype=F64)])
    return RaySamples(edges[None, :-1], edges[None, 1:])


# ------------------------------------------------------------------------------ analytic media
@pytest.mark.parametrize("num", [1, 7, 64])
@pytest.mark.parametrize("irregular", [False, True])
def test_homogeneous_slab_transmittance_is_exact(num, irregular):
    sigma, near, far = 0.7, 1.0, 4.0
    s = _bins(near, far, num, jitter_seed=3 if irregular else None)
    dens = torch.full((1, num), sigma, dtype=F64)
    w, trans = weights_from_densities(dens, s.deltas, return_transmittance=True)
    expect = math.exp(-sigma * (far - near))
    final = (trans[..., -1] * (1 - alphas_from_densities(dens, s.deltas)[..., -1])).item()
    assert final == pytest.approx(expect, rel=1e-12)
    assert accumulate_opacity(w).item() == pytest.approx(1 - expect, rel=1e-12)
    # T at each bin start is exp(-sigma * (t_start - near))
    assert torch.allclose(trans, torch.exp(-sigma * (s.t_starts - near)))
    # the cumulative-product route agrees
    alphas = alphas_from_densities(dens, s.deltas)
    assert torch.allclose(transmittance_from_alphas(alphas), trans)
    assert torch.allclose(weights_from_alphas(alphas), w)
    assert torch.allclose(transmittance_from_densities(dens[..., None], s.deltas), trans)


def test_expected_and_median_depth_of_uniform_medium():
    sigma, near, far = 1.3, 2.0, 5.0
    s = _bins(near, far, 4000)
    w = weights_from_densities(torch.full((1, 4000), sigma, dtype=F64), s.deltas)
    L = far - near
    e = math.exp(-sigma * L)
    expected = near + 1 / sigma - L * e / (1 - e)  # mean of the truncated exponential
    assert composite_depth(w, s).item() == pytest.approx(expected, abs=1e-5)
    unnorm = composite_depth(w, s, normalize=False).item()
    assert unnorm == pytest.approx(expected * (1 - e), abs=1e-5)
    median = near - math.log(0.5 * (1 + e)) / sigma  # where the truncated CDF reaches 1/2
    assert composite_depth(w, s, mode="median").item() == pytest.approx(median, abs=1e-4)
    # absolute median (0.5 of total light) of an effectively infinite medium: near + ln 2 / sigma
    s2 = _bins(near, near + 40.0, 4000)
    w2 = weights_from_densities(torch.full((1, 4000), sigma, dtype=F64), s2.deltas)
    assert composite_depth(w2, s2, mode="median", normalize=False).item() == pytest.approx(
        near + math.log(2) / sigma, abs=1e-3
    )
    # a tensor of sample distances works too
    assert composite_depth(w, s.t_mid).item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError):
        composite_depth(w, s, mode="mode")


def test_single_opaque_sample_returns_its_color_and_depth():
    s = _bins(1.0, 3.0, 8)
    dens = torch.zeros(1, 8, dtype=F64)
    dens[0, 5] = 1e5
    colors = torch.rand(1, 8, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = render_samples(dens, colors, s, background="white")
    assert torch.allclose(out["rgb"], colors[:, 5])
    assert out["opacity"].item() == pytest.approx(1.0)
    assert out["depth"].item() == pytest.approx(s.t_mid[0, 5].item())
    assert torch.allclose(out["weights"], torch.nn.functional.one_hot(torch.tensor([5]), 8).to(F64))


def test_occlusion_order_matters():
    s = _bins(0.0, 2.0, 2)
    dens = torch.tensor([[1e4, 1e4]], dtype=F64)
    colors = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=F64)
    assert torch.allclose(render_samples(dens, colors, s)["rgb"], torch.tensor([[1.0, 0, 0]], dtype=F64))
    assert torch.allclose(render_samples(dens, colors.flip(1), s)["rgb"], torch.tensor([[0, 1.0, 0]], dtype=F64))


# ------------------------------------------------------------------------------ stability
def test_zero_and_huge_densities_are_finite_with_finite_gradients():
    s = uniform_samples(torch.ones(3, 1), torch.full((3, 1), 4.0), 16, False)
    dens = torch.stack([torch.zeros(16), torch.full((16,), 1e30), torch.rand(16) * 1e6]).requires_grad_(True)
    colors = torch.rand(3, 16, 3, requires_grad=True)
    normals = torch.randn(3, 16, 3, requires_grad=True)
    out = render_samples(dens, colors, s, background="black")
    med = composite_depth(out["weights"], s, mode="median")
    nrm = composite_normals(out["weights"], normals)
    for v in (*out.values(), med, nrm):
        assert torch.isfinite(v).all()
    assert out["opacity"][0].item() == 0 and out["opacity"][1].item() == pytest.approx(1.0)
    assert out["depth"][0].item() == 1.0  # empty ray: depth clamps to the near end
    assert nrm[0].abs().max() == 0  # empty ray: zero normal, not NaN
    (out["rgb"].sum() + out["depth"].sum() + med.sum() + nrm.sum()).backward()
    for g in (dens.grad, colors.grad, normals.grad):
        assert torch.isfinite(g).all()


def test_cumprod_transmittance_gradient_with_fully_opaque_bin():
    alphas = torch.tensor([[0.2, 1.0, 0.5, 0.3]], dtype=F64, requires_grad=True)
    w = weights_from_alphas(alphas)
    assert torch.allclose(w, torch.tensor([[0.2, 0.8, 0.0, 0.0]], dtype=F64))
    w.sum().backward()
    assert torch.isfinite(alphas.grad).all()


def test_tiny_densities_keep_precision():
    # expm1 keeps alpha ~ sigma * delta where 1 - exp would round to zero in float32
    a = alphas_from_densities(torch.tensor([1e-10]), torch.tensor([0.01]))
    assert a.item() == pytest.approx(1e-12, rel=1e-5)


# ------------------------------------------------------------------------------ compositing pieces
def test_background_blending():
    rgb = torch.tensor([[0.2, 0.1, 0.0], [0.0, 0.0, 0.0]])  # premultiplied
    opacity = torch.tensor([[0.25], [0.0]])
    out, bg = blend_background(rgb, opacity, "white")
    assert torch.allclose(out, torch.tensor([[0.95, 0.85, 0.75], [1, 1, 1]])) and torch.equal(bg, torch.ones(2, 3))
    out, bg = blend_background(rgb, opacity, "black")
    assert torch.equal(out, rgb) and torch.equal(bg, torch.zeros(2, 3))
    out, _ = blend_background(rgb, opacity, torch.tensor([0.0, 0.4, 0.8]))
    assert torch.allclose(out[0], torch.tensor([0.2, 0.4, 0.6]))
    per_ray = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out, bg = blend_background(rgb, opacity, per_ray)
    assert torch.allclose(out[1], per_ray[1]) and torch.equal(bg, per_ray)
    out1, bg1 = blend_background(rgb, opacity, "random", generator=torch.Generator().manual_seed(4))
    out2, bg2 = blend_background(rgb, opacity, "random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(bg1, bg2) and bg1.shape == (2, 3) and not torch.equal(bg1[0], bg1[1])
    assert torch.allclose(out1, rgb + (1 - opacity) * bg1)
    with pytest.raises(ValueError):
        blend_background(rgb, opacity, "grey")


def test_composite_shapes_and_values():
    w = torch.rand(2, 5, 6)
    v = torch.rand(2, 5, 6, 4)
    out = composite(w, v)
    assert out.shape == (2, 5, 4)
    assert torch.allclose(out, torch.einsum("abs,absc->abc", w, v))
    assert accumulate_opacity(w).shape == (2, 5, 1)
    # densities with a trailing channel are accepted
    d = torch.rand(2, 5, 6, 1)
    assert torch.allclose(weights_from_densities(d, torch.full((2, 5, 6), 0.1)),
                          weights_from_densities(d[..., 0], torch.full((2, 5, 6), 0.1)))


def test_composite_normals_unit_length():
    w = torch.tensor([[0.5, 0.3, 0.0]])
    n = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0]]])
    out = composite_normals(w, n)
    assert out.norm().item() == pytest.approx(1.0)
    assert torch.allclose(out, torch.tensor([[0.0, 0.9, 1.0]]) / math.sqrt(1.81))
    assert torch.allclose(composite_normals(w, n, normalize=False), torch.tensor([[0.0, 0.9, 1.0]]))


def test_render_samples_batch_shapes():
    s = uniform_samples(torch.full((2, 3, 1), 0.5), torch.full((2, 3, 1), 2.5), 10, True,
                        generator=torch.Generator().manual_seed(0))
    out = render_samples(torch.rand(2, 3, 10, 1), torch.rand(2, 3, 10, 3), s, background=(0.5, 0.5, 0.5))
    assert out["rgb"].shape == (2, 3, 3) and out["opacity"].shape == (2, 3, 1)
    assert out["depth"].shape == (2, 3, 1) and out["weights"].shape == (2, 3, 10)
    assert out["background"].shape == (2, 3, 3)
    assert ((out["depth"] >= 0.5) & (out["depth"] <= 2.5)).all()
    assert "background" not in render_samples(torch.rand(2, 3, 10), torch.rand(2, 3, 10, 3), s)


# ------------------------------------------------------------------------------ gradients
def test_gradcheck_compositing():
    g = torch.Generator().manual_seed(0)
    dens = (torch.rand(2, 5, generator=g, dtype=F64) * 3 + 0.1).requires_grad_(True)
    deltas = (torch.rand(2, 5, generator=g, dtype=F64) * 0.5 + 0.05).requires_grad_(True)
    vals = torch.rand(2, 5, 3, generator=g, dtype=F64, requires_grad=True)
    nrm = torch.randn(2, 5, 3, generator=g, dtype=F64, requires_grad=True)
    s = RaySamples(torch.cumsum(deltas.detach(), -1) - deltas.detach(), torch.cumsum(deltas.detach(), -1))
    bg = torch.rand(2, 3, generator=g, dtype=F64, requires_grad=True)
    gc = torch.autograd.gradcheck
    assert gc(weights_from_densities, (dens, deltas))
    assert gc(transmittance_from_densities, (dens, deltas))
    assert gc(lambda a: weights_from_alphas(a), (alphas_from_densities(dens, deltas).detach().requires_grad_(True),))
    assert gc(lambda d, v: composite(weights_from_densities(d, deltas), v), (dens, vals))
    assert gc(lambda d: composite_depth(weights_from_densities(d, deltas), s), (dens,))
    assert gc(lambda d: composite_depth(weights_from_densities(d, deltas), s, mode="median"), (dens,))
    assert gc(lambda d, n: composite_normals(weights_from_densities(d, deltas), n), (dens, nrm))

    def blended(d, v, b):
        w = weights_from_densities(d, deltas)
        return blend_background(composite(w, v), accumulate_opacity(w), b)[0]

    assert gc(blended, (dens, vals, bg))
