"""Photos of an object on a plain backdrop (a white or grey sweep, a product shot): find the backdrop's
colour so that fits can model it as the background instead of painting it with the model.

:func:`estimate_plain_background` looks at a ring of pixels along the border of (up to 24 of) the
images. The backdrop is *plain* when, in the typical image, almost all border pixels are within a
small tolerance of that image's median border colour, and the images agree on that colour. Photos
of a scene (a room, a street, a textured table) fail that test and keep no background.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass
class PlainBackground:
    """The result: ``color`` (3,) float32 in [0, 1] or None when the backdrop is not plain, with the
    statistics behind the decision (``plain_fraction``: median share of border pixels near their
    image's colour; ``agreement``: share of images whose colour is near the common one)."""

    color: Tensor | None
    plain_fraction: float
    agreement: float
    images: int

    def describe(self) -> str:
        c = "none" if self.color is None else "(" + ", ".join(f"{float(x):.3f}" for x in self.color) + ")"
        return (f"plain background {c}: {100 * self.plain_fraction:.0f}% of border pixels near their image's "
                f"colour, {100 * self.agreement:.0f}% of {self.images} images agree")


def border_ring(img: Tensor, width: int) -> Tensor:
    """(M, 3) pixels of the ``width``-pixel ring along the border of an (H, W, 3) image."""
    w = max(1, min(width, img.shape[0] // 2, img.shape[1] // 2))
    return torch.cat([img[:w].reshape(-1, 3), img[-w:].reshape(-1, 3), img[w:-w, :w].reshape(-1, 3),
                      img[w:-w, -w:].reshape(-1, 3)])


def estimate_plain_background(scene, max_images: int = 24, border: float = 0.03, tolerance: float = 0.06,
                              min_plain: float = 0.95, min_agreement: float = 0.9) -> PlainBackground:
    """Estimate the colour of a plain backdrop from the images' borders (see the module docstring).

    Args:
        scene: a Scene (its images as loaded).
        max_images: images looked at (evenly spaced).
        border: ring width as a fraction of the shorter image side.
        tolerance: a pixel is "near" a colour when no channel differs by more than this (in [0, 1]).
        min_plain: median share of near pixels the backdrop needs.
        min_agreement: share of images whose border colour must be near the common colour.
    """
    n = len(scene.cameras)
    idx = sorted({round(k * (n - 1) / max(min(max_images, n) - 1, 1)) for k in range(min(max_images, n))})
    colors, plain = [], []
    for i in idx:
        img = scene.image(i)
        ring = border_ring(img, int(round(border * min(img.shape[:2]))))
        med = ring.median(dim=0).values
        colors.append(med)
        plain.append(float(((ring - med).abs().amax(-1) <= tolerance).float().mean()))
    colors_t = torch.stack(colors)
    common = colors_t.median(dim=0).values
    agreement = float(((colors_t - common).abs().amax(-1) <= tolerance).float().mean())
    plain_fraction = float(torch.tensor(plain).median())
    ok = plain_fraction >= min_plain and agreement >= min_agreement
    return PlainBackground(common.float() if ok else None, plain_fraction, agreement, len(idx))
