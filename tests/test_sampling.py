import math

import pytest
import torch

from recon3d.core.rays import RayBundle
from recon3d.core.sampling import (
    SPACINGS,
    RaySamples,
    Spacing,
    contract,
    contract_inverse,
    importance_samples,
    intersect_aabb,
    intersect_sphere,
    spacing_fn,
    uniform_samples,
)

LO, HI = (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)


def _unit(v):
    v = torch.as_tensor(v, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------ intersections
@pytest.mark.parametrize(
    "origin,direction,near,far",
    [
        ((-3, 0, 0), (1, 0, 0), 2.0, 4.0),  # from outside, axis-parallel (two zero components)
        ((3, 0.5, 0), (-1, 0, 0), 2.0, 4.0),  # negative direction
        ((0, 0, 0), (0, 1, 0), 0.0, 1.0),  # from inside: near clamps to near_min
        ((0.5, 0.5, -5), (0, 0, 1), 4.0, 6.0),
        ((1, 0, -5), (0, 0, 1), 4.0, 6.0),  # origin exactly on a slab plane, parallel to it
        ((-3, -3, -3), (1, 1, 1), 2 * math.sqrt(3), 4 * math.sqrt(3)),  # diagonal
        ((-2, -1.5, 0), (1, 1, 0), math.sqrt(2), 2.5 * math.sqrt(2)),  # enters via x = -1, exits via y = 1
    ],
)
def test_aabb_hand_cases(origin, direction, near, far):
    o = torch.tensor([origin], dtype=torch.float64)
    d = _unit([direction])
    n, f, hit = intersect_aabb(o, d, LO, HI)
    assert n.shape == (1, 1) and f.shape == (1, 1) and hit.shape == (1,)
    assert hit.item()
    assert n.item() == pytest.approx(near, abs=1e-9) and f.item() == pytest.approx(far, abs=1e-9)


@pytest.mark.parametrize(
    "origin,direction",
    [
        ((-3, 2, 0), (1, 0, 0)),  # passes beside the box
        ((3, 0, 0), (1, 0, 0)),  # box is behind the origin
        ((1.5, 0, -5), (0, 0, 1)),  # parallel to a slab, outside it
        ((-3, 3, 0), (1, 1, 0)),  # diagonal miss past a corner
    ],
)
def test_aabb_misses_collapse_to_empty_segment(origin, direction):
    n, f, hit = intersect_aabb(torch.tensor([origin], dtype=torch.float64), _unit([direction]), LO, HI, near_min=0.1)
    assert not hit.item()
    assert n.item() == f.item() == 0.1


def test_aabb_near_min_and_batch_shapes():
    o = torch.tensor([-3.0, 0, 0]).expand(2, 5, 3)
    d = torch.tensor([1.0, 0, 0]).expand(2, 5, 3)
    n, f, hit = intersect_aabb(o, d, torch.tensor(LO), torch.tensor(HI), near_min=2.5)
    assert n.shape == (2, 5, 1) and hit.shape == (2, 5) and hit.all()
    assert torch.allclose(n, torch.full_like(n, 2.5)) and torch.allclose(f, torch.full_like(f, 4.0))
    _, _, hit = intersect_aabb(o, d, LO, HI, near_min=4.5)  # box entirely closer than near_min
    assert not hit.any()


def test_aabb_agrees_with_dense_point_test():
    g = torch.Generator().manual_seed(0)
    o = torch.rand(400, 3, generator=g, dtype=torch.float64) * 6 - 3
    d = _unit(torch.randn(400, 3, generator=g, dtype=torch.float64))
    d[:50, 0] = 0  # some exact zero components
    d[:50] = d[:50] / d[:50].norm(dim=-1, keepdim=True)
    lo, hi = torch.tensor([-1.0, -0.5, -0.8], dtype=torch.float64), torch.tensor([1.0, 0.7, 0.3], dtype=torch.float64)
    n, f, hit = intersect_aabb(o, d, lo, hi)
    assert torch.isfinite(n).all() and torch.isfinite(f).all()
    t = torch.linspace(0, 12, 4001, dtype=torch.float64)
    pts = o[:, None] + d[:, None] * t[None, :, None]
    inside = ((pts >= lo) & (pts <= hi)).all(-1)
    dense_hit = inside.any(-1)
    assert torch.equal(dense_hit, hit)
    # every point inside the box lies within [near, far], and vice versa (up to the grid step)
    tin = torch.where(inside, t, torch.nan)
    assert torch.allclose(tin.nan_to_num(-1).amax(-1)[hit], f[hit, 0], atol=4e-3)
    assert torch.allclose(tin.nan_to_num(1e9).amin(-1)[hit], n[hit, 0], atol=4e-3)


def test_sphere_hand_cases():
    o = torch.tensor([[-3.0, 0, 0], [0, 0, 0], [-3, 1.5, 0], [3, 0, 0], [1, 2, 3]], dtype=torch.float64)
    d = _unit([[1.0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 0, -1]])
    n, f, hit = intersect_sphere(o, d, center=(0.0, 0.0, 0.0), radius=1.0)
    assert hit.tolist() == [True, True, False, False, False]
    assert n[:2, 0].tolist() == pytest.approx([2.0, 0.0]) and f[:2, 0].tolist() == pytest.approx([4.0, 1.0])
    assert torch.equal(n[~hit], f[~hit])
    # offset center and radius: ray down the z axis through (1, 2, *) hits a sphere at (1, 2, 0), r=2
    n, f, hit = intersect_sphere(o[4:], d[4:], center=(1.0, 2.0, 0.0), radius=2.0)
    assert hit.item() and n.item() == pytest.approx(1.0) and f.item() == pytest.approx(5.0)
    # the points at near/far are on the sphere
    n, f, hit = intersect_sphere(o[:1], _unit([[1.0, 0.3, 0.1]]), radius=1.0)
    for t in (n, f):
        assert (o[:1] + t * _unit([[1.0, 0.3, 0.1]])).norm().item() == pytest.approx(1.0)


# ------------------------------------------------------------------------------ uniform samples
def test_uniform_deterministic_linear():
    nears, fars = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[5.0], [2.0], [4.0]])
    s = uniform_samples(nears, fars, 8, stratified=False)
    assert s.t_starts.shape == (3, 8) and s.num_samples == 8 and s.shape == (3,)
    expect = nears + (fars - nears) * torch.linspace(0, 1, 9)
    assert torch.allclose(s.edges, expect)
    assert torch.allclose(s.t_mid, 0.5 * (expect[:, :-1] + expect[:, 1:]))
    assert torch.allclose(s.deltas.sum(-1, keepdim=True), fars - nears)
    assert (s.deltas[1] == 0).all()  # near == far: empty bins


