"""pixelNeRF (Yu et al., CVPR 2021): a radiance field conditioned on pixel-aligned image features.

``model.PixelNeRF`` is registered as ``pixelnerf`` in :mod:`recon3d.feedforward.registry`;
``config.PixelNeRFConfig`` holds its presets (``tiny``: trained by recon3d; ``published`` and the released
variants ``config.VARIANTS``: the released checkpoints of sxyu/pixel-nerf, loaded by
``published.load_published`` with the architecture read from the file, computing what the official
code computes: ``renderer.py`` is the official ray renderer).
"""

from .config import PixelNeRFConfig

__all__ = ["PixelNeRFConfig"]
