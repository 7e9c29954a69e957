"""recon3d's Gaussian splatting as a nerfstudio ``Model`` (``ns-train recon3d-splat``).

What runs is recon3d's: :class:`recon3d.methods.splat.model.GaussianModel` (parameters and
activations), :func:`recon3d.core.gaussians.rasterize` (gsplat on CUDA tensors, recon3d's compiled
tile rasterizer on CPU), :class:`recon3d.methods.splat.strategy.DensifyStrategy` (clone / split /
prune / opacity reset, scheduled like ``recon3d fit``) and recon3d's L1 + D-SSIM loss. nerfstudio
supplies the data (its dataparser, full-image data manager with undistorted pinhole images), the
optimizers and schedulers (one Adam per Gaussian parameter, named like recon3d's parameters so the
densification strategy edits them in place), the training loop, checkpoints and the viewer.

Cameras: nerfstudio hands over ``Cameras`` with OpenGL-axis camera-to-world (C, 3, 4) matrices in
its dataparser's world (oriented, centered and scaled); they are converted to recon3d's OpenCV
world-to-camera (C, 4, 4) here and nowhere else. Pixel centers are at +0.5 in both frameworks, so
the intrinsics matrix is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig

from recon3d.core.conventions import opengl_to_opencv, rigid_inverse
from recon3d.core.gaussians import rasterize
from recon3d.core.metrics import dssim_loss, psnr, ssim
from recon3d.methods.splat.config import SplatConfig
from recon3d.methods.splat.model import PARAM_NAMES, GaussianModel
from recon3d.methods.splat.strategy import DensifyConfig, DensifyStrategy

#: nerfstudio optimizer group name of every Gaussian parameter (recon3d's own names).
GAUSSIAN_PARAM_GROUPS = PARAM_NAMES


def nerfstudio_cameras_to_viewmats(cameras: Cameras, c2w: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, int, int]:
    """nerfstudio ``Cameras`` (C,) -> (viewmats (C, 4, 4) OpenCV world-to-camera, Ks (C, 3, 3), W, H).

    All C cameras must share one image size and be pinhole (``CameraType.PERSPECTIVE``); the
    full-image data manager undistorts OPENCV / fisheye images to pinhole before they get here.
    ``c2w`` (C, 3, 4) OpenGL replaces the cameras' poses (e.g. refined by the camera optimizer).
    Units: the dataparser's world units; intrinsics in pixels.
    """
    types = cameras.camera_type.reshape(-1)
    if not bool((types == CameraType.PERSPECTIVE.value).all()):
        raise ValueError(f"recon3d-splat renders pinhole cameras only, got camera types {types.unique().tolist()}")
    widths, heights = cameras.width.reshape(-1), cameras.height.reshape(-1)
    if len(widths.unique()) != 1 or len(heights.unique()) != 1:
        raise ValueError("recon3d-splat renders a batch of cameras of one image size at a time")
    c2w = (cameras.camera_to_worlds if c2w is None else c2w).reshape(-1, 3, 4)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device).expand(c2w.shape[0], 1, 4)
    c2w_cv = opengl_to_opencv(torch.cat([c2w, bottom], dim=1))
    Ks = cameras.get_intrinsics_matrices().reshape(-1, 3, 3).to(c2w_cv)
    return rigid_inverse(c2w_cv), Ks, int(widths[0]), int(heights[0])


@dataclass
class Recon3dSplatModelConfig(ModelConfig):
    """``--pipeline.model.*`` options of ``ns-train recon3d-splat`` (the rest of recon3d's
    :class:`~recon3d.methods.splat.config.SplatConfig` maps to nerfstudio's own trainer options:
    learning rates are ``--optimizers.*``, steps ``--max-num-iterations``)."""

    _target: Type = field(default_factory=lambda: Recon3dSplatModel)
    enable_collider: bool = False
    sh_degree: int = 3
    """Maximum spherical-harmonics degree."""
    sh_degree_interval: int = 1000
    """One more SH degree every this many steps (at the 30k-step scale; see scale_schedule_to_steps)."""
    ssim_lambda: float = 0.2
    """loss = (1 - ssim_lambda) * L1 + ssim_lambda * D-SSIM, D-SSIM = (1 - SSIM) / 2."""
    random_init: bool = False
    """Ignore the dataparser's points (ply_file_path / COLMAP) and start from random Gaussians."""
    num_random: int = 50_000
    """Number of random Gaussians when there are no seed points."""
    random_box_half_size: float = 1 / 3
    """Random Gaussians fill [-h, h]^3 of the dataparser's world. nerfstudio scales the poses so the
    farthest camera is ~1 from the center; 1/3 mirrors recon3d fit's box (a third of the nearest camera
    distance) and keeps Gaussians off the cameras."""
    init_opacity: float = 0.1
    background_color: Literal["random", "black", "white"] = "random"
    """Training background (random: a new colour each step, black at evaluation); images with
    alpha are composited onto it."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """recon3d's densification schedule (3DGS defaults for 30k steps)."""
    scale_schedule_to_steps: bool = True
    """Stretch the densification and SH schedules from 30k steps to --max-num-iterations, like recon3d fit."""
    backend: Literal["auto", "cpp", "torch", "gsplat"] = "auto"
    """recon3d rasterizer backend (auto: gsplat for CUDA tensors when it works, the compiled cpp rasterizer for
    CPU tensors, else torch)."""
    antialiased: bool = False
    seed: int = 0
    camera_optimizer: CameraOptimizerConfig = field(default_factory=lambda: CameraOptimizerConfig(mode="off"))
    """Pose refinement (nerfstudio's camera optimizer; off by default)."""


