"""Field encodings: hash grid (shapes, dense/hashed levels, gradients, determinism, fitting), SH, frequencies."""

from __future__ import annotations

import torch

from recon3d.core.encodings import FrequencyEncoding, HashGridEncoding, SHEncoding
from recon3d.core.gaussians.sh import sh_basis


def test_hash_grid_shapes_and_levels():
    enc = HashGridEncoding(num_levels=6, features_per_level=2, log2_hashmap_size=12, base_resolution=4,
                           max_resolution=64)
    assert enc.resolutions[0] == 4 and enc.resolutions[-1] == 64
    assert enc.output_dim == 12
    # coarse levels fit their (res + 1)^3 vertices densely, the finer ones are hashed into 2^12 rows
    assert enc.dense_levels == [lv for lv, r in enumerate(enc.resolutions) if (r + 1) ** 3 <= 4096]
    assert enc.hashed_levels and enc.dense_levels
    assert enc.table.shape == (sum(enc.level_sizes), 2)
    x = torch.rand(5, 7, 3)
    assert enc(x).shape == (5, 7, 12)
    idx, w = enc.corners(x.reshape(-1, 3))
    assert idx.shape == (35, 6, 8) and torch.allclose(w.sum(-1), torch.ones(35, 6), atol=1e-6)
    starts = torch.tensor([0] + list(torch.tensor(enc.level_sizes).cumsum(0)[:-1]))
    ends = starts + torch.tensor(enc.level_sizes)
    assert ((idx >= starts[None, :, None]) & (idx < ends[None, :, None])).all()  # each level in its own rows


def test_hash_grid_dense_level_is_trilinear_interpolation():
    enc = HashGridEncoding(num_levels=1, features_per_level=1, log2_hashmap_size=10, base_resolution=3,
                           max_resolution=3)
    with torch.no_grad():
        g = torch.arange(4.0)
        X, Y, Z = torch.meshgrid(g, g, g, indexing="ij")
        # vertex (x, y, z) is row x + 4 y + 16 z; give it the value of a linear function
        vals = (2 * X - Y + 0.5 * Z + 1).permute(2, 1, 0).reshape(-1, 1)
        enc.table.copy_(vals)
    p = torch.rand(50, 3)
    expect = 3 * (2 * p[:, 0] - p[:, 1] + 0.5 * p[:, 2]) + 1  # trilinear interpolation is exact on linear fns
    assert torch.allclose(enc(p)[:, 0], expect, atol=1e-5)


def test_hash_grid_gradients():
    torch.manual_seed(0)
    enc = HashGridEncoding(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=2,
                           max_resolution=32, init_scale=1.0).double()
    x = (torch.rand(6, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: HashGridEncoding.forward(enc, t), (x,), eps=1e-7, atol=1e-5)
    out = enc(x.detach())
    out.square().sum().backward()
    g = enc.table.grad
    assert g is not None and torch.isfinite(g).all()
    idx, _ = enc.corners(x.detach())
    touched = torch.zeros(len(g), dtype=torch.bool)
    touched[idx.reshape(-1)] = True
    assert (g[~touched] == 0).all() and (g[touched].abs().sum(-1) > 0).any()


def test_hash_grid_deterministic():
    a = HashGridEncoding(num_levels=4, log2_hashmap_size=10, seed=3)
    b = HashGridEncoding(num_levels=4, log2_hashmap_size=10, seed=3)
    c = HashGridEncoding(num_levels=4, log2_hashmap_size=10, seed=4)
    x = torch.rand(100, 3)
    assert torch.equal(a.table, b.table) and not torch.equal(a.table, c.table)
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), a(x))
    assert torch.equal(a(x.clamp(0, 1)), a(x + 0.0))


def test_hash_grid_fits_a_3d_function():
    torch.manual_seed(0)
    enc = HashGridEncoding(num_levels=6, features_per_level=2, log2_hashmap_size=13, base_resolution=4,
                           max_resolution=64, seed=0)
    head = torch.nn.Sequential(torch.nn.Linear(enc.output_dim, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-2, eps=1e-15)

    def target(p):
        return torch.sin(6 * p[:, 0]) * torch.cos(5 * p[:, 1]) + (p[:, 2] - 0.5) ** 2

    for _ in range(150):
        p = torch.rand(1024, 3)
        loss = torch.nn.functional.mse_loss(head(enc(p))[:, 0], target(p))
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = torch.rand(4096, 3)
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(head(enc(p))[:, 0], target(p))
    assert float(mse) < 0.05 * float(target(p).var())  # explains > 95% of the variance


def test_sh_encoding_matches_core_basis():
    d = torch.nn.functional.normalize(torch.randn(20, 3), dim=-1)
    enc = SHEncoding(3)
    assert enc.output_dim == 16
    assert torch.allclose(enc(d), sh_basis(3, d))
    assert torch.allclose(enc(d)[:, 0], torch.full((20,), 0.28209479177387814))


def test_frequency_encoding():
    enc = FrequencyEncoding(3, 4)
    x = torch.rand(7, 3)
    y = enc(x)
    assert y.shape == (7, enc.output_dim) == (7, 27)
    assert torch.allclose(y[:, :3], x)
    assert torch.allclose(y[:, 3:6], torch.sin(x)) and torch.allclose(y[:, 3 + 12:6 + 12], torch.cos(x))
    assert torch.allclose(y[:, 3 + 9:3 + 12], torch.sin(8 * x), atol=1e-6)


def test_hash_grid_points_on_the_far_faces():
    """u = 1 (the cube's far faces and corner) stays inside each level's rows: no index past the
    table even when every level is dense, and the feature is continuous there."""
    enc = HashGridEncoding(num_levels=2, features_per_level=2, log2_hashmap_size=10, base_resolution=4,
                           max_resolution=8)
    assert not enc.hashed_levels  # all dense: the last level ends the table
    with torch.no_grad():
        enc.table.normal_()
    corner = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.3, 0.0], [0.0, 1.0, 1.0]])
    idx, w = enc.corners(corner)
    starts = torch.tensor([0, enc.level_sizes[0]])
    ends = starts + torch.tensor(enc.level_sizes)
    assert ((idx >= starts[None, :, None]) & (idx < ends[None, :, None])).all()
    inside = corner - 1e-6 * (corner > 0.5)
    assert torch.allclose(enc(corner), enc(inside), atol=1e-4)
