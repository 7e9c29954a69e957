"""NeuS training losses and cos-anneal schedule, shared by :class:`recon3d.methods.sdf.SdfTrainer` and the nerfstudio plugin
(:mod:`recon3d.integrations.nerfstudio.sdf_model`)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def neus_loss_terms(out: dict, target: Tensor, mask: Optional[Tensor] = None) -> dict[str, Tensor]:
    """Unweighted NeuS loss terms of one batch of R rays rendered by
    :func:`~recon3d.methods.sdf.rendering.render_neus` (S samples per ray).

    Args:
        out: ``render_neus`` output: ``rgb`` (R, 3), ``gradients`` (R, S, 3) SDF gradients in the
            field's unit coordinates, ``inside`` (R, S) bool, ``opacity`` (R, 1).
        target: (R, 3) ground-truth colours over the same background as ``out['rgb']``.
        mask: optional (R, 1) coverage in [0, 1] (masks or alpha) for the opacity BCE.
    Returns:
        ``color``: mean L1 colour error; ``eikonal`` (only when ``out`` has ``gradients``): mean of
        ``(|grad f| - 1)^2`` over the samples inside the bounding sphere; ``mask`` (only with
        ``mask``): BCE between the opacity (clamped to [1e-3, 1 - 1e-3]) and the mask. Scalar tensors.
    """
    terms = {"color": (out["rgb"] - target).abs().mean()}
    if "gradients" in out:
        inside = out["inside"].float()
        terms["eikonal"] = (((out["gradients"].norm(dim=-1) - 1.0) ** 2) * inside).sum() / inside.sum().clamp_min(1.0)
    if mask is not None:
        op = out["opacity"].clamp(1e-3, 1 - 1e-3)
        terms["mask"] = torch.nn.functional.binary_cross_entropy(op, mask)
    return terms


def weighted_neus_losses(terms: dict[str, Tensor], eikonal_weight: float, mask_weight: float) -> dict[str, Tensor]:
    """The terms of :func:`neus_loss_terms` times their weights (colour 1); their sum is the
    training loss."""
    out = {"color": terms["color"]}
    if "eikonal" in terms:
        out["eikonal"] = eikonal_weight * terms["eikonal"]
    if "mask" in terms:
        out["mask"] = mask_weight * terms["mask"]
    return out


def cos_anneal_ratio(step: int, anneal_steps: int) -> float:
    """NeuS cos-anneal ratio at a training step: ``step / anneal_steps`` capped at 1 (1 when
    ``anneal_steps <= 0``); see :func:`~recon3d.methods.sdf.rendering.neus_alphas`."""
    return 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)
