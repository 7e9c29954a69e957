"""The images a per-scene method renders for a batch of cameras."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class RenderResult:
    """Images for C cameras: colors (C, H, W, 3), alphas (C, H, W, 1), depths (C, H, W, 1) camera z-depth."""

    colors: Tensor
    alphas: Tensor
    depths: Tensor
