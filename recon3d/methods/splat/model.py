"""The Gaussian scene: learnable parameters, their activations, initialization and optimizers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor, nn

from recon3d.core.gaussians import Gaussians
from recon3d.core.gaussians.sh import rgb_to_sh0
from recon3d.runtime.optim import adam

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")


class GaussianModel(nn.Module):
    """N anisotropic 3D Gaussians with view-dependent color (spherical harmonics).

    Parameters (raw, unconstrained; use the properties for activated values):
        means: (N, 3) world units.
        quats: (N, 4) rotation quaternions (w, x, y, z), not necessarily unit.
        log_scales: (N, 3) log of the per-axis standard deviations (world units).
        opacity_logits: (N,) logit of the opacity.
        sh0: (N, 1, 3) degree-0 SH coefficients (the "DC" color).
        shN: (N, K-1, 3) higher-order SH coefficients, K = (max_sh_degree + 1)^2.
    """

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                 sh0: Tensor, shN: Tensor, max_sh_degree: int = 3) -> None:
        super().__init__()
        self.max_sh_degree = int(max_sh_degree)
        self.means = nn.Parameter(means.float().contiguous())
        self.quats = nn.Parameter(quats.float().contiguous())
        self.log_scales = nn.Parameter(log_scales.float().contiguous())
        self.opacity_logits = nn.Parameter(opacity_logits.float().contiguous())
        self.sh0 = nn.Parameter(sh0.float().contiguous())
        self.shN = nn.Parameter(shN.float().contiguous())

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor | None = None, max_sh_degree: int = 3,
                    init_opacity: float = 0.1, init_scale: float = 1.0) -> "GaussianModel":
        """Isotropic Gaussians at ``points`` (P, 3); scale = mean distance to the 3 nearest neighbours.

        colors: (P, 3) in [0, 1], or None for mid-grey.
        """
        points = torch.as_tensor(points, dtype=torch.float32)
        n = points.shape[0]
        if n < 4:
            raise ValueError(f"need at least 4 points to initialize Gaussians, got {n}")
        pts = points.detach().cpu().numpy()
        dist, _ = cKDTree(pts).query(pts, k=4)
        knn = np.sqrt((dist[:, 1:] ** 2).mean(axis=1)).clip(1e-7)
        log_scales = torch.log(torch.from_numpy(knn).float() * init_scale)[:, None].repeat(1, 3)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        if colors is None:
            colors = torch.full((n, 3), 0.5)
        sh0 = rgb_to_sh0(torch.as_tensor(colors, dtype=torch.float32))[:, None, :]
        k = (max_sh_degree + 1) ** 2
        shN = torch.zeros(n, k - 1, 3)
        opacity_logits = torch.logit(torch.full((n,), float(init_opacity)))
        return cls(points.clone(), quats, log_scales, opacity_logits, sh0, shN, max_sh_degree)

    @classmethod
    def random_in_box(cls, n: int, aabb_min: Tensor, aabb_max: Tensor, max_sh_degree: int = 3,
                      generator: torch.Generator | None = None, **kw) -> "GaussianModel":
        """``n`` Gaussians uniformly in the box [aabb_min, aabb_max] (world units) with random colors."""
        lo, hi = torch.as_tensor(aabb_min, dtype=torch.float32), torch.as_tensor(aabb_max, dtype=torch.float32)
        pts = lo + (hi - lo) * torch.rand(n, 3, generator=generator)
        cols = torch.rand(n, 3, generator=generator)
        return cls.from_points(pts, cols, max_sh_degree, **kw)

    @classmethod
    def empty_like_state(cls, state: dict, max_sh_degree: int) -> "GaussianModel":
        """A model whose parameter shapes match ``state`` (a state_dict), for loading checkpoints."""
        return cls(*(torch.zeros_like(state[k]) for k in PARAM_NAMES), max_sh_degree=max_sh_degree)

    # ------------------------------------------------------------------ activated values
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:
        """(N, 3) standard deviations, world units."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """(N,) in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """(N, K, 3) all SH coefficients."""
        return torch.cat([self.sh0, self.shN], dim=1)

    def gaussians(self) -> Gaussians:
        """The activated Gaussians for :func:`recon3d.core.gaussians.rasterize`: means (N, 3), quats
        (N, 4) wxyz, scales (N, 3) linear std-devs, opacities (N,) in (0, 1), colors = :attr:`sh`
        (N, K, 3). Differentiable: gradients flow back to the raw parameters."""
        return Gaussians(self.means, self.quats, self.scales, self.opacities, self.sh)

    def params(self) -> dict[str, nn.Parameter]:
        return {k: getattr(self, k) for k in PARAM_NAMES}


@dataclass
class LearningRates:
    """Per-parameter Adam learning rates (3DGS defaults); ``means`` is multiplied by the scene extent."""

    means: float = 1.6e-4
    means_final: float = 1.6e-6
    quats: float = 1e-3
    log_scales: float = 5e-3
    opacity_logits: float = 5e-2
    sh0: float = 2.5e-3
    shN: float = 2.5e-3 / 20


def make_optimizers(model: GaussianModel, lrs: LearningRates, extent: float) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter group so densification can edit each state independently."""
    out = {}
    for name, p in model.params().items():
        lr = getattr(lrs, name) * (extent if name == "means" else 1.0)
        out[name] = adam([p], lr=lr, eps=1e-15)
    return out


def means_lr_at(step: int, max_steps: int, lrs: LearningRates, extent: float) -> float:
    """Exponential (log-linear) decay of the position learning rate from ``means`` to ``means_final``."""
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return extent * math.exp((1 - t) * math.log(lrs.means) + t * math.log(lrs.means_final))
