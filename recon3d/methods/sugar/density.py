"""The density field of a set of 3D Gaussians, evaluated through nearest-neighbour tables.

With N Gaussians (centres mu_g, rotations R_g, scales s_g, opacities a_g), the density at p is

    d(p) = sum_g a_g exp(-1/2 (p - mu_g)^T Sigma_g^-1 (p - mu_g)),   Sigma_g = R_g diag(s_g^2) R_g^T

summed here over the k Gaussians nearest to the point (or to the Gaussian the point was sampled
from), which is where nearly all of the sum lives. Values above 1 are clamped to 1 with a
straight-through gradient (``d / stopgrad(d)``): a surface made of opaque, flat, well-spread
Gaussians has density 1 on the surface.

For such a surface the density near a Gaussian g* behaves like exp(-<p - mu*, n*>^2 / (2 s*^2)),
with n* the axis of the smallest scale s*, so ``s* sqrt(-2 log d(p))`` is the distance of p to the
surface (:func:`distance_from_density`). SuGaR's regularization compares that distance with the
one measured from rendered depth maps.

Shapes: P points, k neighbours. Everything is torch and differentiable.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


def rotations(quats: Tensor) -> Tensor:
    """(N, 4) quaternions (w, x, y, z), any norm -> (N, 3, 3) rotation matrices (differentiable)."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def normals_of(quats: Tensor, scales: Tensor) -> Tensor:
    """(N, 3) unit axis of each Gaussian's smallest scale (its normal, sign arbitrary)."""
    R = rotations(quats)
    i = scales.argmin(dim=-1)
    return torch.gather(R, 2, i[:, None, None].expand(-1, 3, 1))[..., 0]


def std_along(quats: Tensor, scales: Tensor, dirs: Tensor) -> Tensor:
    """(N,) standard deviation of each Gaussian along unit directions ``dirs`` (N, 3): |S R^T v|."""
    R = rotations(quats)
    local = (R.transpose(-1, -2) @ dirs[..., None])[..., 0]
    return (local * scales).norm(dim=-1)


# ---------------------------------------------------------------------------------- neighbours
def knn(points: Tensor | np.ndarray, queries: Tensor | np.ndarray, k: int) -> Tensor:
    """(Q, k) int64 indices of the k nearest ``points`` (N, 3) to each of ``queries`` (Q, 3),
    nearest first (scipy cKDTree on the CPU; returned on ``queries``' device when it is a tensor)."""
    device = queries.device if isinstance(queries, Tensor) else torch.device("cpu")
    P = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    Q = queries.detach().cpu().numpy() if isinstance(queries, Tensor) else np.asarray(queries)
    k_eff = max(1, min(int(k), len(P)))
    _, idx = cKDTree(P).query(Q, k=k_eff, workers=-1)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(Q), k_eff)
    if k_eff < k:  # fewer Gaussians than k: repeat the nearest (its contribution counted once below)
        idx = np.concatenate([idx, np.repeat(idx[:, :1], k - k_eff, axis=1)], axis=1)
    return torch.from_numpy(idx).to(device)


def knn_table(means: Tensor, k: int) -> Tensor:
    """(N, k) indices of each Gaussian's k nearest Gaussians (itself first)."""
    return knn(means, means, k)


# ---------------------------------------------------------------------------------- field
def contributions(points: Tensor, nbr: Tensor, means: Tensor, quats: Tensor, scales: Tensor,
                  opacities: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-neighbour terms of the density.

    Args:
        points: (P, 3); nbr: (P, k) Gaussian indices; means (N, 3), quats (N, 4), scales (N, 3),
        opacities (N,).
    Returns:
        ``(c, shift, inv_cov_shift)``: (P, k) contributions ``a_g exp(-m/2)``, (P, k, 3) ``p - mu_g``,
        (P, k, 3) ``Sigma_g^-1 (p - mu_g)``. Duplicate indices in a row count once.
    """
    R = rotations(quats)[nbr]  # (P, k, 3, 3)
    shift = points[:, None, :] - means[nbr]
    local = (R.transpose(-1, -2) @ shift[..., None])[..., 0] / scales[nbr]  # (P, k, 3)
    m = (local * local).sum(-1)
    c = opacities[nbr] * torch.exp(-0.5 * m)
    if nbr.shape[1] > 1:  # zero repeated neighbours (only produced when N < k)
        dup = torch.zeros_like(nbr, dtype=torch.bool)
        dup[:, 1:] = (nbr[:, 1:, None] == nbr[:, None, :-1]).tril().any(-1)
        c = c.masked_fill(dup, 0.0)
    inv_cov_shift = (R @ (local / scales[nbr])[..., None])[..., 0]
    return c, shift, inv_cov_shift


def clamp_density(d: Tensor) -> Tensor:
    """Densities above 1 become exactly 1 with the gradient of ``d / stopgrad(d)``."""
    return torch.where(d >= 1.0, d / d.detach().clamp_min(1e-12), d)


def density(points: Tensor, nbr: Tensor, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
            clamp: bool = True) -> Tensor:
    """(P,) density at ``points`` summed over the neighbours ``nbr`` (P, k); see the module docstring."""
    c, _, _ = contributions(points, nbr, means, quats, scales, opacities)
    d = c.sum(-1)
    return clamp_density(d) if clamp else d


def density_gradient(points: Tensor, nbr: Tensor, means: Tensor, quats: Tensor, scales: Tensor,
                     opacities: Tensor) -> tuple[Tensor, Tensor]:
    """(P,) unclamped density and (P, 3) its spatial gradient ``-sum_g c_g Sigma_g^-1 (p - mu_g)``."""
    c, _, ics = contributions(points, nbr, means, quats, scales, opacities)
    return c.sum(-1), -(c[..., None] * ics).sum(-2)


def distance_from_density(d: Tensor, beta: Tensor, min_density: float = 1e-6) -> Tensor:
    """Distance to the surface implied by a density under the flat-Gaussian model:
    ``beta * sqrt(-2 log d)`` with ``beta`` the local smallest scale (>= 0; 0 where d >= 1)."""
    d = d.clamp(min=min_density, max=1.0)
    return beta * torch.sqrt((-2.0 * torch.log(d)).clamp_min(1e-12))


__all__ = ["rotations", "normals_of", "std_along", "knn", "knn_table", "contributions", "clamp_density", "density",
           "density_gradient", "distance_from_density"]
