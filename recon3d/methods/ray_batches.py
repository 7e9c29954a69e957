"""Random training-ray batches across the images of a scene (the ray-based methods NeRF and SDF).

Pixels of all training images are flattened into one table (images may differ in size); a batch is
``n`` uniformly drawn pixels with their rays (:meth:`Cameras.rays_at` through pixel centers), their
colors, and when available their alpha and mask. Colors are stored *premultiplied* (``rgb * alpha``,
composited over black) with alpha whenever the images have an alpha channel, so a batch can be
composited over any background: ``target = premultiplied + (1 - alpha) * background``. Without
alpha, alpha is 1 everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from recon3d.core.cameras import flat_pixel_centers
from recon3d.core.rays import RayBundle

log = logging.getLogger(__name__)


def is_object_capture(scene) -> bool:
    """True for object captures (images composited on a known background: Blender, synthetic)."""
    return getattr(scene, "background", None) is not None


@dataclass
class RayBatch:
    """``R`` training rays with what they saw.

    Attributes:
        rays: flat RayBundle (R,), ``camera_indices`` set (scene frame indices).
        rgb: (R, 3) premultiplied colors in [0, 1] (equal to the image colors when opaque).
        alpha: (R, 1) coverage in [0, 1] (ones without an alpha channel).
        mask: (R, 1) float 0/1 foreground mask, or None when the scene has no masks.
    """

    rays: RayBundle
    rgb: Tensor
    alpha: Tensor
    mask: Optional[Tensor] = None

    def target(self, background: Tensor) -> Tensor:
        """(R, 3) ground truth composited over ``background`` ((R, 3) or (3,))."""
        return self.rgb + (1.0 - self.alpha) * background


class RayBatcher:
    """Pixels of ``scene``'s training images, ready to be sampled as ray batches.

    Args:
        scene: the Scene (its cameras in the frame the method works in).
        indices: frames to use (default: ``scene.train_indices``).
        device: where the pixel table lives.
        load_masks: also keep the scene's masks (if any).
    """

    def __init__(self, scene, indices=None, device="cpu", load_masks: bool = False):
        self.scene = scene
        self.indices = list(scene.train_indices if indices is None else indices)
        if not self.indices:
            raise ValueError("the scene has no training images")
        self.device = torch.device(device)
        self.cameras = scene.cameras.to(self.device)
        bg = getattr(scene, "background", None)
        self.scene_background = None if bg is None else torch.as_tensor(bg, dtype=torch.float32)
        rgbs, alphas, masks = [], [], []
        for i in self.indices:
            img = scene.image(i).reshape(-1, 3)
            a = scene.alpha(i).reshape(-1, 1) if self.scene_background is not None else torch.ones_like(img[:, :1])
            if self.scene_background is not None:  # undo the reader's compositing: premultiplied colors
                img = (img - (1.0 - a) * self.scene_background).clamp(0.0, 1.0)
            rgbs.append(img)
            alphas.append(a)
            if load_masks:
                m = scene.mask(i)
                masks.append(None if m is None else m.reshape(-1, 1).float())
        self.has_alpha = any(bool((a < 1).any()) for a in alphas)
        self.rgb = torch.cat(rgbs).to(self.device)
        self.alpha = torch.cat(alphas).to(self.device)
        self.mask = None
        if load_masks and any(m is not None for m in masks):
            filled = [torch.ones_like(a) if m is None else m for m, a in zip(masks, alphas)]
            self.mask = torch.cat(filled).to(self.device)
        sizes = torch.tensor([int(self.cameras.width[i]) * int(self.cameras.height[i]) for i in self.indices])
        self._starts = torch.cumsum(sizes, 0) - sizes
        self._frame = torch.tensor(self.indices)
        self._widths = torch.tensor([int(self.cameras.width[i]) for i in self.indices])
        self.num_pixels = int(sizes.sum())
        log.info("%d training pixels from %d images (alpha: %s, masks: %s)", self.num_pixels, len(self.indices),
                 self.has_alpha, self.mask is not None)

    def image_maps(self, values: Tensor) -> list[Tensor]:
        """Split a per-pixel table ((P,) or (P, C), e.g. :attr:`alpha`) into per-image (H, W, ...) maps."""
        out = []
        for k, i in enumerate(self.indices):
            H, W = int(self.cameras.height[i]), int(self.cameras.width[i])
            s = int(self._starts[k])
            out.append(values[s:s + H * W].reshape(H, W, *values.shape[1:]))
        return out

    def rays_of(self, pixels: Tensor) -> tuple[RayBundle, Tensor]:
        """(R,) flat pixel indices -> rays through their centers and (R,) scene frame indices."""
        img = torch.searchsorted(self._starts, pixels, right=True) - 1
        local = pixels - self._starts[img]
        w = self._widths[img]
        uv = flat_pixel_centers(local, w)
        frames = self._frame[img].to(self.device)
        return self.cameras.rays_at(frames, uv.to(self.device)), frames

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> RayBatch:
        """``n`` random training pixels (with replacement)."""
        pixels = torch.randint(0, self.num_pixels, (n,), generator=generator)
        rays, _ = self.rays_of(pixels)
        pix = pixels.to(self.device)
        return RayBatch(rays, self.rgb[pix], self.alpha[pix], None if self.mask is None else self.mask[pix])
