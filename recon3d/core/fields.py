"""Building blocks shared by neural-field methods: small MLPs, density activations and the mapping
of world points into a field's unit cube (:class:`SceneBox`). The occupancy grid that skips empty
space is :mod:`recon3d.core.occupancy`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .sampling import contract, contract_inverse


# ---------------------------------------------------------------------------------------------
# Small networks and activations
# ---------------------------------------------------------------------------------------------
def mlp(in_dim: int, hidden: int, out_dim: int, num_hidden_layers: int = 1, activation: type = nn.ReLU,
        out_activation: Optional[nn.Module] = None, bias: bool = True) -> nn.Sequential:
    """``in -> [hidden -> act] x num_hidden_layers -> out``, PyTorch default init."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(d, hidden, bias=bias), activation()]
        d = hidden
    layers.append(nn.Linear(d, out_dim, bias=bias))
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp(x)`` whose gradient uses ``exp(min(x, 15))``: a density activation that cannot blow up."""
    return _TruncExp.apply(x)


# ---------------------------------------------------------------------------------------------
# World <-> unit cube
# ---------------------------------------------------------------------------------------------
class SceneBox:
    """Maps world points into the unit cube a grid field is defined on.

    Bounded scenes: the axis-aligned box ``aabb`` (2, 3) maps affinely onto [0, 1]^3. Unbounded
    scenes (``contraction`` = ``'l2'`` or ``'linf'``): points are first normalized by the box (its
    center to 0, half-extent to 1), then contracted with :func:`recon3d.core.sampling.contract`
    into the radius-2 ball/cube, which maps onto [0, 1]^3.
    """

    def __init__(self, aabb: Tensor, contraction: Optional[str] = None):
        self.aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        if contraction not in (None, "l2", "linf"):
            raise ValueError(f"contraction must be None, 'l2' or 'linf', got {contraction!r}")
        self.contraction = contraction

    def to(self, device) -> "SceneBox":
        return SceneBox(self.aabb.to(device), self.contraction)

    @property
    def center(self) -> Tensor:
        return 0.5 * (self.aabb[0] + self.aabb[1])

    @property
    def half_size(self) -> Tensor:
        return 0.5 * (self.aabb[1] - self.aabb[0])

    def to_unit(self, x: Tensor) -> Tensor:
        """(..., 3) world points -> (..., 3) unit-cube coordinates (outside [0, 1] when out of the box)."""
        aabb = self.aabb.to(x.device)
        if self.contraction is None:
            return (x - aabb[0]) / (aabb[1] - aabb[0])
        c, h = 0.5 * (aabb[0] + aabb[1]), 0.5 * (aabb[1] - aabb[0])
        return contract((x - c) / h, self.contraction) * 0.25 + 0.5

    def from_unit(self, u: Tensor) -> Tensor:
        """Inverse of :meth:`to_unit` (for contracted boxes, points near the cube's surface map far away)."""
        aabb = self.aabb.to(u.device)
        if self.contraction is None:
            return aabb[0] + u * (aabb[1] - aabb[0])
        c, h = 0.5 * (aabb[0] + aabb[1]), 0.5 * (aabb[1] - aabb[0])
        return contract_inverse((u - 0.5) * 4.0, self.contraction) * h + c
