"""Configuration of SuGaR regularization and mesh extraction, with quick/default/high presets.

Schedule (steps counted from the fitted splat model, relative to the start of regularization):

    [0, entropy_steps)            photometric + opacity entropy (opacities become ~0 or ~1)
    entropy_steps                 Gaussians with opacity < prune_opacity are removed
    [entropy_steps, steps)        photometric + SDF alignment + normal (+ flatness) terms

SuGaR's paper schedule, from a 3DGS model trained 7k steps: 2k entropy steps, then 6k regularized
steps, 1M samples per step, 16 neighbours refreshed every 500 steps (the ``high`` preset). The
smaller presets shrink steps and samples for CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recon3d.methods.splat.config import PRESETS as SPLAT_PRESETS
from recon3d.methods.splat.config import SplatConfig
from recon3d.runtime.config import PRESET_NAMES, ConfigIO, Presets


@dataclass
class SugarConfig(ConfigIO):
    # ---- regularization schedule
    steps: int = 2_000  # regularized steps after the splat fit
    entropy_steps: int = 500
    entropy_weight: float = 0.1
    prune_opacity: float = 0.5
    sdf_weight: float = 0.2
    normal_weight: float = 0.2
    flatness_weight: float = 0.0  # optional explicit flatness term (SuGaR relies on the SDF term)
    num_samples: int = 50_000  # points sampled per step for the SDF/normal terms
    knn: int = 16
    knn_every: int = 500  # refresh the neighbour table every this many steps
    sample_scale: float = 1.5  # sampling std as a multiple of each Gaussian's scales
    closeness: float = 2.0  # Gaussians within this many std of the depth map are "on the surface"
    distance_scale: float = 0.1  # SDF errors divided by this fraction of the scene extent
    means_lr: float = 5.5e-5  # position learning rate (x scene extent), log-linear decay to means_lr_final
    means_lr_final: float = 1.6e-5  # (SuGaR continues 3DGS's 30k schedule from step 7k to 15k: these values)
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 2
    # ---- mesh extraction
    surface_level: float = 0.3
    points_per_view: int = 20_000
    samples_per_ray: int = 21
    ray_range: float = 3.0  # search +/- this many std around the rendered depth
    extraction_opacity: float = 0.5  # Gaussians below this opacity are ignored for meshing
    poisson_depth: int = 9
    density_quantile: float = 0.02  # 0.1 trimmed real surface on the sample scene (completeness 0.039 -> 0.022)
    max_point_distance: float = 0.0  # >0: drop vertices farther than this (x extent) from all samples
    target_faces: int = 200_000
    min_component_fraction: float = 0.01
    vertex_colors: str = "points"  # "points" (rendered colours carried by Poisson), "gaussians", "views", "none"
    # ---- appearance
    texture_size: int = 0  # > 0: bake a UV texture of this size (xatlas)
    texture_source: str = "views"  # "views" (training images) or "gaussians"
    # ---- optional refinement (Gaussians bound to the mesh)
    refine_steps: int = 0
    refine_gaussians_per_face: int = 3


PRESETS = Presets(
    SugarConfig, label="SuGaR preset",
    quick=dict(steps=600, entropy_steps=200, num_samples=20_000, knn_every=200, points_per_view=8_000,
               poisson_depth=8, target_faces=50_000, checkpoint_every=300),
    default={},
    high=dict(steps=8_000, entropy_steps=2_000, num_samples=1_000_000, points_per_view=100_000,
              poisson_depth=10, target_faces=1_000_000, checkpoint_every=2_000),
)
preset = PRESETS


@dataclass
class SugarRunConfig(ConfigIO):
    """A ``--method sugar`` run: the Gaussian-splat fit (``splat``), then SuGaR (``sugar``). Saved as the
    run's config.json like every method's config. A config.json of a run made before SuGaR had its own
    (a bare :class:`SplatConfig`) loads with the default SuGaR settings."""

    splat: SplatConfig = field(default_factory=SplatConfig)
    sugar: SugarConfig = field(default_factory=SugarConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "SugarRunConfig":
        if "splat" not in d and "sugar" not in d:  # an older run's config.json: the splat config alone
            return cls(splat=SplatConfig.from_dict(d))
        return super().from_dict(d)


RUN_PRESETS = Presets(
    SugarRunConfig,
    **{name: {"splat": SPLAT_PRESETS.changes[name], "sugar": PRESETS.changes[name]} for name in PRESET_NAMES},
)
