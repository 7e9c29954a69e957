"""Reading published VGGT checkpoints (``facebook/VGGT-1B`` ``model.pt``) strictly, at any size.

The file is ``torch.save`` of the official model's plain state dict (float32 for VGGT-1B; any
floating dtype is read and upcast to float32). Its names are this package's names (the modules
mirror the official structure), except the point-tracking head (``track_head.*``, 394 tensors in
VGGT-1B), which recon3d does not implement: those entries are skipped on purpose, counted and
reported (:data:`IGNORED_PREFIXES` is the whole documented set; nothing else is ever dropped).
Every other name must be present in the file and in the model, with the same shape: a missing,
unexpected or mis-shaped entry is a one-line :class:`~recon3d.io.errors.DataError` naming the first
few offenders.

The architecture is read from the file (:func:`infer_config`), not assumed, so VGGT-1B and smaller
models in the official layout (e.g. the parity fixture ``vggt_small``) load through the same code:

- from shapes: widths (``aggregator.camera_token``), register tokens, the number of frame/global
  blocks, DINO blocks and camera-trunk blocks (counted), patch size and position-embedding size
  (``aggregator.patch_embed.patch_embed.proj.weight``, ``pos_embed``), MLP ratio, DPT widths;
  the number of attention heads from the q/k-norm width of the aggregator's attention
  (``attn.q_norm.weight`` has one entry per head channel);
- not in the file, so taken from the official code's defaults: the DINO patch embedder and the
  camera trunk use as many heads as the aggregator (16 in VGGT-1B), the DPT heads read aggregator
  layers [4, 11, 17, 23] of 24 (other depths: the same fractions, ``i * depth // 24``), RoPE base
  100, 4 camera refinement iterations, integer-pixel unprojection (``pixel_offset`` 0.0) and the
  official DPT residual unit. Pass ``config`` to override.

The model is built on the ``meta`` device and the file's tensors are *assigned* to it
(``load_state_dict(assign=True)``), so 1.26B parameters need no second copy; the non-persistent
ImageNet mean/std buffers, which no checkpoint holds, are then created on the CPU, so the model can
be moved to any device and run. A state dict of meta tensors (shape checks only) yields a model on meta.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Mapping

import torch

from recon3d.io.errors import DataError

log = logging.getLogger(__name__)

#: prefixes of published parameters that recon3d deliberately does not load: the track head
#: (``track_head.feature_extractor.*``, ``track_head.tracker.*``; point tracking is not part of
#: recon3d's outputs). They are counted and reported, never silently dropped.
IGNORED_PREFIXES = ("track_head.",)

#: aggregator layers the official DPT heads read from a 24-block aggregator (VGGT-1B).
OFFICIAL_DPT_LAYERS = (4, 11, 17, 23)
OFFICIAL_DEPTH = 24


def _state_dict_of(payload: Mapping) -> Mapping[str, torch.Tensor]:
    for key in ("model", "state_dict"):  # wrapped checkpoints
        if key in payload and isinstance(payload[key], Mapping):
            return payload[key]
    return payload


def _count(state: Mapping, prefix: str) -> int:
    """Number of consecutive indices N with keys ``prefix + "N."`` (0 when there are none)."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def official_dpt_layers(depth: int) -> list[int]:
    """The aggregator layers the DPT heads read: [4, 11, 17, 23] for 24 blocks, the same fractions otherwise."""
    return [i * depth // OFFICIAL_DEPTH for i in OFFICIAL_DPT_LAYERS]


def infer_config(state: Mapping[str, torch.Tensor], source="checkpoint"):
    """The :class:`~.model.VGGTConfig` of a state dict in the official layout (module docstring).

    Raises DataError(source, ...) when a tensor that defines the architecture is missing or odd.
    """
    from .model import VGGTConfig

    def shape(key: str, ndim: int) -> tuple[int, ...]:
        if key not in state:
            raise DataError(source, f"not a published VGGT state dict: it has no {key!r}")
        s = tuple(state[key].shape)
        if len(s) != ndim:
            raise DataError(source, f"not a published VGGT state dict: {key!r} has shape {s}")
        return s

    C = shape("aggregator.camera_token", 4)[-1]
    registers = shape("aggregator.register_token", 4)[2]
    depth = _count(state, "aggregator.frame_blocks.")
    if depth == 0 or _count(state, "aggregator.global_blocks.") != depth:
        raise DataError(source, f"not a published VGGT state dict: {depth} frame blocks, "
                                f"{_count(state, 'aggregator.global_blocks.')} global blocks")
    head_dim = shape("aggregator.frame_blocks.0.attn.q_norm.weight", 1)[0]
    if head_dim <= 0 or C % head_dim:
        raise DataError(source, f"not a published VGGT state dict: q/k norm width {head_dim} does not divide {C}")
    heads = C // head_dim
    hidden = shape("aggregator.frame_blocks.0.mlp.fc1.weight", 2)[0]
    proj = shape("aggregator.patch_embed.patch_embed.proj.weight", 4)  # (C, 3, p, p): the DINOv2 embedder
    patch = proj[-1]
    n_pos = shape("aggregator.patch_embed.pos_embed", 3)[1] - 1
    grid = math.isqrt(max(n_pos, 0))
    if grid * grid != n_pos or grid == 0:
        raise DataError(source, f"not a published VGGT state dict: pos_embed holds {n_pos} patches, not a square grid")
    dino_depth = _count(state, "aggregator.patch_embed.blocks.")
    if dino_depth == 0:
        raise DataError(source, "not a published VGGT state dict: no DINOv2 blocks (aggregator.patch_embed.blocks.*)")
    dim_in = shape("camera_head.token_norm.weight", 1)[0]
    if dim_in != 2 * C:
        raise DataError(source, f"not a published VGGT state dict: camera head width {dim_in}, aggregator {C}")
    features = shape("depth_head.scratch.layer1_rn.weight", 4)[0]
    out_channels = [shape(f"depth_head.projects.{i}.weight", 4)[0] for i in range(4)]
    return VGGTConfig(
        img_size=grid * patch, patch_size=patch, embed_dim=C, depth=depth, num_heads=heads, mlp_ratio=hidden / C,
        num_register_tokens=registers, patch_embed="dinov2", dino_depth=dino_depth, dino_num_heads=heads,
        qk_norm=True, rope_freq=100.0, init_values=0.01, conv_abs_pos=False,
        camera_trunk_depth=_count(state, "camera_head.trunk."), camera_num_heads=heads, camera_iters=4,
        dpt_features=features, dpt_out_channels=out_channels, dpt_layer_idx=official_dpt_layers(depth),
        dpt_residual="official", pixel_offset=0.0)


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
        raise DataError(source, "not a published VGGT state dict: " + "; ".join(problems))
    return {"loaded": len(keys), "ignored": len(ignored)}


def load_published_state_dict(payload: Mapping, source="checkpoint", config=None):
    """A :class:`~.model.VGGT` holding ``payload``'s tensors (float32), architecture read from the file.

    Args:
        payload: the published state dict (or a dict wrapping it under ``model``/``state_dict``).
        source: file name for error messages.
        config: architecture (default: :func:`infer_config` of the state dict).
    Returns:
        the model on the CPU (on ``meta`` if the state dict holds meta tensors), with
        ``external_checkpoint``: ``{"source", "format", "tensors", "skipped", "skipped_prefixes", "dtypes"}``.
    """
    from .model import VGGT

    state = _state_dict_of(payload)
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(source, "does not hold a state dict of tensors")
    odd = sorted(k for k, v in state.items() if not v.is_floating_point())
    if odd:
        raise DataError(source, f"not a published VGGT state dict: {len(odd)} non-float tensors ({', '.join(odd[:3])})")
    cfg = config or infer_config(state, source)
    try:
        with torch.device("meta"):
            model = VGGT(cfg)
    except ValueError as e:
        raise DataError(source, f"not a loadable VGGT architecture: {e}") from e
    counts = check_state_dict(model, state, source)
    kept = {k: v.float() for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    model.load_state_dict(kept, strict=True, assign=True)
    if not any(v.is_meta for v in kept.values()):
        model.aggregator.reset_normalization(device=next(iter(kept.values())).device)
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:  # a module buffer this loader does not know about: fail here, not at .to(device)
            raise RuntimeError(f"VGGT loader left tensors on the meta device: {left[:5]}")
    model.aggregator.patch_embed.mask_token.requires_grad_(False)
    model.external_checkpoint = {
        "source": str(source), "format": "published VGGT state dict", "tensors": counts["loaded"],
        "skipped": counts["ignored"], "skipped_prefixes": list(IGNORED_PREFIXES),
        "dtypes": sorted({str(v.dtype).replace("torch.", "") for v in state.values()})}
    log.info("loaded %d published VGGT tensors from %s (%s; %d track-head tensors skipped: not implemented)",
             counts["loaded"], Path(str(source)).name, ", ".join(model.external_checkpoint["dtypes"]),
             counts["ignored"])
    return model

