"""SuGaR's regularization terms (Guedon & Lepetit, CVPR 2024), written for :class:`GaussianModel`.

Terms, each a scalar torch loss:

* :func:`opacity_entropy_loss` -- binary entropy of the opacities, pushing each Gaussian to be
  either opaque or transparent (SuGaR's first regularization phase).
* :func:`flatness_loss` -- the smallest scale relative to the middle one, pushing Gaussians to be
  flat discs (the assumption behind the surface model below).
* :func:`sdf_alignment_losses` -- the density/SDF alignment term and the normal term. Points p are
  sampled inside the Gaussians that lie near the surface seen by a training camera. For each,
  the distance to the surface implied by the Gaussian density (``s* sqrt(-2 log d(p))``, see
  :mod:`.density`) is compared with the distance measured on the rendered depth map
  (``|D(pi(p)) - z(p)|``), and the density's gradient direction is compared with the normal of the
  Gaussian that dominates the density at p::

      L_sdf    = mean_p |s* sqrt(-2 log d(p)) - |D(pi(p)) - z(p)|| / distance_scale
      L_normal = mean_p || n_g - sum_j w_j (+/-) n_j ||^2

with n_g the normal of the Gaussian p was drawn from, n_j its neighbours' normals turned to agree
with n_g, and w_j (fixed, summing to 1) each neighbour's share of the density gradient at p,
``c_j |<p - mu_j, n_j>| / s_j^2`` -- the gradient direction of the flat-Gaussian density.

Gradients flow into the Gaussians both through the density and through the rendered depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .density import contributions, clamp_density, distance_from_density, normals_of, rotations, std_along


def opacity_entropy_loss(opacities: Tensor, mask: Tensor | None = None, eps: float = 1e-10) -> Tensor:
    """Mean binary entropy ``-a log a - (1 - a) log(1 - a)`` (nats) of the (masked) opacities (N,)."""
    a = opacities if mask is None else opacities[mask]
    if a.numel() == 0:
        return opacities.sum() * 0.0
    return (-(a * torch.log(a + eps)) - (1 - a) * torch.log(1 - a + eps)).mean()


def flatness_loss(scales: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of ``s_min / s_mid`` over Gaussians (N, 3): 0 for flat discs, 1 for spheres.

    The middle scale is detached, so only the smallest axis is pushed down (the disc keeps its size).
    """
    s = scales if mask is None else scales[mask]
    if s.numel() == 0:
        return scales.sum() * 0.0
    srt, _ = torch.sort(s, dim=-1)
    return (srt[:, 0] / srt[:, 1].detach().clamp_min(1e-12)).mean()


