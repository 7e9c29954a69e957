"""SuGaR (``--method sugar``): a Gaussian-splat fit, then SuGaR's regularization, then mesh extraction.

Usage::

    trainer = SugarTrainer(scene, RUN_PRESETS("quick"), run_dir)   # or registry.get_method("sugar").build
    trainer.fit()                        # the splat phase, then entropy, pruning, SDF/normal terms
    mesh = trainer.extract_mesh()        # TriangleMesh, normalized frame
    export_mesh(mesh, run_dir / "mesh.glb", normalization=scene.normalization)

    sugar = SugarTrainer.from_splat(fitted_splat_trainer, sugar_preset("quick"))   # regularize a fitted one

A SugarTrainer *holds* a :class:`SplatTrainer` (``.splat``): the Gaussians, optimizers, cameras, RNG and
step count are the splat trainer's; rendering, evaluation, pose refinement and ``splats.ply`` export
go through it. Its own training step adds SuGaR's terms (:mod:`.regularization`) on the schedule of
:class:`.config.SugarConfig`. Densification is off, as in SuGaR when it starts from a trained 3DGS.
Checkpoints of the regularization go to ``run_dir/sugar/checkpoints`` (the splat checkpoints stay).
The run's config (:class:`.config.SugarRunConfig`: the splat and SuGaR configs) is one config.json.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from recon3d.core.metrics import dssim_loss, psnr
from recon3d.methods.base import PerSceneMethod, mesh_files_metrics
from recon3d.methods.splat.config import SplatConfig
from recon3d.methods.splat.strategy import _edit
from recon3d.methods.splat.trainer import SplatTrainer
from recon3d.runtime.checkpoint import latest_checkpoint, load_checkpoint
from recon3d.runtime.fit_loop import FitLoop, run_fit_loop

from .config import SugarConfig, SugarRunConfig
from .density import knn_table
from .regularization import flatness_loss, opacity_entropy_loss, sdf_alignment_losses

log = logging.getLogger(__name__)


class SugarTrainer(PerSceneMethod):
    """Splat phase + SuGaR regularization + meshing (see the module docstring)."""

    method_name = "sugar"
    checkpoint_dirs = ("checkpoints", "sugar/checkpoints")

    # ------------------------------------------------------------------ construction
    def __init__(self, scene, cfg: SugarRunConfig, run_dir: str | Path, device: str = "auto") -> None:
        """A SuGaR run from scratch: ``cfg.splat`` fits the Gaussians, then ``cfg.sugar`` regularizes."""
        self._init(SplatTrainer(scene, cfg.splat, run_dir, device=device), cfg.sugar, Path(run_dir))

    @classmethod
    def from_splat(cls, splat: SplatTrainer, cfg: SugarConfig, run_dir: str | Path | None = None) -> "SugarTrainer":
        """Regularize an already fitted :class:`SplatTrainer` (it is held, not copied: keep using this object)."""
        obj = cls.__new__(cls)
        obj._init(splat, cfg, Path(run_dir) if run_dir is not None else splat.run_dir)
        return obj

    @classmethod
    def from_checkpoint(cls, scene, splat_cfg: SplatConfig, checkpoint: str | Path, cfg: SugarConfig,
                        run_dir: str | Path, device: str = "auto") -> "SugarTrainer":
        """Start from a splat checkpoint file (``run_dir/checkpoints/step_*.pt`` of a splat fit)."""
        splat = SplatTrainer(scene, splat_cfg, run_dir, device=device)
        splat.load(checkpoint)
        return cls.from_splat(splat, cfg, run_dir)

    def _init(self, splat: SplatTrainer, cfg: SugarConfig, run_dir: Path) -> None:
        self.splat = splat
        self.sugar_cfg = cfg
        self.run_dir = run_dir
        self.sugar_dir = run_dir / "sugar"
        self.sugar_start = splat.step
        self.pruned = False
        self.neighbors: torch.Tensor | None = None
        self._neighbors_step = -1

    @property
    def cfg(self) -> SugarRunConfig:
        return SugarRunConfig(splat=self.splat.cfg, sugar=self.sugar_cfg)

    # what the regularization shares with the splat trainer it holds
    scene = property(lambda self: self.splat.scene)
    device = property(lambda self: self.splat.device)
    cameras = property(lambda self: self.splat.cameras)
    extent = property(lambda self: self.splat.extent)
    generator = property(lambda self: self.splat.generator)
    model = property(lambda self: self.splat.model)
    optimizers = property(lambda self: self.splat.optimizers)
    pose_correction = property(lambda self: self.splat.pose_correction)

    @property
    def run_id(self) -> str | None:
        return self.splat.run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self.splat.run_id = value

    @property
    def step(self) -> int:
        return self.splat.step

    @step.setter
    def step(self, value: int) -> None:
        self.splat.step = value

    @property
    def total_steps(self) -> int:
        return self.sugar_start + self.sugar_cfg.steps

    # ------------------------------------------------------------------ rendering, evaluation, export (the splats')
    def render(self, cameras, background=None):
        return self.splat.render(cameras, background)

    def evaluate(self, split: str = "test", save_renders: bool = True, max_views=None) -> dict:
        return self.splat.evaluate(split, save_renders, max_views)

    def render_cameras(self):
        return self.splat.render_cameras()

    def fitted_cameras(self):
        return self.splat.fitted_cameras()

    def refined_cameras(self):
        return self.splat.refined_cameras()

    def pose_refinement(self):
        return self.splat.pose_refinement()

    def export_splats(self, path: str | Path, original_units: bool = True) -> Path:
        return self.splat.export_splats(path, original_units)

    export_ply = export_splats

    def model_facts(self) -> dict:
        return self.splat.model_facts()

    def write_model(self, out: Path) -> dict:
        return self.splat.write_model(out)

    def write_mesh(self, out: Path) -> dict:
        mesh = self.extract_mesh(progress=True)
        return mesh_files_metrics(mesh, out, self.scene, seconds_key="seconds_total")

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
        sp, cfg, c = self.splat, self.splat.cfg, self.sugar_cfg
        rel = self.step - self.sugar_start
        if rel >= c.entropy_steps and not self.pruned:
            n = self.prune_transparent()
            self.pruned = True
            log.info("SuGaR: pruned %d Gaussians with opacity < %.2f (%d left)", n, c.prune_opacity, len(self.model))
        self.optimizers["means"].param_groups[0]["lr"] = self._means_lr(rel)
        i = sp._next_view()
        cam = sp.train_camera(i)
        gt = sp._image(i)
        bg = sp._background(1)
        out = sp._rasterize(cam, cfg.sh_degree, bg)
        pred = sp.compensated(out.colors[0], out.alphas[0], i, bg)  # per-image appearance, when on
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
        sp._zero_grad()
        loss.backward()
        sp._optimizer_step()
        self.step += 1
        with torch.no_grad():
            p = float(psnr(pred.detach().clamp(0, 1), gt))
        return {"loss": float(loss.detach()), "psnr": p, **stats}

    def fit(self, resume: bool = False, progress=True, log_every: int = 50) -> dict:
        """The splat phase (unless the held splat trainer is already fitted), then the regularization to
        ``sugar_start + steps`` (checkpoints in ``run_dir/sugar/checkpoints``). Returns the splat phase's
        summary (:func:`~recon3d.runtime.fit_loop.run_fit_loop`'s) with ``sugar_steps``,
        ``sugar_seconds``, ``sugar_gaussians``; without a splat phase ``steps`` are the SuGaR steps."""
        c = self.sugar_cfg
        summary: dict = {}
        if resume or self.splat.step < self.splat.cfg.max_steps:
            summary = self.splat.fit(resume=resume, progress=progress, log_every=log_every)
            self.sugar_start = self.splat.step
        sugar = run_fit_loop(self, FitLoop(
            self.sugar_dir / "checkpoints", self.total_steps, start_step=self.sugar_start,
            checkpoint_every=c.checkpoint_every, keep_checkpoints=c.keep_checkpoints, desc="sugar",
            postfix=("loss", "psnr", "sdf", "normal", "entropy"), extra=lambda: {"gaussians": len(self.model)}),
            resume, progress, log_every)
        if not summary:
            summary = {**sugar, "steps": c.steps, "gaussians": len(self.model)}
        return {**summary, "sugar_steps": c.steps, "sugar_seconds": round(sugar["train_seconds"], 2),
                "sugar_gaussians": len(self.model), "sugar_history": sugar["history"]}

    def load_latest(self) -> Path:
        """The newest splat checkpoint, then the newest SuGaR checkpoint when the regularization saved one."""
        ckpt = PerSceneMethod.load_latest(self)
        self.sugar_start = self.splat.step
        sugar_ckpt = latest_checkpoint(self.sugar_dir / "checkpoints")
        if sugar_ckpt is not None:
            from recon3d.runtime.checkpoint import check_run_id

            check_run_id(sugar_ckpt, self.run_id)
            self.load(sugar_ckpt)
            log.info("loaded %s (sugar, step %d, %d Gaussians)", sugar_ckpt, self.step, len(self.model))
            return sugar_ckpt
        return ckpt

    # ------------------------------------------------------------------ meshing
    def extract_mesh(self, cfg: SugarConfig | None = None, progress: bool = False):
        """The SuGaR mesh (:class:`recon3d.mesh.TriangleMesh`, normalized frame) from the training views."""
        from .extract import extract_mesh

        train = list(self.scene.train_indices)
        images = None
        cfg = cfg or self.sugar_cfg
        if cfg.vertex_colors == "views" or (cfg.texture_size > 0 and cfg.texture_source == "views"):
            images = [self.splat._image(j) for j in train]
        return extract_mesh(self.model, self.fitted_cameras()[train], cfg, images=images, extent=self.extent,
                            backend=self.splat.cfg.backend, sh_degree=self.splat.cfg.sh_degree,
                            background=self.splat._background(1)[0], progress=progress)

    def refine(self, mesh, steps: int | None = None, per_face: int | None = None, progress: bool = False):
        """Optional refinement (:mod:`.refine`): Gaussians bound to ``mesh`` optimized with its vertices
        on the training views. Returns ``(refined_mesh, bound_gaussians, summary)``."""
        from .refine import RefineConfig, refine_mesh

        c = self.sugar_cfg
        train = list(self.scene.train_indices)
        rcfg = RefineConfig(steps=steps if steps is not None else max(c.refine_steps, 1), backend=self.splat.cfg.backend,
                            seed=self.splat.cfg.seed)
        return refine_mesh(mesh, self.fitted_cameras()[train], [self.splat._image(j) for j in train], rcfg,
                           per_face=per_face or c.refine_gaussians_per_face, thickness=1e-4 * self.extent,
                           extent=self.extent, background=self.splat._background(1)[0], progress=progress)

    def export_bound_ply(self, bound, path: str | Path, original_units: bool = True) -> Path:
        """Write refined bound Gaussians as a 3DGS .ply (capture units when ``original_units``)."""
        from recon3d.mesh import normalized_to_world
        from recon3d.methods.splat.ply import save_splat_ply

        T = normalized_to_world(self.scene.normalization) if original_units else None
        return save_splat_ply(bound.to_model(), path, transform=T)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = self.splat.state_dict()
        state["sugar"] = {"config": self.sugar_cfg.to_dict(), "start": self.sugar_start, "pruned": self.pruned,
                          "neighbors": None if self.neighbors is None else self.neighbors.cpu(),
                          "neighbors_step": self._neighbors_step}
        return state

    def save(self, path: str | Path) -> Path:
        from recon3d.runtime.checkpoint import atomic_torch_save

        return atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.splat.load(path)
        info = load_checkpoint(path, map_location="cpu").get("sugar")
        self.neighbors, self._neighbors_step = None, -1
        if info is not None:
            self.sugar_start = int(info["start"])
            self.pruned = bool(info["pruned"])
            if info.get("neighbors") is not None:
                self.neighbors = info["neighbors"].to(self.device)
                self._neighbors_step = int(info["neighbors_step"])
