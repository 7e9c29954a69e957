"""LRM configuration: the architecture sizes, the ray sampling and the training losses.

Two presets: :func:`tiny_config` (what recon3d trains on the 64x64 synthetic set on a CPU) and
:func:`published_config` (the sizes of the published LRM, for shape checks and for anyone training
at scale).

Published sizes, as found in the references (Hong et al. 2023, "LRM: Large Reconstruction Model for
Single Image to 3D", arXiv:2311.04400, and its open reproduction OpenLRM v1.0, ``lrm/models/
generator.py``, ``lrm/models/transformer.py``, ``lrm/models/rendering/synthesizer.py``,
``lrm/inferrer.py``):

- image encoder: DINO ViT-B/16 (``facebook/dino-vitb16``): patch 16, width 768, 12 layers, 12 heads,
  on 512 x 512 inputs (OpenLRM's default source intrinsics: fx = fy = 384, cx = cy = 256, 512 px),
  i.e. 32 x 32 patch tokens plus a class token;
- camera: the 16-vector [flattened 3x4 source extrinsics (12), fx/W, fy/H, cx/W, cy/H (4)],
  embedded by a 2-layer SiLU MLP to 1024;
- image-to-triplane decoder: width 1024, 16 blocks (cross-attention, self-attention, MLP ratio 4),
  16 heads, adaptive layer norm from the camera embedding, 3 x 32 x 32 learned triplane tokens,
  a stride-2 transposed convolution to 3 planes of 80 x 64 x 64;
- triplane MLP: OpenLRM's decoder, concatenated plane features -> 4 linear layers of width 64 (ReLU)
  -> density + RGB; 128 samples per ray (64 coarse + 64 importance) for the large model.
"""

from __future__ import annotations

from dataclasses import dataclass

from recon3d.runtime.config import ConfigIO


@dataclass
class LRMConfig(ConfigIO):
    """Sizes of every LRM part, rendering and losses. Units: pixels, world units, tokens.

    Image encoder (ViT):
        image_size: input images are resized to ``image_size x image_size`` pixels before encoding.
        patch_size: ViT patch size (pixels); ``(image_size / patch_size) ** 2`` patch tokens + 1 class token.
        encoder_dim, encoder_layers, encoder_heads, encoder_mlp_ratio: ViT width, depth, heads, MLP ratio.
    Camera modulation:
        camera_embed_dim: width of the camera embedding (16-vector -> MLP) that drives every adaptive norm.
        canonical_yaw: rotate the world about +Z so the source camera sits at a fixed azimuth before
            decoding (see :mod:`recon3d.feedforward.lrm.model`); False keeps the raw world frame.
    Image-to-triplane decoder:
        decoder_dim, decoder_layers, decoder_heads, decoder_mlp_ratio: transformer sizes.
        triplane_low_res: learned triplane tokens per plane side (3 * low_res**2 tokens).
        triplane_high_res: plane side after the transposed-conv upsampling (a multiple of low_res).
        triplane_dim: feature channels per plane.
        projected_tokens: add to each learned token the source image's patch features at the
            projection of its cell centre (:func:`~.networks.projected_token_features`; recon3d's
            addition for fast small-scale training, off in the published config).
    Triplane NeRF:
        aggregate: ``"concat"`` (3 * triplane_dim MLP input, OpenLRM) or ``"sum"`` of the planes' features.
        mlp_hidden, mlp_layers: MLP width and number of linear layers (>= 2).
        density_scale, density_bias: density = density_scale * softplus(raw + density_bias), 1/world units.
        scene_bound: the triplanes span the world cube [-scene_bound, scene_bound]^3.
        mesh_threshold: marching-cubes density level, 1/world units (``recon3d predict``'s default for
            this model; 3 was the best level on the validation objects for the shipped tiny model,
            ``scripts/bench_lrm.py --calibrate``).
    Rendering (training / validation):
        num_coarse, num_fine: uniform and importance bins per ray.
    Training:
        rays_per_view: random rays per supervised view per step.
        foreground_fraction: fraction of those rays drawn among object pixels (mask > 0.5).
        supervise_source: also supervise the input view (as LRM does), besides the other views.
        mask_weight, depth_weight: weights of the opacity-vs-mask MSE and the masked depth L1 losses.
        val_views: held-out views rendered at full resolution per validation object.
        lr, weight_decay, warmup_steps: optimizer settings read by :meth:`LRM.default_train_config`.
    """

    image_size: int = 64
    patch_size: int = 8
    encoder_dim: int = 96
    encoder_layers: int = 4
    encoder_heads: int = 4
    encoder_mlp_ratio: float = 2.0

    camera_embed_dim: int = 64
    canonical_yaw: bool = True

    decoder_dim: int = 96
    decoder_layers: int = 4
    decoder_heads: int = 4
    decoder_mlp_ratio: float = 2.0
    triplane_low_res: int = 8
    triplane_high_res: int = 32
    triplane_dim: int = 24
    projected_tokens: bool = True

    aggregate: str = "concat"
    mlp_hidden: int = 64
    mlp_layers: int = 3
    density_scale: float = 10.0
    density_bias: float = -4.0
    scene_bound: float = 1.0
    mesh_threshold: float = 3.0

    num_coarse: int = 32
    num_fine: int = 16

    rays_per_view: int = 128
    foreground_fraction: float = 0.5
    supervise_source: bool = True
    mask_weight: float = 0.5
    depth_weight: float = 0.0
    val_views: int = 2

    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.triplane_high_res % self.triplane_low_res:
            raise ValueError(f"triplane_high_res {self.triplane_high_res} is not a multiple of "
                             f"triplane_low_res {self.triplane_low_res}")
        if self.aggregate not in ("concat", "sum"):
            raise ValueError(f"aggregate must be 'concat' or 'sum', got {self.aggregate!r}")
        if self.mlp_layers < 2:
            raise ValueError(f"mlp_layers must be >= 2, got {self.mlp_layers}")
        for name in ("encoder", "decoder"):
            dim, heads = getattr(self, f"{name}_dim"), getattr(self, f"{name}_heads")
            if dim % heads:
                raise ValueError(f"{name}_dim {dim} is not divisible by {name}_heads {heads}")


def tiny_config(**overrides) -> LRMConfig:
    """The CPU-trainable model recon3d ships (64 px input, 3 x 32 x 32 x 24 triplanes)."""
    return LRMConfig(**overrides)


def published_config(**overrides) -> LRMConfig:
    """The published LRM sizes (see the module docstring for the sources); ~0.5 B parameters."""
    base = dict(
        image_size=512, patch_size=16, encoder_dim=768, encoder_layers=12, encoder_heads=12, encoder_mlp_ratio=4.0,
        camera_embed_dim=1024, canonical_yaw=False,
        decoder_dim=1024, decoder_layers=16, decoder_heads=16, decoder_mlp_ratio=4.0,
        triplane_low_res=32, triplane_high_res=64, triplane_dim=80, projected_tokens=False,
        aggregate="concat", mlp_hidden=64, mlp_layers=4,
        num_coarse=64, num_fine=64,
    )
    base.update(overrides)
    return LRMConfig(**base)


PRESETS = {"tiny": tiny_config, "published": published_config}
