"""Configuration of the NeRF optimizer (hash grid + occupancy grid), with quick/default/high presets.

Lengths are in normalized world units (see :func:`recon3d.io.normalize.normalize_scene`).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from recon3d.runtime.config import ConfigIO, Presets

from .model import FieldConfig
from .renderer import MarchConfig


@dataclass
class NerfConfig(ConfigIO):
    max_steps: int = 4_000
    max_seconds: float = 0.0  # stop training after this much wall time (0: no limit); the LR schedule
    #                           then follows max(step / max_steps, elapsed / max_seconds)
    rays_per_batch: int = 1024  # initial number; adapted to target_samples when that is > 0
    target_samples: int = 1 << 15  # aim for this many shaded bins per batch (0: fixed rays_per_batch)
    max_rays_per_batch: int = 8192
    lr: float = 1e-2
    lr_final_factor: float = 0.03  # the LR decays exponentially to lr * this at the end
    lr_warmup_steps: int = 50
    weight_decay_mlp: float = 1e-6
    scene_type: str = "auto"  # "auto", "object" (bounded box) or "unbounded" (contracted)
    aabb_scale: float = 1.1  # object box half-size, relative to what the cameras can see (see trainer)
    aabb: tuple[float, ...] | None = None  # explicit (xmin, ymin, zmin, xmax, ymax, zmax), normalized world
    background: str = "auto"  # training background: "auto", "random", "scene", "white", "black"
    grid_resolution: int = 128
    carve: bool = True  # object captures with alpha: mark cells outside the visual hull empty at start
    grid_update_every: int = 16
    grid_warmup_steps: int = 256  # update every cell until then, later a fraction of them
    grid_update_fraction: float = 0.125
    grid_decay: float = 0.95
    grid_alpha_threshold: float = 0.01  # a cell is occupied when 1 - exp(-sigma * step) exceeds this
    field: FieldConfig = dc_field(default_factory=lambda: FieldConfig(num_levels=12, log2_hashmap_size=17,
                                                                      max_resolution=512))
    march: MarchConfig = dc_field(default_factory=MarchConfig)
    eval_chunk: int = 8192  # rays rendered at once at test time
    mesh_resolution: int = 256  # marching-cubes nodes per axis of the scene box
    mesh_threshold: float = 0.0  # density level of the mesh, 1 / world units (0: see NerfTrainer.density_threshold)
    mesh_max_faces: int = 500_000  # quadric decimation above this many faces (0: keep every face)
    eval_every: int = 0  # evaluate on the test split every N steps (0: never)
    eval_views: int = 0  # test views of that periodic evaluation (0: all)
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 2
    mixed_precision: bool = True  # CUDA only: autocast the networks (bfloat16 where supported, else float16)
    compile: str = "off"  # "off", "on", "auto" (torch.compile when it works here)
    seed: int = 0


PRESETS = Presets(
    NerfConfig,
    # a couple of minutes on a laptop CPU: coarse but recognizable
    quick=dict(max_steps=600, target_samples=1 << 14, grid_resolution=64, field=dict(num_levels=8, max_resolution=256),
               march=dict(num_steps=256), checkpoint_every=300, mesh_resolution=128),
    # the CPU default (tuned on 200 px NeRF-synthetic): about 20 minutes on two cores. It is the dataclass
    # defaults plus torch.compile where it works: library use and tests stay eager (no compile probe).
    default=dict(compile="auto"),
    # Instant-NGP-like sizes, meant for a GPU
    high=dict(max_steps=20_000, target_samples=1 << 18, max_rays_per_batch=1 << 16, compile="auto",
              field=dict(num_levels=16, log2_hashmap_size=19, max_resolution=2048), march=dict(num_steps=1024),
              checkpoint_every=5_000),
)
preset = PRESETS
