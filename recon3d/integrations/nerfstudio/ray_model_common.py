"""Pieces shared by recon3d's ray-based nerfstudio models (``recon3d-nerf``, ``recon3d-sdf``):
recon3d's background rule for RGBA images, the ground truth composited on it, and RGBA renders."""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor


class RayModelMixin:
    """Mixed into a nerfstudio ``Model`` (before it in the bases). Expects ``self.config.background_color``
    (``auto`` / ``random`` / ``black`` / ``white``), ``self.generator`` (CPU ``torch.Generator``),
    ``self.images_have_alpha`` (bool) and nerfstudio's ``self.device`` / ``self.training``."""

    def _note_training_images(self, dataset) -> None:
        """Record whether the training images have alpha (read from the first one)."""
        self.images_have_alpha = len(dataset) > 0 and dataset.get_image_float32(0).shape[-1] == 4

    def _has_random_background(self, has_alpha: bool) -> bool:
        name = self.config.background_color
        return name == "random" or (name == "auto" and has_alpha)

    def _background(self, n: int) -> Tensor:
        """(n, 3) background colours: random per ray while training (see ``background_color``;
        whether the images have alpha is read from the first training image), else a constant."""
        if self.training and self._has_random_background(self.images_have_alpha):
            return torch.rand(n, 3, generator=self.generator).to(self.device)
        value = 1.0 if self.config.background_color == "white" else 0.0
        return torch.full((n, 3), value, device=self.device)

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """(H, W, 4) straight (not premultiplied) colour and accumulation, the background taken out
        (``ns-render --output-format`` with alpha)."""
        rgb, acc, bg = outputs[output_name], outputs["accumulation"], outputs["background"]
        straight = (rgb - (1.0 - acc) * bg) / acc.clamp_min(1e-10)
        return torch.cat([straight.clamp(0.0, 1.0), acc], dim=-1)

    def _gt(self, batch: dict, background: Tensor) -> Tensor:
        """(..., 3) float ground truth; RGBA composited onto ``background`` (..., 3)."""
        img = batch["image"]
        img = (img.float() / 255.0 if img.dtype == torch.uint8 else img.float()).to(self.device)
        if img.shape[-1] == 4:
            a = img[..., 3:]
            img = a * img[..., :3] + (1 - a) * background.reshape(img.shape[:-1] + (3,))
        return img
