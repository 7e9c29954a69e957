"""recon3d's NeuS-style SDF as a nerfstudio ``Model`` (``ns-train recon3d-sdf``).

What runs is recon3d's: :class:`recon3d.methods.sdf.SdfField` (geometric-init SDF network, optional
hash grid, colour network, learned sharpness ``s``) and :func:`recon3d.methods.sdf.render_neus`
(coarse + importance sampling inside a bounding sphere, NeuS opacities, compositing), trained with
recon3d's losses (:mod:`recon3d.methods.sdf.losses`: L1 colour, eikonal, optional opacity BCE
against the images' alpha) and its cos-anneal schedule. nerfstudio supplies the data (dataparser,
ray data manager, pixel sampler), the optimizers and schedulers, the training loop, checkpoints and
the viewer. ``python -m recon3d.integrations.nerfstudio.export_mesh`` meshes a run's zero level set.

Frames: nerfstudio's rays are world-space origins and unit directions in its dataparser's world
(oriented, centered, scaled into ``scene_box``) and are used as they are (no axis conversion). The
bounding sphere is centred on the ``scene_box`` aabb, radius ``sphere_radius`` in that frame's
units (default: the aabb's smallest half-extent, the inscribed sphere). Everything outside the
sphere is background: the method is for object captures with a known background (ideally RGBA).
"""

from __future__ import annotations

import logging

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle as NsRayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps

from recon3d.core.metrics import psnr, ssim
from recon3d.core.rays import RayBundle
from recon3d.methods.sdf import NeusSamplingConfig, SdfConfig, SdfField, SdfFieldConfig, render_neus
from recon3d.methods.sdf.losses import cos_anneal_ratio, neus_loss_terms, weighted_neus_losses

from .ray_model_common import RayModelMixin

_SDF = SdfConfig()  # recon3d's defaults of what the plugin exposes
#: nerfstudio optimizer groups: networks + variance (recon3d's ``lr``), hash tables (``lr_grid``;
#: present only with ``field.geometry='hashgrid'``: nerfstudio sets up optimizers for the groups the
#: model returns, and torch's Adam refuses an empty one)
PARAM_GROUPS = ("fields", "encoding")


log = logging.getLogger(__name__)

@dataclass
class Recon3dSdfModelConfig(ModelConfig):
    """``--pipeline.model.*`` options of ``ns-train recon3d-sdf``; defaults are recon3d's
    :class:`~recon3d.methods.sdf.SdfConfig`. Learning rates and their schedules are
    ``--optimizers.fields.*`` / ``--optimizers.encoding.*``, rays per batch
    ``--pipeline.datamanager.train-num-rays-per-batch``, steps ``--max-num-iterations``."""

    _target: Type = dc_field(default_factory=lambda: Recon3dSdfModel)
    enable_collider: bool = False
    """Unused: rays are clipped to the bounding sphere by recon3d's sampler."""
    collider_params: Optional[Dict[str, float]] = None
    eval_num_rays_per_chunk: int = _SDF.eval_chunk
    field: SdfFieldConfig = dc_field(default_factory=SdfFieldConfig)
    """recon3d's SDF field: geometry network (mlp or hashgrid), colour network, initial sharpness."""
    sampling: NeusSamplingConfig = dc_field(default_factory=NeusSamplingConfig)
    """recon3d's NeuS sampling: coarse / importance bins per ray, near plane (world units), pruning."""
    sphere_radius: Optional[float] = None
    """Bounding sphere radius in nerfstudio's (dataparser) frame; None: the scene box's smallest
    half-extent. The sphere is centred on the scene box."""
    eikonal_weight: float = _SDF.eikonal_weight
    mask_weight: float = _SDF.mask_weight
    """BCE between rendered opacity and the images' alpha (RGBA images only; 0: off). nerfstudio's
    masks act through its pixel sampler instead."""
    cos_anneal_steps: int = _SDF.cos_anneal_steps
    """NeuS cos-anneal ratio goes 0 -> 1 over these training steps (0: exact formula from the start)."""
    background_color: Literal["auto", "random", "black", "white"] = "auto"
    """Training background behind RGBA images (recon3d's rule): auto = random per ray for images
    with alpha, else black. Evaluation uses white for white, black otherwise."""
    seed: int = _SDF.seed


