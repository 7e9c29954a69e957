"""``recon3d-splat``: the nerfstudio method specification (entry point ``nerfstudio.method_configs``).

Mirrors splatfacto's trainer set-up (full-image data manager reading the dataparser's 3D points,
per-parameter Adam with 3DGS learning rates, exponential decay of the position learning rate) with
recon3d's model (:mod:`.splat_model`). Usage::

    ns-train recon3d-splat --data path/to/transforms.json-folder                # GPU (gsplat)
    ns-train recon3d-splat --machine.device-type cpu --vis tensorboard --data ... # CPU (recon3d tiles)
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from recon3d.methods.splat.model import LearningRates

from .splat_model import Recon3dSplatModelConfig

MAX_STEPS = 30_000


def _optimizers(max_steps: int = MAX_STEPS) -> dict:
    """One Adam per recon3d Gaussian parameter (names = recon3d's), 3DGS learning rates."""
    lr = LearningRates()

    def adam(value: float) -> AdamOptimizerConfig:
        return AdamOptimizerConfig(lr=value, eps=1e-15)

    return {
        "means": {"optimizer": adam(lr.means),
                  "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr.means_final, max_steps=max_steps)},
        "quats": {"optimizer": adam(lr.quats), "scheduler": None},
        "log_scales": {"optimizer": adam(lr.log_scales), "scheduler": None},
        "opacity_logits": {"optimizer": adam(lr.opacity_logits), "scheduler": None},
        "sh0": {"optimizer": adam(lr.sh0), "scheduler": None},
        "shN": {"optimizer": adam(lr.shN), "scheduler": None},
        "camera_opt": {
            "optimizer": adam(1e-4),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=5e-7, max_steps=max_steps, warmup_steps=1000,
                                                         lr_pre_warmup=0),
        },
    }


recon3d_splat = MethodSpecification(
    config=TrainerConfig(
        method_name="recon3d-splat",
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                cache_images_type="uint8",
            ),
            model=Recon3dSplatModelConfig(),
        ),
        optimizers=_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="recon3d Gaussian splatting: recon3d's Gaussians, rasterizer (gsplat on CUDA, "
                "PyTorch on CPU) and densification",
)