class Recon3dSplatModel(Model):
    """nerfstudio Model around recon3d's Gaussians; see the module docstring."""

    config: Recon3dSplatModelConfig

    def __init__(self, *args, seed_points: Optional[Tuple[Tensor, Tensor]] = None, **kwargs) -> None:
        self.seed_points = seed_points
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ set-up
    def populate_modules(self) -> None:
        cfg = self.config
        self.generator = torch.Generator().manual_seed(cfg.seed)
        if self.seed_points is not None and not cfg.random_init and len(self.seed_points[0]) >= 4:
            pts, rgb = self.seed_points
            cols = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
            self.gaussians = GaussianModel.from_points(pts.float(), cols, cfg.sh_degree, init_opacity=cfg.init_opacity)
        else:
            h = cfg.random_box_half_size
            self.gaussians = GaussianModel.random_in_box(cfg.num_random, torch.full((3,), -h), torch.full((3,), h),
                                                         cfg.sh_degree, generator=self.generator,
                                                         init_opacity=cfg.init_opacity)
        self.camera_optimizer = cfg.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        self._set_schedule(max_steps=30_000, extent=1.0)
        self.step = 0
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self._last: Optional[dict] = None  # screen-space data of the last training render

    def _set_schedule(self, max_steps: int, extent: float) -> None:
        cfg = self.config
        self.densify_cfg, self.sh_interval = SplatConfig(
            max_steps=max_steps, sh_degree_interval=cfg.sh_degree_interval, densify=cfg.densify,
            scale_schedule_to_steps=cfg.scale_schedule_to_steps).schedule()
        self.strategy = DensifyStrategy(self.densify_cfg, extent)

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Schedule from the trainer's step count, extent from the training cameras, and the hooks."""
        max_steps = 30_000
        if attrs.trainer is not None:  # nerfstudio counts --max-num-iterations from a restored step
            max_steps = getattr(attrs.trainer, "_start_step", 0) + attrs.trainer.config.max_num_iterations
        extent = 1.0
        if attrs.pipeline is not None:
            c2w = attrs.pipeline.datamanager.train_dataset.cameras.camera_to_worlds
            centers = c2w[:, :3, 3].float()
            # 3DGS's "cameras extent", as recon3d fit computes it
            extent = float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max().clamp_min(1e-3))
        self._set_schedule(max_steps, extent)
        if attrs.optimizers is not None:
            self.optimizers = attrs.optimizers.optimizers
        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._before_step,
                             args=[attrs.optimizers]),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._after_step),
        ]

    def _before_step(self, optimizers, step: int) -> None:
        self.step = step
        if optimizers is not None:
            self.optimizers = optimizers.optimizers

    def _after_step(self, step: int) -> None:
        """After nerfstudio's optimizer step ``step``: accumulate screen-space gradients, refine."""
        if self._last is not None and step < self.densify_cfg.refine_stop:
            self.strategy.accumulate(self._last["means2d"], self._last["radii"], self._last["W"], self._last["H"])
        self._last = None
        missing = [n for n in GAUSSIAN_PARAM_GROUPS if n not in self.optimizers]
        if missing:
            raise RuntimeError(f"recon3d-splat needs optimizer groups {missing} in the trainer config")
        self.strategy.step(step + 1, self.gaussians, self.optimizers, self.generator)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {name: [p] for name, p in self.gaussians.params().items()}
        self.camera_optimizer.get_param_groups(param_groups=groups)
        return groups

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        """Resize the Gaussian parameters to the checkpoint's count before loading (densification
        changes it during training). Resized in place: the Parameter objects stay the ones
        nerfstudio's optimizers hold, so ``ns-train --load-dir`` resumes training them."""
        prefix = "gaussians."
        with torch.no_grad():
            for name, p in self.gaussians.params().items():
                if prefix + name in state_dict:
                    p.data = torch.zeros_like(state_dict[prefix + name], device=p.device, dtype=p.dtype)
        return super().load_state_dict(state_dict, **kwargs)

    @property
    def num_points(self) -> int:
        return len(self.gaussians)

    # ------------------------------------------------------------------ rendering
    def _background(self) -> Tensor:
        name = self.config.background_color
        if name == "random":
            return torch.rand(3, generator=self.generator).to(self.device) if self.training else \
                torch.zeros(3, device=self.device)
        return torch.ones(3, device=self.device) if name == "white" else torch.zeros(3, device=self.device)

    def get_outputs(self, camera: Cameras) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render one camera: rgb (H, W, 3), depth (H, W, 1) z-depth, accumulation (H, W, 1),
        background (3,)."""
        if not isinstance(camera, Cameras):
            raise TypeError("recon3d-splat renders nerfstudio Cameras, not ray bundles")
        c2w = None
        if self.training:
            if camera.shape[0] != 1:
                raise ValueError("recon3d-splat trains on one camera at a time")
            c2w = self.camera_optimizer.apply_to_camera(camera)
        viewmats, Ks, W, H = nerfstudio_cameras_to_viewmats(camera, c2w)
        if viewmats.shape[0] != 1:
            raise ValueError(f"recon3d-splat renders one camera per call, got {viewmats.shape[0]}")
        sh_degree = min(self.step // self.sh_interval, self.config.sh_degree) if self.training else self.config.sh_degree
        bg = self._background()
        out = rasterize(
            self.gaussians.gaussians(), viewmats.to(self.device), Ks.to(self.device), W, H, sh_degree=sh_degree,
            backgrounds=bg[None], backend=self.config.backend, antialiased=self.config.antialiased,
        )
        if self.training and torch.is_grad_enabled():
            out.means2d.retain_grad()
            self._last = {"means2d": out.means2d, "radii": out.radii, "W": W, "H": H}
        return {"rgb": out.colors[0].clamp(0.0, 1.0), "depth": out.depths[0], "accumulation": out.alphas[0],
                "background": bg}

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:  # type: ignore[override]
        """Render a camera for evaluation or the viewer (``obb_box`` crops are not supported)."""
        return self.get_outputs(camera.to(self.device))

    # ------------------------------------------------------------------ losses and metrics
    def _gt(self, batch: dict, background: Tensor) -> Tensor:
        """(H, W, 3) float ground truth, RGBA composited onto ``background``."""
        img = batch["image"]
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        img = img.to(self.device)
        if img.shape[-1] == 4:
            a = img[..., 3:]
            img = a * img[..., :3] + (1 - a) * background
        return img

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self._gt(batch, outputs["background"])
        metrics = {"psnr": psnr(outputs["rgb"].detach(), gt), "gaussian_count": torch.tensor(float(self.num_points))}
        self.camera_optimizer.get_metrics_dict(metrics)
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        gt, pred = self._gt(batch, outputs["background"]), outputs["rgb"]
        if "mask" in batch:  # (H, W, 1) bool: only the kept pixels count
            m = batch["mask"].to(self.device).float()
            gt, pred = gt * m, pred * m
        lam = self.config.ssim_lambda
        loss = {"main_loss": (1 - lam) * (pred - gt).abs().mean() + lam * dssim_loss(pred, gt)}
        if self.training:
            self.camera_optimizer.get_loss_dict(loss)
        return loss

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt, pred = self._gt(batch, outputs["background"]), outputs["rgb"]
        metrics = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt)), "gaussian_count": float(self.num_points)}
        return metrics, {"img": torch.cat([gt, pred], dim=1)}