def test_uniform_stratified_jitter_stays_in_half_bins():
    g = torch.Generator().manual_seed(1)
    nears, fars = torch.full((500, 1), 2.0), torch.full((500, 1), 6.0)
    s = uniform_samples(nears, fars, 16, stratified=True, generator=g)
    grid = uniform_samples(nears, fars, 16, stratified=False).edges
    h = 4.0 / 16
    assert torch.equal(s.t_starts[:, 1:], s.t_ends[:, :-1])  # contiguous
    assert (s.deltas >= 0).all() and (s.t_starts[:, :1] == 2).all() and (s.t_ends[:, -1:] == 6).all()
    off = s.edges - grid
    assert off.abs().max() <= h / 2 + 1e-6 and off.abs().max() > h / 4
    assert abs(off.mean().item()) < 0.01  # unbiased jitter
    again = uniform_samples(nears, fars, 16, True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.t_starts, s.t_starts)


@pytest.mark.parametrize("kind", SPACINGS)
def test_spacings_are_uniform_in_warped_coordinate(kind):
    g, g_inv = spacing_fn(kind)
    nears, fars = torch.tensor([[0.5], [2.0]], dtype=torch.float64), torch.tensor([[10.0], [3.0]], dtype=torch.float64)
    s = uniform_samples(nears, fars, 10, stratified=False, spacing=kind)
    warped = g(s.edges)
    steps = warped[:, 1:] - warped[:, :-1]
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), rtol=1e-9, atol=1e-12)
    assert torch.allclose(s.edges[:, :1], nears) and torch.allclose(s.edges[:, -1:], fars)
    assert (s.deltas > 0).all()
    t = torch.linspace(0.6, 9.0, 7, dtype=torch.float64).expand(2, 7)
    assert torch.allclose(g_inv(g(t)), t)
    sp = Spacing(kind, nears, fars)
    assert torch.allclose(sp.s_to_t(sp.t_to_s(s.edges)), s.edges)
    assert torch.allclose(s.s_starts, torch.linspace(0, 0.9, 10, dtype=torch.float64).expand(2, 10))


