"""pixelNeRF (Yu et al., CVPR 2021): a radiance field conditioned on pixel-aligned image features.

``model.PixelNeRF`` is registered as ``pixelnerf`` in :mod:`recon3d.feedforward.registry`;
``config.PixelNeRFConfig`` holds its presets (``tiny``: trained by recon3d; ``published``: the
architecture of the released checkpoints of sxyu/pixel-nerf, loadable with
``PixelNeRF.from_external_checkpoint``).
"""

from .config import PixelNeRFConfig

__all__ = ["PixelNeRFConfig"]
