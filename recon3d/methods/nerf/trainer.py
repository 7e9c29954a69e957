"""Per-scene NeRF: hash-grid field, occupancy-grid ray marching, training loop, evaluation, meshing.

Usage::

    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.methods.nerf import NerfTrainer, preset
    trainer = NerfTrainer(normalize_scene(load_scene("lego/")), preset("default"), run_dir="outputs/lego-nerf")
    trainer.fit()                 # resumes from run_dir/checkpoints with resume=True
    metrics = trainer.evaluate()  # PSNR / SSIM on the test split, renders saved
    mesh = trainer.extract_mesh(resolution=256)   # recon3d.mesh.TriangleMesh (density level set)

The scene is used in the coordinates it comes in (normally normalized, see
:func:`recon3d.io.normalize.normalize_scene`); exports can map back with ``original_units=True``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from recon3d.core.fields import SceneBox
from recon3d.core.occupancy import OccupancyGrid
from recon3d.core.rays import RayBundle

from recon3d.core.scene_bounds import object_box, unbounded_box
from recon3d.mesh import mesh_in_capture_units
from recon3d.mesh.ops import finish_mesh
from recon3d.methods.ray_batches import RayBatcher, is_object_capture
from recon3d.methods.ray_trainer import RayTrainer
from recon3d.runtime.device import maybe_compile

from .config import NerfConfig
from .model import NerfField
from .renderer import grid_cells_to_update, march_rays, march_step_and_grid_threshold, render_rays, shade_samples
from recon3d.runtime.optim import adam

log = logging.getLogger(__name__)

class _Clock:
    """Accumulates wall time between calls under names (cheap per-phase profiling of a step)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        t = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + (t - self._t)
        self._t = t


