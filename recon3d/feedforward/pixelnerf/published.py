"""Strict loading of published pixelNeRF checkpoints (sxyu/pixel-nerf ``checkpoints/*/pixel_nerf_latest``).

Those files are plain ``state_dict`` s of the reference ``PixelNeRFNet``:

- ``encoder.model.*``: torchvision ResNet-34 (``conv1``, ``bn1``, ``layer1..4``; the classifier
  ``fc`` was replaced by an empty module, so it has no keys; ``layer4`` is stored though unused);
- ``code._freqs`` (1, 12, 1), ``code._phases`` (1, 12, 1): positional-encoding buffers;
- ``mlp_coarse.*`` and ``mlp_fine.*``: ResNet-FC with ``lin_in`` (512 <- 42), ``lin_z.0..2``
  (512 <- 512), ``blocks.0..4.fc_0/fc_1`` (512 <- 512), ``lin_out`` (4 <- 512).

:class:`~recon3d.feedforward.pixelnerf.model.PixelNeRF` built with ``PixelNeRFConfig.published()``
uses exactly these names, so the mapping is the identity; the check here is that the file holds
exactly the expected keys with the expected shapes (no missing, no unexpected keys).

Not stored in the file, hence fixed by the preset: ``use_first_pool`` (True for the SRN / DTU
releases, False for ``sn64``; override ``encoder_first_pool`` for the latter). recon3d samples the
feature volume with the exact pixel-center mapping (``align_corners=False``); the reference code's
``align_corners=True`` indexing differs from it by under one feature cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from recon3d.io.errors import DataError

from .config import PixelNeRFConfig

MAX_LISTED = 5


def extract_state_dict(path: Path, payload: dict) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``payload``: the payload itself, or its ``state_dict`` / ``model`` entry.

    A ``module.`` prefix on every key (``DataParallel`` saves) is stripped.
    """
    state = payload
    if not all(torch.is_tensor(v) for v in state.values()):
        for key in ("state_dict", "model", "net"):
            inner = payload.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                state = inner
                break
        else:
            raise DataError(path, "not a pixelNeRF checkpoint: no state dict of tensors found")
    if not state:
        raise DataError(path, "not a pixelNeRF checkpoint: empty state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def check_keys(path: Path, expected: dict[str, torch.Size], state: dict[str, torch.Tensor]) -> None:
    """DataError naming the file and the first mismatches unless ``state`` has exactly ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items()
             if k in state and tuple(state[k].shape) != tuple(s)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {label} key(s): {', '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise DataError(path, "does not match the published pixelNeRF architecture: " + "; ".join(problems))


def load_published(cls, path, payload: dict, config: Optional[PixelNeRFConfig] = None):
    """Build ``cls(config or PixelNeRFConfig.published())`` and load ``payload`` strictly.

    Returns the model (fp32). Raises DataError naming ``path`` on missing / unexpected / mis-shaped keys.
    """
    path = Path(path)
    model = cls(config if config is not None else PixelNeRFConfig.published())
    state = extract_state_dict(path, payload)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_keys(path, expected, state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model
