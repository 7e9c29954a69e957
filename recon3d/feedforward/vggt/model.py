"""VGGT-style geometry transformer: images -> cameras, depth maps, point maps (+ confidences).

One forward pass over S frames of a scene (Wang et al., "VGGT: Visual Geometry Grounded
Transformer", CVPR 2025): an alternating-attention :class:`~.aggregator.Aggregator`, a camera head
refining the 9-number pose encoding (:mod:`.pose_encoding`), and DPT heads for depth and world
points, each with a confidence. The first frame's camera is the world frame of the predictions.

Sizes (:func:`vggt_config`): ``tiny`` (64 px, patch 8, trained here, shipped as
``data/checkpoints/vggt.pt``), ``small`` and ``published`` (VGGT-1B: DINOv2 ViT-L/14 patch
embedder, 24 + 24 alternating blocks of width 1024, 518 px).

Published weights: Hugging Face ``facebook/VGGT-1B``, file ``model.pt``
(https://huggingface.co/facebook/VGGT-1B/resolve/main/model.pt), a plain state dict.
``recon3d.feedforward.registry.load_model("vggt", "model.pt")`` (``recon3d predict --checkpoint``,
``fit --vggt-checkpoint``) reads it through :meth:`VGGT.from_external_checkpoint`
(:mod:`.external`: architecture read from the file's shapes, ``track_head.*`` skipped, strict
otherwise) and computes what the official code computes (checked against the official modules on the
``shared/reference/vggt_small`` fixture to ~1e-6 relative, ``tests/test_vggt_published.py``).
Licenses (checked November 2026; read them yourself before use): the VGGT-1B weights are for non-commercial use (CC BY-NC 4.0, as listed for ``facebook/VGGT-1B``,
e.g. https://docs.voxel51.com/model_zoo/models/facebook_VGGT_1B.html); Meta also publishes
``facebook/VGGT-1B-Commercial`` under the "VGGT License", which permits commercial use except
military/weapons uses (https://huggingface.co/ItemMapHQ/VGGT-1B-Commercial); the code repository
https://github.com/facebookresearch/vggt has its own LICENSE.txt (its DINOv2-derived layers carry
Apache-2.0 headers). recon3d ships none of these weights and none of that code: this module is a
re-implementation whose parameter names match the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from recon3d.runtime.config import ConfigIO

from ..base import Batch, FeedForwardModel
from .aggregator import Aggregator
from .heads import CameraHead, DPTHead
from .losses import camera_loss, confidence_loss, normalized_targets
from .pose_encoding import PIXEL_OFFSET, decode_pose, extrinsics_to_c2w


@dataclass
class VGGTConfig(ConfigIO):
    """Architecture and loss settings (defaults: the ``tiny`` size).

    Attributes:
        img_size: training image size (square), pixels; also the DINO position-embedding size.
        patch_size: pixels per patch side.
        embed_dim, depth, num_heads, mlp_ratio: aggregator width, rounds of frame+global blocks, heads.
        num_register_tokens: register tokens per frame.
        patch_embed: ``"conv"`` or ``"dinov2"``; ``dino_depth``/``dino_num_heads`` size the latter.
        qk_norm, rope_freq, init_values, conv_abs_pos: attention / embedding options (see
            :class:`~.aggregator.Aggregator`).
        camera_trunk_depth, camera_num_heads, camera_iters: camera head trunk and refinement steps.
        dpt_features, dpt_out_channels, dpt_layer_idx: DPT head widths and the 4 aggregator layers read.
        dpt_residual: the DPT fusion blocks' residual units (:data:`~.heads.DPT_RESIDUALS`):
            ``"official"`` (``relu(x) + f(x)``, what the published VGGT code computes; new models) or
            ``"identity"`` (``x + f(x)``, the recon3d checkpoints saved before this option existed,
            such as the shipped ``vggt.pt``: a stored config without the key reads as ``"identity"``).
        pixel_offset: where in a pixel the model's depth is unprojected with its decoded intrinsics
            (principal point ``(W/2, H/2)``), pixels from the pixel's top-left corner: 0.5 for models
            trained by recon3d (its data's convention, :data:`~.pose_encoding.PIXEL_OFFSET`), 0.0 for
            the published weights (the official code unprojects at integer pixel coordinates).
            :meth:`VGGT.cameras_from_encoding` folds it into the principal point, so every camera
            it returns is in recon3d's pixel-centre convention.
        conf_alpha: weight of ``-log(confidence)`` in the depth / point losses.
        camera_loss: ``"huber"`` (the paper; the shipped weights) or ``"l1"`` (the reference training
            code) on pose encodings.
        camera_weight, depth_weight, point_weight: loss weights.
        background_conf_weight: weight of the mean ``confidence - 1`` on background pixels (a recon3d
            addition for objects on a blank background; 0 gives the paper's loss).
    """

    img_size: int = 64
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    patch_embed: str = "convstem"
    dino_depth: int = 0
    dino_num_heads: int = 4
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    conv_abs_pos: bool = True
    camera_trunk_depth: int = 2
    camera_num_heads: int = 4
    camera_iters: int = 4
    dpt_features: int = 32
    dpt_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    dpt_layer_idx: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    dpt_residual: str = "official"
    pixel_offset: float = PIXEL_OFFSET
    conf_alpha: float = 0.2
    camera_loss: str = "huber"
    camera_weight: float = 5.0
    depth_weight: float = 1.0
    point_weight: float = 1.0
    background_conf_weight: float = 0.05

    @classmethod
    def from_dict(cls, d: dict) -> "VGGTConfig":
        """A stored config; one saved before ``dpt_residual`` existed was trained with ``"identity"``."""
        return super().from_dict({"dpt_residual": "identity", **d})


def vggt_config(size: str = "tiny") -> VGGTConfig:
    """Named sizes: ``tiny`` (4.0M parameters, 64 px), ``small`` (DINO-style patch embedder, 2 + 6
    blocks of width 256), ``published`` (the VGGT-1B architecture, 518 px, patch 14)."""
    if size == "tiny":
        return VGGTConfig()
    if size == "small":
        return VGGTConfig(img_size=112, patch_size=14, embed_dim=256, depth=6, num_heads=8, patch_embed="dinov2",
                          dino_depth=2, dino_num_heads=8, camera_trunk_depth=2, camera_num_heads=8,
                          dpt_features=64, dpt_out_channels=[32, 64, 128, 128], dpt_layer_idx=[1, 2, 4, 5])
    if size == "published":
        return VGGTConfig(img_size=518, patch_size=14, embed_dim=1024, depth=24, num_heads=16, patch_embed="dinov2",
                          dino_depth=24, dino_num_heads=16, camera_trunk_depth=4, camera_num_heads=16,
                          dpt_features=256, dpt_out_channels=[256, 512, 1024, 1024], dpt_layer_idx=[4, 11, 17, 23])
    raise ValueError(f"unknown VGGT size {size!r}; known: tiny, small, published")


class VGGT(FeedForwardModel):
    """Cameras, depth and world points of S frames in one pass. See the module docstring."""

    name = "vggt"
    config_cls = VGGTConfig

    def __init__(self, config: Optional[VGGTConfig] = None) -> None:
        config = config or VGGTConfig()
        super().__init__(config)
        c = config
        if len(c.dpt_layer_idx) != 4 or max(c.dpt_layer_idx) >= c.depth:
            raise ValueError(f"dpt_layer_idx must be 4 layer indices below depth={c.depth}, got {c.dpt_layer_idx}")
        self.aggregator = Aggregator(c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.mlp_ratio,
                                     c.num_register_tokens, c.patch_embed, c.dino_depth, c.dino_num_heads,
                                     c.qk_norm, c.rope_freq, c.init_values, c.conv_abs_pos)
        dim = 2 * c.embed_dim
        self.camera_head = CameraHead(dim, c.camera_trunk_depth, c.camera_num_heads, c.mlp_ratio, c.init_values)
        dpt = dict(features=c.dpt_features, out_channels=c.dpt_out_channels, layer_idx=c.dpt_layer_idx,
                   residual=c.dpt_residual)
        self.point_head = DPTHead(dim, c.patch_size, 4, "inv_log", **dpt)
        self.depth_head = DPTHead(dim, c.patch_size, 2, "exp", **dpt)

    # ------------------------------------------------------------------ inference
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images (B, S, 3, H, W) in [0, 1], H and W multiples of ``patch_size`` (B, S >= 1) ->

        ``pose_enc`` (B, S, 9) (last refinement), ``pose_enc_list`` (iterations), ``depth``
        (B, S, H, W, 1) and ``depth_conf`` (B, S, H, W), ``world_points`` (B, S, H, W, 3) and
        ``world_points_conf`` (B, S, H, W); all in the first camera's frame at the model's scale.
        """
        if images.ndim == 4:
            images = images[None]
        H, W = images.shape[-2:]
        p = self.config.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        layers = self.aggregator(images)
        ps = self.aggregator.patch_start_idx
        poses = self.camera_head(layers[-1], iters=self.config.camera_iters)
        depth, depth_conf = self.depth_head(layers, (H, W), ps)
        points, points_conf = self.point_head(layers, (H, W), ps)
        return {"pose_enc": poses[-1], "pose_enc_list": poses, "depth": depth, "depth_conf": depth_conf,
                "world_points": points, "world_points_conf": points_conf}

    def cameras_from_encoding(self, pose_enc: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(..., 9) encodings -> recon3d cameras: c2w (..., 4, 4) OpenCV camera-to-world, K (..., 3, 3)
        in recon3d's pixel convention (pixel centres at +0.5): the decoded principal point ``(W/2, H/2)``
        shifted by ``0.5 - config.pixel_offset`` (the published weights: ``(W/2 + 0.5, H/2 + 0.5)``),
        so that unprojecting at pixel centres gives the points the model's own convention gives."""
        extr, K = decode_pose(pose_enc, image_hw)
        shift = 0.5 - float(getattr(self.config, "pixel_offset", PIXEL_OFFSET))
        if shift:
            K = K.clone()
            K[..., 0, 2] += shift
            K[..., 1, 2] += shift
        return extrinsics_to_c2w(extr), K

    # ------------------------------------------------------------------ training
    def _losses(self, batch: Batch) -> tuple[Tensor, dict[str, float], dict[str, Tensor], dict[str, Tensor]]:
        images = batch["images"]
        gt = normalized_targets(batch)
        out = self(images)
        c = self.config
        l_cam, parts = camera_loss(out["pose_enc_list"], gt["pose_enc"], kind=c.camera_loss)
        l_depth = confidence_loss(out["depth"], out["depth_conf"], gt["depth"][..., None], gt["valid"], c.conf_alpha)
        l_pts = confidence_loss(out["world_points"], out["world_points_conf"], gt["points"], gt["valid"], c.conf_alpha)
        loss = c.camera_weight * l_cam + c.depth_weight * l_depth + c.point_weight * l_pts
        # recon3d addition for object-centric data: no geometry behind background pixels, so their
        # confidence is pushed to its floor (conf - 1 -> 0) and confidence filtering removes them
        background = gt["depth"] <= 0
        l_bg = ((out["depth_conf"] - 1)[background].mean() + (out["world_points_conf"] - 1)[background].mean()
                if background.any() else loss.new_zeros(()))
        loss = loss + c.background_conf_weight * l_bg
        logs = {"loss": float(loss.detach()), "loss_camera": float(l_cam.detach()), "loss_depth": float(l_depth.detach()),
                "loss_points": float(l_pts.detach()), "loss_background_conf": float(l_bg.detach()),
                **{f"loss_{k}": v for k, v in parts.items()}}
        return loss, logs, out, gt

    def training_step(self, batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        loss, logs, _, _ = self._losses(batch)
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Loss terms plus geometry errors in the normalized first-camera frame:

        ``rot_err_deg`` / ``trans_err`` (camera rotation angle / translation distance of views
        2..V, the first is the reference), ``fov_err_deg``, ``depth_absrel`` (mean |d - d*| / d*),
        ``point_err`` (mean distance of world points, normalized units) on valid pixels.
        """
        _, logs, out, gt = self._losses(batch)
        H, W = batch["images"].shape[-2:]
        extr_p, _ = decode_pose(out["pose_enc"], (H, W))
        extr_t = gt["extrinsics"]
        rel = extr_p[:, 1:, :, :3].transpose(-1, -2) @ extr_t[:, 1:, :, :3]
        cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        valid = gt["valid"]
        d_t = gt["depth"]
        metrics = {
            "rot_err_deg": float(torch.rad2deg(torch.arccos(cos)).mean()) if rel.numel() else 0.0,
            "trans_err": float((extr_p[:, 1:, :, 3] - extr_t[:, 1:, :, 3]).norm(dim=-1).mean()) if rel.numel() else 0.0,
            "fov_err_deg": float(torch.rad2deg((out["pose_enc"][..., 7:] - gt["pose_enc"][..., 7:]).abs()).mean()),
            "depth_absrel": float(((out["depth"][..., 0] - d_t).abs() / d_t.clamp_min(1e-6))[valid].mean()),
            "point_err": float((out["world_points"] - gt["points"]).norm(dim=-1)[valid].mean()),
        }
        return {**logs, **metrics}

    @torch.no_grad()
    def validation_images(self, batch: Batch) -> dict[str, Tensor]:
        """``depth``: (H, 3W, 3) [input | true depth | predicted depth] of the first item's first view."""
        gt = normalized_targets(batch)
        out = self(batch["images"][:1])
        d_t, d_p, valid = gt["depth"][0, 0], out["depth"][0, 0, ..., 0], gt["valid"][0, 0]
        hi = float(d_t[valid].max()) if valid.any() else 1.0
        lo = float(d_t[valid].min()) if valid.any() else 0.0

        def gray(d: Tensor) -> Tensor:
            g = (1 - (d - lo) / max(hi - lo, 1e-6)).clamp(0, 1) * valid
            return g[..., None].expand(-1, -1, 3)

        rgb = batch["images"][0, 0].permute(1, 2, 0)
        return {"depth": torch.cat([rgb, gray(d_t), gray(d_p)], dim=1).clamp(0, 1)}

    @classmethod
    def default_train_config(cls) -> dict:
        """Suggested trainer settings for the tiny size on the shared 64 px data set."""
        return {"batch_size": 2, "views_per_item": 4, "lr": 5e-4, "warmup": 100, "num_workers": 0,
                "val_every": 200, "val_batches": 4, "ckpt_every": 200}

    # ------------------------------------------------------------------ published weights
    @classmethod
    def from_external_checkpoint(cls, path, payload: dict) -> "VGGT":
        """Build the published-size model from VGGT's ``model.pt`` state dict (see :mod:`.external`)."""
        from .external import load_published_state_dict

        return load_published_state_dict(payload, source=path)
