"""LRM: one image -> a triplane NeRF (Hong et al. 2023, "LRM: Large Reconstruction Model for Single Image to 3D").

Pipeline (shapes for batch B, source image S x S, ``C`` triplane channels, planes ``R x R``):

1. :class:`~.networks.ViTEncoder`: the source image, resized to ``config.image_size``, -> image tokens
   (B, 1 + (S/p)^2, D_enc).
2. :func:`~.networks.camera_vector` + :class:`~.networks.CameraEmbedder`: the source camera -> (B, E).
   With ``config.projected_tokens`` (the shipped tiny model), the decoder's learned tokens also get
   the image features found where their cells project into the source view (see :mod:`~.networks`).
3. :class:`~.networks.TriplaneDecoder`: learned triplane tokens cross-attend to the image tokens,
   self-attend, pass an MLP, all behind camera-modulated layer norms -> triplanes (B, 3, C, R, R).
4. :class:`~.triplane.TriplaneMLP` on bilinear plane features (axes: :mod:`~.triplane`) -> density and
   colour, rendered and meshed by the shared :mod:`recon3d.feedforward.rendering` (core sampler and
   volume renderer, white background).

Frame of the triplanes
----------------------
The paper puts the triplanes in the *input camera's* frame (a fixed canonical source pose), so the
model never learns where the camera was. recon3d's data already has a canonical world: +Z up, the
object centred at the origin (radius <= 0.95), cameras looking at it. We keep that world, which
keeps "up" meaningful for meshes, turntables and Blender export, and give the model the source
camera instead, through the adaptive layer norms (camera modulation). One normalization is kept from
the paper's idea, because a small model cannot afford to learn arbitrary rotations: with
``config.canonical_yaw`` (default) the world is first rotated about +Z so the source camera sits on
the -Y side (azimuth -90 degrees; the image's right is then +X and its up +Z, roughly). The triplanes
live in that yaw-normalized frame, the camera code sees the rotated source camera (its elevation,
distance and intrinsics still vary and still modulate), and :meth:`LRM.query` rotates world points
into it. Azimuth carries no information for a single view of an unposed object, so nothing is lost;
the result is exactly equivariant to turning the source camera about +Z. ``canonical_yaw=False``
feeds the raw world-frame camera (the published configuration keeps it off). For photos of unknown
pose, ``recon3d predict`` supplies :func:`recon3d.feedforward.predict.canonical_source_cameras`
(elevation 20 degrees, distance 3.6, FOV 40 degrees: the middle of the training cameras).

Only the first source view is used (LRM is a single-image model).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.feedforward.base import Batch, ConditionedRadianceField
from recon3d.feedforward.rendering import RenderOptions, camera_rays, density_mesh, render_rays, render_view

from .config import LRMConfig
from .networks import CameraEmbedder, TriplaneDecoder, ViTEncoder, camera_vector, projected_token_features
from .triplane import PLANE_AXES, TriplaneMLP, sample_triplane

#: azimuth (radians, from +X towards +Y) where ``canonical_yaw`` puts the source camera.
CANONICAL_AZIMUTH = -math.pi / 2


def yaw_rotation(c2w: Tensor) -> Tensor:
    """(B, 3, 3) rotation about +Z taking world points into the frame where the camera centre of
    ``c2w`` (B, 4, 4) has azimuth :data:`CANONICAL_AZIMUTH` (``p_canonical = R @ p_world``)."""
    c = c2w[:, :3, 3]
    angle = CANONICAL_AZIMUTH - torch.atan2(c[:, 1], c[:, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    R = torch.zeros(c2w.shape[0], 3, 3, dtype=c2w.dtype, device=c2w.device)
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = cos, -sin, sin, cos, 1.0
    return R


class LRM(ConditionedRadianceField):
    """Single-image triplane NeRF (see the module docstring). ``LRM(config)``; config: :class:`LRMConfig`.

    Latent (from :meth:`encode`): dict with ``planes`` (B, 3, C, R, R) in the yaw-normalized frame and
    ``rotation`` (B, 3, 3) world -> that frame.
    """

    name = "lrm"
    config_cls = LRMConfig

    @property
    def mesh_density_threshold(self) -> float:
        """Marching-cubes level (1/world units) ``recon3d predict`` uses: ``config.mesh_threshold``."""
        return float(self.config.mesh_threshold)

    def __init__(self, config: Optional[LRMConfig] = None) -> None:
        config = config if config is not None else LRMConfig()
        super().__init__(config)
        c = config
        self.scene_bound = float(c.scene_bound)
        self.encoder = ViTEncoder(c.image_size, c.patch_size, c.encoder_dim, c.encoder_layers, c.encoder_heads,
                                  c.encoder_mlp_ratio)
        self.camera_embedder = CameraEmbedder(c.camera_embed_dim)
        self.decoder = TriplaneDecoder(c.decoder_dim, c.decoder_layers, c.decoder_heads, c.decoder_mlp_ratio,
                                       image_dim=c.encoder_dim, cond_dim=c.camera_embed_dim,
                                       low_res=c.triplane_low_res, high_res=c.triplane_high_res,
                                       channels=c.triplane_dim, projected_tokens=c.projected_tokens)
        if c.projected_tokens:  # (3 h h, 3) token cell centres, each on its plane through the origin
            h = c.triplane_low_res
            centers = ((2 * torch.arange(h, dtype=torch.float32) + 1) / h - 1) * c.scene_bound
            rr, cc = torch.meshgrid(centers, centers, indexing="ij")
            pts = torch.zeros(3, h, h, 3)
            for k, (ac, ar) in enumerate(PLANE_AXES):
                pts[k, :, :, ac], pts[k, :, :, ar] = cc, rr
            self.register_buffer("token_points", pts.reshape(-1, 3), persistent=False)
        self.field = TriplaneMLP(c.triplane_dim, c.mlp_hidden, c.mlp_layers, c.aggregate,
                                 c.density_scale, c.density_bias)

    # ------------------------------------------------------------------ training defaults
    @classmethod
    def default_train_config(cls) -> dict:
        """Trainer settings that suit the tiny model on the 64 px synthetic set (CPU)."""
        c = LRMConfig()
        return {"batch_size": 4, "views_per_item": 4, "lr": c.lr, "weight_decay": c.weight_decay,
                "warmup_steps": c.warmup_steps, "steps": 2000, "val_every": 250, "val_batches": 2,
                "ckpt_every": 250, "log_every": 25, "num_workers": 0}

    # ------------------------------------------------------------------ field
    def source_rotation(self, c2w: Tensor) -> Tensor:
        """(B, 3, 3) world -> triplane frame rotation for source cameras c2w (B, 4, 4)."""
        if self.config.canonical_yaw:
            return yaw_rotation(c2w)
        return torch.eye(3, dtype=c2w.dtype, device=c2w.device).expand(c2w.shape[0], 3, 3).clone()

    def encode(self, images: Tensor, K: Tensor, c2w: Tensor) -> dict[str, Tensor]:
        """Triplanes from the first source view.

        Args:
            images: (B, S, 3, H, W) in [0, 1] on white; K: (B, S, 3, 3) pixels; c2w: (B, S, 4, 4) OpenCV.
        Returns:
            ``{"planes": (B, 3, C, R, R), "rotation": (B, 3, 3)}``.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        img, K0, T0 = images[:, 0], K[:, 0], c2w[:, 0]
        H, W = img.shape[-2:]
        size = self.config.image_size
        if (H, W) != (size, size):
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True).clamp(0, 1)
        R = self.source_rotation(T0)
        T = T0.clone()
        T[:, :3, :] = R @ T0[:, :3, :]  # the source camera in the triplane frame
        cam = self.camera_embedder(camera_vector(K0, T, W, H))
        tokens = self.encoder(img)
        projected = None
        if self.config.projected_tokens:
            projected = projected_token_features(tokens[:, 1:], K0, T, W, H, self.token_points)
        planes = self.decoder(tokens, cam, projected)
        return {"planes": planes, "rotation": R}

    def query(self, latent: dict[str, Tensor], points: Tensor, directions: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Density (B, N), 1/world units, and RGB (B, N, 3) at world points (B, N, 3).

        Colour is view-independent (as in LRM), so ``directions`` is accepted and ignored.
        """
        p = torch.einsum("bij,bnj->bni", latent["rotation"].to(points.dtype), points)
        feats = sample_triplane(latent["planes"], p, self.scene_bound)
        return self.field(feats)

    # ------------------------------------------------------------------ training
    def _render_options(self, training: bool) -> RenderOptions:
        return RenderOptions(num_coarse=self.config.num_coarse, num_fine=self.config.num_fine,
                             stratified=training, background="white")

    def _sample_pixels(self, masks: Tensor, n: int) -> Tensor:
        """(N, n) pixel indices for N flattened (HW) masks (N, HW): a ``foreground_fraction`` share
        drawn among object pixels (uniform where a view shows none), the rest uniform."""
        N, HW = masks.shape
        n_fg = int(round(n * self.config.foreground_fraction))
        idx = [torch.randint(0, HW, (N, n - n_fg), device=masks.device)]
        if n_fg > 0:
            w = (masks > 0.5).float()
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
            idx.append(torch.multinomial(w, n_fg, replacement=True))
        return torch.cat(idx, dim=1)

    def training_step(self, batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        """Encode view 0, render random rays of the supervised views, MSE colour + mask (+ depth) loss."""
        cfg = self.config
        images, masks, K, c2w = batch["images"], batch["masks"], batch["K"], batch["c2w"]
        B, V, _, H, W = images.shape
        first = 0 if cfg.supervise_source or V == 1 else 1
        T = V - first
        latent = self.encode(images[:, :1], K[:, :1], c2w[:, :1])

        Kt, Tt = K[:, first:].reshape(B * T, 3, 3), c2w[:, first:].reshape(B * T, 4, 4)
        o, d = camera_rays(Kt, Tt, H, W)  # (BT, HW, 3)
        m = masks[:, first:].reshape(B * T, H * W)
        pix = self._sample_pixels(m, cfg.rays_per_view)  # (BT, n)
        n = pix.shape[1]

        def pick(x: Tensor) -> Tensor:  # (BT, HW, c) -> (B, T * n, c)
            return torch.gather(x, 1, pix[..., None].expand(-1, -1, x.shape[-1])).reshape(B, T * n, -1)

        rgb_gt = pick(images[:, first:].reshape(B * T, 3, H * W).transpose(1, 2))
        mask_gt = pick(m[..., None])
        out = render_rays(self, latent, pick(o), pick(d), self._render_options(True))
        mse = F.mse_loss(out["rgb"], rgb_gt)
        mask_loss = F.mse_loss(out["opacity"], mask_gt)
        loss = mse + cfg.mask_weight * mask_loss
        logs = {"mse": float(mse.detach()), "mask_loss": float(mask_loss.detach()), "psnr": float(-10 * torch.log10(mse.detach()))}
        if cfg.depth_weight > 0:
            # rendered ray distance -> camera z-depth: multiply by the ray's cosine with the optical axis
            fwd = Tt[:, :3, 2][:, None, :].expand(-1, H * W, -1)
            cos = pick((d * fwd).sum(-1, keepdim=True))
            depth_gt = pick(batch["depths"][:, first:].reshape(B * T, H * W, 1))
            sel = (mask_gt > 0.5) & (depth_gt > 0)
            depth_loss = (out["depth"] * cos - depth_gt).abs()[sel].mean() if sel.any() else mse * 0
            loss = loss + cfg.depth_weight * depth_loss
            logs["depth_l1"] = float(depth_loss.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    # ------------------------------------------------------------------ validation
    def render_targets(self, batch: Batch, num_views: Optional[int] = None) -> dict[str, Tensor]:
        """Render held-out views 1..num_views of every batch item from view 0 at full resolution.

        Returns ``rgb`` (B, T, H, W, 3), ``opacity`` (B, T, H, W, 1), ``depth`` (B, T, H, W, 1).
        """
        images, K, c2w = batch["images"], batch["K"], batch["c2w"]
        B, V, _, H, W = images.shape
        T = min(num_views or self.config.val_views, V - 1)
        if T < 1:
            raise ValueError("validation needs at least 2 views per object (1 input + 1 held out)")
        latent = self.encode(images[:, :1], K[:, :1], c2w[:, :1])
        outs = [render_view(self, latent, K[:, t], c2w[:, t], H, W, self._render_options(False)) for t in range(1, T + 1)]
        return {k: torch.stack([o[k] for o in outs], dim=1) for k in outs[0]}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, float]:
        """PSNR / SSIM of held-out views (views 1.., input view 0) and opacity-vs-mask error."""
        from recon3d.core.metrics import psnr, ssim

        out = self.render_targets(batch)
        T = out["rgb"].shape[1]
        gt = batch["images"][:, 1:T + 1].permute(0, 1, 3, 4, 2).clamp(0, 1)  # (B, T, H, W, 3)
        pred = out["rgb"].clamp(0, 1)
        p = psnr(pred, gt).mean()
        s = ssim(pred.flatten(0, 1), gt.flatten(0, 1))
        mask_gt = batch["masks"][:, 1:T + 1].permute(0, 1, 3, 4, 2)
        return {"psnr": float(p), "ssim": float(s), "mask_mse": float(F.mse_loss(out["opacity"], mask_gt))}

    @torch.no_grad()
    def validation_images(self, batch: Batch) -> dict[str, Tensor]:
        """Item 0: input view | predicted held-out view 1 | its ground truth, side by side (H, 3W, 3)."""
        one = {k: v[:1] for k, v in batch.items()}
        out = self.render_targets(one, num_views=1)
        src = one["images"][0, 0].permute(1, 2, 0)
        gt = one["images"][0, 1].permute(1, 2, 0)
        return {"input_pred_gt": torch.cat([src, out["rgb"][0, 0].clamp(0, 1), gt], dim=1)}

    # ------------------------------------------------------------------ meshes
    @torch.no_grad()
    def extract_mesh(self, latent: Any, resolution: int = 128, threshold: Optional[float] = None,
                     texture_size: int = 0, min_component_faces: int = 32):
        """Mesh of batch item 0 in world units: marching cubes of the density at ``threshold``
        (1/world units; default ``config.mesh_threshold``) with vertex colours from the triplane
        field; with ``texture_size > 0`` also a UV texture (xatlas unwrap, each texel coloured by the field slightly inside the surface).

        Returns :class:`recon3d.mesh.types.TriangleMesh`; ValueError when the density never crosses
        the threshold (empty prediction).
        """
        threshold = self.mesh_density_threshold if threshold is None else threshold
        mesh = density_mesh(self, latent, resolution=resolution, threshold=threshold,
                            min_component_faces=min_component_faces, texture_size=texture_size)
        mesh.metadata.update({"method": "lrm"})
        return mesh
