"""Prediction heads: the iterative camera head and the DPT dense heads (depth, world points).

Names of modules/parameters follow the published VGGT checkpoint (``trunk.N``, ``token_norm``,
``trunk_norm``, ``empty_pose_tokens``, ``embed_pose``, ``poseLN_modulation.1``, ``pose_branch.fc1/fc2``;
``norm``, ``projects.N``, ``resize_layers.N``, ``scratch.layerN_rn``, ``scratch.refinenetN.*``,
``scratch.output_conv1``, ``scratch.output_conv2.{0,2}``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Block, Mlp, sincos_uv_embedding
from .pose_encoding import POSE_ENCODING_DIM


class CameraHead(nn.Module):
    """Camera token of the last aggregator layer -> pose encoding (9,), refined over iterations.

    Each iteration embeds the current encoding (an "empty" learned one at first), turns it into an
    adaLN shift/scale/gate for the normalized camera token, runs a small transformer ``trunk`` over
    the S camera tokens of a scene, and adds the predicted delta to the encoding. The FoV entries
    pass through a ReLU, translation and quaternion stay linear.
    """

    def __init__(self, dim_in: int, trunk_depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4.0,
                 init_values: float = 0.01) -> None:
        super().__init__()
        d = POSE_ENCODING_DIM
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk = nn.Sequential(*[Block(dim_in, num_heads, mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)])
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, d))
        self.embed_pose = nn.Linear(d, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, d)

    def forward(self, tokens: Tensor, iters: int = 4) -> list[Tensor]:
        """tokens (B, S, P, 2C) of the last layer -> ``iters`` pose encodings (B, S, 9), last = best."""
        cam = self.token_norm(tokens[:, :, 0])
        B, S, _ = cam.shape
        enc = None
        out = []
        for _ in range(iters):
            cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1) if enc is None else enc.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = cam + gate * (self.adaln_norm(cam) * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            enc = delta if enc is None else enc + delta
            out.append(torch.cat([enc[..., :7], F.relu(enc[..., 7:])], dim=-1))
        return out


#: residual units of the DPT fusion blocks (``VGGTConfig.dpt_residual``): ``"official"`` adds the
#: branch to ``relu(x)``, as the published VGGT code computes (its unit applies an in-place ReLU to its
#: input before the branch, so the skip connection carries the activated input); ``"identity"`` adds it
#: to ``x`` itself (a plain pre-activation unit, what recon3d checkpoints trained before the option
#: existed use, e.g. the shipped ``data/checkpoints/vggt.pt``).
DPT_RESIDUALS = ("official", "identity")


class ResidualConvUnit(nn.Module):
    """``skip + conv2(relu(conv1(relu(x))))`` with ``skip = relu(x)`` (``"official"``) or ``x`` (``"identity"``)."""

    def __init__(self, features: int, residual: str = "official") -> None:
        super().__init__()
        if residual not in DPT_RESIDUALS:
            raise ValueError(f"dpt residual must be one of {DPT_RESIDUALS}, got {residual!r}")
        self.residual = residual
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(x)
        branch = self.conv2(F.relu(self.conv1(act)))
        return (act if self.residual == "official" else x) + branch


class FeatureFusionBlock(nn.Module):
    """DPT fusion: (x [+ rcu1(skip)]) -> rcu2 -> bilinear upsample (x2 or to ``size``) -> 1x1 out_conv."""

    def __init__(self, features: int, has_residual: bool = True, residual: str = "official") -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features, residual) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features, residual)

    def forward(self, x: Tensor, skip: Tensor | None = None, size=None) -> Tensor:
        if skip is not None and self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense prediction from 4 aggregator layers (DPT): per-pixel values + a positive confidence.

    Tokens of layers ``layer_idx`` are normalized, projected to ``out_channels`` and resampled to
    4x, 2x, 1x and 1/2x the patch grid, fused coarse-to-fine at ``features`` channels, upsampled to
    the image size and mapped to ``output_dim`` channels: the last is the confidence
    (``1 + exp``), the others the values (``activation``: ``"exp"`` for depth, ``"inv_log"``
    (sign(x) * (exp|x| - 1)) for points). ``residual``: the fusion blocks' residual units
    (:data:`DPT_RESIDUALS`). Deviation from the published code: the logits of ``exp`` values and of
    the confidence are clamped at 30 before ``exp`` (no float32 overflow from an untrained head; a
    trained head never gets near: exp(30) ~ 1e13).
    """

    def __init__(self, dim_in: int, patch_size: int, output_dim: int, activation: str,
                 features: int = 256, out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 layer_idx: Sequence[int] = (4, 11, 17, 23), residual: str = "official") -> None:
        super().__init__()
        if activation not in ("exp", "inv_log", "linear"):
            raise ValueError(f"unknown activation {activation!r}")
        oc = list(out_channels)
        self.patch_size = patch_size
        self.activation = activation
        self.layer_idx = list(layer_idx)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, c, 1) for c in oc])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features, has_residual=i != 4, residual=residual))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))

    @staticmethod
    def _add_pos(x: Tensor, aspect: float, ratio: float = 0.1) -> Tensor:
        return x + ratio * sincos_uv_embedding(x.shape[1], x.shape[2], x.shape[3], aspect, x.device, x.dtype)

    def forward(self, layers: list[Tensor], image_hw: tuple[int, int], patch_start_idx: int) -> tuple[Tensor, Tensor]:
        """layers: aggregator outputs (B, S, P, 2C) -> values (B, S, H, W, output_dim - 1), conf (B, S, H, W)."""
        H, W = image_hw
        h, w = H // self.patch_size, W // self.patch_size
        B, S = layers[0].shape[:2]
        aspect = W / H
        feats = []
        for j, li in enumerate(self.layer_idx):
            x = self.norm(layers[li][:, :, patch_start_idx:].reshape(B * S, h * w, -1))
            x = x.transpose(1, 2).reshape(B * S, -1, h, w)
            x = self._add_pos(self.projects[j](x), aspect)
            feats.append(self.resize_layers[j](x))
        sc = self.scratch
        l1, l2, l3, l4 = (getattr(sc, f"layer{i + 1}_rn")(f) for i, f in enumerate(feats))
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.refinenet1(out, l1)
        out = sc.output_conv1(out)
        out = F.interpolate(out, size=(h * self.patch_size, w * self.patch_size), mode="bilinear", align_corners=True)
        out = sc.output_conv2(self._add_pos(out, aspect))
        out = out.permute(0, 2, 3, 1).reshape(B, S, H, W, -1)
        # logits are clamped so that an untrained head cannot overflow float32 (exp(30) ~ 1e13)
        vals, conf = out[..., :-1], 1.0 + out[..., -1].clamp(max=30.0).exp()
        if self.activation == "exp":
            vals = vals.clamp(max=30.0).exp()
        elif self.activation == "inv_log":
            vals = vals.sign() * torch.expm1(vals.abs().clamp(max=30.0))
        return vals, conf
