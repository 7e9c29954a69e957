"""LRM (Hong et al. 2023): a ViT image encoder, a camera-modulated image-to-triplane transformer and a
triplane NeRF, turning one image into a radiance field (and a mesh). Registered as ``lrm``.

- :mod:`.config`: :class:`LRMConfig`, the ``tiny`` (shipped, CPU-trained) and ``published`` presets.
- :mod:`.networks`: ViT encoder, camera embedding, adaptive-norm triplane decoder.
- :mod:`.triplane`: the plane-axis convention, bilinear triplane sampling, the density/colour MLP.
- :mod:`.model`: :class:`LRM` (encode / query / training and validation steps / meshes).
"""

from .config import LRMConfig, published_config, tiny_config
from .model import LRM

__all__ = ["LRM", "LRMConfig", "tiny_config", "published_config"]
