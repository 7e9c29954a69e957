"""Background colours: the one place where background names become colours.

Names: ``"white"``, ``"black"`` (fixed colours), ``"scene"`` (the colour a dataset's RGBA images were
composited on, black when it has none), and for training ``"random"`` (a fresh colour per ray or
image, drawn by the caller). :func:`background_color` resolves a name, a gray level or 3 floats.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

NAMED_COLORS: dict[str, tuple[float, float, float]] = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


def background_color(spec: Any, scene_background: Tensor | None = None) -> Tensor | None:
    """``None | 'white' | 'black' | 'scene' | gray | (3,) floats`` -> (3,) float32 colour in [0, 1] (CPU).

    ``None`` stays None (no background: premultiplied over black); ``'scene'`` is
    ``scene_background`` (black when None). Raises ValueError for other names (``'random'``
    included: the caller draws random colours) or a colour that is not 3 finite values.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        name = spec.lower()
        if name == "scene":
            return torch.zeros(3) if scene_background is None else torch.as_tensor(scene_background,
                                                                                  dtype=torch.float32).reshape(3)
        if name not in NAMED_COLORS:
            raise ValueError(f"background must be 'white', 'black', 'scene', a gray level or 3 floats, got {spec!r}")
        return torch.tensor(NAMED_COLORS[name], dtype=torch.float32)
    bg = torch.as_tensor(spec, dtype=torch.float32).reshape(-1)
    if bg.numel() == 1:
        bg = bg.expand(3).clone()
    if bg.numel() != 3 or not torch.isfinite(bg).all():
        raise ValueError(f"background must have 3 finite values, got {spec!r}")
    return bg
