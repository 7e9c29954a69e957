"""pixelNeRF configuration: architecture, point/view inputs, training rays, rendering budgets.

Two presets:

- :meth:`PixelNeRFConfig.tiny` (the dataclass defaults, what ``recon3d train pixelnerf`` builds):
  what recon3d trains and ships (``data/checkpoints/pixelnerf.pt``): a small ResNet encoder (3 stages
  of one block each, GroupNorm) and a 4-block width-64 MLP, sized so a 2-core CPU learns a useful
  prior at 64x64 in about half an hour.
- :meth:`PixelNeRFConfig.published`: the architecture of the released pixelNeRF checkpoints
  (sxyu/pixel-nerf ``conf/default_mv.conf`` + ``resnet_fine_mv.conf``): ResNet-34 encoder whose stem
  and first three stages are upsampled to the stem resolution and concatenated (64 + 64 + 128 + 256
  = 512 channels), point coordinates rotated (not translated) into the source camera's OpenGL-axes
  frame, positional encoding with 6 frequencies ``1.5 * 2^k`` plus the input (39 values) followed
  by the raw view direction (3), and separate coarse/fine ResNet-FC MLPs of 5 blocks, width 512,
  with average pooling over source views before block 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from recon3d.runtime.config import ConfigIO


@dataclass
class PixelNeRFConfig(ConfigIO):
    """Architecture and training options of :class:`recon3d.feedforward.pixelnerf.model.PixelNeRF`.

    Encoder (a ResNet with torchvision's layout and parameter names):
        encoder_stem_width: channels of the 7x7 stride-2 stem convolution (``conv1``).
        encoder_widths: channels of the residual stages ``layer1``, ``layer2``, ... (stage ``i > 1``
            halves the resolution).
        encoder_blocks: basic blocks per stage.
        encoder_num_layers: feature levels concatenated into the feature volume, counting the stem
            as level 1 (the reference's ``num_layers``): level ``l >= 2`` is the output of
            ``layer{l-1}``. Stages beyond it are built (checkpoint compatibility) but not run.
        encoder_norm: ``"batch"`` (published; BatchNorm with running statistics) or ``"group"``
            (GroupNorm: identical in training and evaluation, better for small CPU batches).
        encoder_first_pool: max-pool after the stem (stride 4 features before ``layer1``).
    Point and direction inputs (in each source camera's frame):
        num_freqs, freq_factor: positional encoding ``sin/cos(freq_factor * 2^k * x)``,
            ``k < num_freqs``, plus ``x`` itself.
        camera_axes: axes of the source-camera frame fed to the MLP: ``"opengl"`` (x right, y up,
            z backward: the published networks' frame) or ``"opencv"``.
        translate_points: use camera-frame positions (``R^T (x - c)``); False rotates only
            (``R^T x``), which keeps the object centred at the origin (the reference's
            ``normalize_z``).
        use_viewdirs: feed the view direction (rotated into the source frame) to the MLP.
    MLP (ResNet-FC):
        mlp_hidden, mlp_blocks: width and number of residual blocks.
        combine_layer: source views are pooled before block ``combine_layer``; the image feature is
            added (through ``lin_z``) before each earlier block.
        masked_pooling: average only over source views in which the point projects inside the
            image (all views if none does); False: plain average (the reference).
        separate_fine_mlp: build ``mlp_coarse`` and ``mlp_fine`` (published); queries use
            ``mlp_fine`` when present. Otherwise a single ``mlp_coarse``.
        density_activation: ``"relu"`` (published) or ``"softplus"`` (smoother to train).
    Scene:
        scene_bound: half-size of the world cube holding the object (world units).
    Training:
        min_source_views, max_source_views: source views per training step, drawn uniformly.
        rays_per_object: supervised rays per object per step, drawn from the non-source views,
            weighted toward the object (``foreground_weight``).
        foreground_weight: extra sampling weight of pixels covered by the mask (0: uniform).
        train_num_coarse, train_num_fine: ray samples during training.
        mask_loss_weight: weight of the opacity-vs-mask MSE (0 disables).
        depth_loss_weight: weight of an auxiliary L1 loss between the rendered (opacity-normalized)
            ray distance and the data set's depth, on rays the mask covers (0 disables; batches
            without ``depths`` skip it). Not part of the original pixelNeRF recipe: it speeds up
            learning the shape prior on a CPU budget.
    Evaluation:
        num_coarse, num_fine: ray samples for validation/prediction renders.
        val_num_source: source views used by ``validation_step``.
        mesh_threshold: density iso-level (1/world units) ``recon3d predict`` meshes at; calibrated
            per trained checkpoint (see ``scripts/bench_pixelnerf.py --calibrate-threshold``).
    """

    encoder_stem_width: int = 32
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64, 64])
    encoder_blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    encoder_num_layers: int = 4
    encoder_norm: Literal["batch", "group"] = "group"
    encoder_first_pool: bool = False
    num_freqs: int = 6
    freq_factor: float = 1.5
    camera_axes: Literal["opengl", "opencv"] = "opencv"
    translate_points: bool = False
    use_viewdirs: bool = True
    mlp_hidden: int = 64
    mlp_blocks: int = 4
    combine_layer: int = 2
    masked_pooling: bool = True
    separate_fine_mlp: bool = False
    density_activation: Literal["relu", "softplus"] = "softplus"
    scene_bound: float = 1.0
    min_source_views: int = 1
    max_source_views: int = 3
    rays_per_object: int = 128
    foreground_weight: float = 3.0
    train_num_coarse: int = 32
    train_num_fine: int = 16
    mask_loss_weight: float = 0.1
    depth_loss_weight: float = 0.05
    num_coarse: int = 32
    num_fine: int = 32
    val_num_source: int = 1
    mesh_threshold: float = 10.0

    def __post_init__(self) -> None:
        self.encoder_widths = [int(w) for w in self.encoder_widths]
        self.encoder_blocks = [int(b) for b in self.encoder_blocks]
        if len(self.encoder_widths) != len(self.encoder_blocks) or not self.encoder_widths:
            raise ValueError("encoder_widths and encoder_blocks need the same non-zero length")
        if not 1 <= self.encoder_num_layers <= len(self.encoder_widths) + 1:
            raise ValueError(f"encoder_num_layers must be in 1..{len(self.encoder_widths) + 1}")
        if self.encoder_norm not in ("batch", "group"):
            raise ValueError(f"encoder_norm must be 'batch' or 'group', not {self.encoder_norm!r}")
        if self.camera_axes not in ("opengl", "opencv"):
            raise ValueError(f"camera_axes must be 'opengl' or 'opencv', not {self.camera_axes!r}")
        if self.density_activation not in ("relu", "softplus"):
            raise ValueError(f"density_activation must be 'relu' or 'softplus', not {self.density_activation!r}")
        if not 0 <= self.combine_layer <= self.mlp_blocks:
            raise ValueError(f"combine_layer must be in 0..mlp_blocks ({self.mlp_blocks})")
        if not 1 <= self.min_source_views <= self.max_source_views:
            raise ValueError("need 1 <= min_source_views <= max_source_views")

    @property
    def latent_size(self) -> int:
        """Channels of the concatenated feature volume."""
        return self.encoder_stem_width + sum(self.encoder_widths[: self.encoder_num_layers - 1])

    @property
    def point_input_size(self) -> int:
        """MLP point input: encoded position (3 + 6 * num_freqs) plus the raw direction (3)."""
        return 3 * (1 + 2 * self.num_freqs) + (3 if self.use_viewdirs else 0)

    @classmethod
    def tiny(cls, **overrides) -> "PixelNeRFConfig":
        """Small CPU-trainable model for 64x64 images (the class defaults): feature volume 32x32 with
        32 + 32 + 64 + 64 = 192 channels, MLP width 64 with 4 blocks, views pooled before block 2."""
        return replace(cls(), **overrides)

    @classmethod
    def published(cls, **overrides) -> "PixelNeRFConfig":
        """The released pixelNeRF architecture. The ShapeNet-64 release (``sn64``) was trained with
        ``encoder_first_pool=False``; pass it as an override."""
        base = replace(
            cls(), encoder_stem_width=64, encoder_widths=[64, 128, 256, 512], encoder_blocks=[3, 4, 6, 3],
            encoder_num_layers=4, encoder_norm="batch", encoder_first_pool=True, camera_axes="opengl",
            mlp_hidden=512, mlp_blocks=5, combine_layer=3, masked_pooling=False, separate_fine_mlp=True,
            density_activation="relu", num_coarse=64, num_fine=32,
        )
        return replace(base, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "PixelNeRFConfig":
        """``"tiny"`` or ``"published"``; ValueError otherwise."""
        presets = {"tiny": cls.tiny, "published": cls.published}
        if name not in presets:
            raise ValueError(f"unknown pixelNeRF preset {name!r}; known: {', '.join(presets)}")
        return presets[name](**overrides)
