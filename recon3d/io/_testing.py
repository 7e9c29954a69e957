"""Tiny synthetic inputs for the data-layer tests (cameras looking at a point, small image files).

Private helpers: small, deterministic, no dependencies beyond numpy/torch/Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from recon3d.core.cameras import PINHOLE, Cameras


def look_at_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) float64 OpenCV camera-to-world at ``eye`` looking at ``target`` (+z forward, -y ~ ``up``)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def ring_poses(n: int, radius: float = 4.0, height: float = 1.0, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(n, 4, 4) OpenCV camera-to-world poses on a circle around ``target``, all looking at it."""
    t = np.asarray(target, dtype=np.float64)
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.3
    eyes = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(n, height)], -1) + t
    return np.stack([look_at_c2w(e, t) for e in eyes])


def ring_cameras(n: int = 6, width: int = 8, height: int = 6, focal: float = 7.0, radius: float = 4.0,
                 target=(0.0, 0.0, 0.0), model: str = PINHOLE, distortion: Sequence[float] | None = None) -> Cameras:
    """N pinhole (or distorted) cameras of ``width`` x ``height`` pixels on a ring looking at ``target``."""
    c2w = torch.from_numpy(ring_poses(n, radius, 1.0, target)).float()
    return Cameras(c2w, focal, focal * 1.05, width / 2 + 0.25, height / 2 - 0.2, width, height,
                   None if distortion is None else torch.tensor(distortion, dtype=torch.float32), model)


def random_image(height: int = 6, width: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    """(H, W, C) uint8 random pixels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def write_images(folder: Path, names: Sequence[str], height: int = 6, width: int = 8, channels: int = 3) -> list[Path]:
    """Write small random PNG/JPEG files ``folder/name`` (gray, RGB or RGBA), return their paths."""
    folder = Path(folder)
    paths = []
    for i, name in enumerate(names):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        a = random_image(height, width, channels, seed=i)
        Image.fromarray(a[..., 0] if channels == 1 else a).save(p)
        paths.append(p)
    return paths
