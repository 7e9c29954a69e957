"""``recon3d-sdf``: the nerfstudio method specification (entry point ``nerfstudio.method_configs``).

nerfstudio's ray data manager (random pixels across the training images, nerfstudio dataparser)
and trainer with recon3d's NeuS-style SDF (:mod:`.sdf_model`). Sizes, loss weights and optimizer
settings are recon3d's ``high`` preset (hash-grid geometry, NeuS-like network sizes, meant for a
GPU): Adam with betas (0.9, 0.99) and eps 1e-15 on two groups, the networks and the SDF's variance
(``lr``) and the hash tables (``lr_grid``), with a linear warm-up and a cosine decay to
``lr_final_factor`` of the rate. Mixed precision stays off: the eikonal loss differentiates the
SDF's gradient (double backward). Usage::

    ns-train recon3d-sdf --data path/to/transforms.json-folder                        # CUDA
    ns-train recon3d-sdf --machine.device-type cpu --vis tensorboard --data ... \\
        --pipeline.model.field.geometry mlp --pipeline.datamanager.train-num-rays-per-batch 512  # CPU
    python -m recon3d.integrations.nerfstudio.export_mesh --load-config outputs/.../config.yml --output mesh.glb
"""

from __future__ import annotations

from dataclasses import replace

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from recon3d.methods.sdf import PRESETS, SdfConfig

from .nerf_config import Recon3dAdamConfig
from .sdf_model import Recon3dSdfModelConfig

#: recon3d's GPU preset, the source of the method's defaults.
PRESET: SdfConfig = PRESETS["high"]
MAX_STEPS = PRESET.max_steps


def optimizers(cfg: SdfConfig = PRESET, max_steps: int = MAX_STEPS) -> dict:
    """nerfstudio ``--optimizers`` of recon3d-sdf's parameter groups, from a recon3d config.

    Schedule: recon3d multiplies ``min(1, (step + 1) / warmup)`` by
    ``a + (1 - a) * (1 + cos(pi * step / max_steps)) / 2`` (``a = lr_final_factor``), the cosine
    running over all steps. nerfstudio's cosine scheduler ramps ``step / warmup`` (0 at step 0)
    and then runs the same cosine over the steps after the warm-up,
    ``(step - warmup) / (max_steps - warmup)``: with recon3d's warm-up of 200 of 50k steps the
    two differ by under 1% of the base rate after the warm-up; both end at ``lr * a``.
    """

    def group(lr: float) -> dict:
        return {
            "optimizer": Recon3dAdamConfig(lr=lr, eps=1e-15),
            "scheduler": CosineDecaySchedulerConfig(warm_up_end=cfg.lr_warmup_steps,
                                                    learning_rate_alpha=cfg.lr_final_factor, max_steps=max_steps),
        }

    # "encoding" is used only with field.geometry=hashgrid (the model returns no empty group)
    return {"fields": group(cfg.lr), "encoding": group(cfg.lr_grid)}


recon3d_sdf = MethodSpecification(
    config=TrainerConfig(
        method_name="recon3d-sdf",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=PRESET.checkpoint_every,
        steps_per_eval_all_images=MAX_STEPS,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,  # the eikonal term's double backward stays in float32
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=PRESET.rays_per_batch,
                eval_num_rays_per_batch=PRESET.rays_per_batch,
            ),
            model=Recon3dSdfModelConfig(
                field=replace(PRESET.field), sampling=replace(PRESET.sampling), sphere_radius=PRESET.radius,
                eikonal_weight=PRESET.eikonal_weight, mask_weight=PRESET.mask_weight,
                cos_anneal_steps=PRESET.cos_anneal_steps, seed=PRESET.seed, eval_num_rays_per_chunk=PRESET.eval_chunk,
            ),
        ),
        optimizers=optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    ),
    description="recon3d SDF: recon3d's NeuS-style SDF field, renderer and losses on nerfstudio's ray data manager "
                "(mesh export: python -m recon3d.integrations.nerfstudio.export_mesh)",
)
