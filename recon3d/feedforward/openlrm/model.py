"""OpenLRM v1.1 (He & Wang 2023, an open reproduction of LRM, Hong et al. 2023) as a recon3d model.

:class:`OpenLRM` has exactly the parameters of the released ``ModelLRM`` (its ``state_dict()`` keys,
order and shapes are those of ``model.safetensors``) and two faces:

- the official interface, in OpenLRM's own conventions (for parity with the official code):
  :meth:`~OpenLRM.forward_planes` (image + 16-number source camera -> triplanes),
  :meth:`~OpenLRM.synthesize` (25-number render cameras -> images), :meth:`~OpenLRM.forward_points`,
  :meth:`~OpenLRM.forward`;
- recon3d's :class:`~recon3d.feedforward.base.ConditionedRadianceField` (``encode`` / ``query``,
  plus ``render_view`` and ``default_source_cameras`` which :mod:`recon3d.feedforward.predict` uses),
  in recon3d's conventions: OpenCV camera-to-world, intrinsics in pixels with pixel centres at +0.5.

OpenLRM's conventions and the conversion at the model boundary
--------------------------------------------------------------
OpenLRM cameras are camera-to-world matrices with OpenGL camera axes (x right, y up, looking along
-z) and intrinsics in units of the image side (fx / W, fy / H, cx / W, cy / H). The model frame has
+z up and the triplanes over [-1, 1]^3; the model always assumes the *canonical source camera*: at
(0, -source_cam_dist, 0) = (0, -2, 0) looking at the origin (along +y), image right = +x, image up =
+z (official inference feeds this camera for every photo, and training re-poses every object so its
source view is this camera). The source camera vector is [that 3 x 4 OpenGL pose, row-major (12),
fx/W, fy/H, cx/W, cy/H (4)]; the official value is f = 0.75, c = 0.5.

recon3d gives :meth:`OpenLRM.encode` a source camera (K in pixels, OpenCV c2w) in its own world. The
model frame is tied to the world by the similarity that takes that camera onto the canonical one:
``p_model = s R (p_world - c_src) + c_canonical`` with R = R_canonical R_src^T and
s = source_cam_dist / (depth of the world origin in the source camera), so the world origin maps to
the model's origin when the source camera looks at it. The camera vector gets the canonical pose and
the source view's own normalised intrinsics. Densities are returned in 1/world units (model density
x s) and depths in world units. :meth:`OpenLRM.default_source_cameras` (what ``recon3d predict``
uses for photos of unknown pose) is the canonical camera itself with the official f = 0.75, so by
default the world *is* the model frame (s = 1, R = I) and the inputs are exactly the official ones.

Deviations from the official inference (documented in ``data/checkpoints/lrm.md``)
---------------------------------------------------------------------------------
- Ray samples are deterministic by default (the official ``det=True`` mode of its importance
  sampler and unjittered coarse depths, as in the parity fixture); ``config.stochastic = True``
  draws them randomly as the official renderer does.
- Photos are prepared by recon3d (:func:`recon3d.feedforward.predict.load_input_images`: background
  cut-out, object bounding box at 80 % of the side as the official demo's recentring with
  border ratio 0.2, antialiased bilinear resize) and a size mismatch is resized as the official
  ``infer_single`` does (bicubic, align_corners=True, clamp).
- Meshes: recon3d's marching cubes at ``recon3d predict --mesh-resolution`` (official: 384) at the
  official level 3.0; vertex colours are read half a cell inside the surface.
- A ray that misses the cube gets depth 0 (recon3d's convention); the official renderer gives it the
  largest sample depth of the call.

Samples that lie exactly on the cube's faces (every ray's first and last coarse sample) are inside or
outside depending on the last bit of their coordinates, in the official renderer as here.
:meth:`OpenLRM.render_view` (what ``recon3d predict`` renders with) therefore builds its rays with the
official ray sampler's arithmetic (:func:`~.renderer.pixel_rays`) from the converted cameras, which
reproduces the official renders; :meth:`OpenLRM.render_rays_override` (the shared
:func:`recon3d.feedforward.rendering.render_rays`) renders recon3d's own rays through the same renderer.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recon3d.feedforward.base import Batch, ConditionedRadianceField

from .config import BOX_HALF, SOURCE_FOCAL, OpenLRMConfig, official_encoder_arch
from .dinov2 import DinoV2Encoder
from .renderer import (
    SynthesizerModule,
    activate_density,
    official_rays,
    pixel_rays,
    render_rays,
)
from .transformer import CameraEmbedder, TriplaneTransformer

#: OpenCV camera-to-world rotation of the canonical source camera (columns: image right, image down, forward).
CANONICAL_R_CV = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))
#: fraction of the input side the object's bounding box spans (the official demo's border ratio 0.2).
OPENLRM_FILL = 0.8


def canonical_source_pose_gl(distance: float, batch: int = 1, device=None) -> Tensor:
    """(batch, 3, 4) OpenGL camera-to-world of the canonical source camera (official ``_default_source_camera``)."""
    RT = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -distance], [0.0, 1.0, 0.0, 0.0]], device=device)
    return RT.expand(batch, 3, 4)


def source_camera_vector(K: Tensor, width: int, height: int, distance: float) -> Tensor:
    """(B, 16) source camera vector: the canonical pose and the normalised intrinsics of ``K`` (B, 3, 3) pixels."""
    B = K.shape[0]
    pose = canonical_source_pose_gl(distance, B, K.device).to(K.dtype).reshape(B, 12)
    intr = torch.stack([K[:, 0, 0] / width, K[:, 1, 1] / height, K[:, 0, 2] / width, K[:, 1, 2] / height], -1)
    return torch.cat([pose, intr], dim=-1)


def gl_to_cv(c2w: Tensor) -> Tensor:
    """Flip camera y and z axes (OpenGL <-> OpenCV camera-to-world, either way)."""
    return c2w * torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w.dtype, device=c2w.device)


class OpenLRM(ConditionedRadianceField):
    """The released OpenLRM v1.1 model (see the module docstring). Build with an :class:`OpenLRMConfig`
    (from a checkpoint folder: :func:`recon3d.feedforward.openlrm.loader.load_checkpoint`)."""

    name = "lrm"
    config_cls = OpenLRMConfig
    #: marks a published (not recon3d-trained) model
    published = "openlrm-v1.1"

    def __init__(self, config: OpenLRMConfig) -> None:
        super().__init__(config)
        c = config
        if c.encoder is None:
            c.encoder = official_encoder_arch(c.encoder_model_name)
        c.validate()
        D, L = c.transformer_dim, c.triplane_low_res
        self.encoder = DinoV2Encoder(c.encoder)
        self.camera_embedder = CameraEmbedder(16, c.camera_embed_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, 3 * L * L, D) * D ** -0.5)
        self.transformer = TriplaneTransformer(c.transformer_layers, c.transformer_heads, D, c.encoder_feat_dim,
                                               c.camera_embed_dim)
        self.upsampler = nn.ConvTranspose2d(D, c.triplane_dim, kernel_size=2, stride=2, padding=0)
        self.synthesizer = SynthesizerModule(c.triplane_dim)
        self.scene_bound = BOX_HALF
        self._density_scale = 1.0
        self.generator: Optional[torch.Generator] = None  # random draws of stochastic sampling

    # ------------------------------------------------------------------ recon3d knobs
    @property
    def predict_image_size(self) -> int:
        """Input side (the release's ``source_size``: 224 / 336 / 448 px)."""
        return int(self.config.source_size)

    @property
    def predict_render_size(self) -> int:
        """Rendered side (the release's ``render_size``: 192 / 288 / 384 px)."""
        return int(self.config.render_size)

    predict_fill = OPENLRM_FILL

    @property
    def mesh_density_threshold(self) -> float:
        """Official ``mesh_thres`` 3.0 in 1/world units for the last encoded source camera."""
        return float(self.config.mesh_threshold) * self._density_scale

    @property
    def render_chunk(self) -> int:
        p = next(self.parameters(), None)
        return 8192 if p is not None and p.device.type == "cuda" else 1024

    @property
    def samples_per_ray(self) -> int:
        return int(self.config.rendering_samples_per_ray)

    # ------------------------------------------------------------------ official interface
    def forward_transformer(self, image_feats: Tensor, camera_embeddings: Tensor) -> Tensor:
        """(N, 3 L^2, D) triplane tokens, ordered (plane, row, col)."""
        x = self.pos_embed.expand(image_feats.shape[0], -1, -1)
        return self.transformer(x, image_feats, camera_embeddings)

    def reshape_upsample(self, tokens: Tensor) -> Tensor:
        """Tokens -> (N, 3, C, 2L, 2L) triplanes (the stride-2 transposed convolution per plane)."""
        N, L = tokens.shape[0], self.config.triplane_low_res
        x = tokens.reshape(N, 3, L, L, -1).permute(0, 1, 4, 2, 3).reshape(N * 3, -1, L, L)
        x = self.upsampler(x)
        return x.reshape(N, 3, *x.shape[-3:])

    def forward_planes(self, image: Tensor, source_camera: Tensor) -> Tensor:
        """image (N, 3, H, W) in [0, 1], source_camera (N, 16) -> triplanes (N, 3, C, 2L, 2L)."""
        feats = self.encoder(image)
        if feats.shape[-1] != self.config.encoder_feat_dim:
            raise ValueError(f"encoder width {feats.shape[-1]} != encoder_feat_dim {self.config.encoder_feat_dim}")
        return self.reshape_upsample(self.forward_transformer(feats, self.camera_embedder(source_camera)))

    def synthesize(self, planes: Tensor, cameras: Tensor, anchors: Tensor, resolutions: Tensor, bg_colors: Tensor,
                   region_size: int, keep_samples: bool = False) -> dict[str, Tensor]:
        """Render in the official camera format.

        Args:
            planes: (N, 3, C, H, W); cameras: (N, M, 25) = 4 x 4 OpenGL c2w + normalised 3 x 3 K, row-major;
            anchors: (N, M, 2) (row, col); resolutions: (N, M, 1); bg_colors: (N, M, 1); region_size: int.
        Returns:
            ``images_rgb`` (N, M, 3, r, r), ``images_depth`` / ``images_weight`` (N, M, 1, r, r) (and, with
            ``keep_samples``, ``ray_origins`` / ``ray_directions`` (NM, r^2, 3), ``depths_coarse`` /
            ``depths_fine`` (NM, r^2, S/2, 1)).
        """
        N, M = cameras.shape[:2]
        r = int(region_size)
        o, d = official_rays(cameras[..., :16].reshape(N * M, 4, 4), cameras[..., 16:25].reshape(N * M, 3, 3),
                             resolutions.reshape(N * M, 1), anchors.reshape(N * M, 2), r)
        out = render_rays(self.synthesizer, planes.repeat_interleave(M, dim=0), o, d, self.samples_per_ray,
                          bg_colors.reshape(N * M, 1).to(o.dtype), stochastic=self.config.stochastic,
                          generator=self.generator, keep_samples=keep_samples)

        def image(x: Tensor) -> Tensor:
            return x.permute(0, 2, 1).reshape(N, M, x.shape[-1], r, r)

        res = {"images_rgb": image(out["rgb"]), "images_depth": image(out["depth"]), "images_weight": image(out["weight"])}
        if keep_samples:
            res.update(ray_origins=o, ray_directions=d, depths_coarse=out["depths_coarse"], depths_fine=out["depths_fine"])
        return res

    def forward_points(self, planes: Tensor, points: Tensor) -> dict[str, Tensor]:
        """Official ``forward_points``: ``sigma`` = softplus(raw - 1) (N, P, 1), ``rgb`` (N, P, 3), model frame;
        also ``features`` (N, 3, P, C) and ``sigma_raw``."""
        feats, raw, rgb = self.synthesizer.field(planes, points)
        return {"sigma": activate_density(raw), "rgb": rgb, "features": feats, "sigma_raw": raw}

    def forward(self, image: Tensor, source_camera: Tensor, render_cameras: Tensor, render_anchors: Tensor,
                render_resolutions: Tensor, render_bg_colors: Tensor, render_region_size: int) -> dict[str, Tensor]:
        planes = self.forward_planes(image, source_camera)
        return {"planes": planes, **self.synthesize(planes, render_cameras, render_anchors, render_resolutions,
                                                    render_bg_colors, render_region_size)}

    # ------------------------------------------------------------------ recon3d interface
    def default_source_cameras(self, n: int, size: int) -> tuple[Tensor, Tensor]:
        """K (n, 3, 3) pixels and OpenCV c2w (n, 4, 4) for ``n`` photos of unknown pose: view 0 is the
        canonical source camera with the official f = 0.75 (the model frame is then the world), the others
        turned by 360 i / n degrees about +Z (OpenLRM reads only the first photo)."""
        f = SOURCE_FOCAL * size
        K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]]).expand(n, 3, 3).clone()
        c2w = torch.eye(4).repeat(n, 1, 1)
        c2w[:, :3, :3] = torch.tensor(CANONICAL_R_CV)
        c2w[:, 1, 3] = -float(self.config.source_cam_dist)
        for i in range(1, n):
            a = 2 * math.pi * i / n
            Rz = torch.eye(4)
            Rz[0, 0], Rz[0, 1], Rz[1, 0], Rz[1, 1] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
            c2w[i] = Rz @ c2w[i]
        return K, c2w

    def world_to_model(self, c2w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Similarity taking the source camera c2w (B, 4, 4) (OpenCV) onto the canonical one:
        A (B, 3, 3) = s R, t (B, 3), s (B,) with ``p_model = A p_world + t``."""
        d = float(self.config.source_cam_dist)
        R_s, c_s = c2w[:, :3, :3], c2w[:, :3, 3]
        R_c = torch.tensor(CANONICAL_R_CV, dtype=c2w.dtype, device=c2w.device)
        c_c = torch.tensor([0.0, -d, 0.0], dtype=c2w.dtype, device=c2w.device)
        z0 = -(R_s[:, :, 2] * c_s).sum(-1)  # depth of the world origin in the source camera
        dist = torch.where(z0 > 1e-6, z0, c_s.norm(dim=-1).clamp_min(1e-6))
        s = d / dist
        A = s[:, None, None] * (R_c @ R_s.transpose(1, 2))
        t = c_c - torch.einsum("bij,bj->bi", A, c_s)
        return A, t, s

    def encode(self, images: Tensor, K: Tensor, c2w: Tensor) -> dict[str, Tensor]:
        """Triplanes from the first source view (images (B, S, 3, H, W) in [0, 1] on white, K (B, S, 3, 3)
        pixels, c2w (B, S, 4, 4) OpenCV). Returns ``planes`` (B, 3, C, R, R) and the world -> model
        similarity ``A`` (B, 3, 3), ``t`` (B, 3), ``scale`` (B,). Also sets ``scene_bound`` (half-size of a
        world cube holding the model's [-1, 1]^3) and the mesh level for this source camera."""
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        img, K0, T0 = images[:, 0].float(), K[:, 0].float(), c2w[:, 0].float()
        H, W = img.shape[-2:]
        size = self.predict_image_size
        if (H, W) != (size, size):  # the official infer_single resize
            img = F.interpolate(img, size=(size, size), mode="bicubic", align_corners=True).clamp(0, 1)
        cam = source_camera_vector(K0, W, H, float(self.config.source_cam_dist))
        planes = self.forward_planes(img, cam)
        A, t, s = self.world_to_model(T0)
        R = A / s[:, None, None]
        center = -torch.einsum("bji,bj->bi", R, t) / s[:, None]  # world point at the model origin
        half = (center.abs() + R.abs().sum(-2) * BOX_HALF / s[:, None]).amax()  # the cube's world AABB
        self.scene_bound = float(half)
        self._density_scale = float(s[0])
        return {"planes": planes, "A": A, "t": t, "scale": s}

    def query(self, latent: dict[str, Tensor], points: Tensor, directions: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Density (B, N), 1/world units (0 outside the model's cube), and RGB (B, N, 3) at world points
        (B, N, 3); colour is view-independent, ``directions`` is ignored."""
        A, t = latent["A"].to(points.dtype), latent["t"].to(points.dtype)
        p = torch.einsum("bij,bnj->bni", A, points) + t[:, None]
        _, raw, rgb = self.synthesizer.field(latent["planes"], p)
        inside = ((p >= -BOX_HALF) & (p <= BOX_HALF)).all(-1)
        sigma = activate_density(raw[..., 0]) * latent["scale"].to(points.dtype)[:, None]
        return torch.where(inside, sigma, torch.zeros_like(sigma)), rgb

    def model_cameras(self, latent: dict[str, Tensor], K: Tensor, c2w: Tensor, height: int,
                      width: int) -> tuple[Tensor, Tensor]:
        """recon3d cameras (K (B, 3, 3) pixels, OpenCV c2w (B, 4, 4), world) -> OpenLRM's: OpenGL c2w in the
        model frame (B, 4, 4) and intrinsics normalised by the image size (B, 3, 3)."""
        A, t, s = latent["A"].float(), latent["t"].float(), latent["scale"].float()
        c2w = c2w.float().to(A.device)
        R = A / s[:, None, None]
        m = torch.zeros_like(c2w)
        m[:, :3, :3] = R @ c2w[:, :3, :3]
        m[:, :3, 3] = torch.einsum("bij,bj->bi", A, c2w[:, :3, 3]) + t
        m[:, 3, 3] = 1.0
        Kn = K.float().to(A.device).clone()
        Kn[:, 0] = Kn[:, 0] / width
        Kn[:, 1] = Kn[:, 1] / height
        return gl_to_cv(m), Kn

    @torch.no_grad()
    def render_view(self, latent: dict[str, Tensor], K: Tensor, c2w: Tensor, height: int, width: int,
                    options: Any = None, chunk: Optional[int] = None) -> dict[str, Tensor]:
        """Render whole images with the official renderer (two passes of ``samples_per_ray / 2``).

        Args:
            K (B, 3, 3) pixels, c2w (B, 4, 4) OpenCV: one target camera per latent; ``options``: a
            :class:`~recon3d.feedforward.rendering.RenderOptions` (only its background is used:
            ``"white"`` (default) or ``"black"`` or a number).
        Returns:
            ``rgb`` (B, H, W, 3), ``opacity`` (B, H, W, 1), ``depth`` (B, H, W, 1) world units along the ray
            (0 where the opacity is below 1e-4).
        """
        c2w_gl, K_norm = self.model_cameras(latent, K, c2w, height, width)
        B = K.shape[0]
        zeros = torch.zeros(B, 2, dtype=c2w_gl.dtype, device=c2w_gl.device)
        full = lambda v: torch.full((B, 1), float(v), dtype=c2w_gl.dtype, device=c2w_gl.device)
        o, d = pixel_rays(c2w_gl, K_norm, full(height), full(width), zeros, height, width)
        s = latent["scale"]
        bgt = self._background(options, B, o)
        chunk = int(chunk or self.render_chunk)
        parts: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": []}
        for i in range(0, o.shape[1], chunk):
            out = render_rays(self.synthesizer, latent["planes"], o[:, i:i + chunk], d[:, i:i + chunk],
                              self.samples_per_ray, bgt, stochastic=self.config.stochastic, generator=self.generator)
            parts["rgb"].append(out["rgb"])
            parts["opacity"].append(out["weight"])
            parts["depth"].append(torch.where(out["weight"] > 1e-4, out["depth"] / s[:, None, None],
                                              torch.zeros_like(out["depth"])))
        return {k: torch.cat(v, dim=1).reshape(B, height, width, -1) for k, v in parts.items()}

    def render_rays_override(self, latent: dict[str, Tensor], origins: Tensor, directions: Tensor, options: Any = None,
                             generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """The official renderer for world rays (B, R, 3) of :func:`recon3d.feedforward.rendering.render_rays`
        (so ``recon3d predict``'s views and orbit use it): ``rgb``, ``opacity``, ``depth`` (world units,
        0 below opacity 1e-4). Stochastic when ``config.stochastic`` or ``options.stratified``."""
        A, t, s = latent["A"].to(origins.dtype), latent["t"].to(origins.dtype), latent["scale"].to(origins.dtype)
        o = torch.einsum("bij,bnj->bni", A, origins) + t[:, None]
        d = F.normalize(torch.einsum("bij,bnj->bni", A, directions), dim=-1)
        stochastic = bool(self.config.stochastic or getattr(options, "stratified", False))
        bg = self._background(options, origins.shape[0], o)
        out = render_rays(self.synthesizer, latent["planes"], o, d, self.samples_per_ray, bg, stochastic=stochastic,
                          generator=generator or self.generator)
        depth = torch.where(out["weight"] > 1e-4, out["depth"] / s[:, None, None], torch.zeros_like(out["depth"]))
        return {"rgb": out["rgb"], "opacity": out["weight"], "depth": depth}

    @staticmethod
    def _background(options: Any, batch: int, like: Tensor) -> Tensor:
        """(B, 1) background level from RenderOptions.background: ``"black"``, a number, else white (the
        official inference's)."""
        bg = getattr(options, "background", "white") if options is not None else "white"
        level = (0.0 if bg == "black" else 1.0) if bg is None or isinstance(bg, str) else bg
        return torch.as_tensor(level, dtype=like.dtype, device=like.device).reshape(-1, 1)[:1].expand(batch, 1)

    # ------------------------------------------------------------------ not trainable here
    def training_step(self, batch: Batch, step: int):
        raise NotImplementedError("published OpenLRM weights are for inference in recon3d (train with OpenLRM)")

    def validation_step(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError("published OpenLRM weights are for inference in recon3d")

    def checkpoint_payload(self) -> dict:
        raise NotImplementedError("save published OpenLRM weights as the folder they came in")
