"""Reading the published VGGT-1B checkpoint (``facebook/VGGT-1B``, ``model.pt``) strictly.

The published state dict's names are this package's names (the modules mirror the reference
code's structure), except the point-tracking head (``track_head.*``), which recon3d does not
implement: those entries are set aside (counted and reported), never loaded. Every other name must
match exactly, with the same shape: a missing, unexpected or mis-shaped entry is an error naming
the first few offenders. The model is built on the ``meta`` device and the checkpoint's tensors are
*assigned* to it (``load_state_dict(assign=True)``), so reading 1B parameters needs no second copy;
a state dict of meta tensors (shape checks only) yields a model on meta.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch

from recon3d.io.errors import DataError

log = logging.getLogger(__name__)

#: prefixes of published parameters that recon3d deliberately does not implement.
IGNORED_PREFIXES = ("track_head.",)


def _state_dict_of(payload: Mapping) -> Mapping[str, torch.Tensor]:
    for key in ("model", "state_dict"):  # wrapped checkpoints
        if key in payload and isinstance(payload[key], Mapping):
            return payload[key]
    return payload


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source="checkpoint") -> dict:
    """Compare ``state`` with ``model.state_dict()`` by names and shapes (no values touched).

    Returns ``{"loaded": n, "ignored": n}``; raises DataError(source, ...) listing missing,
    unexpected and mis-shaped names (the first five of each).
    """
    own = model.state_dict()
    ignored = [k for k in state if k.startswith(IGNORED_PREFIXES)]
    keys = [k for k in state if not k.startswith(IGNORED_PREFIXES)]
    missing = sorted(set(own) - set(keys))
    unexpected = sorted(set(keys) - set(own))
    shapes = sorted(k for k in set(own) & set(keys) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])})")
    if shapes:
        problems.append(f"{len(shapes)} with other shapes (" + ", ".join(
            f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5]) + ")")
    if problems:
        raise DataError(source, "not a VGGT-1B state dict: " + "; ".join(problems))
    return {"loaded": len(keys), "ignored": len(ignored)}


def load_published_state_dict(payload: Mapping, source="checkpoint", config=None):
    """A :class:`~.model.VGGT` of the published size holding ``payload``'s tensors (float32).

    Args:
        payload: the published state dict (or a dict wrapping it under ``model``/``state_dict``).
        source: file name for error messages.
        config: architecture (default ``vggt_config("published")``).
    """
    from .model import VGGT, vggt_config

    state = _state_dict_of(payload)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(source, "does not hold a state dict of tensors")
    with torch.device("meta"):
        model = VGGT(config or vggt_config("published"))
    counts = check_state_dict(model, state, source)
    kept = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    model.load_state_dict(kept, strict=True, assign=True)
    model.aggregator.patch_embed.mask_token.requires_grad_(False)
    log.info("loaded %d published VGGT tensors from %s (%d track-head tensors not used)", counts["loaded"],
             Path(str(source)).name, counts["ignored"])
    return model
