"""The triplane NeRF of OpenLRM: plane sampling, the decoder MLP and the two-pass volume renderer.

Re-implemented here from the mathematics (the triplane representation of EG3D, Chan et al. 2022, and
NeRF's hierarchical sampling, Mildenhall et al. 2020) so that it computes what the released
checkpoints were trained with; no code of the EG3D-derived rendering files is used. Everything in
this module lives in the *model frame*: the triplanes span the cube [-1, 1]^3, +z is up, the source
camera sits at (0, -2, 0) looking along +y (see :mod:`.model` for the conversion to recon3d's world).

Field
-----
Plane k samples the point's coordinates (u, v) = (x, y), (x, z), (z, y) for k = 0, 1, 2; u runs along
the plane's width (last axis), v along its height; bilinear interpolation with the sample grid on
the texel centres (texel i covers [-1 + 2i/R, -1 + 2(i+1)/R]) and zero outside. The three C-vectors
are concatenated plane by plane (3C) and the decoder maps them through
Linear(3C, 64) - ReLU - [Linear(64, 64) - ReLU] x 2 - Linear(64, 4): output 0 is the raw density,
outputs 1..3 give the colour ``sigmoid(.) * 1.002 - 0.001``. The density is ``softplus(raw - 1)``.

Rendering a ray (origin o, unit direction d, S = samples per ray)
------------------------------------------------------------------
1. Limits: the slab intersection [t0, t1] of the ray with [-1, 1]^3. Rays that miss (t1 <= t0) get
   t0 = the smallest t0 of the rays that hit in the same call and t1 = the *largest t0* of those
   (so their samples lie outside the cube and contribute nothing).
2. Coarse depths: S/2 evenly spaced depths from t0 to t1 inclusive (jittered forward by up to one
   spacing when sampling stochastically).
3. Every sample outside the closed cube gets colour 0 and raw density -3.4028e38 / 8 (a large finite
   negative number, so midpoint averages stay finite and their softplus is 0).
4. Compositing between consecutive samples (a midpoint rule): with depths t_i, the interval i has
   length t_{i+1} - t_i, raw density and colour the means of its end points, density
   softplus(mean raw - 1), alpha_i = 1 - exp(-density * length), transmittance the running product
   of (1 - alpha + 1e-10), weight w_i = alpha_i * transmittance before it. Colour = sum w c + bg
   (1 - sum w); depth = sum w t_mid / sum w (NaN -> inf), clamped to the smallest and largest sample
   depth of the whole call; opacity = sum w.
5. Importance depths: the coarse weights (S/2 - 1 per ray) are smoothed (a max filter of width 2 over
   the weights padded by one on both sides, then a mean filter of width 2, then + 0.01); the bins are
   the midpoints of the coarse depths and the pdf the smoothed weights without their first and last
   entries (+ 1e-5, normalised). S/2 depths are drawn by inverting the piecewise-linear CDF at
   u = 0, 1/(S/2 - 1), ..., 1 (deterministic) or at uniform random u (stochastic).
6. Coarse and importance samples are merged, sorted by depth and composited again (step 4).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (u, v) coordinate indices of each plane: XY, XZ, ZY.
PLANE_AXES = ((0, 1), (0, 2), (2, 1))
BOX_HALF = 1.0
RAW_SIGMA_OUTSIDE_DIVISOR = 8.0
CDF_EPS = 1e-5
WEIGHT_PAD = 0.01
TRANSMITTANCE_EPS = 1e-10


def sample_planes(planes: Tensor, points: Tensor, box_half: float = BOX_HALF) -> Tensor:
    """Bilinear plane features at model-frame points.

    Args:
        planes: (B, 3, C, H, W); points: (B, N, 3).
    Returns:
        (B, 3, N, C) features, plane-major.
    """
    B, P, C, H, W = planes.shape
    p = points / box_half
    grid = torch.stack([torch.stack([p[..., a], p[..., b]], dim=-1) for a, b in PLANE_AXES], dim=1)  # (B, 3, N, 2)
    out = F.grid_sample(planes.reshape(B * P, C, H, W), grid.reshape(B * P, 1, -1, 2).to(planes.dtype),
                        mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*3, C, 1, N)
    return out[:, :, 0].transpose(1, 2).reshape(B, P, -1, C)


class TriplaneDecoder(nn.Module):
    """``synthesizer.decoder``: concatenated plane features (3C) -> raw density and colour."""

    def __init__(self, channels: int, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(3 * channels, hidden), nn.ReLU()]
        for _ in range(layers - 2):
            mods += [nn.Linear(hidden, hidden), nn.ReLU()]
        mods.append(nn.Linear(hidden, 4))
        self.net = nn.Sequential(*mods)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, 3, N, C) -> raw density (B, N, 1), colour (B, N, 3)."""
        B, P, N, C = features.shape
        x = self.net(features.permute(0, 2, 1, 3).reshape(B, N, P * C))
        return x[..., :1], torch.sigmoid(x[..., 1:]) * 1.002 - 0.001