def test_disparity_spacing_is_dense_near_camera():
    s = uniform_samples(torch.tensor([[1.0]]), torch.tensor([[100.0]]), 32, False, spacing="disparity")
    assert s.deltas[0, 0] < 0.1 < 10 < s.deltas[0, -1]


def test_positions_and_unknown_spacing():
    rays = RayBundle(torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3), _unit([[0.0, 0.0, 1.0]]).float().expand(4, 3))
    s = uniform_samples(torch.ones(4, 1), torch.full((4, 1), 3.0), 4, False)
    p = s.positions(rays)
    assert p.shape == (4, 4, 3)
    assert torch.allclose(p[0, :, 2], s.t_mid[0]) and (p[..., 1] == 1).all()
    with pytest.raises(ValueError):
        uniform_samples(torch.ones(1, 1), torch.ones(1, 1) * 2, 4, False, spacing="cubic")


# ------------------------------------------------------------------------------ importance sampling
def _piecewise_cdf(edges, weights, x):
    """Analytic CDF of the piecewise-constant PDF with bin masses ``weights`` (1-D tensors)."""
    mass = weights / weights.sum()
    cum = torch.cat([torch.zeros(1, dtype=mass.dtype), torch.cumsum(mass, 0)])
    i = torch.clamp(torch.searchsorted(edges, x, right=True) - 1, 0, len(weights) - 1)
    frac = ((x - edges[i]) / (edges[i + 1] - edges[i])).clamp(0, 1)
    return cum[i] + frac * mass[i]


def test_importance_delta_weight_concentrates_samples():
    coarse = uniform_samples(torch.full((3, 1), 2.0), torch.full((3, 1), 6.0), 32, False)
    w = torch.zeros(3, 32)
    w[0, 5], w[1, 20], w[2, 31] = 1.0, 0.8, 0.3
    fine = importance_samples(coarse, w, 64, stratified=True, generator=torch.Generator().manual_seed(0))
    for r, b in enumerate((5, 20, 31)):
        lo, hi = coarse.t_starts[r, b], coarse.t_ends[r, b]
        inside = ((fine.t_mid[r] >= lo) & (fine.t_mid[r] <= hi)).float().mean()
        assert inside > 0.95
    assert torch.allclose(fine.edges[:, :1], coarse.edges[:, :1]) and torch.allclose(fine.edges[:, -1:], coarse.edges[:, -1:])


def test_importance_zero_weights_give_uniform_bins():
    coarse = uniform_samples(torch.full((2, 1), 1.0), torch.full((2, 1), 3.0), 8, False)
    fine = importance_samples(coarse, torch.zeros(2, 8), 16, stratified=False)
    expect = uniform_samples(torch.full((2, 1), 1.0), torch.full((2, 1), 3.0), 16, False)
    assert torch.allclose(fine.edges, expect.edges, atol=1e-5)


def test_importance_deterministic_edges_are_exact_quantiles():
    edges = torch.linspace(0.0, 4.0, 5, dtype=torch.float64)
    coarse = RaySamples(edges[:-1][None], edges[1:][None])
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    fine = importance_samples(coarse, w, 10, stratified=False, eps=0.0)
    F = _piecewise_cdf(edges, w[0], fine.edges[0])
    assert torch.allclose(F, torch.linspace(0, 1, 11, dtype=torch.float64), atol=1e-12)
    strat = importance_samples(coarse, w, 10, stratified=True, eps=0.0, generator=torch.Generator().manual_seed(3))
    F = _piecewise_cdf(edges, w[0], strat.edges[0])
    assert (F - torch.linspace(0, 1, 11, dtype=torch.float64)).abs().max() <= 0.5 / 10 + 1e-12


def test_importance_samples_follow_pdf_ks():
    n = 4000
    edges = torch.tensor([0.0, 1.0, 1.5, 3.0, 4.0, 6.0], dtype=torch.float64)
    w = torch.tensor([0.1, 0.5, 0.05, 0.25, 0.1], dtype=torch.float64)
    coarse = RaySamples(edges[:-1].expand(n, 5), edges[1:].expand(n, 5))
    # one stratified point per ray is an exact draw from the PDF; it is inserted among the old edges
    merged = importance_samples(coarse, w.expand(n, 5), 1, stratified=True, include_existing=True, eps=0.0,
                                generator=torch.Generator().manual_seed(7))
    assert merged.num_samples == 6
    new = merged.edges.clone()
    # remove the old edges to recover the new point per ray
    is_old = (new[..., None] == edges).any(-1)
    pts = torch.where(is_old, torch.nan, new).nan_to_num(0).sum(-1)
    xs, _ = torch.sort(pts)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = (emp - _piecewise_cdf(edges, w, xs)).abs().max().item()
    assert ks < 1.63 / math.sqrt(n)  # 1% critical value of the KS distribution


