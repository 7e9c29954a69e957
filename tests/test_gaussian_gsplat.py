"""CPU (PyTorch) backend vs gsplat's CUDA rasterizer. Needs a CUDA device and gsplat: skipped otherwise.

Both backends use the same projection, 0.3 px low-pass, alpha clamp (0.999), skip threshold (1/255)
and termination (T <= 1e-4), so images agree to float rounding except where the culling differs:
gsplat evaluates whole 16 px tiles touched by a 3-sigma box (square before gsplat 1.5, opacity-aware
rectangle since), the PyTorch backend the exact ``alpha >= 1/255`` support. That can change the faint
fringe (alpha ~ 1/255) of opaque Gaussians. Stated tolerances (float32, 64x48, 150 Gaussians,
3 cameras):
  * colors: 95th percentile and mean of |difference| < 1e-4, max < 2e-2 (fringe pixels);
  * alphas: mean |difference| < 1e-4;
  * means2d < 1e-3 px, per-Gaussian depths < 1e-4, gsplat radii <= ours + 1 px (visible in both);
  * gradients of all inputs and of means2d: relative L2 error < 2e-2.
"""

from __future__ import annotations

import pytest
import torch

from recon3d.core.gaussians import Gaussians, gsplat_available, rasterize
from tests.test_gaussian_raster import H, W, make_scene

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not gsplat_available(), reason="needs gsplat"),
]


def _both(sh_degree, antialiased=False, seed=0):
    params, vm, K = make_scene(n=150, cams=3, sh_degree=sh_degree, seed=seed)
    bg = torch.rand(3, 3, generator=torch.Generator().manual_seed(seed))
    outs = {}
    for backend, dev in (("torch", "cpu"), ("gsplat", "cuda")):
        p = [t.detach().to(dev).requires_grad_() for t in params]
        out = rasterize(Gaussians(*p), vm.to(dev), K.to(dev), W, H, sh_degree=sh_degree, backgrounds=bg.to(dev),
                        backend=backend, antialiased=antialiased)
        out.means2d.retain_grad()
        target = torch.rand(out.colors.shape, generator=torch.Generator().manual_seed(1)).to(dev)
        ((out.colors - target) ** 2).sum().backward()
        outs[backend] = (out, [t.grad.cpu() for t in p], out.means2d.grad.cpu())
    return outs["torch"], outs["gsplat"]


@pytest.mark.parametrize("sh_degree,antialiased", [(None, False), (3, False), (1, True)])
def test_torch_agrees_with_gsplat(sh_degree, antialiased):
    (a, ga, ma), (b, gb, mb) = _both(sh_degree, antialiased)
    assert b.backend == "gsplat"
    diff = (a.colors - b.colors.cpu()).abs()
    assert torch.quantile(diff.flatten(), 0.95) < 1e-4
    assert diff.mean() < 1e-4
    assert diff.max() < 2e-2  # fringe of opaque Gaussians: up to a few 1/255
    assert (a.alphas - b.alphas.cpu()).abs().mean() < 1e-4
    vis = a.visible & b.visible.cpu()
    assert (a.means2d - b.means2d.cpu())[vis].abs().max() < 1e-3
    assert (a.depths_per_gaussian - b.depths_per_gaussian.cpu())[vis].abs().max() < 1e-4
    # gsplat >= 1.5 shrinks radii of faint Gaussians (opacity-aware); never beyond ceil(3 sigma_max)
    assert (b.radii.cpu() <= a.radii + 1)[vis].all()
    for x, y in zip(ga, gb):
        assert (x - y).norm() / y.norm().clamp_min(1e-12) < 2e-2
    assert (ma - mb)[vis].norm() / mb[vis].norm() < 2e-2


def test_auto_picks_gsplat_on_cuda():
    params, vm, K = make_scene(n=20, cams=1)
    p = [t.detach().cuda() for t in params]
    assert rasterize(Gaussians(*p), vm.cuda(), K.cuda(), W, H).backend == "gsplat"
    assert rasterize(Gaussians(*p), vm.cuda(), K.cuda(), W, H, backend="torch").backend == "torch"