def activate_density(raw: Tensor) -> Tensor:
    """Density from the decoder's raw output: softplus(raw - 1)."""
    return F.softplus(raw - 1.0)


class SynthesizerModule(nn.Module):
    """``synthesizer``: holds the decoder (the renderer has no parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.decoder = TriplaneDecoder(channels)

    def field(self, planes: Tensor, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(features (B, 3, N, C), raw density (B, N, 1), colour (B, N, 3)) at model-frame points."""
        feats = sample_planes(planes, points)
        raw, rgb = self.decoder(feats)
        return feats, raw, rgb


# ------------------------------------------------------------------------------------------- rays
def official_rays(c2w_gl: Tensor, K_norm: Tensor, resolutions: Tensor, anchors: Tensor,
                  region_size: int) -> tuple[Tensor, Tensor]:
    """Rays of OpenLRM's camera format (its render inputs: a square region of a square image).

    Args:
        c2w_gl: (N, 4, 4) camera-to-world, OpenGL camera axes (x right, y up, looking along -z).
        K_norm: (N, 3, 3) intrinsics in units of the image side ([[fx, sk, cx], [0, fy, cy], [0, 0, 1]]).
        resolutions: (N, 1) image side in pixels; anchors: (N, 2) (row, col) of the region's corner.
        region_size: side of the rendered square region, pixels.
    Returns:
        origins, unit directions: (N, region_size^2, 3), row-major pixels of the region; pixel
        (i, j) is at ((j + col + 0.5) / res, (i + row + 0.5) / res) in normalised image coordinates.
    """
    res = resolutions.reshape(-1, 1)
    return pixel_rays(c2w_gl, K_norm, res, res, anchors, region_size, region_size)