class NerfTrainer(RayTrainer):
    """Fits a :class:`NerfField` to a scene's training views (see module docstring)."""

    method_name = "nerf"

    def __init__(self, scene, cfg: NerfConfig, run_dir: str | Path, device: str = "auto") -> None:
        super().__init__(scene, cfg, run_dir, device)
        self.data = RayBatcher(scene, device=self.device)
        train_cams = scene.cameras[list(scene.train_indices)]
        kind = cfg.scene_type
        if kind == "auto":
            kind = "object" if is_object_capture(scene) else "unbounded"
        if kind not in ("object", "unbounded"):
            raise ValueError(f"scene_type must be 'auto', 'object' or 'unbounded', got {cfg.scene_type!r}")
        self.scene_type = kind
        center = scene.center.cpu()
        if cfg.aabb is not None:
            box = SceneBox(torch.tensor(cfg.aabb, dtype=torch.float32).reshape(2, 3),
                           contraction=None if kind == "object" else "linf")
        elif kind == "object":
            box = object_box(train_cams, cfg.aabb_scale, center)
        else:
            box = unbounded_box(train_cams, center)
        self.box = box.to(self.device)
        self.field = NerfField(self.box, cfg.field, num_images=len(scene), seed=cfg.seed).to(self.device)
        self.grid = OccupancyGrid(self.box, cfg.grid_resolution).to(self.device)
        if kind == "object":
            vis = self.grid.mark_invisible(train_cams)
            log.info("occupancy grid: %.1f%% of cells seen by a training camera", 100 * vis)
            if cfg.carve and self.data.has_alpha:
                alphas = [a[..., 0] for a in self.data.image_maps(self.data.alpha)]
                vis = self.grid.carve(train_cams, alphas)
                log.info("occupancy grid: %.1f%% of cells inside the visual hull", 100 * vis)
        self.step_size, self.grid_threshold = march_step_and_grid_threshold(
            self.box.aabb, cfg.march.num_steps, cfg.grid_alpha_threshold)
        enc, mlps = self.field.parameter_groups()
        self.optimizer = adam(
            [{"params": enc, "weight_decay": 0.0}, {"params": mlps, "weight_decay": cfg.weight_decay_mlp}],
            lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
        self.rays_per_batch = int(cfg.rays_per_batch)
        self.use_amp = bool(cfg.mixed_precision and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.train_background = bg = self._resolve_train_background(cfg.background, self.data.has_alpha)
        self.compiled = maybe_compile(self.field, cfg.compile, self.device, self._probe)
        if self.compiled:
            self.grid.compile(True)
            try:
                rays = self.cameras.rays(int(scene.train_indices[0])).flatten()[:8]
                march_rays(self.field, self.grid, rays, cfg.march, False)
            except Exception as e:
                if cfg.compile == "on":
                    raise
                log.warning("torch.compile of the grid lookups failed (%s); running them eagerly", e)
                self.grid.compile(False)
        log.info("nerf: %s scene, box %s, step %.4g, background %s, compile %s", kind,
                 [round(v, 3) for v in self.box.aabb.flatten().tolist()], self.step_size, bg, self.compiled)

    def _probe(self) -> None:
        x = self.box.center.to(self.device).expand(4, 3).clone()
        d = torch.nn.functional.normalize(torch.ones(4, 3, device=self.device), dim=-1)
        self.field(x, d)[1].sum().backward()
        self.field.density(x)
        self.field.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ pieces
    def _modules(self) -> dict:
        return {"field": self.field, "grid": self.grid}

    def _optimizers(self) -> dict:
        return {"adam": self.optimizer}

    def _extra_state(self) -> dict:
        return {"rays_per_batch": self.rays_per_batch, "scaler": self.scaler.state_dict()}

    def _load_extra_state(self, state: dict) -> None:
        self.rays_per_batch = int(state["rays_per_batch"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def lr_at(self) -> float:
        cfg = self.cfg
        warm = min(1.0, (self.step + 1) / max(cfg.lr_warmup_steps, 1))
        return cfg.lr * warm * cfg.lr_final_factor ** self.progress()

    def update_grid(self) -> float:
        cfg = self.cfg
        n = grid_cells_to_update(self.step, cfg.grid_warmup_steps, self.grid.num_cells, cfg.grid_update_fraction)
        with self._autocast():
            return self.grid.update(self.field.density, self.grid_threshold, cfg.grid_decay, n, self.generator)

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        cfg = self.cfg
        clock = _Clock()
        if self.step > 0 and self.step % cfg.grid_update_every == 0:
            self.update_grid()
        clock("t_grid")
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at()
        batch = self.data.sample(self.rays_per_batch, self.generator)
        bg = self._batch_background(self.rays_per_batch)
        self.field.train()
        with self._autocast():
            m = march_rays(self.field, self.grid, batch.rays, cfg.march, True, self.sampling_generator)
            clock("t_march")
            out = shade_samples(self.field, m, batch.rays, bg, batch.rays.camera_indices)
        target = batch.target(bg)
        loss = torch.nn.functional.mse_loss(out["rgb"].float(), target)
        n = out["num_samples"]
        clock("t_forward")
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            self.scaler.scale(loss).backward()
            clock("t_backward")
            self.scaler.step(self.optimizer)
            self.scaler.update()
        clock("t_optim")
        self.step += 1
        if cfg.target_samples > 0:  # keep the shaded bins per batch near the target
            want = self.rays_per_batch * cfg.target_samples / max(n, 1)
            want = min(max(want, 0.5 * self.rays_per_batch), 2.0 * self.rays_per_batch)
            self.rays_per_batch = int(min(max(0.5 * self.rays_per_batch + 0.5 * want, 256), cfg.max_rays_per_batch))
        mse = float(loss.detach())
        return {"loss": mse, "psnr": -10.0 * math.log10(max(mse, 1e-10)), "rays": len(batch.rays),
                "samples": n, "lr": self.optimizer.param_groups[0]["lr"], **clock.times}

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render_rays(self, rays: RayBundle, camera_indices: Optional[Tensor] = None) -> dict:
        """Premultiplied ``rgb`` (R, 3), ``opacity`` (R, 1), ``depth`` (R, 1) ray distance; no gradient."""
        self.field.eval()
        with self._autocast():
            out = render_rays(self.field, self.grid, rays, self.cfg.march, False, camera_indices=camera_indices)
        return {k: (v.float() if isinstance(v, Tensor) else v) for k, v in out.items()}

    # ------------------------------------------------------------------ meshing
    def density_threshold(self) -> float:
        """Default density level of :meth:`extract_mesh` (1 / world units): ``cfg.mesh_threshold``, or
        when that is 0 the density at which a slab 1/20 of the box thick is 50% opaque,
        ``ln 2 / (box size / 20)`` (a trained surface is far denser and empty space far lighter, so
        the surface barely moves with it)."""
        if self.cfg.mesh_threshold > 0:
            return float(self.cfg.mesh_threshold)
        size = float((self.box.aabb[1] - self.box.aabb[0]).max())
        return math.log(2.0) / (size / 20.0)

    def model_facts(self) -> dict:
        return {"scene_type": self.scene_type, "occupancy": round(self.grid.occupancy_fraction(), 4)}

    @torch.no_grad()
    def extract_mesh(self, resolution: Optional[int] = None, threshold: Optional[float] = None, colors: bool = True,
                     original_units: bool = False, chunk: int = 1 << 16):
        """Marching cubes on the density level set ``sigma = threshold`` inside the scene box.

        Args:
            resolution: grid nodes per axis of the box (default ``cfg.mesh_resolution``).
            threshold: density, 1 / world units (default :meth:`density_threshold`).
            colors: vertex colors from the color network, seen from outside along the normal.
            original_units: map the mesh back to the scene's source units (undo the normalization).
        Returns:
            :class:`recon3d.mesh.TriangleMesh` (normalized world unless ``original_units``), faces
            counter-clockwise seen from outside, decimated to ``cfg.mesh_max_faces``; empty when the
            density never reaches the threshold (``metadata['note']`` says so). Unbounded scenes are
            meshed in their inner box only.
        """
        from recon3d.mesh import TriangleMesh, extract_isosurface

        self.field.eval()
        res = int(resolution or self.cfg.mesh_resolution)
        thr = self.density_threshold() if threshold is None else float(threshold)
        aabb = self.box.aabb.cpu()
        if self.box.contraction is not None:
            log.info("unbounded scene: meshing the inner box %s", [round(v, 3) for v in aabb.flatten().tolist()])
        t = time.perf_counter()
        try:
            # densities in cells the occupancy grid holds empty (outside the visual hull, never seen,
            # decayed) are zeroed: floaters the renderer skips stay out of the mesh too
            mesh = extract_isosurface(lambda x: self.field.density(x).float() * self.grid.query(x), aabb, res,
                                      level=thr, inside="above", chunk=chunk, device=self.device)
        except ValueError as e:  # the level set does not cross the box
            mesh = TriangleMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), metadata={"note": str(e)})
        mesh = finish_mesh(mesh, self.cfg.mesh_max_faces)
        mesh.metadata.update({"method": "nerf", "density_threshold": thr, "resolution": res,
                              "seconds": round(time.perf_counter() - t, 2)})
        if colors and mesh.num_vertices:
            mesh.vertex_colors = self._vertex_colors(mesh, chunk)
        return mesh_in_capture_units(mesh, self.scene.normalization) if original_units else mesh

    def _vertex_colors(self, mesh, chunk: int) -> np.ndarray:
        """(V, 3) colors seen from outside: the field at a point half a step outside each vertex,
        looked at along minus the (outward) vertex normal."""
        v = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32))
        n = torch.nn.functional.normalize(torch.from_numpy(np.asarray(mesh.vertex_normals, dtype=np.float32)), dim=-1)
        out = []
        for s in range(0, len(v), chunk):
            x, nn_ = v[s:s + chunk].to(self.device), n[s:s + chunk].to(self.device)
            with self._autocast():
                _, rgb = self.field(x + 0.5 * self.step_size * nn_, -nn_)
            out.append(rgb.float().cpu())
        return torch.cat(out).clamp(0, 1).numpy()
