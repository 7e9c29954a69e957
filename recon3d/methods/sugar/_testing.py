"""Analytic Gaussian scenes for SuGaR tests and benchmarks (no fitting needed).

:func:`sphere_of_flat_gaussians` tiles a sphere with flat, opaque discs: the ideal model that
SuGaR's regularization aims for, so the surface, its normals and colours are known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recon3d.core import Cameras
from recon3d.core.conventions import rotmat_to_qvec
from recon3d.core.gaussians.sh import rgb_to_sh0
from recon3d.methods.splat.model import GaussianModel

TOP_COLOR = (0.9, 0.2, 0.2)  # z > 0
BOTTOM_COLOR = (0.2, 0.3, 0.9)  # z < 0


def fibonacci_sphere(n: int) -> np.ndarray:
    """(n, 3) nearly uniform unit vectors."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = math.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)


def tangent_frames(normals: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations whose third column is the given unit normal."""
    a = np.where(np.abs(normals[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    t1 = np.cross(normals, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normals, t1)
    return np.stack([t1, t2, normals], axis=2)


def sphere_of_flat_gaussians(n: int = 1500, radius: float = 0.5, thickness: float = 0.002, opacity: float = 0.99,
                             overlap: float = 0.7, normal_noise: float = 0.0, offset_noise: float = 0.0,
                             seed: int = 0) -> GaussianModel:
    """``n`` flat Gaussians tangent to a sphere of ``radius`` centred at the origin.

    In-plane std = ``overlap`` x the mean spacing, normal std = ``thickness``; red on the upper
    half (z > 0), blue below. ``normal_noise`` (radians, std) tilts the discs and ``offset_noise``
    (world units, std) moves them along their normals, for "unregularized" variants.
    """
    rng = np.random.default_rng(seed)
    nrm = fibonacci_sphere(n)
    centers = nrm * radius
    if offset_noise > 0:
        centers = centers + nrm * rng.normal(0, offset_noise, (n, 1))
    tilted = nrm
    if normal_noise > 0:
        tilted = nrm + rng.normal(0, normal_noise, (n, 3))
        tilted /= np.linalg.norm(tilted, axis=1, keepdims=True)
    R = tangent_frames(tilted)
    q = rotmat_to_qvec(torch.tensor(R, dtype=torch.float32))
    s = math.sqrt(4 * math.pi * radius ** 2 / n) * overlap
    scales = torch.tensor([s, s, thickness], dtype=torch.float32).repeat(n, 1)
    colors = torch.tensor(np.where(nrm[:, 2:3] > 0, [TOP_COLOR], [BOTTOM_COLOR]), dtype=torch.float32)
    return GaussianModel(torch.tensor(centers, dtype=torch.float32), q, scales.log(),
                         torch.logit(torch.full((n,), float(opacity))), rgb_to_sh0(colors)[:, None],
                         torch.zeros(n, 0, 3), max_sh_degree=0)


def ring_cameras(size: int = 48, focal: float = 90.0, distance: float = 3.0, per_ring: int = 6,
                 elevations=(35.0, -35.0)) -> Cameras:
    """Cameras on rings around the origin (OpenCV, looking at it), square images of ``size`` px."""
    mats = []
    for el_deg in elevations:
        el = math.radians(el_deg)
        for i in range(per_ring):
            az = 2 * math.pi * (i + 0.5 * (el_deg < 0)) / per_ring
            eye = distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            fwd = -eye / np.linalg.norm(eye)
            right = np.cross(fwd, [0.0, 0.0, 1.0])
            right /= np.linalg.norm(right)
            down = np.cross(fwd, right)
            m = np.eye(4)
            m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
            mats.append(m)
    c2w = torch.tensor(np.stack(mats), dtype=torch.float32)
    return Cameras(c2w, fx=focal, fy=focal, cx=size / 2, cy=size / 2, width=size, height=size)
