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
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from recon3d.core import Cameras
from recon3d.core.gaussians import rasterize
from recon3d.core.metrics import dssim_loss, psnr
from recon3d.methods.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from recon3d.methods.common import RenderResult, evaluate_split, resolve_device
from recon3d.methods.fit_loop import FitLoop, run_fit_loop

from .config import SplatConfig
from .model import GaussianModel, make_optimizers, means_lr_at
from .ply import save_splat_ply
from .strategy import DensifyStrategy

log = logging.getLogger(__name__)

_NAMED_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


class SplatTrainer:
    """Fits a :class:`GaussianModel` to a scene's training views.

    The scene is used in whatever coordinates it comes in (normally normalized by the reader);
    its ``normalization`` is undone only at export time.
    """

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
        self._train_images: dict[int, Tensor] | None = None  # view index -> (H, W, 3), sizes may differ
        self._order: list[int] = []

    # ------------------------------------------------------------------ setup
    def _init_model(self) -> GaussianModel:
        cfg, scene = self.cfg, self.scene
        points = getattr(scene, "points", None)
        use_points = cfg.init == "points" or (cfg.init == "auto" and points is not None and len(points) >= 4)
        if use_points:
            if points is None or len(points) < 4:
                raise ValueError("init='points' but the scene has no sparse points")
            log.info("initializing %d Gaussians from the scene's points", len(points))
            return GaussianModel.from_points(points, getattr(scene, "point_colors", None), cfg.sh_degree,
                                             init_opacity=cfg.init_opacity)
        center = self.cameras.look_at().cpu()
        half = float((self.cameras.centers.cpu() - center).norm(dim=-1).min()) * cfg.init_random_extent
        log.info("initializing %d random Gaussians in a box of half-size %.3f", cfg.init_num_random, half)
        return GaussianModel.random_in_box(cfg.init_num_random, center - half, center + half, cfg.sh_degree,
                                           generator=self.generator, init_opacity=cfg.init_opacity)

    def _background(self, C: int) -> Tensor:
        """(C, 3) background color: the scene's (what its images were composited on) or a named one."""
        name = self.cfg.background
        if name == "scene":
            bg = getattr(self.scene, "background", None)
            bg = torch.zeros(3) if bg is None else torch.as_tensor(bg, dtype=torch.float32)
        else:
            bg = torch.tensor(_NAMED_BACKGROUNDS[name])
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

    # ------------------------------------------------------------------ rendering
    def sh_degree_at(self, step: int) -> int:
        return min(step // self.sh_interval, self.cfg.sh_degree)

    def _rasterize(self, cams: Cameras, sh_degree: int, background: Tensor | None):
        m = self.model
        return rasterize(
            means=m.means, quats=m.quats, scales=m.scales, opacities=m.opacities, colors=m.sh,
            viewmats=cams.w2c, Ks=cams.K, width=int(cams.width[0]), height=int(cams.height[0]),
            sh_degree=sh_degree, backgrounds=background, backend=self.cfg.backend, antialiased=self.cfg.antialiased,
        )

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
        i = self._next_view()
        cam = self.cameras[i]
        gt = self._image(i)
        bg = self._background(1)
        out = self._rasterize(cam, self.sh_degree_at(step), bg)
        out.means2d.retain_grad()
        pred = out.colors[0]
        l1 = (pred - gt).abs().mean()
        loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * dssim_loss(pred, gt)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if step < self.densify_cfg.refine_stop:
            self.strategy.accumulate(out.means2d, out.radii, int(cam.width[0]), int(cam.height[0]))
        for opt in self.optimizers.values():
            opt.step()
        self.step += 1
        edits = self.strategy.step(self.step, self.model, self.optimizers, self.generator)
        with torch.no_grad():
            p = float(psnr(pred.detach().clamp(0, 1), gt))
        return {"loss": float(loss.detach()), "psnr": p, **edits}

    def fit(self, resume: bool = False, progress: bool = True, log_every: int = 50) -> dict:
        """Train to ``cfg.max_steps``; checkpoints to ``run_dir/checkpoints``. Returns a summary
        (:func:`recon3d.methods.fit_loop.run_fit_loop`'s, plus the final number of Gaussians)."""
        cfg = self.cfg
        summary = run_fit_loop(self, FitLoop(
            self.run_dir / "checkpoints", cfg.max_steps, checkpoint_every=cfg.checkpoint_every,
            keep_checkpoints=cfg.keep_checkpoints, eval_every=cfg.eval_every, desc="splat",
            extra=lambda: {"gaussians": len(self.model)}), resume, progress, log_every)
        return {**summary, "gaussians": len(self.model)}

    # ------------------------------------------------------------------ evaluation / export
    def evaluate(self, split: str = "test", save_renders: bool = True, max_views: Optional[int] = None) -> dict:
        """PSNR / SSIM / render time on a split; renders go to ``run_dir/renders/<split>/``."""
        return evaluate_split(self.render, self.scene, self.cameras, self.device, self.run_dir, split, save_renders,
                              max_views)

    def export_ply(self, path: str | Path, original_units: bool = True) -> Path:
        """Write the splats as a 3DGS .ply, mapped back to the capture's units when ``original_units``."""
        T = None
        norm = getattr(self.scene, "normalization", None)
        if original_units and norm is not None:
            T = np.linalg.inv(np.asarray(norm.transform, dtype=np.float64))
        return save_splat_ply(self.model, path, transform=T)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "max_sh_degree": self.model.max_sh_degree,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy": self.strategy.state_dict(),
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
        self.generator.set_state(state["generator"])
        self._order = list(state["order"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])
