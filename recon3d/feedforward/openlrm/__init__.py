"""Published OpenLRM v1.1 checkpoints (``zxhezexin/openlrm-{obj,mix}-{small,base,large}-1.1``) in recon3d.

A re-implementation of the released architecture whose parameters load the published
``model.safetensors`` strictly, checked against outputs of the official code (3DTopia/OpenLRM @3108b69)
at equal random weights (``tests/test_openlrm.py``). ``recon3d predict --model lrm --checkpoint DIR``
runs it; the recon3d-trained LRM (``data/checkpoints/lrm.pt``, :mod:`recon3d.feedforward.lrm`) is a
different, smaller model and stays the default.

- :mod:`.config`: config.json keys, encoder sizes from weight shapes, the released sizes.
- :mod:`.dinov2`: the DINOv2-with-registers image encoder.
- :mod:`.transformer`: camera embedding, modulated layer norms, the image-to-triplane transformer.
- :mod:`.renderer`: triplane sampling, decoder, ray sampling and compositing (from the mathematics).
- :mod:`.model`: :class:`OpenLRM` (official interface + recon3d's conditioned radiance field).
- :mod:`.loader`: :func:`load_checkpoint`, :func:`find_checkpoints`, :func:`save_checkpoint`.

Licences: the OpenLRM weights are CC BY-NC 4.0 (research only, no commercial use); the official code is
Apache-2.0 except its EG3D-derived rendering files (NVIDIA Source Code License, non-commercial), whose
code recon3d does not use. See ``data/checkpoints/lrm.md``.
"""

from .config import OpenLRMConfig, released_config
from .loader import find_checkpoints, is_checkpoint, load_checkpoint, save_checkpoint
from .model import OpenLRM

__all__ = ["OpenLRM", "OpenLRMConfig", "released_config", "load_checkpoint", "find_checkpoints", "is_checkpoint",
           "save_checkpoint"]
