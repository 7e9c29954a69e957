"""Gaussian rasterization: the PyTorch tile backend against the brute-force reference, analytic cases,
culling, gradients (incl. float64 gradcheck), backend selection and the Cameras helper."""

from __future__ import annotations

import math

import pytest
import torch

from recon3d.core import Cameras
from recon3d.core.gaussians import (
    ENV_BACKEND,
    EPS2D,
    Gaussians,
    rasterize,
    rasterize_cameras,
    resolve_backend,
    rgb_to_sh0,
)
from recon3d.core.gaussians.projection import ALPHA_MAX

W, H = 64, 48


def look_at_viewmats(n: int, radius: float = 3.0, dtype=torch.float32) -> torch.Tensor:
    """(n, 4, 4) world-to-camera matrices (OpenCV axes) on a circle around the origin, world z up."""
    mats = []
    for i in range(n):
        az = 2 * math.pi * i / max(n, 1) + 0.3
        eye = torch.tensor([radius * math.cos(az), radius * math.sin(az), 0.8], dtype=torch.float64)
        fwd = -eye / eye.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
        mats.append(torch.linalg.inv(c2w))
    return torch.stack(mats).to(dtype)


def make_scene(n=120, cams=3, sh_degree=None, seed=0, dtype=torch.float32, width=W, height=H,
               extent=1.5, scale=(0.03, 0.2)):
    """Random Gaussians in a cube (some reaching outside the views) and cameras looking at it."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * extent
    quats = torch.randn(n, 4, generator=g)
    lo, hi = math.log(scale[0]), math.log(scale[1])
    scales = torch.exp(torch.rand(n, 3, generator=g) * (hi - lo) + lo)
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    f = 0.9 * width
    K = torch.tensor([[f, 0, width / 2 + 0.3], [0, f * 1.05, height / 2 - 0.2], [0, 0, 1.0]])
    params = [t.to(dtype).requires_grad_() for t in (means, quats, scales, opac, colors)]
    return params, look_at_viewmats(cams, dtype=dtype), K.expand(cams, 3, 3).to(dtype).clone()


def render_and_grads(params, viewmats, Ks, backend, seed=1, **kw):
    out = rasterize(Gaussians(*params), viewmats, Ks, kw.pop("width", W), kw.pop("height", H), backend=backend, **kw)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(seed)
    wc = torch.randn(out.colors.shape, generator=g, dtype=out.colors.dtype)
    wa = torch.randn(out.alphas.shape, generator=g, dtype=out.colors.dtype)
    wd = torch.randn(out.depths.shape, generator=g, dtype=out.colors.dtype)
    loss = (out.colors * wc).sum() + (out.alphas * wa).sum() + 0.1 * (out.depths * out.alphas.detach() * wd).sum()
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    loss.backward()
    return out, grads, out.means2d.grad


def assert_grads_close(ga, gb, rtol=3e-3, names="means quats scales opacities colors".split()):
    for name, a, b in zip(names, ga, gb):
        scale = b.abs().max().clamp_min(1e-8)
        err = (a - b).abs().max() / scale
        assert err < rtol, f"grad {name}: relative error {err:.2e}"


@pytest.mark.parametrize("sh_degree", [None, 0, 1, 2, 3])
def test_torch_matches_reference(sh_degree):
    params, vm, K = make_scene(n=150, cams=3, sh_degree=sh_degree, seed=sh_degree or 7)
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 1.0, 1.0], [0.0, 0.3, 0.1]])
    a, ga, ma = render_and_grads(params, vm, K, "torch", sh_degree=sh_degree, backgrounds=bg)
    b, gb, mb = render_and_grads(params, vm, K, "reference", sh_degree=sh_degree, backgrounds=bg)
    assert a.backend == "torch" and b.backend == "reference"
    assert a.colors.shape == (3, H, W, 3) and a.alphas.shape == (3, H, W, 1) and a.depths.shape == (3, H, W, 1)
    assert (a.colors - b.colors).abs().max() < 1e-4
    assert (a.alphas - b.alphas).abs().max() < 1e-4
    assert (a.depths - b.depths).abs().max() < 1e-3  # depths ~3 units
    assert torch.equal(a.radii, b.radii) and torch.equal(a.visible, b.visible)
    assert a.radii.dtype == torch.int32 and a.visible.dtype == torch.bool
    assert 0 < int(a.visible.sum()) < a.visible.numel()  # some Gaussians leave some views
    assert_grads_close(ga, gb)
    assert ((ma - mb).abs().max() / mb.abs().max()) < 3e-3


@pytest.mark.parametrize("tile_size", [1, 2, 8, 16])
def test_tile_sizes_agree(tile_size):
    params, vm, K = make_scene(n=80, cams=2, seed=3)
    ref = rasterize(Gaussians(*params), vm, K, W, H, backend="reference")
    out = rasterize(Gaussians(*params), vm, K, W, H, backend="torch", tile_size=tile_size)
    assert (out.colors - ref.colors).abs().max() < 1e-4


def test_antialiased_matches_reference():
    params, vm, K = make_scene(n=100, cams=2, seed=11, scale=(0.005, 0.05))
    a, ga, _ = render_and_grads(params, vm, K, "torch", antialiased=True)
    b, gb, _ = render_and_grads(params, vm, K, "reference", antialiased=True)
    plain = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    assert (a.colors - b.colors).abs().max() < 1e-4
    assert_grads_close(ga, gb)
    # compensation only ever lowers opacity
    assert a.alphas.sum() < plain.alphas.sum()


def test_early_termination_on_opaque_stack():
    """200 opaque Gaussians on top of each other: pixels saturate and stop early (T <= 1e-4)."""
    n = 200
    means = torch.zeros(n, 3)
    means[:, 2] = torch.linspace(-0.5, 0.5, n)
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    scales = torch.full((n, 3), 0.3)
    opac = torch.full((n,), 0.95)
    colors = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
    params = [t.requires_grad_() for t in (means, quats, scales, opac, colors)]
    vm = torch.eye(4)[None].clone()
    vm[0, 2, 3] = 3.0
    K = torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]])
    a, ga, _ = render_and_grads(params, vm, K, "torch", width=32, height=32)
    b, gb, _ = render_and_grads(params, vm, K, "reference", width=32, height=32)
    assert (a.colors - b.colors).abs().max() < 1e-4
    center = a.alphas[0, 16, 16, 0]
    assert 1 - center < 1e-3  # saturated ...
    assert 1 - center > 0  # ... but never fully: compositing stops before T <= 1e-4
    assert_grads_close(ga, gb)
    # in a small central window every pixel saturates within the first few Gaussians: the ones
    # behind get exactly zero gradient
    K4 = torch.tensor([[[40.0, 0, 2], [0, 40.0, 2], [0, 0, 1]]])
    c, gc, _ = render_and_grads(params, vm, K4, "torch", width=4, height=4)
    assert gc[4][:3].abs().max() > 0 and (gc[4][20:] == 0).all() and (gc[0][20:] == 0).all()


def _single_gaussian(sigma_world=0.1, z=2.0, f=50.0, opacity=0.8, color=(0.2, 0.6, 1.0), size=33):
    c = size / 2.0  # the mean projects to the center of pixel (16, 16)
    params = [
        torch.tensor([[0.0, 0.0, z]]),
        torch.tensor([[0.3, -0.2, 0.5, 0.7]]),  # rotation must not matter for an isotropic Gaussian
        torch.full((1, 3), sigma_world),
        torch.tensor([opacity]),
        torch.tensor([list(color)]),
    ]
    K = torch.tensor([[[f, 0, c], [0, f, c], [0, 0, 1.0]]])
    return params, torch.eye(4)[None], K


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_single_isotropic_gaussian_is_analytic(backend):
    size, f, z, s, o = 33, 50.0, 2.0, 0.1, 0.8
    params, vm, K = _single_gaussian(s, z, f, o, size=size)
    out = rasterize(Gaussians(*params), vm, K, size, size, backend=backend)
    var = (f * s / z) ** 2 + EPS2D  # pixels^2, with the low-pass
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    d2 = (xs - size / 2) ** 2 + (ys - size / 2) ** 2
    alpha = o * torch.exp(-0.5 * d2 / var)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    assert torch.allclose(out.alphas[0, ..., 0], alpha, atol=1e-5)
    assert torch.allclose(out.colors[0], alpha[..., None] * torch.tensor([0.2, 0.6, 1.0]), atol=1e-5)
    assert abs(float(out.alphas[0, 16, 16, 0]) - o) < 1e-5  # peak at the center pixel
    assert torch.allclose(out.depths[0, 16, 16], torch.tensor([z]), atol=1e-5)
    assert int(out.radii[0, 0]) == math.ceil(3 * math.sqrt(var))
    assert torch.allclose(out.means2d[0, 0], torch.tensor([size / 2, size / 2]))
    # the support ends where alpha drops below 1/255
    r_cut = math.sqrt(2 * var * math.log(255 * o))
    assert out.alphas[0, 16, 16 + int(r_cut) + 1, 0] == 0 and out.alphas[0, 16, 16 + int(r_cut) - 1, 0] > 0


def test_alpha_is_clamped():
    params, vm, K = _single_gaussian(opacity=1.0)
    out = rasterize(Gaussians(*params), vm, K, 33, 33, backend="torch")
    assert abs(float(out.alphas.max()) - ALPHA_MAX) < 1e-6


def test_near_far_culling():
    params, vm, K = _single_gaussian(z=2.0)
    for near, far, seen in [(0.01, 1e10, True), (2.5, 1e10, False), (0.01, 1.5, False), (1.9, 2.1, True)]:
        out = rasterize(Gaussians(*params), vm, K, 33, 33, near=near, far=far, backend="torch")
        assert bool(out.visible[0, 0]) == seen
        assert (out.alphas.max() > 0) == seen
        assert (int(out.radii[0, 0]) > 0) == seen
    # behind the camera: culled, finite outputs and gradients
    params[0] = torch.tensor([[0.0, 0.0, -2.0]], requires_grad=True)
    out = rasterize(Gaussians(*params), vm, K, 33, 33, backgrounds=torch.ones(1, 3), backend="torch")
    assert not out.visible.any() and torch.allclose(out.colors, torch.ones_like(out.colors))
    out.colors.sum().backward()
    assert torch.isfinite(params[0].grad).all() and (params[0].grad == 0).all()


def test_offscreen_gaussians_are_culled_exactly():
    params, vm, K = make_scene(n=200, cams=2, seed=5, extent=2.5)
    a = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    b = rasterize(Gaussians(*params), vm, K, W, H, backend="reference")  # evaluates every valid Gaussian everywhere
    assert (~a.visible).sum() > 20
    assert (a.colors - b.colors).abs().max() < 1e-4


def test_means2d_gradients_for_densification():
    params, vm, K = make_scene(n=60, cams=2, seed=2)
    out = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    assert out.means2d.shape == (2, 60, 2) and not out.means2d.is_leaf
    out.means2d.retain_grad()
    out.colors.mean().backward()
    g = out.means2d.grad
    assert g is not None and g.shape == (2, 60, 2)
    assert (g[~out.visible] == 0).all()
    assert (g[out.visible].abs().sum(-1) > 0).float().mean() > 0.9


def test_sh_degree0_equals_rgb():
    params, vm, K = make_scene(n=80, cams=2, seed=4)
    rgb = params[4].detach()
    sh = rgb_to_sh0(rgb)[:, None, :]
    a = rasterize(Gaussians(*params[:4], rgb), vm, K, W, H, backend="torch")
    b = rasterize(Gaussians(*params[:4], sh), vm, K, W, H, sh_degree=0, backend="torch")
    assert (a.colors - b.colors).abs().max() < 1e-5
    # higher-order coefficients are ignored at lower degrees
    sh3 = torch.cat([sh, torch.randn(80, 15, 3)], dim=1)
    c = rasterize(Gaussians(*params[:4], sh3), vm, K, W, H, sh_degree=0, backend="torch")
    assert torch.equal(b.colors, c.colors)


def test_cameras_are_independent():
    params, vm, K = make_scene(n=80, cams=3, seed=8)
    bg = torch.rand(3, 3)
    all3 = rasterize(Gaussians(*params), vm, K, W, H, backgrounds=bg, backend="torch")
    for i in range(3):
        one = rasterize(Gaussians(*params), vm[i : i + 1], K[i : i + 1], W, H, backgrounds=bg[i : i + 1],
                        backend="torch")
        assert torch.allclose(all3.colors[i], one.colors[0], atol=1e-6)
        assert torch.equal(all3.radii[i], one.radii[0])


def test_empty_view_still_differentiable():
    params, vm, K = make_scene(n=10, cams=1, seed=0)
    vm = vm.clone()
    vm[0, 2, 3] -= 100.0  # everything behind the camera
    out = rasterize(Gaussians(*params), vm, K, W, H, backgrounds=torch.tensor([0.1, 0.2, 0.3]), backend="torch")
    assert not out.visible.any()
    assert torch.allclose(out.colors[0, 5, 5], torch.tensor([0.1, 0.2, 0.3]))
    assert (out.depths == 0).all() and (out.alphas == 0).all()
    (out.colors.sum() + out.depths.sum()).backward()  # must not raise
    # no Gaussians at all
    none = [torch.zeros(0, k, requires_grad=True) for k in (3, 4, 3)] + [torch.zeros(0), torch.zeros(0, 3)]
    out = rasterize(Gaussians(*none), vm, K, W, H, backgrounds=torch.ones(3), backend="torch")
    assert out.means2d.shape == (1, 0, 2) and torch.equal(out.colors, torch.ones(1, H, W, 3))
    out.colors.sum().backward()


def test_gradcheck_float64():
    params, vm, K = make_scene(n=4, cams=1, seed=21, dtype=torch.float64, width=8, height=8, scale=(0.15, 0.3))
    params[3] = (torch.rand(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5 + 0.2
                 ).requires_grad_()
    bg = torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)

    def fn(means, quats, scales, opac, colors):
        out = rasterize(Gaussians(means, quats, scales, opac, colors), vm, K, 8, 8, backgrounds=bg, backend="torch",
                        tile_size=4)
        return out.colors, out.alphas, out.depths * out.alphas

    out = rasterize(Gaussians(*params), vm, K, 8, 8, backend="torch")
    assert out.colors.dtype == torch.float64 and out.alphas.max() > 0.3
    assert torch.autograd.gradcheck(fn, tuple(params), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradcheck_float64_sh():
    params, vm, K = make_scene(n=2, cams=2, sh_degree=3, seed=22, dtype=torch.float64, width=8, height=8,
                               scale=(0.2, 0.3), extent=0.5)

    weights = torch.rand(2, 8, 8, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(means, colors):  # a few weighted image sums keep the Jacobian small
        out = rasterize(Gaussians(means, *params[1:4], colors), vm, K, 8, 8, sh_degree=3, backend="torch")
        return (out.colors * weights).sum((1, 2))

    assert torch.autograd.gradcheck(fn, (params[0], params[4]), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    assert resolve_backend("auto", torch.device("cpu")) == "cpp"  # the compiled CPU rasterizer (built at set-up)
    assert resolve_backend("gsplat", torch.device("cpu")) == "gsplat"
    monkeypatch.setenv(ENV_BACKEND, "torch")
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    monkeypatch.setenv(ENV_BACKEND, "reference")
    assert resolve_backend("auto", torch.device("cpu")) == "reference"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"  # explicit argument wins
    monkeypatch.setenv(ENV_BACKEND, "nonsense")
    with pytest.raises(ValueError):
        resolve_backend("auto", torch.device("cpu"))
    with pytest.raises(ValueError):
        resolve_backend("opengl", torch.device("cpu"))
    monkeypatch.delenv(ENV_BACKEND)
    params, vm, K = make_scene(n=5, cams=1)
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(Gaussians(*params), vm, K, W, H, backend="gsplat")
    assert rasterize(Gaussians(*params), vm, K, W, H).backend == "cpp"


def test_input_validation():
    params, vm, K = make_scene(n=5, cams=1, sh_degree=1)
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize(Gaussians(*params), vm, K, W, H)  # SH coefficients without sh_degree
    with pytest.raises(ValueError, match="needs colors"):
        rasterize(Gaussians(*params), vm, K, W, H, sh_degree=2)  # 4 coefficients cannot do degree 2
    with pytest.raises(ValueError, match="quats"):
        rasterize(Gaussians(params[0], params[1][:3], *params[2:]), vm, K, W, H, sh_degree=1)
    with pytest.raises(ValueError, match="backgrounds"):
        rasterize(Gaussians(*params), vm, K, W, H, sh_degree=1, backgrounds=torch.ones(2, 3))


def test_rasterize_cameras_matches_matrices():
    params, vm, K = make_scene(n=50, cams=2, seed=9)
    cams = Cameras.from_K(K, torch.linalg.inv(vm), W, H)
    a = rasterize_cameras(Gaussians(*params), cams, backend="torch")
    b = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    assert torch.allclose(a.colors, b.colors, atol=1e-5)
    distorted = Cameras.from_K(K, torch.linalg.inv(vm), W, H, distortion=[0.1, 0, 0, 0, 0], model="opencv")
    with pytest.raises(ValueError, match="distortion"):
        rasterize_cameras(Gaussians(*params), distorted)
    mixed = Cameras.cat([cams[0], Cameras.from_K(K[:1], torch.linalg.inv(vm[:1]), W // 2, H)])
    with pytest.raises(ValueError, match="width and height"):
        rasterize_cameras(Gaussians(*params), mixed)


def test_dense_scene_many_slabs_and_small_batches():
    """Deep per-tile lists (several slabs, tiles terminating at different slabs) and tiny dense batches
    give the same values and gradients as the reference."""
    from recon3d.core.gaussians.rasterize_torch import rasterize_torch

    params, vm, K = make_scene(n=500, cams=1, seed=13, width=32, height=24, extent=0.8, scale=(0.1, 0.4))
    with torch.no_grad():
        params[3].clamp_(min=0.5)  # opaque enough for many pixels to terminate
    a, ga, _ = render_and_grads(params, vm, K, "torch", width=32, height=24)
    b, gb, _ = render_and_grads(params, vm, K, "reference", width=32, height=24)
    assert (a.colors - b.colors).abs().max() < 1e-4 and (a.alphas - b.alphas).abs().max() < 1e-4
    assert (a.alphas > 1 - 1e-3).float().mean() > 0.3
    assert_grads_close(ga, gb)
    small = rasterize_torch(Gaussians(*params), vm, K, 32, 24, batch_elements=2048)
    assert torch.allclose(small["colors"], a.colors, atol=1e-6)


def test_gaussians_container_checks_shapes_and_derives_subsets():
    params, _, _ = make_scene(n=6, cams=1, sh_degree=1)
    g = Gaussians(*params)
    assert len(g) == 6 and g.is_sh and g.dtype == torch.float32 and g.device.type == "cpu"
    assert all(a is b for a, b in zip(g.tensors(), params))  # references, no copies
    g.check_sh_degree(1)
    with pytest.raises(ValueError, match="needs colors"):
        g.check_sh_degree(2)
    with pytest.raises(ValueError, match="sh_degree"):
        g.check_sh_degree(None)
    for i, name in enumerate(["means", "quats", "scales", "opacities", "colors"]):
        bad = list(params)
        bad[i] = bad[i][:, None] if name == "opacities" else bad[i][..., :2]
        with pytest.raises(ValueError, match=name):
            Gaussians(*bad)
    with pytest.raises(ValueError, match="quats"):
        Gaussians(params[0], *(t[:5] for t in params[1:]))  # N disagrees with means
    sub = g[torch.tensor([True, False, True, False, False, True])]
    assert len(sub) == 3 and torch.equal(sub.colors, params[4][[0, 2, 5]])
    assert len(g[1:4]) == 3 and not g.detach().means.requires_grad
    assert g.to(torch.float64).scales.dtype == torch.float64
    with pytest.raises(TypeError):
        g[0]


def test_legacy_keyword_form_is_identical():
    """rasterize(means=..., quats=..., ...) (the pre-Gaussians keyword form) gives bit-identical
    outputs and gradients; mixing the forms or passing bare tensors positionally is refused."""
    params, vm, K = make_scene(n=100, cams=2, sh_degree=2, seed=17)
    bg = torch.tensor([0.3, 0.6, 0.9])
    for backend in ("torch", "reference"):
        kw = dict(sh_degree=2, backgrounds=bg, antialiased=True)
        a, ga, ma = render_and_grads(params, vm, K, backend, **kw)
        for p in params:
            p.grad = None
        m, q, s, o, c = params
        b = rasterize(means=m, quats=q, scales=s, opacities=o, colors=c, viewmats=vm, Ks=K, width=W, height=H,
                      backend=backend, **kw)
        b.means2d.retain_grad()
        g = torch.Generator().manual_seed(1)
        wc = torch.randn(b.colors.shape, generator=g)
        wa = torch.randn(b.alphas.shape, generator=g)
        wd = torch.randn(b.depths.shape, generator=g)
        loss = (b.colors * wc).sum() + (b.alphas * wa).sum() + 0.1 * (b.depths * b.alphas.detach() * wd).sum()
        gb = torch.autograd.grad(loss, params, retain_graph=True)
        loss.backward()
        for x, y in [(a.colors, b.colors), (a.alphas, b.alphas), (a.depths, b.depths), (a.radii, b.radii),
                     (a.means2d, b.means2d), (ma, b.means2d.grad), *zip(ga, gb)]:
            assert torch.equal(x, y)
        for p in params:
            p.grad = None
    g = Gaussians(*params)
    with pytest.raises(TypeError):
        rasterize(*params, vm, K, W, H, sh_degree=2)  # the arrays positionally: not a form rasterize takes
    with pytest.raises(TypeError, match="Gaussians"):
        rasterize(params[0], vm, K, W, H, sh_degree=2)
    with pytest.raises(TypeError, match="also"):
        rasterize(g, vm, K, W, H, sh_degree=2, means=params[0])
    with pytest.raises(TypeError, match="missing"):
        rasterize(means=params[0], quats=params[1], viewmats=vm, Ks=K, width=W, height=H)
    with pytest.raises(TypeError, match="viewmats"):
        rasterize(g, sh_degree=2)
    cams = Cameras.from_K(K, torch.linalg.inv(vm), W, H)
    with pytest.raises(TypeError):
        rasterize_cameras(*params, cams)
    with pytest.raises(TypeError, match="Gaussians"):
        rasterize_cameras(params[0], cams)


def test_gaussian_model_accessor_renders_like_its_properties():
    from recon3d.methods.splat.model import GaussianModel

    m = GaussianModel.random_in_box(50, -torch.ones(3), torch.ones(3), max_sh_degree=1,
                                    generator=torch.Generator().manual_seed(0), init_opacity=0.5)
    g = m.gaussians()
    for x, y in zip(g.tensors(), (m.means, m.quats, m.scales, m.opacities, m.sh)):
        assert torch.equal(x, y)
    _, vm, K = make_scene(n=1, cams=1)
    out = rasterize(g, vm, K, W, H, sh_degree=1, backend="torch")
    out.colors.sum().backward()
    assert m.log_scales.grad is not None and m.opacity_logits.grad is not None and m.shN.grad is not None