class Recon3dSdfModel(RayModelMixin, Model):
    """nerfstudio Model around recon3d's SDF field, NeuS renderer and losses (module docstring)."""

    config: Recon3dSdfModelConfig

    # ------------------------------------------------------------------ set-up
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        aabb = self.scene_box.aabb.detach().float().cpu().reshape(2, 3)
        center = 0.5 * (aabb[0] + aabb[1])
        radius = float((aabb[1] - aabb[0]).min()) / 2 if cfg.sphere_radius is None else float(cfg.sphere_radius)
        if not radius > 0:
            raise ValueError(f"sphere_radius must be positive, got {radius}")
        self.field = SdfField(center, radius, cfg.field, seed=cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # CPU: backgrounds, stratified sampling
        self.images_have_alpha = True  # until get_training_callbacks sees the training images
        self.step = 0  # training step (cos-anneal ratio), set before every training iteration

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        networks, grid = self.field.parameter_groups()
        return {name: params for name, params in zip(PARAM_GROUPS, (networks, grid)) if params}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Track nerfstudio's step before every training iteration (for the cos-anneal ratio); warn
        when training cameras sit inside the bounding sphere (NeuS needs them outside)."""
        if attrs.pipeline is not None:
            dataset = attrs.pipeline.datamanager.train_dataset
            self._note_training_images(dataset)
            self.warn_cameras_inside(dataset.cameras.camera_to_worlds[..., :3, 3].reshape(-1, 3))
        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.set_step)]

    def warn_cameras_inside(self, centers: Tensor) -> int:
        """Log a warning (with a radius that fits) when any of the (C, 3) camera centres lies inside
        the bounding sphere. Returns how many do."""
        dist = (centers.float().cpu() - self.field.center.cpu()).norm(dim=-1)
        inside = int((dist < self.field.radius).sum())
        if inside:
            log.warning("recon3d-sdf: %d of %d training cameras are inside the bounding sphere (radius %.3f); "
                        "pass --pipeline.model.sphere-radius %.2f or less (0.9 x the nearest camera distance)",
                        inside, len(dist), self.field.radius, 0.9 * float(dist.min()))
        return inside

    def set_step(self, step: int) -> None:
        self.step = int(step)

    def cos_anneal_ratio(self) -> float:
        """recon3d's schedule: step / cos_anneal_steps, capped at 1 (1 when the anneal is off)."""
        return cos_anneal_ratio(self.step, self.config.cos_anneal_steps)

    # ------------------------------------------------------------------ rendering
    # backgrounds (_background), ground truth (_gt) and get_rgba_image: RayModelMixin
    def get_outputs(self, ray_bundle: NsRayBundle) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render nerfstudio rays (any leading shape, flattened to R) with recon3d's ``render_neus``.

        Training: stratified samples, the cos-anneal ratio of the current step, a differentiable
        SDF gradient. Evaluation: midpoint samples, the exact NeuS formula, shading only the bins
        that matter (``prune``); nerfstudio evaluates under ``no_grad``, the field turns gradients
        on for the SDF's own gradient.

        Returns ``rgb`` (R, 3) over ``background`` (R, 3), ``accumulation`` (R, 1), ``depth``
        (R, 1) expected distance along the ray (nerfstudio's world units), ``normals`` (R, 3)
        composited world normals shown as ``(n + 1) / 2`` (nerfstudio's convention; 0.5 where
        nothing is hit); in training also ``gradients`` (R, S, 3) SDF gradients (field unit
        coordinates) and ``inside`` (R, S) samples in the sphere (the eikonal loss).
        """
        if not isinstance(ray_bundle, NsRayBundle):
            raise TypeError("recon3d-sdf renders nerfstudio RayBundles")
        origins = ray_bundle.origins.reshape(-1, 3).float()
        directions = torch.nn.functional.normalize(ray_bundle.directions.reshape(-1, 3).float(), dim=-1)
        rays = RayBundle(origins, directions)
        bg = self._background(len(rays))
        # on CUDA the jitter comes from the global CUDA RNG, like recon3d's trainer
        gen = self.generator if origins.device.type == "cpu" else None
        cfg = self.config
        if self.training:
            out = render_neus(self.field, rays, cfg.sampling, True, background=bg,
                              cos_anneal_ratio=self.cos_anneal_ratio(), create_graph=True, generator=gen)
        else:
            out = render_neus(self.field, rays, cfg.sampling, False, background=bg, create_graph=False, prune=True)
        outputs = {"rgb": out["rgb"], "accumulation": out["opacity"], "depth": out["depth"],
                   "normals": (out["normals"] + 1.0) * 0.5, "background": bg}
        if self.training:  # per-sample tensors: not gathered into images at evaluation
            outputs.update(gradients=out["gradients"], inside=out["inside"])
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def _alpha(self, batch: dict) -> Optional[Tensor]:
        """(..., 1) float alpha of RGBA ground truth, else None."""
        img = batch["image"]
        if img.shape[-1] != 4:
            return None
        a = img[..., 3:]
        return (a.float() / 255.0 if a.dtype == torch.uint8 else a.float()).to(self.device)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """recon3d's NeuS loss (:func:`recon3d.methods.sdf.losses.neus_loss_terms`), one key per
        weighted term (nerfstudio sums them): ``rgb_loss`` L1 colour over the rays' background,
        ``eikonal_loss`` (training only: evaluation renders no per-sample gradients) and
        ``mask_loss`` (opacity BCE against the images' alpha, when ``mask_weight`` > 0 and the
        images have alpha). Masks act through nerfstudio's pixel sampler (it draws rays inside
        them unless ``--pipeline.datamanager.pixel-sampler.ignore-mask``)."""
        cfg = self.config
        gt = self._gt(batch, outputs["background"])
        alpha = self._alpha(batch) if cfg.mask_weight > 0 else None
        rendered = {"rgb": outputs["rgb"], "opacity": outputs["accumulation"]}
        rendered.update({k: outputs[k] for k in ("gradients", "inside") if k in outputs})
        terms = neus_loss_terms(rendered, gt, alpha)
        weighted = weighted_neus_losses(terms, cfg.eikonal_weight, cfg.mask_weight)
        return {{"color": "rgb_loss"}.get(k, f"{k}_loss"): v for k, v in weighted.items()}

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self._gt(batch, outputs["background"])
        metrics = {"psnr": psnr(outputs["rgb"].detach()[None], gt[None])}  # (R, 3) rays as a 1 x R image
        if self.training:  # NeuS sharpness s (1 / sphere-unit length) and the anneal
            metrics.update(inv_s=self.field.inv_s.detach(), cos_anneal_ratio=torch.tensor(self.cos_anneal_ratio()))
        return metrics

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Full image (H, W, ...) outputs: PSNR / SSIM against the ground truth on the evaluation
        background, and side-by-side, accumulation, depth and normals images."""
        gt, pred = self._gt(batch, outputs["background"]), outputs["rgb"]
        acc = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        metrics = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))}
        return metrics, {"img": torch.cat([gt, pred], dim=1), "accumulation": acc, "depth": depth,
                         "normals": outputs["normals"]}
