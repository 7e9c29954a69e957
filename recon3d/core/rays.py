"""Rays: the bundle type every renderer and sampler in recon3d consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import Tensor


@dataclass
class RayBundle:
    """A batch of rays of any leading shape ``(...)``.

    Attributes:
        origins: (..., 3) world-space ray origins.
        directions: (..., 3) unit world-space directions.
        z_scale: (..., 1) cosine between the ray and its camera's optical axis, so a distance ``t``
            along the ray is a camera z-depth of ``t * z_scale``. Ones when unknown.
        camera_indices: (...) int64 index of the camera each ray came from, or None.
        nears, fars: (..., 1) optional ray-segment bounds (world units along the ray).
    """

    origins: Tensor
    directions: Tensor
    z_scale: Optional[Tensor] = None
    camera_indices: Optional[Tensor] = None
    nears: Optional[Tensor] = None
    fars: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if self.z_scale is None:
            self.z_scale = torch.ones_like(self.origins[..., :1])

    @property
    def shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    def __len__(self) -> int:
        return self.origins.shape[0]

    def _map(self, fn) -> "RayBundle":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = None if v is None else fn(v, f.name)
        return RayBundle(**kw)

    def reshape(self, *shape: int) -> "RayBundle":
        def fn(v: Tensor, name: str) -> Tensor:
            if name == "camera_indices":
                return v.reshape(*shape)
            return v.reshape(*shape, v.shape[-1])

        return self._map(fn)

    def flatten(self) -> "RayBundle":
        return self.reshape(-1)

    def __getitem__(self, idx) -> "RayBundle":
        return self._map(lambda v, name: v[idx])

    def to(self, device) -> "RayBundle":
        return self._map(lambda v, name: v.to(device))

    def at(self, t: Tensor) -> Tensor:
        """Points along the rays: (..., S) distances -> (..., S, 3) world points."""
        return self.origins[..., None, :] + self.directions[..., None, :] * t[..., None]
