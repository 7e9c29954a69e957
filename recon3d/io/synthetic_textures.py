"""Procedural colour fields for the synthetic objects of :mod:`recon3d.io.synthetic`.

Each texture is a callable ``texture(points (P, 3), part_ids (P,) | None) -> (P, 3)`` float32 colours
in [0, 1] of world points (solid textures: the colour depends on the 3D point, not on a UV map):
:class:`SolidTexture` (fine Voronoi cells, what SIFT needs), :class:`PartTexture` (low-frequency
per-part colours for feed-forward training at 32-128 px) and :class:`GroundTexture` (a tiled floor).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation


class SolidTexture:
    """A procedural 3D colour field, ``texture(points (P, 3), part_ids (P,) | None) -> (P, 3)`` in [0, 1].

    Random-coloured Voronoi cells (sites spaced ~``cell_size`` world units) with dark borders,
    brightness modulated by a few random plane waves (wavelengths ~0.1-0.4), tinted per object part.
    """

    def __init__(self, seed: int, num_parts: int = 1, cell_size: float = 0.16, extent: float = 1.1):
        rng = np.random.default_rng([seed, 2])
        n_sites = max(8, int(round((2 * extent / cell_size) ** 3)))
        self.sites = rng.uniform(-extent, extent, (n_sites, 3))
        hsv = np.stack([rng.uniform(0, 1, n_sites), rng.uniform(0.3, 0.95, n_sites), rng.uniform(0.55, 1.0, n_sites)], -1)
        self.colors = _hsv_to_rgb(hsv)
        self.border = 0.06 * cell_size  # ~half-width (world units, d2 - d1 ~ distance) of the dark cell borders
        n_waves = 6
        dirs = rng.normal(size=(n_waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        self.wave_k = dirs * rng.uniform(2 * np.pi / 0.4, 2 * np.pi / 0.1, (n_waves, 1))  # rad per world unit
        self.wave_phase = rng.uniform(0, 2 * np.pi, n_waves)
        tint_hsv = np.stack([rng.uniform(0, 1, num_parts), rng.uniform(0.3, 0.7, num_parts), np.ones(num_parts)], -1)
        self.part_tints = _hsv_to_rgb(tint_hsv)
        self._tree = cKDTree(self.sites)

    def __call__(self, points: np.ndarray, part_ids: np.ndarray | None = None) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(p) == 0:
            return np.zeros((0, 3), np.float32)
        d, idx = self._tree.query(p, k=2)
        rgb = self.colors[idx[:, 0]]
        gap = d[:, 1] - d[:, 0]  # 0 on a cell border
        edge = np.clip((gap - 0.5 * self.border) / self.border, 0.0, 1.0)
        lum = 0.1 + 0.9 * edge * edge * (3 - 2 * edge)
        waves = np.sin(p @ self.wave_k.T + self.wave_phase).mean(axis=1)  # ~[-1, 1]
        rgb = rgb * (lum * (1.0 + 0.45 * waves))[:, None]
        if part_ids is not None:
            tint = self.part_tints[np.asarray(part_ids).reshape(-1) % len(self.part_tints)]
            rgb = rgb * (0.6 + 0.4 * tint)
        return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[:, 0] * 6.0, hsv[:, 1], hsv[:, 2]
    k = (np.array([5.0, 3.0, 1.0])[None] + h[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


PART_TEXTURE_STYLES = ("solid", "cells", "stripes", "dots")


class PartTexture:
    """Low-frequency per-part colouring for feed-forward training objects (readable at 32-128 px).

    ``texture(points (P, 3), part_ids (P,) | None) -> (P, 3)`` in [0, 1]. Every part gets its own
    base colour (random hue, saturation 0.35-0.9, value 0.55-1) and, per part, one style:

    * ``solid``: the base colour with a gentle plane-wave brightness variation (+-10 %);
    * ``cells``: large Voronoi cells (~0.3-0.5 world units) in hues near the base colour;
    * ``stripes``: base colour alternating with a second colour along a random direction
      (period 0.25-0.6 world units);
    * ``dots``: second-colour spots (radius ~0.06-0.1) on a jittered lattice over the base colour.
    """

    def __init__(self, seed: int, num_parts: int = 1, styles: Sequence[str] = PART_TEXTURE_STYLES):
        rng = np.random.default_rng([seed, 4])
        n = max(1, num_parts)
        hsv = np.stack([rng.uniform(0, 1, n), rng.uniform(0.35, 0.9, n), rng.uniform(0.55, 1.0, n)], -1)
        hsv2 = np.stack([(hsv[:, 0] + rng.uniform(0.25, 0.75, n)) % 1.0, rng.uniform(0.2, 0.9, n),
                         rng.uniform(0.3, 1.0, n)], -1)
        self.base, self.second = _hsv_to_rgb(hsv), _hsv_to_rgb(hsv2)
        self.styles = [str(rng.choice(list(styles))) for _ in range(n)]
        dirs = rng.normal(size=(n, 3))
        self.dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        self.period = rng.uniform(0.25, 0.6, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.sites = rng.uniform(-1.1, 1.1, (n, 64, 3))
        self.cell_colors = _hsv_to_rgb(np.stack([
            (np.repeat(hsv[:, :1], 64, 1) + rng.uniform(-0.12, 0.12, (n, 64))) % 1.0,
            np.clip(np.repeat(hsv[:, 1:2], 64, 1) + rng.uniform(-0.2, 0.2, (n, 64)), 0.1, 1.0),
            np.clip(np.repeat(hsv[:, 2:3], 64, 1) + rng.uniform(-0.3, 0.1, (n, 64)), 0.3, 1.0)], -1).reshape(-1, 3)
        ).reshape(n, 64, 3)
        self.cell_scale = rng.uniform(0.7, 1.2, n)
        self.dot_radius = rng.uniform(0.06, 0.1, n)
        self.dot_rot = np.stack([Rotation.random(random_state=rng).as_matrix() for _ in range(n)])

    def __call__(self, points: np.ndarray, part_ids: np.ndarray | None = None) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        ids = np.zeros(len(p), np.int64) if part_ids is None else np.asarray(part_ids).reshape(-1) % len(self.base)
        out = np.empty((len(p), 3), np.float64)
        for k in np.unique(ids):
            sel = ids == k
            q = p[sel]
            base, second = self.base[k], self.second[k]
            style = self.styles[k]
            if style == "solid":
                rgb = base[None] * (1.0 + 0.1 * np.sin(2 * np.pi * (q @ self.dirs[k]) / 0.9 + self.phase[k]))[:, None]
            elif style == "cells":
                d = ((q[:, None, :] * self.cell_scale[k] - self.sites[k][None]) ** 2).sum(-1)
                rgb = self.cell_colors[k][np.argmin(d, axis=1)]
            elif style == "stripes":
                s = np.sin(2 * np.pi * (q @ self.dirs[k]) / self.period[k] + self.phase[k])
                w = np.clip(0.5 + 2.0 * s, 0.0, 1.0)[:, None]  # soft-edged stripes
                rgb = w * base[None] + (1 - w) * second[None]
            else:  # dots
                g = q @ self.dot_rot[k].T / 0.25 + self.phase[k]
                r = np.linalg.norm((g - np.round(g)) * 0.25, axis=1)
                w = np.clip((r - self.dot_radius[k]) / 0.015, 0.0, 1.0)[:, None]
                rgb = w * base[None] + (1 - w) * second[None]
            out[sel] = rgb
        return np.clip(out, 0.0, 1.0).astype(np.float32)


class GroundTexture:
    """Tiled floor colour for the ground plane: 2D Voronoi tiles (~``cell_size`` world units) in
    random muted colours with dark grout lines and a slow brightness variation, like a patterned
    floor or tablecloth. ``texture(points (P, 3)) -> (P, 3)`` in [0, 1]; only x and y are used."""

    def __init__(self, seed: int, half_size: float, cell_size: float = 0.45):
        rng = np.random.default_rng([seed, 6])
        n = max(8, int(round((2 * half_size / cell_size) ** 2)))
        self.sites = rng.uniform(-half_size, half_size, (n, 2))
        hsv = np.stack([rng.uniform(0, 1, n), rng.uniform(0.1, 0.5, n), rng.uniform(0.4, 0.9, n)], -1)
        self.colors = _hsv_to_rgb(hsv)
        self.grout = 0.05 * cell_size
        self.wave_k = rng.normal(size=(3, 2)) * 1.5
        self.wave_phase = rng.uniform(0, 2 * np.pi, 3)
        self._tree = cKDTree(self.sites)

    def __call__(self, points: np.ndarray, part_ids: np.ndarray | None = None) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)[:, :2]
        if len(p) == 0:
            return np.zeros((0, 3), np.float32)
        d, idx = self._tree.query(p, k=2)
        edge = np.clip((d[:, 1] - d[:, 0] - 0.5 * self.grout) / self.grout, 0.0, 1.0)
        lum = (0.25 + 0.75 * edge) * (1.0 + 0.2 * np.sin(p @ self.wave_k.T + self.wave_phase).mean(1))
        return np.clip(self.colors[idx[:, 0]] * lum[:, None], 0.0, 1.0).astype(np.float32)
