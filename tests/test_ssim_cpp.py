"""The compiled SSIM kernel against the PyTorch formulation of recon3d.core.metrics.ssim."""

from __future__ import annotations

import pytest
import torch

from recon3d.core import native
from recon3d.core.metrics import ENV_SSIM, dssim_loss, ssim

pytestmark = pytest.mark.skipif(not native.native_available(), reason="no C++ compiler: compiled kernels unbuilt")


def _pair(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("shape,dtype,window,sigma,data_range", [
    ((37, 53, 3), torch.float64, 11, 1.5, 1.0),
    ((2, 24, 31, 3), torch.float64, 7, 1.0, 1.0),  # batched, other window
    ((11, 11, 1), torch.float64, 11, 1.5, 2.0),  # a single map pixel, one channel, other range
    ((64, 48, 4), torch.float32, 11, 1.5, 1.0),
])
def test_cpp_matches_torch(monkeypatch, shape, dtype, window, sigma, data_range):
    x, y = _pair(shape, dtype)
    res = {}
    for mode in ("torch", "auto"):
        monkeypatch.setenv(ENV_SSIM, mode)
        xx = x.clone().requires_grad_()
        loss = dssim_loss(xx, y, window=window, sigma=sigma, data_range=data_range)
        loss.backward()
        res[mode] = (loss.detach(), xx.grad)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert abs(float(res["torch"][0] - res["auto"][0])) < tol
    g_t, g_c = res["torch"][1], res["auto"][1]
    assert g_t.abs().max() > 0
    assert (g_t - g_c).abs().max() <= tol * 10 + 1e-4 * g_t.abs().max() * (dtype == torch.float32)


def test_gradcheck_cpp():
    x, y = _pair((13, 14, 2), torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ssim(a, y, window=5), (x,), eps=1e-6, atol=1e-8)


def test_torch_path_when_the_target_needs_a_gradient(monkeypatch):
    monkeypatch.setenv(ENV_SSIM, "auto")
    x, y = _pair((20, 20, 3), torch.float64)
    y.requires_grad_()
    ssim(x, y).backward()  # the compiled kernel has no target gradient: the PyTorch formulation runs
    assert y.grad is not None and y.grad.abs().max() > 0
