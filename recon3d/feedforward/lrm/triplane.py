"""Triplane features and the triplane NeRF MLP.

Plane-axis convention
---------------------
A triplane is a tensor (B, 3, C, R, R) that covers the cube [-b, b]^3 (``b`` = ``bound``, world
units). A point p = (x, y, z) is normalized to q = p / b in [-1, 1]^3 and projected on three planes:

======  ========  =========================  ===========================
plane   name      column index (width) <-    row index (height) <-
======  ========  =========================  ===========================
0       XY        x                          y
1       XZ        x                          z
2       YZ        y                          z
======  ========  =========================  ===========================

Cells are pixel-like (``align_corners=False``): cell (row r, column c) of an R x R plane is centred
at normalized coordinates ``u = (2 c + 1) / R - 1`` (column axis) and ``v = (2 r + 1) / R - 1`` (row
axis); features are interpolated bilinearly between cell centres and clamped at the border. For
example, plane 1 (XZ) row 0 holds the features of the cube's bottom (z = -b + b / R) and the world
up axis (+Z) runs along increasing rows of planes XZ and YZ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: for each plane, the point coordinates (indices into x, y, z) along its (column, row) axes.
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
PLANE_NAMES: tuple[str, ...] = ("XY", "XZ", "YZ")


def plane_coordinates(points: Tensor, bound: float) -> Tensor:
    """(B, N, 3) world points -> (B, 3, N, 2) normalized (column, row) coordinates on each plane."""
    q = points / bound
    return torch.stack([q[..., list(ax)] for ax in PLANE_AXES], dim=1)


def sample_triplane(planes: Tensor, points: Tensor, bound: float) -> Tensor:
    """Bilinear features of the three planes at world points.

    Args:
        planes: (B, 3, C, R, R) triplane features (plane order and axes: module docstring).
        points: (B, N, 3) world points; outside [-bound, bound]^3 the border features are used.
        bound: half-size of the cube the planes span, world units.
    Returns:
        (B, 3, N, C) per-plane features.
    """
    B, P, C, H, W = planes.shape
    grid = plane_coordinates(points, bound).reshape(B * P, 1, -1, 2)  # grid_sample wants (x=column, y=row)
    feats = F.grid_sample(planes.reshape(B * P, C, H, W), grid.to(planes.dtype), mode="bilinear",
                          padding_mode="border", align_corners=False)  # (B*3, C, 1, N)
    return feats.reshape(B, P, C, -1).permute(0, 1, 3, 2)


def cell_center(plane: int, row: int, col: int, resolution: int, bound: float, third: float = 0.0) -> Tensor:
    """World point (3,) at the centre of cell (row, col) of ``plane``, with ``third`` on the remaining axis."""
    p = torch.full((3,), float(third))
    ax_c, ax_r = PLANE_AXES[plane]
    p[ax_c] = ((2 * col + 1) / resolution - 1) * bound
    p[ax_r] = ((2 * row + 1) / resolution - 1) * bound
    return p


class TriplaneMLP(nn.Module):
    """Plane features -> density and colour (view-independent, like LRM's decoder).

    ``forward(features (B, 3, N, C)) -> density (B, N) >= 0 in 1/world units, rgb (B, N, 3) in [0, 1]``.
    The three planes' features are concatenated (input 3C) or summed (input C), then ``layers`` linear
    layers of width ``hidden`` with ReLU in between give 4 raw outputs: density
    ``= scale * softplus(raw_0 + bias)`` and colour ``= sigmoid(raw_1..3)``.
    """

    def __init__(self, channels: int, hidden: int, layers: int, aggregate: str = "concat",
                 density_scale: float = 10.0, density_bias: float = -4.0) -> None:
        super().__init__()
        self.aggregate = aggregate
        self.density_scale, self.density_bias = density_scale, density_bias
        dims = [3 * channels if aggregate == "concat" else channels] + [hidden] * (layers - 1) + [4]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        if self.aggregate == "concat":
            x = features.permute(0, 2, 1, 3).flatten(2)  # (B, N, 3C)
        else:
            x = features.sum(dim=1)  # (B, N, C)
        raw = self.net(x)
        density = self.density_scale * F.softplus(raw[..., 0] + self.density_bias)
        return density, torch.sigmoid(raw[..., 1:])
