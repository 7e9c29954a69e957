"""SuGaR regularization of a fitted Gaussian-splat model, then mesh extraction.

Usage::

    splat = SplatTrainer(scene, splat_preset("quick"), run_dir)
    splat.fit()
    sugar = SugarTrainer(splat, sugar_preset("quick"))
    sugar.fit()                                  # entropy phase, pruning, SDF/normal phase
    mesh = sugar.extract_mesh()                  # TriangleMesh, normalized frame
    export_mesh(mesh, run_dir / "mesh.glb", normalization=scene.normalization)

The trainer is a :class:`SplatTrainer` (same rendering, evaluation, export and checkpoint state)
whose training step adds SuGaR's terms (:mod:`.regularization`) on the schedule of
:class:`.config.SugarConfig`. Densification is off, as in SuGaR when it starts from a trained 3DGS.
Checkpoints go to ``run_dir/sugar/checkpoints`` (the splat checkpoints are left alone).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from recon3d.core.metrics import dssim_loss, psnr
from recon3d.methods.fit_loop import FitLoop, run_fit_loop
from recon3d.methods.splat.config import SplatConfig
from recon3d.methods.splat.strategy import _edit
from recon3d.methods.splat.trainer import SplatTrainer

from .config import SugarConfig
from .density import knn_table
from .regularization import flatness_loss, opacity_entropy_loss, sdf_alignment_losses

log = logging.getLogger(__name__)


class SugarTrainer(SplatTrainer):
    """Continues a fitted splat model with SuGaR's regularization (see the module docstring)."""

    # ------------------------------------------------------------------ construction
    def __init__(self, splat: SplatTrainer, cfg: SugarConfig, run_dir: str | Path | None = None) -> None:
        """Take over a fitted :class:`SplatTrainer`: its scene, model, optimizers, RNG and step count
        are shared (keep using this object, not ``splat``, from here on)."""
        self.__dict__.update(splat.__dict__)
        self._init_sugar(cfg, Path(run_dir) if run_dir is not None else splat.run_dir)

    @classmethod
    def from_splat(cls, splat: SplatTrainer, cfg: SugarConfig, run_dir: str | Path | None = None) -> "SugarTrainer":
        return cls(splat, cfg, run_dir)

    @classmethod
    def from_checkpoint(cls, scene, splat_cfg: SplatConfig, checkpoint: str | Path, cfg: SugarConfig,
                        run_dir: str | Path, device: str = "auto") -> "SugarTrainer":
        """Start from a splat checkpoint file (``run_dir/checkpoints/step_*.pt`` of a splat fit)."""
        splat = SplatTrainer(scene, splat_cfg, run_dir, device=device)
        splat.load(checkpoint)
        return cls(splat, cfg, run_dir)

    def _init_sugar(self, cfg: SugarConfig, run_dir: Path) -> None:
        self.sugar_cfg = cfg
        self.run_dir = run_dir
        self.sugar_dir = run_dir / "sugar"
        self.sugar_start = self.step
        self.pruned = False
        self.neighbors: torch.Tensor | None = None
        self._neighbors_step = -1

    @property
    def total_steps(self) -> int:
        return self.sugar_start + self.sugar_cfg.steps

    # ------------------------------------------------------------------ schedule pieces
    def _means_lr(self, rel: int) -> float:
        c = self.sugar_cfg
        t = min(max(rel / max(c.steps, 1), 0.0), 1.0)
        return self.extent * math.exp((1 - t) * math.log(c.means_lr) + t * math.log(c.means_lr_final))

    def prune_transparent(self, threshold: float | None = None) -> int:
        """Remove Gaussians with opacity below ``threshold`` (default ``prune_opacity``); returns the count."""
        thr = self.sugar_cfg.prune_opacity if threshold is None else threshold
        drop = self.model.opacities.detach() < thr
        if drop.all():
            drop[torch.argmax(self.model.opacities.detach())] = False
        n = int(drop.sum())
        if n > 0.95 * len(drop):
            log.warning("SuGaR pruning removes %d of %d Gaussians (opacity < %.2f): is the splat model fitted?",
                        n, len(drop), thr)
        if n:
            _edit(self.model, self.optimizers, lambda name, p: p[~drop], lambda name, s: s[~drop])
        self.neighbors = None
        return n

    def _refresh_neighbors(self, rel: int) -> None:
        c = self.sugar_cfg
        stale = self.neighbors is None or self.neighbors.shape[0] != len(self.model)
        if stale or (c.knn_every > 0 and rel - self._neighbors_step >= c.knn_every):
            self.neighbors = knn_table(self.model.means.detach(), c.knn)
            self._neighbors_step = rel

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        cfg, c = self.cfg, self.sugar_cfg
        rel = self.step - self.sugar_start
        if rel >= c.entropy_steps and not self.pruned:
            n = self.prune_transparent()
            self.pruned = True
            log.info("SuGaR: pruned %d Gaussians with opacity < %.2f (%d left)", n, c.prune_opacity, len(self.model))
        self.optimizers["means"].param_groups[0]["lr"] = self._means_lr(rel)
        i = self._next_view()
        cam = self.train_camera(i)
        gt = self._image(i)
        out = self._rasterize(cam, cfg.sh_degree, self._background(1))
        pred = out.colors[0]
        loss = (1 - cfg.ssim_lambda) * (pred - gt).abs().mean() + cfg.ssim_lambda * dssim_loss(pred, gt)
        stats: dict = {}
        m = self.model
        if rel < c.entropy_steps:
            ent = opacity_entropy_loss(m.opacities, out.radii[0] > 0)
            loss = loss + c.entropy_weight * ent
            stats["entropy"] = float(ent.detach())
        else:
            self._refresh_neighbors(rel)
            terms = sdf_alignment_losses(
                m.means, m.quats, m.scales, m.opacities, self.neighbors, cam, out.depths[0, ..., 0],
                out.alphas[0, ..., 0], c.num_samples, c.distance_scale * self.extent, c.sample_scale, c.closeness,
                generator=self.generator)
            loss = loss + c.sdf_weight * terms["sdf"] + c.normal_weight * terms["normal"]
            stats.update(sdf=float(terms["sdf"].detach()), normal=float(terms["normal"].detach()),
                         samples=terms["num_points"])
            if c.flatness_weight > 0:
                flat = flatness_loss(m.scales)
                loss = loss + c.flatness_weight * flat
                stats["flatness"] = float(flat.detach())
        self._zero_grad()
        loss.backward()
        self._optimizer_step()
        self.step += 1
        with torch.no_grad():
            p = float(psnr(pred.detach().clamp(0, 1), gt))
        return {"loss": float(loss.detach()), "psnr": p, **stats}

    def fit(self, resume: bool = False, progress: bool = True, log_every: int = 50) -> dict:
        """Run the regularization to ``sugar_start + steps``; checkpoints in ``run_dir/sugar/checkpoints``.
        Returns :func:`~recon3d.methods.fit_loop.run_fit_loop`'s summary with ``steps`` = the SuGaR
        steps and the final number of Gaussians."""
        c = self.sugar_cfg
        summary = run_fit_loop(self, FitLoop(
            self.sugar_dir / "checkpoints", self.total_steps, start_step=self.sugar_start,
            checkpoint_every=c.checkpoint_every, keep_checkpoints=c.keep_checkpoints, desc="sugar",
            postfix=("loss", "psnr", "sdf", "normal", "entropy"), extra=lambda: {"gaussians": len(self.model)}),
            resume, progress, log_every)
        return {**summary, "steps": c.steps, "gaussians": len(self.model)}

    # ------------------------------------------------------------------ meshing
    def extract_mesh(self, cfg: SugarConfig | None = None, progress: bool = False):
        """The SuGaR mesh (:class:`recon3d.mesh.TriangleMesh`, normalized frame) from the training views."""
        from .extract import extract_mesh

        train = list(self.scene.train_indices)
        images = None
        cfg = cfg or self.sugar_cfg
        if cfg.vertex_colors == "views" or (cfg.texture_size > 0 and cfg.texture_source == "views"):
            images = [self._image(j) for j in train]
        return extract_mesh(self.model, self.fitted_cameras()[train], cfg, images=images, extent=self.extent,
                            backend=self.cfg.backend, sh_degree=self.cfg.sh_degree,
                            background=self._background(1)[0], progress=progress)

    def refine(self, mesh, steps: int | None = None, per_face: int | None = None, progress: bool = False):
        """Optional refinement (:mod:`.refine`): Gaussians bound to ``mesh`` optimized with its vertices
        on the training views. Returns ``(refined_mesh, bound_gaussians, summary)``."""
        from .refine import RefineConfig, refine_mesh

        c = self.sugar_cfg
        train = list(self.scene.train_indices)
        rcfg = RefineConfig(steps=steps if steps is not None else max(c.refine_steps, 1), backend=self.cfg.backend,
                            seed=self.cfg.seed)
        return refine_mesh(mesh, self.fitted_cameras()[train], [self._image(j) for j in train], rcfg,
                           per_face=per_face or c.refine_gaussians_per_face, thickness=1e-4 * self.extent,
                           extent=self.extent, background=self._background(1)[0], progress=progress)

    def export_bound_ply(self, bound, path: str | Path, original_units: bool = True) -> Path:
        """Write refined bound Gaussians as a 3DGS .ply (capture units when ``original_units``)."""
        import numpy as np

        from recon3d.methods.splat.ply import save_splat_ply

        T = None
        norm = getattr(self.scene, "normalization", None)
        if original_units and norm is not None:
            T = np.linalg.inv(np.asarray(norm.transform, dtype=np.float64))
        return save_splat_ply(bound.to_model(), path, transform=T)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["sugar"] = {"config": self.sugar_cfg.to_dict(), "start": self.sugar_start, "pruned": self.pruned,
                          "neighbors": None if self.neighbors is None else self.neighbors.cpu(),
                          "neighbors_step": self._neighbors_step}
        return state

    def load(self, path: str | Path) -> None:
        from recon3d.methods.checkpoint import load_checkpoint

        super().load(path)
        info = load_checkpoint(path, map_location="cpu").get("sugar")
        self.neighbors, self._neighbors_step = None, -1
        if info is not None:
            self.sugar_start = int(info["start"])
            self.pruned = bool(info["pruned"])
            if info.get("neighbors") is not None:
                self.neighbors = info["neighbors"].to(self.device)
                self._neighbors_step = int(info["neighbors_step"])
