"""The compiled hash-grid kernel against the PyTorch formulation of HashGridEncoding."""

from __future__ import annotations

import pytest
import torch

from recon3d.core import native
from recon3d.core.encodings import ENV_HASHGRID, HashGridEncoding

pytestmark = pytest.mark.skipif(not native.native_available(), reason="no C++ compiler: compiled kernels unbuilt")


def _points(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=dtype)
    x[:5] = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)  # on the far faces / exact vertices
    x[5:10] = torch.tensor([-0.2, 1.3, 1.0], dtype=dtype)  # outside: clamped
    return x


@pytest.mark.parametrize("dtype,levels,log2,finest", [
    (torch.float64, 6, 12, 128),  # dense coarse levels, hashed fine ones
    (torch.float32, 12, 17, 512),  # the NeRF default
    (torch.float64, 3, 19, 16),  # dense only
])
def test_cpp_matches_torch(monkeypatch, dtype, levels, log2, finest):
    enc = HashGridEncoding(levels, 2, log2, 16 if finest >= 16 else finest, finest, init_scale=0.5).to(dtype)
    x = _points(4000, dtype)
    w = torch.randn(x.shape[0], enc.output_dim, generator=torch.Generator().manual_seed(1), dtype=dtype)
    res = {}
    for mode in ("torch", "cpp"):
        monkeypatch.setenv(ENV_HASHGRID, mode)
        enc.table.grad = None
        y = enc(x)
        (y * w).sum().backward()
        res[mode] = (y.detach(), enc.table.grad.clone())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(res["torch"][0], res["cpp"][0], rtol=tol, atol=tol)
    assert torch.allclose(res["torch"][1], res["cpp"][1], rtol=tol, atol=tol * 10)
    assert res["cpp"][1].abs().sum() > 0


def test_position_gradients_use_torch(monkeypatch):
    """Positions that need a gradient (SDF eikonal, twice differentiable) take the PyTorch path."""
    monkeypatch.setenv(ENV_HASHGRID, "auto")
    enc = HashGridEncoding(4, 2, 12, 4, 32, init_scale=0.5).double()
    x = _points(50, torch.float64).clamp(0.01, 0.99).requires_grad_()
    y = enc(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert x.grad is not None and enc.table.grad is not None


def test_bad_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(ENV_HASHGRID, "fast")
    with pytest.raises(ValueError, match=ENV_HASHGRID):
        HashGridEncoding(2, 2, 10, 4, 8)(torch.rand(3, 3))
