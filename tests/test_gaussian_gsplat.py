"""PyTorch backend vs gsplat's CUDA rasterizer. Needs a CUDA device and a gsplat that works there
(:func:`gsplat_status`: its CUDA extension loads and a tiny rasterization succeeds): skipped otherwise,
with the reason. ``scripts/gpu_check.sh`` runs this file first on a GPU machine.

Both backends use the same projection, 0.3 px low-pass, alpha clamp (0.999), skip threshold (1/255)
and termination (T <= 1e-4), so images agree to float rounding except where the culling differs:
gsplat evaluates whole 16 px tiles touched by a 3-sigma box (square before gsplat 1.5, opacity-aware
rectangle since), the PyTorch backend the exact ``alpha >= 1/255`` support. That can change the faint
fringe (alpha ~ 1/255) of opaque Gaussians. Stated tolerances (float32):
  * colors: 95th percentile and mean of |difference| < 1e-4, max < 2e-2 (fringe pixels);
  * alphas: mean |difference| < 1e-4; expected depths (where alpha > 0.5): mean |difference| < 1e-3
    relative to the scene depth;
  * means2d < 1e-3 px, per-Gaussian depths < 1e-4, gsplat radii <= ours + 1 px (visible in both);
  * gradients of all inputs and of means2d: relative L2 error < 2e-2.
Sizes: 150 Gaussians at 64 x 48 (3 cameras; the PyTorch backend on CPU and on CUDA), 2000 at
160 x 120 (2 cameras) and 20000 at 320 x 240 (1 camera, the PyTorch backend on CUDA).
"""

from __future__ import annotations

import pytest
import torch

from recon3d.core.gaussians import Gaussians, gsplat_status, rasterize
from tests.test_gaussian_raster import H, W, make_scene


def _skip_reason() -> str:
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    st = gsplat_status("cuda")
    return "" if st.usable else f"gsplat unusable: {st.reason}"


_REASON = _skip_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(_REASON), reason=_REASON or "n/a")]

#: (Gaussians, cameras, width, height, devices of the PyTorch backend)
SIZES = {
    "small": (150, 3, W, H, ("cpu", "cuda")),
    "medium": (2000, 2, 160, 120, ("cuda",)),
    "large": (20000, 1, 320, 240, ("cuda",)),
}


def _render(params, vm, K, bg, backend, dev, width, height, sh_degree, antialiased):
    p = [t.detach().to(dev).requires_grad_() for t in params]
    out = rasterize(Gaussians(*p), vm.to(dev), K.to(dev), width, height, sh_degree=sh_degree, backgrounds=bg.to(dev),
                    backend=backend, antialiased=antialiased)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(1)
    target = torch.rand(out.colors.shape, generator=g).to(dev)
    wa = torch.rand(out.alphas.shape, generator=g).to(dev)
    loss = ((out.colors - target) ** 2).sum() + (out.alphas * wa).sum()
    loss.backward()
    return out, [t.grad.cpu() for t in p], out.means2d.grad.cpu()


def _compare(a, ga, ma, b, gb, mb):
    """Assert the stated tolerances; every message carries the measured value."""
    assert b.backend == "gsplat"
    diff = (a.colors.detach().cpu() - b.colors.detach().cpu()).abs()
    q95 = float(torch.quantile(diff.flatten(), 0.95))
    assert q95 < 1e-4, f"colors: 95th percentile |diff| {q95:.2e}"
    assert diff.mean() < 1e-4, f"colors: mean |diff| {float(diff.mean()):.2e}"
    assert diff.max() < 2e-2, f"colors: max |diff| {float(diff.max()):.2e}"  # fringe of opaque Gaussians
    da = float((a.alphas.detach().cpu() - b.alphas.detach().cpu()).abs().mean())
    assert da < 1e-4, f"alphas: mean |diff| {da:.2e}"
    solid = (a.alphas.detach().cpu() > 0.5) & (b.alphas.detach().cpu() > 0.5)
    if solid.any():
        scale = float(a.depths.detach().cpu()[solid].abs().mean())
        dd = float((a.depths.detach().cpu() - b.depths.detach().cpu())[solid].abs().mean())
        assert dd < 1e-3 * scale, f"depths: mean |diff| {dd:.2e} at scene depth {scale:.2f}"
    vis = a.visible.detach().cpu() & b.visible.detach().cpu()
    dm = float((a.means2d.detach().cpu() - b.means2d.detach().cpu())[vis].abs().max())
    assert dm < 1e-3, f"means2d: max |diff| {dm:.2e} px"
    dz = float((a.depths_per_gaussian.detach().cpu() - b.depths_per_gaussian.detach().cpu())[vis].abs().max())
    assert dz < 1e-4, f"per-Gaussian depths: max |diff| {dz:.2e}"
    # gsplat >= 1.5 shrinks radii of faint Gaussians (opacity-aware); never beyond ceil(3 sigma_max)
    over = int((b.radii.detach().cpu() > a.radii.detach().cpu() + 1)[vis].sum())
    assert over == 0, f"radii: {over} gsplat radii exceed ours + 1 px"
    names = "means quats scales opacities colors".split()
    for name, x, y in zip(names, ga, gb):
        err = float((x - y).norm() / y.norm().clamp_min(1e-12))
        assert err < 2e-2, f"grad {name}: relative L2 error {err:.2e}"
    err = float((ma - mb)[vis].norm() / mb[vis].norm())
    assert err < 2e-2, f"grad means2d: relative L2 error {err:.2e}"


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("sh_degree,antialiased", [(None, False), (3, False), (1, True)])
def test_torch_agrees_with_gsplat(size, sh_degree, antialiased):
    n, cams, width, height, torch_devices = SIZES[size]
    extent = 1.5 if n <= 2000 else 1.2
    scale = (0.03, 0.2) if n <= 2000 else (0.01, 0.06)
    params, vm, K = make_scene(n=n, cams=cams, sh_degree=sh_degree, seed=n, width=width, height=height,
                               extent=extent, scale=scale)
    bg = torch.rand(cams, 3, generator=torch.Generator().manual_seed(n))
    b, gb, mb = _render(params, vm, K, bg, "gsplat", "cuda", width, height, sh_degree, antialiased)
    for dev in torch_devices:
        a, ga, ma = _render(params, vm, K, bg, "torch", dev, width, height, sh_degree, antialiased)
        assert a.colors.device.type == dev
        _compare(a, ga, ma, b, gb, mb)


def test_auto_picks_gsplat_on_cuda():
    params, vm, K = make_scene(n=20, cams=1)
    p = [t.detach().cuda() for t in params]
    assert rasterize(Gaussians(*p), vm.cuda(), K.cuda(), W, H).backend == "gsplat"
    assert rasterize(Gaussians(*p), vm.cuda(), K.cuda(), W, H, backend="torch").backend == "torch"


def test_status_is_cached_and_usable():
    st = gsplat_status("cuda")
    assert st.usable and st.version and st is gsplat_status(torch.device("cuda", torch.cuda.current_device()))
