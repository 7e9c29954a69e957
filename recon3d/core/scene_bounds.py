"""Boxes around what a set of cameras looks at: the region a ray-based field is fitted in."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .cameras import Cameras
from .fields import SceneBox


def object_box(cameras: Cameras, scale: float = 1.1, center: Optional[Tensor] = None) -> SceneBox:
    """A cube around what every camera of an object capture sees.

    Cameras at distance ``D`` from the center with half field of view ``f`` frame a region of
    half-size ``D tan f``; the cube has half-size ``scale * min(D) * tan(min f)``.
    """
    cameras = cameras.to("cpu")
    c = cameras.look_at() if center is None else torch.as_tensor(center, dtype=torch.float32)
    dist = float((cameras.centers - c).norm(dim=-1).min())
    fx, fy = cameras.fov()
    half = scale * dist * math.tan(0.5 * float(torch.minimum(fx, fy).min()))
    return SceneBox(torch.stack([c - half, c + half]))


def unbounded_box(cameras: Cameras, center: Optional[Tensor] = None) -> SceneBox:
    """The cube holding all cameras (contracted beyond it)."""
    cameras = cameras.to("cpu")
    c = torch.zeros(3) if center is None else torch.as_tensor(center, dtype=torch.float32)
    half = float((cameras.centers - c).abs().max()) * 1.05
    return SceneBox(torch.stack([c - half, c + half]), contraction="linf")
