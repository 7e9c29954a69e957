"""recon3d's hash-grid NeRF as a nerfstudio ``Model`` (``ns-train recon3d-nerf``).

What runs is recon3d's: :class:`recon3d.methods.nerf.NerfField` (hash grid, density / colour MLPs,
SH view encoding, optional appearance embedding), :class:`recon3d.core.occupancy.OccupancyGrid`
(empty-space skipping, refreshed during training like ``recon3d fit --method nerf`` does) and
:func:`recon3d.methods.nerf.render_rays` (occupancy-grid marching + volume compositing), trained
with recon3d's MSE loss and per-ray backgrounds. nerfstudio supplies the data (dataparser, ray data
manager and pixel sampler), the optimizers and schedulers, the training loop, checkpoints and the
viewer.

Frames: nerfstudio's rays are world-space origins and unit directions in its dataparser's world
(oriented, centered, scaled into ``scene_box``), so they are used as they are: camera axes
(OpenGL in nerfstudio, OpenCV in recon3d) only matter for cameras, used here once, to mask the
occupancy grid at the start of training (:meth:`Recon3dNerfModel._recon3d_cameras` converts them). The field's bound is the
dataparser's ``scene_box`` (its aabb, in nerfstudio's normalized frame), not recon3d's own
camera-derived box.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras as NsCameras
from nerfstudio.cameras.cameras import CameraType
from nerfstudio.cameras.rays import RayBundle as NsRayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps

from recon3d.core.cameras import Cameras
from recon3d.core.conventions import opengl_to_opencv
from recon3d.core.fields import SceneBox
from recon3d.core.occupancy import OccupancyGrid
from recon3d.core.metrics import psnr, ssim
from recon3d.core.rays import RayBundle
from recon3d.methods.nerf import FieldConfig, MarchConfig, NerfConfig, NerfField, render_rays
from recon3d.methods.nerf.renderer import grid_cells_to_update, march_step_and_grid_threshold

from .ray_model_common import RayModelMixin

log = logging.getLogger(__name__)

_NERF = NerfConfig()  # recon3d's defaults of what the plugin exposes
#: nerfstudio optimizer groups: hash tables (no weight decay) and networks (recon3d's MLP weight decay).
PARAM_GROUPS = ("encoding", "mlp")


@dataclass
class Recon3dNerfModelConfig(ModelConfig):
    """``--pipeline.model.*`` options of ``ns-train recon3d-nerf``; defaults are recon3d's
    :class:`~recon3d.methods.nerf.NerfConfig`. Learning rates and their schedules are
    ``--optimizers.encoding.*`` / ``--optimizers.mlp.*``, rays per batch
    ``--pipeline.datamanager.train-num-rays-per-batch``, steps ``--max-num-iterations``."""

    _target: Type = dc_field(default_factory=lambda: Recon3dNerfModel)
    enable_collider: bool = False
    """Unused: rays are clipped to the scene box by recon3d's marcher."""
    collider_params: Optional[Dict[str, float]] = None
    eval_num_rays_per_chunk: int = _NERF.eval_chunk
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    """recon3d's hash-grid field sizes (appearance_dim > 0 turns the per-image embedding on)."""
    march: MarchConfig = dc_field(default_factory=MarchConfig)
    """recon3d's ray marching: candidate bins per ray, near plane, pruning."""
    scene_type: Literal["object", "unbounded"] = "object"
    """object: the field lives in the dataparser's scene box; unbounded: space beyond the box is
    contracted (L-inf) into it, like recon3d's unbounded scenes."""
    grid_resolution: int = _NERF.grid_resolution
    """Occupancy grid cells per axis."""
    grid_update_every: int = _NERF.grid_update_every
    grid_warmup_steps: int = _NERF.grid_warmup_steps
    """Every cell is refreshed until this step, then grid_update_fraction of them."""
    grid_update_fraction: float = _NERF.grid_update_fraction
    grid_decay: float = _NERF.grid_decay
    grid_alpha_threshold: float = _NERF.grid_alpha_threshold
    """A cell is occupied when one marching step through it is more opaque than this."""
    mark_unseen_cells: bool = True
    """object scenes: at the start of training, empty for good the cells no training camera sees."""
    carve: bool = _NERF.carve
    """object scenes whose images have alpha: at the start of training, also empty the cells
    outside the visual hull of the alpha masks (recon3d's carving)."""
    background_color: Literal["auto", "random", "black", "white"] = "auto"
    """Training background behind RGBA images (recon3d's rule): auto = random per ray for images
    with alpha, else black. Evaluation uses white for white, black otherwise."""
    seed: int = _NERF.seed


