"""Configuration of the Gaussian-splatting optimizer, with quick/default/high presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from recon3d.runtime.config import ConfigIO, Presets

from .model import LearningRates
from .strategy import DensifyConfig


@dataclass
class SplatConfig(ConfigIO):
    max_steps: int = 5_000
    sh_degree: int = 3
    sh_degree_interval: int = 1_000  # one more SH degree every this many steps (at 30k-step scale)
    ssim_lambda: float = 0.2  # loss = (1 - l) * L1 + l * D-SSIM
    # "auto": the scene's SfM points if it has them, else the masks' visual hull for masked captures, else random;
    # "points", "hull" (silhouettes: masks, or the images' alpha), "random"
    init: str = "auto"
    init_num_random: int = 50_000
    init_num_hull: int = 30_000  # Gaussians sampled on the visual hull's surface
    init_hull_resolution: int = 256  # voxels along the hull box's longest side
    init_random_extent: float = 1 / 3  # random init box half-size, as a fraction of the nearest camera distance
    init_opacity: float = 0.1
    background: str = "scene"  # "scene" (what the dataset's images are composited on), "white", "black"
    lrs: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    scale_schedule_to_steps: bool = True  # stretch densify/SH schedules from 30k steps to max_steps
    antialiased: bool = False
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 2
    seed: int = 0
    backend: str = "auto"  # rasterizer: "auto", "cpp", "torch", "gsplat"
    # joint camera-pose refinement (recon3d.core.pose_correction): for poses that are a little off
    pose_opt: bool = False
    pose_lr: float = 1e-4  # Adam on each training camera's (translation / extent, axis-angle) correction
    pose_opt_start: int = 0  # start refining poses at this step
    pose_test_steps: int = 150  # evaluation with pose_opt: align each test camera to its image first
    pose_test_lr: float = 2e-3
    # per-image appearance compensation (recon3d.methods.splat.appearance): exposure / white balance of photos
    appearance: str = "auto"  # "auto" (on for photo captures with > appearance_auto_views training views), "on", "off"
    appearance_auto_views: int = 8
    appearance_lr: float = 1e-2  # Adam on each training image's 3x3 + bias colour transform (3DGS's exposure lr),
    appearance_lr_final: float = 1e-3  # log-linear decay to this at max_steps
    appearance_start: int = 0  # start training the transforms at this step (identity before)

    def schedule(self) -> tuple[DensifyConfig, int]:
        """The densification config and SH interval actually used for ``max_steps``."""
        if not self.scale_schedule_to_steps:
            return self.densify, self.sh_degree_interval
        f = self.max_steps / 30_000
        return self.densify.scaled_to(self.max_steps), max(1, int(self.sh_degree_interval * f))


PRESETS = Presets(
    SplatConfig,
    # a few minutes on a laptop CPU: coarse but recognizable
    quick=dict(max_steps=1_500, sh_degree=1, init_num_random=30_000, checkpoint_every=500),
    # the CPU default (the dataclass defaults): good quality on small (<= 256 px) scenes
    default={},
    # the 3DGS paper schedule (meant for a GPU)
    high=dict(max_steps=30_000, init_num_random=100_000, scale_schedule_to_steps=False, checkpoint_every=5_000),
)
preset = PRESETS  # preset("quick", max_steps=...) -> a fresh SplatConfig