def test_importance_include_existing_merges_sorted():
    coarse = uniform_samples(torch.full((4, 3, 1), 1.0), torch.full((4, 3, 1), 5.0), 8, True,
                             generator=torch.Generator().manual_seed(0))
    w = torch.rand(4, 3, 8, 1, generator=torch.Generator().manual_seed(1))
    fine = importance_samples(coarse, w, 12, stratified=True, include_existing=True)
    assert fine.t_starts.shape == (4, 3, 20)
    assert (fine.deltas >= 0).all() and torch.equal(fine.t_starts[..., 1:], fine.t_ends[..., :-1])
    for e in coarse.edges.unbind(-1):  # every old edge is still an edge
        assert (fine.edges == e[..., None]).any(-1).all()


def test_importance_is_detached_and_handles_empty_rays():
    coarse = uniform_samples(torch.tensor([[1.0], [2.0]]), torch.tensor([[4.0], [2.0]]), 6, False)
    w = torch.rand(2, 6, requires_grad=True)
    fine = importance_samples(coarse, w * 2, 10, stratified=True)
    assert not fine.t_starts.requires_grad and not fine.t_ends.requires_grad
    assert torch.isfinite(fine.edges).all() and (fine.edges[1] == 2).all()
    assert (fine.edges[0] >= 1).all() and (fine.edges[0] <= 4).all()


def test_importance_resamples_in_spacing_coordinate():
    coarse = uniform_samples(torch.full((2, 1), 0.5), torch.full((2, 1), 50.0), 8, False, spacing="disparity")
    fine = importance_samples(coarse, torch.ones(2, 8), 16, stratified=False)
    expect = uniform_samples(torch.full((2, 1), 0.5), torch.full((2, 1), 50.0), 16, False, spacing="disparity")
    assert fine.spacing is coarse.spacing
    assert torch.allclose(fine.edges, expect.edges, rtol=1e-4)


# ------------------------------------------------------------------------------ contraction
@pytest.mark.parametrize("mode", ["l2", "linf"])
def test_contract_properties(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.logspace(-2, 4, 500, dtype=torch.float64)[:, None]
    norm = (lambda v: v.norm(dim=-1)) if mode == "l2" else (lambda v: v.abs().amax(-1))
    y = contract(x, mode)
    inside = norm(x) <= 1
    assert inside.any() and (~inside).any()
    assert torch.equal(y[inside], x[inside])
    assert (norm(y) < 2).all() and (norm(y[~inside]) > 1).all()
    assert torch.allclose(contract_inverse(y, mode), x, rtol=1e-6)
    # the direction is kept and the radius maps as 2 - 1/r
    r = norm(x[~inside])
    assert torch.allclose(norm(y[~inside]), 2 - 1 / r)
    assert torch.allclose(y[~inside] / norm(y[~inside])[:, None], x[~inside] / r[:, None])
    huge = contract(torch.tensor([[1e30, -2e30, 0.0]], dtype=torch.float64), mode)
    assert torch.isfinite(huge).all() and norm(huge).item() <= 2


@pytest.mark.parametrize("mode", ["l2", "linf"])
def test_contract_gradients(mode):
    x = torch.tensor([[0.3, -0.2, 0.1], [2.0, 1.0, -0.5], [-7.0, 0.4, 3.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: contract(v, mode), (x,))
    y = (contract(x, mode) * 0.9).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: contract_inverse(v, mode), (y,))
    z = torch.zeros(2, 3, requires_grad=True)
    contract(z, mode).sum().backward()
    assert torch.isfinite(z.grad).all() and torch.equal(z.grad, torch.ones_like(z))


def test_contract_is_continuous_across_unit_sphere():
    d = _unit([[0.3, -0.4, 0.8]])
    a, b = contract(d * (1 - 1e-9)), contract(d * (1 + 1e-9))
    assert (a - b).norm() < 1e-7
    with pytest.raises(ValueError):
        contract(d, mode="l1")