def sample_in_gaussians(means: Tensor, quats: Tensor, scales: Tensor, pool: Tensor, n: int,
                        scale_factor: float = 1.5, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` points drawn from the Gaussians listed in ``pool`` (1-D int64), each Gaussian picked
    uniformly, the point from N(mu, (scale_factor * S)^2) in its frame (differentiable in the
    Gaussian's parameters). Returns (n, 3) points and their (n,) Gaussian indices."""
    dev = means.device
    pick = torch.randint(0, len(pool), (n,), generator=generator).to(dev)
    gidx = pool[pick]
    eps = torch.randn(n, 3, generator=generator).to(dev)
    R = rotations(quats[gidx])
    pts = means[gidx] + (R @ (scale_factor * scales[gidx] * eps)[..., None])[..., 0]
    return pts, gidx


def sample_map(image: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup of an (H, W) or (H, W, C) map at pixel positions uv (P, 2) (corner origin,
    pixel centres at +0.5); differentiable in the map. Returns (P,) or (P, C)."""
    img = image if image.ndim == 3 else image[..., None]
    H, W = img.shape[:2]
    grid = torch.stack([uv[:, 0] / W * 2 - 1, uv[:, 1] / H * 2 - 1], dim=-1)[None, None]
    out = F.grid_sample(img.permute(2, 0, 1)[None], grid.to(img.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)[0, :, 0].T
    return out if image.ndim == 3 else out[:, 0]


def surface_gaussians(means: Tensor, quats: Tensor, scales: Tensor, camera, depth: Tensor, alpha: Tensor,
                      closeness: float = 2.0, min_alpha: float = 0.5) -> Tensor:
    """Indices of the Gaussians that lie on the surface seen by ``camera`` (a 1-camera
    :class:`Cameras`): centre in front of it, inside the image, on a pixel with alpha >= ``min_alpha``,
    and within ``closeness`` standard deviations (along the viewing ray) of the depth map."""
    with torch.no_grad():
        uv, z = camera.project(means)
        uv, z = uv[0], z[0]
        H, W = depth.shape[:2]
        inside = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        px = uv.long().clamp_min(0)
        px[:, 0].clamp_(max=W - 1)
        px[:, 1].clamp_(max=H - 1)
        d_map = depth[px[:, 1], px[:, 0]]
        a_map = alpha[px[:, 1], px[:, 0]]
        to_cam = F.normalize(camera.centers[0] - means, dim=-1)
        sd = std_along(quats, scales, to_cam)
        ok = inside & (a_map >= min_alpha) & ((d_map - z).abs() < closeness * sd)
        return torch.nonzero(ok).reshape(-1)


def sdf_alignment_losses(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, neighbors: Tensor, camera,
    depth: Tensor, alpha: Tensor, num_samples: int, distance_scale: float, scale_factor: float = 1.5,
    closeness: float = 2.0, min_alpha: float = 0.5, generator: torch.Generator | None = None,
) -> dict:
    """The SDF-alignment and normal terms for one training view.

    Args:
        means, quats, scales, opacities: the Gaussians' activated parameters (N, ...), with grads.
        neighbors: (N, k) each Gaussian's nearest Gaussians (:func:`.density.knn_table`).
        camera: one-camera :class:`recon3d.core.Cameras`.
        depth: (H, W) rendered expected z-depth of this view (with grad); alpha: (H, W) its opacity.
        num_samples: points sampled in the surface Gaussians.
        distance_scale: world length dividing the SDF error (SuGaR: a tenth of the scene extent).
    Returns:
        dict with ``sdf`` and ``normal`` (scalar losses, zero when nothing is sampled) and
        ``num_points`` (int, samples that projected onto the object).
    """
    zero = means.sum() * 0.0
    pool = surface_gaussians(means, quats, scales, camera, depth.detach(), alpha.detach(), closeness, min_alpha)
    if len(pool) == 0:
        return {"sdf": zero, "normal": zero, "num_points": 0, "num_gaussians": 0}
    pts, gidx = sample_in_gaussians(means, quats, scales, pool, num_samples, scale_factor, generator)
    uv, z = camera.project(pts)
    uv, z = uv[0], z[0]
    H, W = depth.shape[:2]
    ok = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    ok &= sample_map(alpha.detach(), uv.detach()) >= min_alpha
    if not bool(ok.any()):
        return {"sdf": zero, "normal": zero, "num_points": 0, "num_gaussians": int(len(pool))}
    pts, gidx, uv, z = pts[ok], gidx[ok], uv[ok], z[ok]
    measured = (sample_map(depth, uv) - z).abs()

    nbr = neighbors[gidx]
    c, _, _ = contributions(pts, nbr, means, quats, scales, opacities)
    dens = clamp_density(c.sum(-1))
    best = c.detach().argmax(dim=-1)
    g_star = torch.gather(nbr, 1, best[:, None])[:, 0]
    beta = scales[g_star].min(dim=-1).values
    implied = distance_from_density(dens, beta)
    sdf = ((implied - measured).abs() / distance_scale).mean()

    # normal term: the density gradient of flat Gaussians is sum_j c_j <p - mu_j, n_j> / s_j^2 n_j; its
    # direction, with every neighbour normal turned to agree with the sampled Gaussian's and the
    # weights held fixed, should be that Gaussian's normal n_g.
    normals = normals_of(quats[nbr.reshape(-1)], scales[nbr.reshape(-1)]).reshape(*nbr.shape, 3)
    n_g = normals_of(quats[gidx], scales[gidx])
    with torch.no_grad():
        s_min = scales[nbr].min(dim=-1).values.clamp_min(1e-9)
        offset = ((pts[:, None, :] - means[nbr]) * normals).sum(-1).abs()
        w = c * offset / s_min ** 2
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        sign = torch.sign((normals * n_g[:, None, :]).sum(-1, keepdim=True))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    mean_normal = (w[..., None] * sign * normals).sum(-2)
    normal = ((n_g - mean_normal) ** 2).sum(-1).mean()
    return {"sdf": sdf, "normal": normal, "num_points": int(ok.sum()), "num_gaussians": int(len(pool))}


__all__ = ["opacity_entropy_loss", "flatness_loss", "sample_in_gaussians", "sample_map", "surface_gaussians",
           "sdf_alignment_losses"]
