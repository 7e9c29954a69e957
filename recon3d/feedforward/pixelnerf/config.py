"""pixelNeRF configuration: architecture, point/view inputs, training rays, rendering budgets.

Two presets (and the released variants, :data:`VARIANTS`):

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
  with average pooling over source views before block 3. It computes what the official code computes
  (``feature_sampling="official"``, ``renderer="official"``); :meth:`PixelNeRFConfig.released` adds the
  settings of each released checkpoint (first max-pool, background, ray range, input size, cameras).

Conventions at the model boundary: recon3d cameras are OpenCV (x right, y down, z forward) with pixel
centres at +0.5; the official code uses OpenGL camera axes and integer pixel centres (pixel ``j`` at
coordinate ``j``, principal point ``W / 2`` by default). The model converts internally: official pixel
coordinate = recon3d pixel coordinate - 0.5, so the official default principal point is
``cx = W / 2 + 0.5`` in a recon3d ``K`` (see :func:`.published.official_cameras`). Images enter in [0, 1]
and are mapped to [-1, 1] inside the encoder, as the official ``encode`` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional

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
    Conventions (``"official"``: what sxyu/pixel-nerf computes; ``"recon3d"``: what the shipped,
    recon3d-trained model was trained with, the default so older recon3d checkpoints keep their behaviour):
        feature_sampling: ``"official"``: deeper encoder levels upsampled with ``align_corners=True``;
            features sampled at the official pixel mapping (integer pixel centres, feature cell ``j`` at
            pixel ``j W / w``, ``grid_sample(align_corners=True)``) with border padding for every point,
            also outside the image or behind the camera. ``"recon3d"``: ``align_corners=False`` resizing,
            cells at ``(j + 0.5) W / w`` (pixel centres at +0.5), zero features outside/behind.
        renderer: ``"official"``: the official NeRF renderer (``NeRFRenderer``): ``num_coarse`` uniform bins
            between the planes ``z_near`` and ``z_far`` along each ray, ``num_fine - num_fine_depth``
            importance samples and ``num_fine_depth`` samples around the coarse expected depth
            (``depth_std``), coarse pass with ``mlp_coarse`` and fine pass with ``mlp_fine``, last interval
            ending at ``z_far``, depth = sum of weights x distance. ``"recon3d"``: the shared core sampler
            (:mod:`recon3d.feedforward.rendering`; rays clipped to the scene cube, one network).
        z_near, z_far: ray range of the official renderer (distance along the ray, world units).
        num_fine_depth, depth_std: the official renderer's depth-guided samples.
        white_background: composite over white (False: black; the DTU release).
    Prediction (``recon3d predict``):
        image_size: side of the square input images ``recon3d predict`` prepares.
        camera_radius, camera_focal, camera_elevation_deg: canonical source camera for photos without
            cameras: distance to the origin, focal length in pixels at ``image_size``, elevation (degrees
            above the horizon). ``camera_radius=None``: recon3d's canonical cameras
            (:func:`recon3d.feedforward.predict.canonical_source_cameras`); ``camera_radius=0``: the model
            needs known cameras (``--cameras``).
        variant: name of the released checkpoint variant ("" for recon3d-trained models).
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
    feature_sampling: Literal["official", "recon3d"] = "recon3d"
    renderer: Literal["official", "recon3d"] = "recon3d"
    z_near: float = 0.8
    z_far: float = 1.8
    num_fine_depth: int = 16
    depth_std: float = 0.01
    white_background: bool = True
    image_size: int = 64
    camera_radius: Optional[float] = None
    camera_focal: float = 131.25
    camera_elevation_deg: float = 0.0
    variant: str = ""
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
        for name in ("feature_sampling", "renderer"):
            if getattr(self, name) not in ("official", "recon3d"):
                raise ValueError(f"{name} must be 'official' or 'recon3d', not {getattr(self, name)!r}")
        if not 0 < self.z_near < self.z_far:
            raise ValueError(f"need 0 < z_near < z_far, got {self.z_near}, {self.z_far}")
        if not 0 <= self.num_fine_depth <= self.num_fine:
            raise ValueError(f"num_fine_depth must be in 0..num_fine ({self.num_fine})")
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
        """The released pixelNeRF architecture (``conf/default_mv.conf``) with the official conventions
        and the SRN-car settings; :meth:`released` gives each released checkpoint's settings."""
        base = replace(
            cls(), encoder_stem_width=64, encoder_widths=[64, 128, 256, 512], encoder_blocks=[3, 4, 6, 3],
            encoder_num_layers=4, encoder_norm="batch", camera_axes="opengl",
            mlp_hidden=512, mlp_blocks=5, combine_layer=3, masked_pooling=False, separate_fine_mlp=True,
            density_activation="relu", num_coarse=64, num_fine=32, num_fine_depth=16, depth_std=0.01,
            feature_sampling="official", renderer="official", **VARIANTS["srn_car"],
        )
        return replace(base, **overrides)

    @classmethod
    def released(cls, name: str, **overrides) -> "PixelNeRFConfig":
        """:meth:`published` with the settings of released checkpoint ``name`` (:data:`VARIANTS`);
        ValueError listing the names otherwise."""
        if name not in VARIANTS:
            raise ValueError(f"unknown pixelNeRF variant {name!r}; released variants: {', '.join(VARIANTS)}")
        return cls.published(**{**VARIANTS[name], **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> "PixelNeRFConfig":
        """``"tiny"``, ``"published"`` or a released variant name; ValueError otherwise."""
        presets = {"tiny": cls.tiny, "published": cls.published}
        if name in VARIANTS:
            return cls.released(name, **overrides)
        if name not in presets:
            raise ValueError(f"unknown pixelNeRF preset {name!r}; known: {', '.join([*presets, *VARIANTS])}")
        return presets[name](**overrides)


#: Settings of the released checkpoints (``checkpoints/<name>/pixel_nerf_latest`` in the official
#: ``pixel_nerf_weights.zip``) that their files do not hold. From the official code: ``use_first_pool``
#: (``conf/exp/*.conf``), the background (``white_bkgd``: False for DTU only), the ray range (SRN cars
#: 0.8-1.8, SRN chairs 1.25-2.75 in ``SRNDataset``; NMR ShapeNet 1.2-4.0 and DTU 0.1-5.0 in
#: ``DVRDataset`` / ``get_split_dataset``), the input size (SRN 128 px, NMR 64 px; DTU 400x300, which
#: ``recon3d predict`` centre-crops to 300x300). Canonical source cameras for photos without cameras: the
#: official real-image demo for cars (``eval_real.py``: distance 1.3, focal 131.25 px at 128 px,
#: elevation 0); SRN chairs: the mid ray range 2.0 (``gen_video.py``'s default radius), the SRN focal;
#: NMR ShapeNet: distance 2.732, 30 degree field of view (focal 119.42 px at 64 px) and 30 degrees of
#: elevation, the NMR renders' setup (not stated in pixel-nerf; an assumption). DTU is a scene model: it
#: needs the images' cameras (``camera_radius=0``).
VARIANTS: dict[str, dict] = {
    "srn_car": dict(variant="srn_car", encoder_first_pool=True, white_background=True, z_near=0.8, z_far=1.8,
                    image_size=128, camera_radius=1.3, camera_focal=131.25, camera_elevation_deg=0.0,
                    scene_bound=0.5),
    "srn_chair": dict(variant="srn_chair", encoder_first_pool=True, white_background=True, z_near=1.25,
                      z_far=2.75, image_size=128, camera_radius=2.0, camera_focal=131.25,
                      camera_elevation_deg=20.0, scene_bound=0.75),
    "sn64": dict(variant="sn64", encoder_first_pool=False, white_background=True, z_near=1.2, z_far=4.0,
                 image_size=64, camera_radius=2.732, camera_focal=119.42, camera_elevation_deg=30.0,
                 scene_bound=0.5),
    "sn64_unseen": dict(variant="sn64_unseen", encoder_first_pool=False, white_background=True, z_near=1.2,
                        z_far=4.0, image_size=64, camera_radius=2.732, camera_focal=119.42,
                        camera_elevation_deg=30.0, scene_bound=0.5),
    "dtu": dict(variant="dtu", encoder_first_pool=True, white_background=False, z_near=0.1, z_far=5.0,
                image_size=300, camera_radius=0.0, camera_focal=131.25, camera_elevation_deg=0.0,
                scene_bound=1.0),
}
