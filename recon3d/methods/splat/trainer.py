"""Per-scene 3D Gaussian splatting: training loop, evaluation, export.

Usage::

    from recon3d.io import load_scene
    from recon3d.methods.splat import SplatTrainer, preset
    trainer = SplatTrainer(load_scene("scene/"), preset("default"), run_dir="outputs/scene")
    trainer.fit()                 # resumes from run_dir/checkpoints when resume=True
    metrics = trainer.evaluate()  # PSNR / SSIM / ms per image on the test split, renders saved
    trainer.export_ply("outputs/scene/splats.ply")
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.profiler import record_function
from torch import Tensor

from recon3d.core import Cameras
from recon3d.core.background import background_color
from recon3d.core.gaussians import rasterize
from recon3d.core.metrics import dssim_loss, psnr
from recon3d.core.pose_correction import PoseCorrection, fit_pose, rigid_drift
from recon3d.core.visual_hull import EmptyHullError, surface_colors, visual_hull
from recon3d.runtime.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from recon3d.mesh import normalized_to_world
from recon3d.methods.base import PerSceneMethod
from recon3d.methods.evaluation import evaluate_split
from recon3d.methods.render_result import RenderResult
from recon3d.runtime.device import resolve_device
from recon3d.runtime.fit_loop import FitLoop, run_fit_loop

from .appearance import (AppearanceTransforms, EVAL_PROTOCOL, appearance_lr_at, appearance_state, check_appearance,
                         composites_background, evaluate_compensated, refuse_mismatch, resolve_appearance)
from .config import SplatConfig
from .model import GaussianModel, make_optimizers, means_lr_at
from .ply import save_splat_ply
from .strategy import DensifyStrategy

log = logging.getLogger(__name__)

INIT_MODES = ("auto", "points", "hull", "random")


def has_silhouettes(scene) -> bool:
    """Whether ``scene`` outlines its object in every view: masks that cut it out
    (``masks_as_alpha``), or images with an alpha channel."""
    from recon3d.io.images import image_has_alpha

    if getattr(scene, "masks_as_alpha", False) and scene.has_masks:
        return True
    paths = getattr(scene, "image_paths", None)
    return bool(paths) and image_has_alpha(paths[0])


def silhouette(scene, i: int) -> Tensor:
    """(H, W) bool object silhouette of view ``i``: its alpha (the mask with ``masks_as_alpha``) at 0.5."""
    return scene.alpha(i) >= 0.5

class SplatTrainer(PerSceneMethod):
    """Fits a :class:`GaussianModel` to a scene's training views.

    The scene is used in whatever coordinates it comes in (normally normalized by the reader);
    its ``normalization`` is undone only at export time.
    """

    method_name = "splat"

    def __init__(self, scene, cfg: SplatConfig, run_dir: str | Path, device: str = "auto") -> None:
        self.scene = scene
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.densify_cfg, self.sh_interval = cfg.schedule()
        self.cameras: Cameras = scene.cameras.to(self.device)
        centers = self.cameras.centers[torch.as_tensor(scene.train_indices)]
        # 3DGS's "cameras extent": 1.1 x the largest camera distance from their mean center.
        self.extent = float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max().clamp_min(1e-3))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.model = self._init_model().to(self.device)
        self.optimizers = make_optimizers(self.model, cfg.lrs, self.extent)
        self.strategy = DensifyStrategy(self.densify_cfg, self.extent)
        self.pose_correction: PoseCorrection | None = None
        self.pose_optimizer: torch.optim.Optimizer | None = None
        if cfg.pose_opt:
            self.pose_correction = PoseCorrection(len(self.cameras), translation_scale=self.extent).to(self.device)
            self.pose_optimizer = torch.optim.Adam(self.pose_correction.parameters(), lr=cfg.pose_lr)
        # per-image appearance (exposure / white balance) transforms, used only in the loss (.appearance)
        self.appearance: AppearanceTransforms | None = None
        self.appearance_optimizer: torch.optim.Optimizer | None = None
        on, self.appearance_reason = resolve_appearance(check_appearance(cfg.appearance), scene,
                                                        cfg.appearance_auto_views)
        if on:
            self._make_appearance(composites_background(scene))
        self.aligned_test_c2w: dict[int, Tensor] = {}  # test view -> (4, 4) c2w of the last alignment
        self._train_images: dict[int, Tensor] | None = None  # view index -> (H, W, 3), sizes may differ
        self._order: list[int] = []

    # ------------------------------------------------------------------ setup
    def _init_model(self) -> GaussianModel:
        cfg, scene = self.cfg, self.scene
        if cfg.init not in INIT_MODES:
            raise ValueError(f"init must be one of {', '.join(INIT_MODES)}, got {cfg.init!r}")
        points = getattr(scene, "points", None)
        has_points = points is not None and len(points) >= 4
        if cfg.init == "points" or (cfg.init == "auto" and has_points):
            if not has_points:
                raise ValueError("init='points' but the scene has no sparse points")
            log.info("initializing %d Gaussians from the scene's points", len(points))
            return GaussianModel.from_points(points, getattr(scene, "point_colors", None), cfg.sh_degree,
                                             init_opacity=cfg.init_opacity)
        if cfg.init == "hull":
            if not has_silhouettes(scene):
                raise ValueError("init='hull' needs object silhouettes: masks that cut the object out "
                                 "(masks_as_alpha) or images with alpha")
            return self._init_from_hull()
        if cfg.init == "auto" and getattr(scene, "masks_as_alpha", False) and scene.has_masks:
            try:
                return self._init_from_hull()
            except EmptyHullError as e:
                log.warning("no visual hull from the masks (%s): starting from random Gaussians instead", e)
        center = self.cameras.look_at().cpu()
        half = float((self.cameras.centers.cpu() - center).norm(dim=-1).min()) * cfg.init_random_extent
        log.info("initializing %d random Gaussians in a box of half-size %.3f", cfg.init_num_random, half)
        return GaussianModel.random_in_box(cfg.init_num_random, center - half, center + half, cfg.sh_degree,
                                           generator=self.generator, init_opacity=cfg.init_opacity)

    def _init_from_hull(self) -> GaussianModel:
        """Gaussians on the surface of the training silhouettes' visual hull, coloured from the views
        facing them (object captures with masks and no SfM points; :mod:`recon3d.core.visual_hull`)."""
        cfg, scene = self.cfg, self.scene
        train = list(scene.train_indices)
        sils = [silhouette(scene, i) for i in train]
        cams = self.cameras.to("cpu")
        hull = visual_hull(cams[train], sils, resolution=cfg.init_hull_resolution)
        pts, normals = hull.sample_surface(cfg.init_num_hull, generator=self.generator)
        colors = surface_colors(pts, normals, cams, scene.image, train)
        log.info("initializing %d Gaussians on the visual hull of %d silhouettes (voxels of %.4f)",
                 len(pts), len(train), hull.voxel)
        return GaussianModel.from_points(pts, colors, cfg.sh_degree, init_opacity=cfg.init_opacity)

    def _background(self, C: int) -> Tensor:
        """(C, 3) background color: the scene's (what its images were composited on) or a named one."""
        bg = background_color(self.cfg.background, getattr(self.scene, "background", None))
        return bg.to(self.device).expand(C, 3)

    def _image(self, i: int) -> Tensor:
        if self._train_images is None:
            idx = list(self.scene.train_indices)
            log.info("loading %d training images", len(idx))
            self._train_images = {j: self.scene.image(j).to(self.device) for j in idx}
        return self._train_images[i]

    def _next_view(self) -> int:
        if not self._order:
            idx = list(self.scene.train_indices)
            perm = torch.randperm(len(idx), generator=self.generator).tolist()
            self._order = [idx[k] for k in perm]
        return self._order.pop()

    # ------------------------------------------------------------------ cameras (with pose refinement)
    def train_camera(self, i: int) -> Cameras:
        """Scene view ``i``'s camera as trained: with its pose correction (differentiable) when refining."""
        if self.pose_correction is None:
            return self.cameras[i]
        return self.pose_correction(self.cameras[i], [i])

    def fitted_cameras(self) -> Cameras:
        """All the scene's cameras with the fitted pose corrections (the given ones without pose_opt).

        Only training views are refined; test views keep their given poses (see :meth:`evaluate`)."""
        if self.pose_correction is None:
            return self.cameras
        return self.pose_correction.corrected(self.cameras)

    def refined_cameras(self) -> Cameras:
        """:meth:`fitted_cameras` with the test views aligned by the last :meth:`evaluate` (when it ran)."""
        cams = self.fitted_cameras()
        if not self.aligned_test_c2w:
            return cams
        c2w = cams.c2w.clone()
        for i, m in self.aligned_test_c2w.items():
            c2w[i] = m.to(c2w)
        return replace(cams, c2w=c2w)

    def _zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if self.pose_optimizer is not None:
            self.pose_optimizer.zero_grad(set_to_none=True)
        if self.appearance_optimizer is not None:
            self.appearance_optimizer.zero_grad(set_to_none=True)

    def _optimizer_step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()
        if self.pose_optimizer is not None and self.step >= self.cfg.pose_opt_start:
            self.pose_optimizer.step()
        if self.appearance_optimizer is not None and self.step >= self.cfg.appearance_start:
            cfg = self.cfg
            self.appearance_optimizer.param_groups[0]["lr"] = appearance_lr_at(
                self.step, cfg.max_steps, cfg.appearance_lr, cfg.appearance_lr_final)
            self.appearance_optimizer.step()
            self.appearance.recenter_(list(self.scene.train_indices))

    # ------------------------------------------------------------------ appearance (exposure) compensation
    def _make_appearance(self, composite: bool) -> None:
        self.appearance = AppearanceTransforms(len(self.cameras), composite=composite).to(self.device)
        self.appearance_optimizer = torch.optim.Adam(self.appearance.parameters(), lr=self.cfg.appearance_lr)

    def compensated(self, pred: Tensor, alphas: Tensor, i: int, background: Tensor) -> Tensor:
        """Training view ``i``'s render (H, W, 3) as its loss sees it: through the view's appearance
        transform when compensation is on (and started), clipped at 1; ``alphas`` (H, W, 1),
        ``background`` (1, 3)."""
        if self.appearance is None or self.step < self.cfg.appearance_start:
            return pred
        # clipped at 1 like the photo's highlights (a brightened white backdrop saturates, it cannot exceed 1)
        return self.appearance(pred, i, alphas, background.reshape(3)).clamp(max=1.0)

    def appearance_summary(self) -> dict:
        """The fitted transforms' sizes for metrics.json ({} without compensation)."""
        if self.appearance is None:
            return {}
        return self.appearance.summary(list(self.scene.train_indices))

    def pose_summary(self) -> dict:
        """Sizes of the training-pose corrections (degrees, scene units of the normalized frame)."""
        if self.pose_correction is None:
            return {}
        rot, trans = self.pose_correction.magnitudes(list(self.scene.train_indices))
        return {"pose_opt": True, "pose_rotation_deg_mean": round(float(rot.mean()), 4),
                "pose_rotation_deg_max": round(float(rot.max()), 4),
                "pose_translation_mean": round(float(trans.mean()), 5),
                "pose_translation_max": round(float(trans.max()), 5)}

    # ------------------------------------------------------------------ rendering
    def sh_degree_at(self, step: int) -> int:
        return min(step // self.sh_interval, self.cfg.sh_degree)

    def _rasterize(self, cams: Cameras, sh_degree: int, background: Tensor | None):
        if cams.is_distorted:  # never render a distorted camera as if it were a pinhole one
            raise ValueError(f"Gaussian splatting renders pinhole cameras; these are {cams.model} with distortion: "
                             "undistort the images first (recon3d.sfm.undistort.undistort_scene, done by recon3d fit)")
        return rasterize(self.model.gaussians(), cams.w2c, cams.K, int(cams.width[0]), int(cams.height[0]),
                         sh_degree=sh_degree, backgrounds=background, backend=self.cfg.backend,
                         antialiased=self.cfg.antialiased)

    @torch.no_grad()
    def render(self, cameras: Cameras, background: Tensor | None = None) -> RenderResult:
        """Render cameras one at a time (bounded memory) with the full SH degree.

        All cameras must share one image size; background defaults to the training background.
        """
        cams = cameras.to(self.device)
        if len(set(cams.width.tolist())) > 1 or len(set(cams.height.tolist())) > 1:
            raise ValueError("render() needs cameras of one image size; render them in groups")
        bg = self._background(1) if background is None else background.to(self.device).reshape(1, 3)
        outs = [self._rasterize(cams[i], self.cfg.sh_degree, bg) for i in range(len(cams))]
        return RenderResult(torch.cat([o.colors for o in outs]).clamp(0, 1), torch.cat([o.alphas for o in outs]),
                            torch.cat([o.depths for o in outs]))

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        cfg = self.cfg
        step = self.step
        for name, opt in self.optimizers.items():
            if name == "means":
                opt.param_groups[0]["lr"] = means_lr_at(step, cfg.max_steps, cfg.lrs, self.extent)
        # the record_function labels cost nothing unless a profiler runs (scripts/bench_splat.py reports them)
        with record_function("step.data"):
            i = self._next_view()
            cam = self.train_camera(i)
            gt = self._image(i)
            bg = self._background(1)
        with record_function("step.rasterize"):
            out = self._rasterize(cam, self.sh_degree_at(step), bg)
            out.means2d.retain_grad()
        with record_function("step.loss"):
            pred = self.compensated(out.colors[0], out.alphas[0], i, bg)
            l1 = (pred - gt).abs().mean()
            loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * dssim_loss(pred, gt)
        with record_function("step.backward"):
            self._zero_grad()
            loss.backward()
        with record_function("step.densify"):
            if step < self.densify_cfg.refine_stop:
                self.strategy.accumulate(out.means2d, out.radii, int(cam.width[0]), int(cam.height[0]))
        with record_function("step.optimizer"):
            self._optimizer_step()
        self.step += 1
        with record_function("step.densify"):
            edits = self.strategy.step(self.step, self.model, self.optimizers, self.generator)
        with torch.no_grad():
            p = float(psnr(pred.detach().clamp(0, 1), gt))
        return {"loss": float(loss.detach()), "psnr": p, **edits}

    def fit(self, resume: bool = False, progress=True, log_every: int = 50) -> dict:
        """Train to ``cfg.max_steps``; checkpoints to ``run_dir/checkpoints``. Returns a summary
        (:func:`recon3d.runtime.fit_loop.run_fit_loop`'s, plus the final number of Gaussians)."""
        cfg = self.cfg
        summary = run_fit_loop(self, FitLoop(
            self.run_dir / "checkpoints", cfg.max_steps, checkpoint_every=cfg.checkpoint_every,
            keep_checkpoints=cfg.keep_checkpoints, eval_every=cfg.eval_every, desc="splat",
            extra=lambda: {"gaussians": len(self.model)}), resume, progress, log_every)
        return {**summary, "gaussians": len(self.model)}

    # ------------------------------------------------------------------ evaluation / export
    def evaluate(self, split: str = "test", save_renders: bool = True, max_views: Optional[int] = None) -> dict:
        """PSNR / SSIM / render time on a split; renders go to ``run_dir/renders/<split>/``.

        With ``pose_opt`` the training views are rendered from their refined poses, and each test camera
        is first aligned to its image (the model frozen; :meth:`align_test_cameras`), the usual protocol
        for pose-refined reconstructions, whose frame may drift a little from the given test poses.

        With appearance compensation (``cfg.appearance``) ``psnr`` / ``ssim`` / ``per_view_psnr`` are the
        compensated scores (:func:`.appearance.half_image_metrics`: an affine colour transform fitted on the
        left half of each view, scored on the right half) and ``psnr_uncompensated`` /
        ``ssim_uncompensated`` / ``per_view_psnr_uncompensated`` the full-image ones of the identity
        renders (the renders saved); without it, the plain full-image scores as before.
        """
        if self.pose_correction is not None and split == "test":
            cams, extra = self.align_test_cameras(list(self.scene.test_indices)[:max_views])
        else:
            cams, extra = self.fitted_cameras(), {}
        res = evaluate_split(self.render, self.scene, cams, self.device, self.run_dir, split, save_renders, max_views)
        if self.appearance is not None:  # compensated scores (half-image fit) become psnr/ssim
            indices = list(self.scene.test_indices if split == "test" else self.scene.train_indices)[:max_views]
            comp = evaluate_compensated(self.render, self.scene, cams, self.device, indices,
                                        composite=self.appearance.composite, background=self._background(1)[0])
            res = {**res, "psnr": comp["psnr"], "ssim": comp["ssim"], "per_view_psnr": comp["per_view_psnr"],
                   "psnr_uncompensated": res["psnr"], "ssim_uncompensated": res["ssim"],
                   "per_view_psnr_uncompensated": res["per_view_psnr"], "appearance_eval": EVAL_PROTOCOL}
        return {**res, **extra}

    def align_test_cameras(self, indices: list[int]) -> tuple[Cameras, dict]:
        """Align test views ``indices`` to their images; returns (:meth:`refined_cameras`, stats).

        Each starts from its given pose moved by the rigid drift of the training cameras (given ->
        refined, :func:`recon3d.core.pose_correction.rigid_drift`), then
        :func:`recon3d.core.pose_correction.fit_pose` runs ``pose_test_steps`` Adam steps on the
        photometric loss. The results are kept in :attr:`aligned_test_c2w`."""
        train = list(self.scene.train_indices)
        drift = rigid_drift(self.cameras.c2w[train], self.fitted_cameras().c2w[train])
        bg = self._background(1)

        def render_one(cam: Cameras) -> Tensor:
            return self._rasterize(cam, self.cfg.sh_degree, bg).colors[0]

        moved = []
        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            for i in indices:
                start = replace(self.cameras[i], c2w=drift @ self.cameras.c2w[i:i + 1])
                target = self.scene.image(i).to(self.device)
                aligned, delta = fit_pose(render_one, start, target, steps=self.cfg.pose_test_steps,
                                          lr=self.cfg.pose_test_lr, translation_scale=self.extent)
                self.aligned_test_c2w[i] = aligned.c2w[0].detach().cpu()
                moved.append(float(torch.rad2deg(delta[3:].norm())))
        finally:
            for p in params:
                p.requires_grad_(True)
        stats = {"test_pose_alignment_steps": self.cfg.pose_test_steps,
                 "test_pose_alignment_deg_mean": round(float(np.mean(moved)), 4) if moved else 0.0}
        return self.refined_cameras(), stats

    def render_cameras(self) -> Cameras:
        return self.fitted_cameras()

    def pose_refinement(self):
        """With pose refinement: (the refined cameras: training views refined, test views aligned at
        evaluation; the correction sizes for metrics.json), else None."""
        if self.pose_correction is None:
            return None
        return self.refined_cameras(), self.pose_summary()

    def model_facts(self) -> dict:
        return {"gaussians": len(self.model), **self.appearance_summary()}

    def write_model(self, out: Path) -> dict:
        return {"splats_ply": str(self.export_splats(Path(out) / "splats.ply"))}

    def export_splats(self, path: str | Path, original_units: bool = True) -> Path:
        """Write the splats as a 3DGS .ply, mapped back to the capture's units when ``original_units``."""
        T = normalized_to_world(self.scene.normalization) if original_units else None
        return save_splat_ply(self.model, path, transform=T)

    export_ply = export_splats

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "max_sh_degree": self.model.max_sh_degree,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy": self.strategy.state_dict(),
            "poses": None if self.pose_correction is None else {
                "deltas": self.pose_correction.deltas.detach().clone(),
                "optimizer": self.pose_optimizer.state_dict()},
            "appearance": appearance_state(self.appearance, self.appearance_optimizer),
            "generator": self.generator.get_state(),
            "order": list(self._order),
            "rng": rng_state(),
        }

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        model = GaussianModel.empty_like_state(state["model"], state["max_sh_degree"]).to(self.device)
        model.load_state_dict(state["model"])
        self.model = model
        self.optimizers = make_optimizers(self.model, self.cfg.lrs, self.extent)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.strategy.load_state_dict(state["strategy"])
        poses = state.get("poses")
        if (poses is None) != (self.pose_correction is None):
            raise ValueError(f"{path}: checkpoint {'has no' if poses is None else 'has'} pose corrections but "
                             f"this run has pose_opt={self.cfg.pose_opt}")
        if poses is not None:
            with torch.no_grad():
                self.pose_correction.deltas.copy_(poses["deltas"].to(self.device))
            self.pose_optimizer.load_state_dict(poses["optimizer"])
        self._load_appearance(path, state.get("appearance"))
        self.generator.set_state(state["generator"])
        self._order = list(state["order"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    def _load_appearance(self, path, app: dict | None) -> None:
        """Restore the appearance transforms (and their Adam) of a checkpoint; ``auto`` follows the
        checkpoint (the decision was made when the fit started), ``on`` / ``off`` must match it."""
        refuse_mismatch(path, app is not None, self.cfg.appearance)
        if app is None:
            self.appearance, self.appearance_optimizer = None, None
            return
        affine = app["affine"]
        if tuple(affine.shape) != (len(self.cameras), 3, 4):
            raise ValueError(f"{path}: checkpoint has appearance transforms for {affine.shape[0]} views, "
                             f"this scene has {len(self.cameras)}")
        self._make_appearance(bool(app.get("composite", False)))
        with torch.no_grad():
            self.appearance.affine.copy_(affine.to(self.device))
        self.appearance_optimizer.load_state_dict(app["optimizer"])
