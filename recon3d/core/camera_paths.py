"""Camera trajectories for novel-view videos (orbits around a capture)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .cameras import Cameras


def look_at_c2w(eyes: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world (N, 4, 4) for cameras at ``eyes`` (N, 3) looking at ``target`` (3,).

    ``up`` (3,) is the world direction that appears upward in the image (image -y).
    """
    fwd = torch.nn.functional.normalize(target[None] - eyes, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up.expand_as(fwd)), dim=-1)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4).repeat(eyes.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, fwd, eyes
    return c2w


def orbit_path(cameras: Cameras, num_frames: int = 60, elevation_deg: float | None = None,
               radius_scale: float = 1.0) -> Cameras:
    """A full circle of cameras around the point the capture looks at.

    The orbit's axis is the capture's average "up" (minus the mean image y axis), its radius the
    median distance of the cameras to that point, and its height their mean elevation unless
    ``elevation_deg`` is given. Intrinsics and image size are those of the first camera.
    """
    cameras = cameras.to("cpu")
    center = cameras.look_at()
    up = torch.nn.functional.normalize(-cameras.c2w[:, :3, 1].mean(0), dim=0)
    offsets = cameras.centers - center
    radius = float(offsets.norm(dim=-1).median()) * radius_scale
    if elevation_deg is None:
        sin_el = (torch.nn.functional.normalize(offsets, dim=-1) @ up).mean().clamp(-0.95, 0.95)
        elevation = math.asin(float(sin_el))
    else:
        elevation = math.radians(elevation_deg)
    # an orthonormal basis of the orbit plane, starting from the first camera's azimuth
    a = offsets[0] - (offsets[0] @ up) * up
    if a.norm() < 1e-6:
        a = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0]))
    a = torch.nn.functional.normalize(a, dim=0)
    b = torch.linalg.cross(up, a)
    az = torch.linspace(0, 2 * math.pi, num_frames + 1)[:-1]
    ring = torch.cos(az)[:, None] * a + torch.sin(az)[:, None] * b
    eyes = center + radius * (math.cos(elevation) * ring + math.sin(elevation) * up)
    c2w = look_at_c2w(eyes, center, up)
    n = num_frames
    return Cameras(c2w, cameras.fx[:1].expand(n), cameras.fy[:1].expand(n), cameras.cx[:1].expand(n),
                   cameras.cy[:1].expand(n), cameras.width[:1].expand(n), cameras.height[:1].expand(n))
