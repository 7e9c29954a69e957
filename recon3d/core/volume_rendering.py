"""Volume rendering quadrature: densities -> opacities -> weights -> composited images.

For a ray cut into bins of lengths ``delta_i`` (world units) with constant density ``sigma_i``
(1 / world units) in each, the emission-absorption model gives

  ``alpha_i = 1 - exp(-sigma_i * delta_i)``                 opacity of bin i,
  ``T_i     = exp(-sum_{j<i} sigma_j * delta_j)``           light reaching bin i (exclusive),
  ``w_i     = T_i * alpha_i``                               weight of bin i, ``sum_i w_i <= 1``.

This quadrature is exact for piecewise-constant density: a homogeneous slab of density ``sigma`` and
thickness ``d`` transmits ``exp(-sigma d)`` whatever the number of bins. Colors composited this way
are *premultiplied* (over black); :func:`blend_background` adds a background behind them.

Shapes: ``(...)`` is any ray batch shape, ``S`` the samples per ray, ``C`` channels. Per-sample
scalars are ``(..., S)``; per-ray scalars ``(..., 1)``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from .background import NAMED_COLORS
from .sampling import RaySamples

Background = Union[None, str, float, Tensor]
BACKGROUNDS = (*NAMED_COLORS, "random")


def _per_sample(x: Tensor, ref: Tensor) -> Tensor:
    """Drop a trailing singleton channel so ``x`` matches the (..., S) ``ref``."""
    if x.dim() == ref.dim() + 1 and x.shape[-1] == 1:
        return x[..., 0]
    return x


def _optical_depths(densities: Tensor, deltas: Tensor) -> Tensor:
    """(..., S) ``sigma * delta`` (dimensionless), clamped at 0 from below."""
    densities = _per_sample(densities, deltas)
    deltas = _per_sample(deltas, densities)
    return torch.clamp(densities * deltas, min=0.0)


def alphas_from_densities(densities: Tensor, deltas: Tensor) -> Tensor:
    """Per-bin opacity ``1 - exp(-sigma * delta)``.

    Args:
        densities: (..., S) or (..., S, 1) volume densities, 1 / world units, >= 0.
        deltas: (..., S) finite bin lengths, world units.

    Returns:
        (..., S) alphas in [0, 1] (computed with expm1, accurate for tiny ``sigma * delta``).
    """
    return -torch.expm1(-_optical_depths(densities, deltas))


def transmittance_from_alphas(alphas: Tensor) -> Tensor:
    """Exclusive transmittance ``T_i = prod_{j<i} (1 - alpha_j)``.

    Args:
        alphas: (..., S) or (..., S, 1) opacities in [0, 1].

    Returns:
        (..., S) transmittance, ``T_0 = 1``. Gradients stay finite when some alpha is exactly 1.
    """
    if alphas.dim() >= 2 and alphas.shape[-1] == 1:
        alphas = alphas[..., 0]
    keep = torch.clamp(1.0 - alphas, 0.0, 1.0)
    return torch.cumprod(torch.cat([torch.ones_like(keep[..., :1]), keep[..., :-1]], dim=-1), dim=-1)


def transmittance_from_densities(densities: Tensor, deltas: Tensor) -> Tensor:
    """Exclusive transmittance ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` (stable for huge density).

    Args:
        densities: (..., S) or (..., S, 1) densities, 1 / world units.
        deltas: (..., S) bin lengths, world units.

    Returns:
        (..., S) transmittance in [0, 1], ``T_0 = 1``.
    """
    tau = _optical_depths(densities, deltas)
    before = torch.cumsum(tau, dim=-1) - tau  # exclusive sum without a shifted copy
    return torch.exp(-torch.clamp(before, min=0.0))


def weights_from_alphas(alphas: Tensor) -> Tensor:
    """(..., S) opacities -> (..., S) compositing weights ``T_i * alpha_i``."""
    if alphas.dim() >= 2 and alphas.shape[-1] == 1:
        alphas = alphas[..., 0]
    return transmittance_from_alphas(alphas) * alphas


def weights_from_densities(densities: Tensor, deltas: Tensor, return_transmittance: bool = False):
    """Compositing weights from densities (transmittance in log space, no cumulative product).

    Args:
        densities: (..., S) or (..., S, 1) densities, 1 / world units.
        deltas: (..., S) bin lengths, world units.
        return_transmittance: also return the (..., S) exclusive transmittance.

    Returns:
        (..., S) weights in [0, 1] summing to at most 1, or ``(weights, transmittance)``.
    """
    tau = _optical_depths(densities, deltas)
    before = torch.clamp(torch.cumsum(tau, dim=-1) - tau, min=0.0)
    trans = torch.exp(-before)
    weights = trans * -torch.expm1(-tau)
    return (weights, trans) if return_transmittance else weights


def accumulate_opacity(weights: Tensor) -> Tensor:
    """(..., S) weights -> (..., 1) accumulated opacity ``sum_i w_i`` (1 - final transmittance)."""
    return weights.sum(dim=-1, keepdim=True)


def composite(weights: Tensor, values: Tensor) -> Tensor:
    """Weighted sum of per-sample values along each ray.

    Args:
        weights: (..., S) compositing weights.
        values: (..., S, C) per-sample values (e.g. linear RGB in [0, 1]).

    Returns:
        (..., C) premultiplied result (as if composited over zeros).
    """
    return (weights[..., None] * values).sum(dim=-2)


def _bins(samples: Union[RaySamples, Tensor]) -> tuple[Tensor, Tensor]:
    if isinstance(samples, RaySamples):
        return samples.t_starts, samples.t_ends
    return samples, samples


def composite_depth(
    weights: Tensor,
    samples: Union[RaySamples, Tensor],
    mode: str = "expected",
    normalize: bool = True,
    eps: float = 1e-10,
) -> Tensor:
    """Depth along each ray (distance ``t``, world units; multiply by ``z_scale`` for camera z).

    Args:
        weights: (..., S) compositing weights.
        samples: RaySamples with (..., S) bins, or a (..., S) tensor of sample distances.
        mode: ``expected`` = ``sum_i w_i t_mid_i`` (divided by the opacity when ``normalize``,
            then clamped to the sampled range), or ``median`` = where the cumulative weight reaches
            half of the opacity (``normalize``) or 0.5 (otherwise; the far end if never reached),
            interpolated linearly inside the bin.
        normalize: see ``mode``; without it the expected depth is the plain weighted sum.
        eps: floor for the opacity divisor.

    Returns:
        (..., 1) depth, world units along the ray.
    """
    starts, ends = _bins(samples)
    if mode == "expected":
        mids = 0.5 * (starts + ends)
        depth = (weights * mids).sum(dim=-1, keepdim=True)
        if not normalize:
            return depth
        depth = depth / torch.clamp(accumulate_opacity(weights), min=eps)
        return torch.minimum(torch.maximum(depth, starts[..., :1]), ends[..., -1:])
    if mode != "median":
        raise ValueError(f"unknown depth mode {mode!r}; expected 'expected' or 'median'")
    num = weights.shape[-1]
    cum = torch.cumsum(weights, dim=-1)
    target = 0.5 * cum[..., -1:] if normalize else torch.full_like(cum[..., -1:], 0.5)
    idx = torch.searchsorted(cum.detach().contiguous(), target.detach().contiguous()).clamp(max=num - 1)
    w_bin = weights.gather(-1, idx)
    before = cum.gather(-1, idx) - w_bin
    safe = torch.where(w_bin > 0, w_bin, torch.ones_like(w_bin))
    frac = torch.where(w_bin > 0, (target - before) / safe, torch.zeros_like(w_bin)).clamp(0.0, 1.0)
    t0, t1 = starts.gather(-1, idx), ends.gather(-1, idx)
    return t0 + frac * (t1 - t0)


def composite_normals(weights: Tensor, normals: Tensor, normalize: bool = True, eps: float = 1e-8) -> Tensor:
    """Composited surface normals.

    Args:
        weights: (..., S) compositing weights.
        normals: (..., S, 3) per-sample normals (any length; e.g. density gradients).
        normalize: rescale the result to unit length (rays with a ~zero result stay ~zero; the
            length is floored at ``eps`` so neither values nor gradients blow up).

    Returns:
        (..., 3) normals.
    """
    n = composite(weights, normals)
    if not normalize:
        return n
    length = torch.sqrt(torch.clamp((n * n).sum(dim=-1, keepdim=True), min=eps * eps))
    return n / length


def _background_color(background: Background, like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    if background is None:
        return torch.zeros_like(like)
    if isinstance(background, str):
        if background == "random":
            return torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        if background not in NAMED_COLORS:
            raise ValueError(f"unknown background {background!r}; expected a color or one of {BACKGROUNDS}")
        return torch.tensor(NAMED_COLORS[background], dtype=like.dtype, device=like.device).expand_as(like)
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    return bg.expand_as(like) if bg.dim() <= like.dim() else bg


def blend_background(
    rgb: Tensor, opacity: Tensor, background: Background, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Put a background behind premultiplied colors: ``rgb + (1 - opacity) * background``.

    Args:
        rgb: (..., 3) premultiplied composited colors, linear [0, 1].
        opacity: (..., 1) accumulated opacity in [0, 1].
        background: a (3,) color, per-ray (..., 3) colors, a scalar gray level, None (= black), or
            ``'white'`` / ``'black'`` / ``'random'`` (uniform per-ray colors drawn with ``generator``).
        generator: optional torch.Generator for ``'random'``.

    Returns:
        ``(blended, background)``: (..., 3) colors and the (..., 3) background actually used, so a
        loss can composite its target over the same background.
    """
    bg = _background_color(background, rgb, generator)
    return rgb + (1.0 - opacity) * bg, bg


def render_samples(
    densities: Tensor,
    colors: Tensor,
    samples: RaySamples,
    background: Background = None,
    generator: Optional[torch.Generator] = None,
) -> dict[str, Tensor]:
    """Render per-sample densities and colors into per-ray images.

    Args:
        densities: (..., S) or (..., S, 1) densities, 1 / world units.
        colors: (..., S, C) per-sample colors (C = 3 for RGB).
        samples: RaySamples with (..., S) bins.
        background: as in :func:`blend_background`; None leaves ``rgb`` premultiplied (over black).
        generator: for a ``'random'`` background.

    Returns:
        dict with ``rgb`` (..., C), ``opacity`` (..., 1), ``depth`` (..., 1) expected ray distance
        normalized by opacity (world units), ``weights`` (..., S), and ``background`` (..., C) when
        one was given.
    """
    weights = weights_from_densities(densities, samples.deltas)
    rgb = composite(weights, colors)
    opacity = accumulate_opacity(weights)
    out = {"rgb": rgb, "opacity": opacity, "depth": composite_depth(weights, samples), "weights": weights}
    if background is not None:
        out["rgb"], out["background"] = blend_background(rgb, opacity, background, generator)
    return out
