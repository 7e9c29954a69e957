"""pixelNeRF as a :class:`~recon3d.feedforward.base.ConditionedRadianceField`.

``encode`` runs the ResNet encoder on the source views and keeps their feature volumes and cameras;
``query`` projects world points into every source view, samples pixel-aligned features bilinearly,
encodes the point (rotated into each source camera's frame) and the view direction, runs the
ResNet-FC MLP per view, pools the views, and returns density and RGB. Rendering and meshing go through
:mod:`recon3d.feedforward.rendering` (shared core sampler and volume renderer), or, for the released
networks (``config.renderer == "official"``), through the official renderer (:mod:`.renderer`), which
runs the coarse pass with ``mlp_coarse`` and the fine pass with ``mlp_fine``. ``config.feature_sampling``
selects the official or the recon3d-trained feature sampling (see :class:`.config.PixelNeRFConfig`).

Training (``training_step``): the first ``S`` views of each object are the sources (``S`` uniform in
``[min_source_views, max_source_views]``, at most ``V - 1``), ``rays_per_object`` rays are drawn from
the remaining views (weighted toward the object mask) and rendered over white; loss = color MSE +
``mask_loss_weight`` * MSE(opacity, mask) + ``depth_loss_weight`` * L1(ray distance) on object rays.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.feedforward.base import Batch, ConditionedRadianceField
from recon3d.feedforward.rendering import RenderOptions, camera_rays, render_rays, render_view

from .config import PixelNeRFConfig
from .encoder import SpatialEncoder
from .mlp import PositionalEncoding, ResnetFC
from .projection import (official_pixel_coords, project, rotate_to_camera, sample_features, sample_features_official,
                         to_axes, world_to_camera)

#: rays per chunk of full-view renders (smaller chunks keep the MLP activations in cache on CPU).
RENDER_CHUNK = 256


class PixelNeRF(ConditionedRadianceField):
    """Image-conditioned NeRF (Yu et al. 2021). Parameter names follow the published networks:
    ``encoder.model.*`` (torchvision ResNet names), ``code._freqs``/``code._phases``,
    ``mlp_coarse.*`` and (``separate_fine_mlp``) ``mlp_fine.*``.

    Latent (from :meth:`encode`): dict with ``features`` (B, S, C, h, w) feature volumes, ``z_maps``
    (B, S, n_lin_z * hidden, h, w) the same projected by the query MLP's ``lin_z`` weights (what queries
    sample; see :meth:`ResnetFC.project_latent`), ``z_maps_coarse`` the same for ``mlp_coarse`` (models
    with two MLPs), ``K`` (B, S, 3, 3), ``c2w`` (B, S, 4, 4) and ``image_size`` (H, W) of the source views.
    """

    name = "pixelnerf"
    config_cls = PixelNeRFConfig

    def __init__(self, config: Optional[PixelNeRFConfig] = None) -> None:
        config = config if config is not None else PixelNeRFConfig.tiny()
        super().__init__(config)
        c = config
        self.scene_bound = float(c.scene_bound)
        self.encoder = SpatialEncoder(c.encoder_stem_width, c.encoder_widths, c.encoder_blocks, c.encoder_norm,
                                      c.encoder_num_layers, c.encoder_first_pool,
                                      align_corners=c.feature_sampling == "official")
        self.code = PositionalEncoding(c.num_freqs, 3, c.freq_factor)
        mlp = dict(d_in=c.point_input_size, d_latent=c.latent_size, d_hidden=c.mlp_hidden, n_blocks=c.mlp_blocks,
                   combine_layer=c.combine_layer)
        self.mlp_coarse = ResnetFC(**mlp)
        self.mlp_fine = ResnetFC(**mlp) if c.separate_fine_mlp else None

    # ---- the conditioned field ----------------------------------------------------------------
    def encode(self, images: Tensor, K: Tensor, c2w: Tensor) -> dict[str, Any]:
        """Feature volumes of the source views.

        Args:
            images: (B, S, 3, H, W) RGB in [0, 1] on white; K: (B, S, 3, 3) pixels; c2w: (B, S, 4, 4) OpenCV.
        """
        if images.dim() != 5 or K.shape[:2] != images.shape[:2] or c2w.shape[:2] != images.shape[:2]:
            raise ValueError(f"encode wants images (B, S, 3, H, W), K (B, S, 3, 3), c2w (B, S, 4, 4); got "
                             f"{tuple(images.shape)}, {tuple(K.shape)}, {tuple(c2w.shape)}")
        B, S, _, H, W = images.shape
        feats = self.encoder(images.reshape(B * S, 3, H, W))
        feats = feats.reshape(B, S, *feats.shape[1:])
        latent = {"features": feats, "z_maps": self.query_mlp.project_latent(feats), "K": K, "c2w": c2w,
                  "image_size": (H, W)}
        if self.mlp_fine is not None:
            latent["z_maps_coarse"] = self.mlp_coarse.project_latent(feats)
        return latent

    @property
    def mesh_density_threshold(self) -> float:
        """Density iso-level (1/world units) ``recon3d predict`` extracts meshes at (from the config)."""
        return float(self.config.mesh_threshold)

    @property
    def query_mlp(self):
        """The MLP queries use by default: ``mlp_fine`` when the model has one (published), else ``mlp_coarse``."""
        return self.mlp_fine if self.mlp_fine is not None else self.mlp_coarse

    @property
    def predict_image_size(self) -> int:
        """Input image side ``recon3d predict`` prepares (``config.image_size``)."""
        return int(self.config.image_size)

    def query(self, latent: dict[str, Any], points: Tensor, directions: Optional[Tensor],
              coarse: bool = False) -> tuple[Tensor, Tensor]:
        """Density (B, N) in 1/world units and RGB (B, N, 3) at world points (B, N, 3).

        ``directions`` (B, N, 3) view directions (the official renderer passes its ray directions as
        they are); None (meshing) uses the direction from the first source camera to each point, i.e.
        the color as that source view sees it. ``coarse``: use ``mlp_coarse`` (the official coarse pass);
        otherwise :attr:`query_mlp`.
        """
        c = self.config
        K, c2w = latent["K"], latent["c2w"]
        H, W = latent["image_size"]
        use_coarse = coarse and self.mlp_fine is not None
        mlp = self.mlp_coarse if use_coarse else self.query_mlp
        maps = latent["z_maps_coarse"] if use_coarse else latent["z_maps"]
        p_cam = world_to_camera(points, c2w, translate=True)  # (B, S, N, 3)
        uv, valid = project(p_cam, K, H, W)
        if c.feature_sampling == "official":
            z = sample_features_official(maps, official_pixel_coords(p_cam, K), H, W)
        else:
            z = sample_features(maps, uv, valid, H, W)  # (B, S, N, n_lin_z * hidden)
        xyz = p_cam if c.translate_points else world_to_camera(points, c2w, translate=False)
        inputs = [self.code(to_axes(xyz, c.camera_axes))]
        if c.use_viewdirs:
            if directions is None:
                directions = F.normalize(points - c2w[:, None, 0, :3, 3], dim=-1)
            inputs.append(to_axes(rotate_to_camera(directions, c2w), c.camera_axes))
        out = mlp(torch.cat(inputs, dim=-1), z, valid if c.masked_pooling else None)  # (B, N, 4)
        sigma = F.relu(out[..., 3]) if c.density_activation == "relu" else F.softplus(out[..., 3] - 1.0)
        return sigma, torch.sigmoid(out[..., :3])

    # ---- rendering ------------------------------------------------------------------------------
    def render_official(self, latent: dict[str, Any], origins: Tensor, directions: Tensor, near: Tensor,
                        far: Tensor, deterministic: bool = True, generator: Optional[torch.Generator] = None):
        """The official renderer (:func:`.renderer.render_official`) with this config's sample counts and
        background: ``{"coarse": {rgb, depth, weights, t}, "fine": {...}}`` for (B, R, 3) rays and
        (B, R, 1) ``near`` / ``far`` distances."""
        from .renderer import render_official

        c = self.config
        return render_official(lambda p, d, coarse: self.query(latent, p, d, coarse=coarse), origins, directions,
                               near, far, c.num_coarse, c.num_fine, c.num_fine_depth, c.depth_std,
                               c.white_background, deterministic=deterministic, generator=generator)

    def render_rays_override(self, latent: dict[str, Any], origins: Tensor, directions: Tensor,
                             options: RenderOptions, generator: Optional[torch.Generator] = None):
        """What :func:`recon3d.feedforward.rendering.render_rays` calls first: None (use the shared core
        sampler) unless ``config.renderer == "official"``; then the official renderer between the planes
        ``z_near`` / ``z_far`` (random offsets when ``options.stratified``, else deterministic), returning
        the fine pass as ``rgb`` (B, R, 3), ``opacity`` (B, R, 1), ``depth`` (B, R, 1) (official: sum of
        weights x distance) and the coarse pass as ``coarse_rgb`` / ``coarse_opacity`` / ``coarse_depth``."""
        c = self.config
        if c.renderer != "official":
            return None
        near = torch.full_like(origins[..., :1], c.z_near)
        far = torch.full_like(origins[..., :1], c.z_far)
        out = self.render_official(latent, origins, directions, near, far, deterministic=not options.stratified,
                                   generator=generator)
        res = {}
        for prefix, key in (("coarse_", "coarse"), ("", "fine" if "fine" in out else "coarse")):
            part = out[key]
            res[prefix + "rgb"] = part["rgb"]
            res[prefix + "opacity"] = part["weights"].sum(-1, keepdim=True)
            res[prefix + "depth"] = part["depth"][..., None]
        return res

    def default_source_cameras(self, n: int, size: int) -> tuple[Tensor, Tensor]:
        """Source cameras ``recon3d predict`` gives ``n`` photos without cameras: recon3d's canonical
        cameras (:func:`recon3d.feedforward.predict.canonical_source_cameras`) unless the config names a
        camera (the released variants: ``camera_radius``, ``camera_focal`` at ``image_size``,
        ``camera_elevation_deg``, views spread in azimuth like recon3d's, principal point at the official
        default, ``W / 2`` in integer pixel coordinates = ``size / 2 + 0.5`` here). DataError when the
        model needs known cameras (DTU)."""
        from recon3d.feedforward.predict import canonical_source_cameras
        from recon3d.io.errors import DataError
        from recon3d.io.synthetic import look_at

        c = self.config
        if c.camera_radius is None:
            return canonical_source_cameras(n, size)
        if c.camera_radius <= 0:
            raise DataError(c.variant or "pixelnerf", "this pixelNeRF variant reconstructs scenes, not objects: "
                                                     "give the images' cameras (--cameras)")
        az = torch.arange(n, dtype=torch.float64) * (2 * torch.pi / n)
        el = torch.tensor(c.camera_elevation_deg, dtype=torch.float64).deg2rad()
        eyes = c.camera_radius * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin().expand(n)], -1)
        f = c.camera_focal * size / c.image_size
        K = torch.tensor([[f, 0.0, size / 2 + 0.5], [0.0, f, size / 2 + 0.5], [0.0, 0.0, 1.0]]).expand(n, 3, 3)
        return K.clone(), look_at(eyes.numpy(), torch.zeros(n, 3).numpy())

    # ---- training -------------------------------------------------------------------------------
    def render_options(self, training: bool) -> RenderOptions:
        """Ray sampling: the config's training budget (stratified) or evaluation budget (fixed bins)."""
        c = self.config
        if training:
            return RenderOptions(num_coarse=c.train_num_coarse, num_fine=c.train_num_fine, stratified=True,
                                 background="white")
        return RenderOptions(num_coarse=c.num_coarse, num_fine=c.num_fine, stratified=False, background="white")

    def sample_rays(self, batch: Batch, num_source: int, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """``rays_per_object`` random rays per object from the non-source views.

        Returns dict with ``origins``/``directions`` (B, R, 3), ``rgb`` (B, R, 3), ``mask`` (B, R, 1)
        and, when the batch has ``depths``, ``distance`` (B, R, 1): the ray distance (world units) to the
        surface, ``z / (d . forward)``. Pixels covered by the mask get weight ``1 + foreground_weight``.
        """
        images, K, c2w = batch["images"][:, num_source:], batch["K"][:, num_source:], batch["c2w"][:, num_source:]
        B, T, _, H, W = images.shape
        o, d = camera_rays(K.reshape(B * T, 3, 3), c2w.reshape(B * T, 4, 4), H, W)
        o, d = o.reshape(B, T * H * W, 3), d.reshape(B, T * H * W, 3)
        rgb = images.permute(0, 1, 3, 4, 2).reshape(B, T * H * W, 3)
        masks = batch.get("masks")
        mask = (masks[:, num_source:].reshape(B, T * H * W, 1) if masks is not None
                else torch.ones_like(rgb[..., :1]))
        weights = 1.0 + self.config.foreground_weight * mask[..., 0].gt(0.5).to(rgb.dtype)
        R = min(self.config.rays_per_object, T * H * W)
        idx = torch.multinomial(weights, R, replacement=False, generator=generator)  # (B, R)

        def take(x: Tensor) -> Tensor:
            return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))

        rays = {"origins": take(o), "directions": take(d), "rgb": take(rgb), "mask": take(mask)}
        depths = batch.get("depths")
        if depths is not None:
            z = take(depths[:, num_source:].reshape(B, T * H * W, 1))
            forward = c2w[..., :3, 2].reshape(B, T, 1, 3).expand(B, T, H * W, 3).reshape(B, T * H * W, 3)
            cos = (rays["directions"] * take(forward)).sum(-1, keepdim=True)
            rays["distance"] = z / cos.clamp_min(1e-6)
        return rays

    def num_source_views(self, num_views: int, generator: Optional[torch.Generator] = None) -> int:
        """Random number of source views for a training step (at least one target view remains)."""
        c = self.config
        hi = min(c.max_source_views, num_views - 1)
        lo = min(c.min_source_views, hi)
        if hi < 1:
            raise ValueError(f"pixelNeRF training needs >= 2 views per object, got {num_views}")
        return int(torch.randint(lo, hi + 1, (), generator=generator).item())

    def training_step(self, batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        S = self.num_source_views(batch["images"].shape[1])
        latent = self.encode(batch["images"][:, :S], batch["K"][:, :S], batch["c2w"][:, :S])
        rays = self.sample_rays(batch, S)
        out = render_rays(self, latent, rays["origins"], rays["directions"], self.render_options(training=True))
        color = F.mse_loss(out["rgb"], rays["rgb"])
        loss = color
        if "coarse_rgb" in out:  # official renderer: coarse + fine colour losses (lambda_coarse = 1)
            loss = loss + F.mse_loss(out["coarse_rgb"], rays["rgb"])
        logs = {"color_mse": float(color.detach()), "psnr": float(-10 * torch.log10(color.detach().clamp_min(1e-10))),
                "num_source": float(S)}
        if self.config.mask_loss_weight > 0:
            mask_loss = F.mse_loss(out["opacity"], rays["mask"])
            loss = loss + self.config.mask_loss_weight * mask_loss
            logs["mask_mse"] = float(mask_loss.detach())
        if self.config.depth_loss_weight > 0 and "distance" in rays:
            fg = (rays["mask"] > 0.5) & (rays["distance"] > 0)
            if bool(fg.any()):
                depth_l1 = (out["depth"] - rays["distance"]).abs()[fg].mean()
                loss = loss + self.config.depth_loss_weight * depth_l1
                logs["depth_l1"] = float(depth_l1.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    # ---- validation -----------------------------------------------------------------------------
    def render_novel_views(self, batch: Batch, num_source: int, target_views: list[int]) -> Tensor:
        """Render views ``target_views`` of every object from its first ``num_source`` views.

        Returns (B, T, H, W, 3) RGB in [0, 1].
        """
        images = batch["images"]
        B, V, _, H, W = images.shape
        latent = self.encode(images[:, :num_source], batch["K"][:, :num_source], batch["c2w"][:, :num_source])
        outs = [render_view(self, latent, batch["K"][:, t], batch["c2w"][:, t], H, W, self.render_options(False),
                            chunk=RENDER_CHUNK)["rgb"] for t in target_views]
        return torch.stack(outs, dim=1)

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, float]:
        """PSNR/SSIM of the first held-out view (view ``val_num_source``) from ``val_num_source`` views."""
        from recon3d.core.metrics import psnr, ssim

        S = min(self.config.val_num_source, batch["images"].shape[1] - 1)
        pred = self.render_novel_views(batch, S, [S])[:, 0]
        gt = batch["images"][:, S].permute(0, 2, 3, 1)
        return {"psnr": float(psnr(pred, gt).mean()), "ssim": float(ssim(pred, gt))}

    @torch.no_grad()
    def validation_images(self, batch: Batch) -> dict[str, Tensor]:
        """Object 0: source view | prediction of the first held-out view | its ground truth (H, 3W, 3)."""
        S = min(self.config.val_num_source, batch["images"].shape[1] - 1)
        one = {k: v[:1] for k, v in batch.items()}
        pred = self.render_novel_views(one, S, [S])[0, 0]
        src = one["images"][0, 0].permute(1, 2, 0)
        gt = one["images"][0, S].permute(1, 2, 0)
        return {"novel_view": torch.cat([src, pred, gt], dim=1).clamp(0, 1)}

    # ---- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def from_payload(cls, payload: dict, strict: bool = True) -> "PixelNeRF":
        """Rebuild from a recon3d payload; fp16-stored weights (the shipped file) come back as fp32."""
        config = PixelNeRFConfig.from_dict(payload["config"])
        model = cls(config)
        state = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                 for k, v in payload["state_dict"].items()}
        model.load_state_dict(state, strict=strict)
        return model

    @staticmethod
    def half_precision_payload(payload: dict) -> dict:
        """Copy of a recon3d payload with fp16 floating weights (how the shipped file is stored;
        :meth:`from_payload` restores fp32)."""
        out = dict(payload)
        out["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
        out["weights_dtype"] = "float16"
        return out

    @classmethod
    def from_external_checkpoint(cls, path, payload: dict, variant: Optional[str] = None) -> "PixelNeRF":
        """A published pixelNeRF checkpoint (sxyu/pixel-nerf ``pixel_nerf_latest``): architecture read from
        its shapes, settings of the released ``variant`` (default: the file's folder name, e.g.
        ``checkpoints/sn64/pixel_nerf_latest``), loaded strictly; one-line DataError naming the file
        otherwise (see :func:`.published.load_published`)."""
        from .published import load_published

        return load_published(cls, path, payload, variant=variant)

    @staticmethod
    def default_train_config() -> dict:
        """Trainer settings for the tiny model on the shared CPU box (see data/checkpoints/pixelnerf.md):
        4 objects x 4 views per batch (1-3 sources, the rest supervise), in-process data loading
        (the shard cache survives epochs), short validation (2 batches, one novel view each)."""
        return {"batch_size": 4, "views_per_item": 4, "lr": 5e-4, "warmup": 100, "num_workers": 0,
                "val_every": 400, "val_batches": 2, "ckpt_every": 200, "log_every": 25}
