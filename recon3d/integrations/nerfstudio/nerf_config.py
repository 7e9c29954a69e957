"""``recon3d-nerf``: the nerfstudio method specification (entry point ``nerfstudio.method_configs``).

nerfstudio's ray data manager (random pixels across the training images, nerfstudio dataparser)
and trainer with recon3d's NeRF (:mod:`.nerf_model`). Sizes and optimizer settings are recon3d's
``high`` preset (Instant-NGP-like, meant for a GPU): Adam with betas (0.9, 0.99) and eps 1e-15 on
two groups, the hash tables (no weight decay) and the networks (recon3d's MLP weight decay), and
recon3d's schedule (linear warm-up, exponential decay to ``lr_final_factor`` of the rate). Usage::

    ns-train recon3d-nerf --data path/to/transforms.json-folder                      # CUDA
    ns-train recon3d-nerf --machine.device-type cpu --vis tensorboard --data ... \\
        --pipeline.model.field.num-levels 8 --pipeline.model.field.max-resolution 256  # CPU, smaller
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Tuple, Type

import torch

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from recon3d.methods.nerf import PRESETS, NerfConfig

from .nerf_model import Recon3dNerfModelConfig

#: recon3d's GPU preset, the source of the method's defaults.
PRESET: NerfConfig = PRESETS["high"]
MAX_STEPS = PRESET.max_steps


@dataclass
class Recon3dAdamConfig(AdamOptimizerConfig):
    """nerfstudio's Adam config with recon3d's betas (nerfstudio's own leaves them at torch's)."""

    _target: Type = torch.optim.Adam
    betas: Tuple[float, float] = (0.9, 0.99)


def optimizers(cfg: NerfConfig = PRESET, max_steps: int = MAX_STEPS) -> dict:
    """nerfstudio ``--optimizers`` of recon3d-nerf's two parameter groups, from a recon3d config."""

    def group(weight_decay: float) -> dict:
        return {
            "optimizer": Recon3dAdamConfig(lr=cfg.lr, eps=1e-15, weight_decay=weight_decay),
            # recon3d: lr * min(1, (step + 1) / warmup) * final_factor ** (step / max_steps); nerfstudio
            # ramps linearly from lr / warmup to lr, then decays exponentially to lr * final_factor
            "scheduler": ExponentialDecaySchedulerConfig(lr_pre_warmup=cfg.lr / max(cfg.lr_warmup_steps, 1),
                                                         lr_final=cfg.lr * cfg.lr_final_factor,
                                                         warmup_steps=cfg.lr_warmup_steps, max_steps=max_steps,
                                                         ramp="linear"),
        }

    return {"encoding": group(0.0), "mlp": group(cfg.weight_decay_mlp)}


recon3d_nerf = MethodSpecification(
    config=TrainerConfig(
        method_name="recon3d-nerf",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=PRESET.checkpoint_every,
        steps_per_eval_all_images=MAX_STEPS,
        max_num_iterations=MAX_STEPS,
        mixed_precision=PRESET.mixed_precision,  # CUDA autocast by nerfstudio's trainer; recon3d composites in float32
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=Recon3dNerfModelConfig(
                field=replace(PRESET.field), march=replace(PRESET.march), grid_resolution=PRESET.grid_resolution,
                eval_num_rays_per_chunk=PRESET.eval_chunk,
            ),
        ),
        optimizers=optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
        vis="viewer",
    ),
    description="recon3d NeRF: recon3d's hash-grid field, occupancy grid and ray marcher on nerfstudio's "
                "ray data manager",
)