class Recon3dNerfModel(RayModelMixin, Model):
    """nerfstudio Model around recon3d's NeRF field, occupancy grid and renderer (module docstring)."""

    config: Recon3dNerfModelConfig

    # ------------------------------------------------------------------ set-up
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        aabb = self.scene_box.aabb.detach().float().cpu().reshape(2, 3)
        self.box = SceneBox(aabb, contraction="linf" if cfg.scene_type == "unbounded" else None)
        self.field = NerfField(self.box, cfg.field, num_images=max(int(self.num_train_data), 1), seed=cfg.seed)
        self.grid = OccupancyGrid(self.box, cfg.grid_resolution)
        # as recon3d's NerfTrainer: the largest candidate bin, and the density at which one bin of
        # that length has opacity grid_alpha_threshold
        self.step_size, self.grid_threshold = march_step_and_grid_threshold(
            aabb, cfg.march.num_steps, cfg.grid_alpha_threshold)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # CPU: backgrounds, grid updates, jitter
        self.images_have_alpha = True  # until get_training_callbacks sees the training images

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return dict(zip(PARAM_GROUPS, self.field.parameter_groups()))

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Occupancy-grid refresh before every training step (acting every ``grid_update_every``);
        for object scenes, the cells no training camera sees are emptied once here."""
        if attrs.pipeline is not None:
            dataset = attrs.pipeline.datamanager.train_dataset
            self._note_training_images(dataset)
            cams = dataset.cameras
            pinhole = bool((cams.camera_type == CameraType.PERSPECTIVE.value).all()) and (
                cams.distortion_params is None or not bool(cams.distortion_params.abs().gt(1e-8).any()))
            if self.config.scene_type == "object" and not pinhole:
                log.info("recon3d-nerf: distorted / non-pinhole cameras: the occupancy grid is not masked by them")
            if self.config.scene_type == "object" and pinhole and self.config.mark_unseen_cells:
                seen = self.mark_unseen_cells(cams)
                log.info("recon3d-nerf: %.1f%% of occupancy cells seen by a training camera", 100 * seen)
            if self.config.scene_type == "object" and pinhole and self.config.carve and self.images_have_alpha:
                alphas = [dataset.get_image_float32(i)[..., 3].clone() for i in range(len(dataset))]
                inside = self.carve_visual_hull(cams, alphas)
                log.info("recon3d-nerf: %.1f%% of occupancy cells inside the visual hull", 100 * inside)
        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.update_grid)]

    def _recon3d_cameras(self, cameras: NsCameras) -> Cameras:
        """nerfstudio pinhole cameras (OpenGL axes, (C, 3, 4) camera-to-world) -> recon3d Cameras
        (OpenCV axes). The only place cameras are converted; rays need no conversion."""
        c2w = cameras.camera_to_worlds.reshape(-1, 3, 4).float().cpu()
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(c2w.shape[0], 1, 4)
        cams = Cameras(c2w=opengl_to_opencv(torch.cat([c2w, bottom], dim=1)),
                       fx=cameras.fx.reshape(-1).float().cpu(), fy=cameras.fy.reshape(-1).float().cpu(),
                       cx=cameras.cx.reshape(-1).float().cpu(), cy=cameras.cy.reshape(-1).float().cpu(),
                       width=cameras.width.reshape(-1).cpu(), height=cameras.height.reshape(-1).cpu())
        return cams.to(self.grid.density.device)

    @torch.no_grad()
    def mark_unseen_cells(self, cameras: NsCameras) -> float:
        """Empty for good the grid cells outside every camera's view. Returns the fraction still visible."""
        return self.grid.mark_invisible(self._recon3d_cameras(cameras))

    @torch.no_grad()
    def carve_visual_hull(self, cameras: NsCameras, alphas: List[Tensor]) -> float:
        """Empty for good the cells outside the visual hull of C (H_i, W_i) alpha maps in [0, 1]
        (recon3d's :meth:`OccupancyGrid.carve`). Returns the fraction kept."""
        return self.grid.carve(self._recon3d_cameras(cameras), [a.to(self.grid.density.device) for a in alphas])

    def update_grid(self, step: int) -> Optional[float]:
        """recon3d's schedule: refresh the estimates every ``grid_update_every`` steps (not at step
        0), every visible cell during the warm-up, then a random fraction. Returns the occupied
        fraction when it ran."""
        cfg = self.config
        if step <= 0 or step % cfg.grid_update_every:
            return None
        n = grid_cells_to_update(step, cfg.grid_warmup_steps, self.grid.num_cells, cfg.grid_update_fraction)
        return self.grid.update(self.field.density, self.grid_threshold, cfg.grid_decay, n, self.generator)

    # ------------------------------------------------------------------ rendering
    # backgrounds (_background), ground truth (_gt) and get_rgba_image: RayModelMixin
    def get_outputs(self, ray_bundle: NsRayBundle) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render nerfstudio rays (any leading shape, flattened to R): ``rgb`` (R, 3) over the
        background, ``accumulation`` (R, 1), ``depth`` (R, 1) expected distance along the ray
        (world units of nerfstudio's frame), ``background`` (R, 3); ``num_samples`` (int, shaded
        bins). Rays are world-space already (nerfstudio's frame): no axis conversion."""
        if not isinstance(ray_bundle, NsRayBundle):
            raise TypeError("recon3d-nerf renders nerfstudio RayBundles")
        origins = ray_bundle.origins.reshape(-1, 3).float()
        directions = torch.nn.functional.normalize(ray_bundle.directions.reshape(-1, 3).float(), dim=-1)
        cams = None
        if self.training and ray_bundle.camera_indices is not None:  # appearance of the training image
            cams = ray_bundle.camera_indices.reshape(-1).long()
        rays = RayBundle(origins, directions, camera_indices=cams)
        bg = self._background(len(rays))
        # on CUDA the jitter comes from the global CUDA RNG, like recon3d's trainer
        gen = self.generator if origins.device.type == "cpu" else None
        out = render_rays(self.field, self.grid, rays, self.config.march, stratified=self.training,
                          background=bg, generator=gen, camera_indices=cams)
        return {"rgb": out["rgb"], "accumulation": out["opacity"], "depth": out["depth"], "background": bg,
                "num_samples": int(out["num_samples"])}

    # ------------------------------------------------------------------ losses and metrics
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """recon3d's loss: MSE between the rendered and the ground-truth colours over one background.
        Masks act through nerfstudio's pixel sampler (it draws rays inside them unless
        ``--pipeline.datamanager.pixel-sampler.ignore-mask``), as for its own ray-based models."""
        gt, pred = self._gt(batch, outputs["background"]), outputs["rgb"]
        return {"rgb_loss": torch.nn.functional.mse_loss(pred, gt)}

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self._gt(batch, outputs["background"])
        return {"psnr": psnr(outputs["rgb"].detach()[None], gt[None]),  # (R, 3) rays as a 1 x R image
                "num_samples_per_batch": torch.tensor(float(outputs["num_samples"])),
                "occupancy": torch.tensor(self.grid.occupancy_fraction())}

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Full image (H, W, ...) outputs: PSNR / SSIM against the ground truth on the evaluation
        background, and side-by-side, accumulation and depth images."""
        gt, pred = self._gt(batch, outputs["background"]), outputs["rgb"]
        acc = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        metrics = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))}
        return metrics, {"img": torch.cat([gt, pred], dim=1), "accumulation": acc, "depth": depth}
