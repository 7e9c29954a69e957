"""Configuration of the NeuS-style SDF optimizer, with quick/default/high presets."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from recon3d.runtime.config import ConfigIO, Presets

from .model import SdfFieldConfig
from .rendering import NeusSamplingConfig


@dataclass
class SdfConfig(ConfigIO):
    max_steps: int = 3_000
    max_seconds: float = 0.0  # wall-time limit (0: none); the LR schedule then follows time too
    rays_per_batch: int = 512
    lr: float = 1e-3
    lr_grid: float = 1e-2  # hash-grid tables (geometry="hashgrid")
    lr_warmup_steps: int = 200
    lr_final_factor: float = 0.05  # cosine decay to lr * this
    eikonal_weight: float = 0.1
    mask_weight: float = 0.1  # BCE between opacity and the mask (scene masks, else alpha); 0: off
    cos_anneal_steps: int = 500  # cos_anneal_ratio goes 0 -> 1 over these steps
    radius: float | None = None  # bounding sphere radius, normalized world units (None: from the scene)
    radius_scale: float = 1.15  # auto radius: visual hull (or camera frustum) bound times this
    background: str = "auto"  # "auto" (random with alpha, else the scene's), "random", "scene", "white", "black"
    field: SdfFieldConfig = dc_field(default_factory=SdfFieldConfig)
    sampling: NeusSamplingConfig = dc_field(default_factory=NeusSamplingConfig)
    eval_chunk: int = 2048
    eval_every: int = 0  # evaluate on the test split every N steps (0: never)
    eval_views: int = 0  # test views of that periodic evaluation (0: all)
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 2
    mesh_resolution: int = 256  # marching-cubes nodes per axis of the bounding sphere's cube
    mesh_max_faces: int = 500_000  # quadric decimation above this many faces (0: keep every face)
    seed: int = 0


PRESETS = Presets(
    SdfConfig,
    # minutes on a laptop CPU: a smooth, coarse surface
    quick=dict(max_steps=800, rays_per_batch=256, cos_anneal_steps=200, mesh_resolution=128,
               sampling=dict(num_coarse=24, num_importance=24)),
    # the CPU default (the dataclass defaults): MLP geometry (the hash grid converges in fewer steps, but
    # its double backward for the eikonal term is ~3x slower per step on a CPU)
    default={},
    # NeuS-like network sizes, for a GPU
    high=dict(max_steps=50_000, rays_per_batch=1024, lr=5e-4, cos_anneal_steps=5_000,
              field=dict(geometry="hashgrid", hidden_dim=128, num_levels=16, log2_hashmap_size=19,
                         max_resolution=2048),
              sampling=dict(num_coarse=64, num_importance=64), mesh_resolution=512, checkpoint_every=5_000),
)
preset = PRESETS