def pixel_rays(c2w_gl: Tensor, K_norm: Tensor, res_h: Tensor, res_w: Tensor, anchors: Tensor, rows: int,
               cols: int) -> tuple[Tensor, Tensor]:
    """:func:`official_rays` for a ``rows`` x ``cols`` region of a ``res_h`` x ``res_w`` (N, 1) image.

    The arithmetic follows the official ray sampler step by step (normalised pixel centre, lift by
    the intrinsics, homogeneous camera point through the camera-to-world matrix, minus the camera
    centre, normalised): samples land exactly on the cube's faces, where inclusion flips with the last
    bit of a coordinate, so parity with the official renders needs the same rounding.
    """
    N = c2w_gl.shape[0]
    dev, dt = c2w_gl.device, c2w_gl.dtype
    ii, jj = torch.meshgrid(torch.arange(rows, device=dev, dtype=dt), torch.arange(cols, device=dev, dtype=dt),
                            indexing="ij")
    res_h, res_w = res_h.reshape(N, 1).to(dt), res_w.reshape(N, 1).to(dt)
    x = (jj.reshape(1, -1) + anchors[:, 1:2].to(dt)) * (1.0 / res_w) + (0.5 / res_w)
    y = (ii.reshape(1, -1) + anchors[:, 0:1].to(dt)) * (1.0 / res_h) + (0.5 / res_h)
    fx, fy, cx, cy, sk = (K_norm[:, 0, 0, None], K_norm[:, 1, 1, None], K_norm[:, 0, 2, None],
                          K_norm[:, 1, 2, None], K_norm[:, 0, 1, None])
    z = torch.ones_like(x)
    x_lift = (x - cx + cy * sk / fy - sk * y / fy) / fx * z
    y_lift = (y - cy) / fy * z
    cam = torch.stack([x_lift, y_lift, z, torch.ones_like(z)], dim=-1)  # OpenCV camera point, homogeneous
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], device=dev, dtype=dt)).expand(N, 4, 4)
    world = torch.bmm(torch.bmm(c2w_gl, flip), cam.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
    centre = c2w_gl[:, :3, 3]
    d = F.normalize(world - centre[:, None, :], dim=2)
    return centre[:, None, :].expand_as(d).contiguous(), d


def ray_box_limits(origins: Tensor, directions: Tensor, half: float = BOX_HALF) -> tuple[Tensor, Tensor, Tensor]:
    """Slab intersection of rays (..., 3) with [-half, half]^3: entry t0, exit t1 (..., 1) and hit mask (..., 1)."""
    inv = 1.0 / directions
    ta = (-half - origins) * inv
    tb = (half - origins) * inv
    t0 = torch.fmin(ta, tb).nan_to_num(nan=-float("inf")).amax(-1, keepdim=True)
    t1 = torch.fmax(ta, tb).nan_to_num(nan=float("inf")).amin(-1, keepdim=True)
    return t0, t1, t1 > t0


def _fill_missed(t0: Tensor, t1: Tensor, hit: Tensor) -> tuple[Tensor, Tensor]:
    """Limits of rays that miss the cube: the smallest / largest entry of the rays that hit (see module doc)."""
    if not bool(hit.any()):
        return t0, t1
    lo, hi = t0[hit].min(), t0[hit].max()
    return torch.where(hit, t0, lo), torch.where(hit, t1, hi)


def coarse_depths(t0: Tensor, t1: Tensor, n: int, generator: Optional[torch.Generator] = None,
                  stochastic: bool = False) -> Tensor:
    """(B, R, n, 1) evenly spaced depths from t0 to t1 (B, R, 1) inclusive; jittered when stochastic."""
    steps = torch.arange(n, device=t0.device, dtype=t0.dtype) / (n - 1)
    d = t0[..., None, :] + steps[:, None] * (t1 - t0)[..., None, :]
    if stochastic:
        jitter = torch.rand(d.shape, generator=generator, device=d.device, dtype=d.dtype)
        d = d + jitter * ((t1 - t0) / (n - 1))[..., None, :]
    return d


def composite(colors: Tensor, raw: Tensor, depths: Tensor, bg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Midpoint-rule compositing of sorted samples (step 4 of the module docstring).

    Args:
        colors: (B, R, S, 3); raw: (B, R, S, 1) raw densities; depths: (B, R, S, 1); bg: (B, 1) background.
    Returns:
        rgb (B, R, 3), depth (B, R, 1), weights (B, R, S - 1, 1).
    """
    delta = depths[:, :, 1:] - depths[:, :, :-1]
    c_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    raw_mid = (raw[:, :, :-1] + raw[:, :, 1:]) / 2
    t_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-activate_density(raw_mid) * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + TRANSMITTANCE_EPS], dim=2), dim=2)
    w = alpha * trans[:, :, :-1]
    total = w.sum(2)
    rgb = (w * c_mid).sum(2) + bg[:, :, None] * (1 - total)
    depth = ((w * t_mid).sum(2) / total).nan_to_num(nan=float("inf"))
    depth = depth.clamp(depths.min(), depths.max())
    return rgb, depth, w


def _smoothed_pdf(weights: Tensor) -> Tensor:
    """(M, L) coarse weights -> (M, L - 2) unnormalised pdf over the interior bins (step 5)."""
    m = F.max_pool1d(weights[:, None], kernel_size=2, stride=1, padding=1)
    a = F.avg_pool1d(m, kernel_size=2, stride=1)[:, 0] + WEIGHT_PAD
    return a[:, 1:-1]


def invert_cdf(bins: Tensor, weights: Tensor, n: int, generator: Optional[torch.Generator] = None,
               stochastic: bool = False) -> Tensor:
    """n samples (M, n) from the piecewise-linear CDF over ``bins`` (M, K + 1) with pdf ``weights`` (M, K)."""
    M, K = weights.shape
    pdf = weights + CDF_EPS
    pdf = pdf / pdf.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], dim=-1)  # (M, K + 1)
    if stochastic:
        u = torch.rand((M, n), generator=generator, device=bins.device, dtype=bins.dtype)
    else:
        u = torch.linspace(0, 1, n, device=bins.device, dtype=bins.dtype).expand(M, n).contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    lo, hi = (idx - 1).clamp_min(0), idx.clamp_max(K)
    c_lo, c_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    b_lo, b_hi = bins.gather(1, lo), bins.gather(1, hi)
    span = c_hi - c_lo
    span = torch.where(span < CDF_EPS, torch.ones_like(span), span)
    return b_lo + (u - c_lo) / span * (b_hi - b_lo)


def importance_depths(depths: Tensor, weights: Tensor, n: int, generator: Optional[torch.Generator] = None,
                      stochastic: bool = False) -> Tensor:
    """(B, R, n, 1) importance depths from coarse depths (B, R, S, 1) and their weights (B, R, S - 1, 1)."""
    B, R, S, _ = depths.shape
    z = depths.reshape(B * R, S)
    pdf = _smoothed_pdf(weights.reshape(B * R, S - 1).float()).to(z.dtype)
    mids = 0.5 * (z[:, :-1] + z[:, 1:])
    return invert_cdf(mids, pdf, n, generator, stochastic).detach().reshape(B, R, n, 1)


def _shade(synth: SynthesizerModule, planes: Tensor, origins: Tensor, directions: Tensor,
           depths: Tensor) -> tuple[Tensor, Tensor]:
    """Colour (B, R, S, 3) and raw density (B, R, S, 1) at the depths; outside the closed cube 0 and -max/8."""
    B, R, S, _ = depths.shape
    pts = (origins[:, :, None] + depths * directions[:, :, None]).reshape(B, R * S, 3)
    _, raw, rgb = synth.field(planes, pts)
    inside = ((pts >= -BOX_HALF) & (pts <= BOX_HALF)).all(-1, keepdim=True)
    far = torch.finfo(raw.dtype).max / RAW_SIGMA_OUTSIDE_DIVISOR
    raw = torch.where(inside, raw, torch.full_like(raw, -far))
    rgb = torch.where(inside, rgb, torch.zeros_like(rgb))
    return rgb.reshape(B, R, S, 3), raw.reshape(B, R, S, 1)


def render_rays(synth: SynthesizerModule, planes: Tensor, origins: Tensor, directions: Tensor, samples_per_ray: int,
                bg: Tensor, stochastic: bool = False, generator: Optional[torch.Generator] = None,
                keep_samples: bool = False) -> dict[str, Tensor]:
    """Two-pass volume rendering of model-frame rays through triplanes (module docstring, steps 1-6).

    Args:
        planes: (B, 3, C, H, W), one set per batch row; origins, directions: (B, R, 3), unit directions.
        samples_per_ray: coarse + importance samples (half each); bg: (B, 1) background level per row.
        stochastic: jitter the coarse depths and draw random importance positions (the official
            inference); False is the official deterministic mode.
        keep_samples: also return ``depths_coarse`` and ``depths_fine`` (B, R, S/2, 1).
    Returns:
        ``rgb`` (B, R, 3), ``depth`` (B, R, 1) model units along the ray, ``weight`` (B, R, 1).
    """
    n = samples_per_ray // 2
    t0, t1, hit = ray_box_limits(origins, directions)
    t0, t1 = _fill_missed(t0, t1, hit)
    dc = coarse_depths(t0, t1, n, generator, stochastic)
    rgb_c, raw_c = _shade(synth, planes, origins, directions, dc)
    _, _, w = composite(rgb_c, raw_c, dc, bg)
    df = importance_depths(dc, w, n, generator, stochastic)
    rgb_f, raw_f = _shade(synth, planes, origins, directions, df)
    depths = torch.cat([dc, df], dim=2)
    depths, order = torch.sort(depths, dim=2)
    colors = torch.cat([rgb_c, rgb_f], dim=2).gather(2, order.expand(-1, -1, -1, 3))
    raws = torch.cat([raw_c, raw_f], dim=2).gather(2, order)
    rgb, depth, w = composite(colors, raws, depths, bg)
    out = {"rgb": rgb, "depth": depth, "weight": w.sum(2)}
    if keep_samples:
        out.update(depths_coarse=dc, depths_fine=df)
    return out
