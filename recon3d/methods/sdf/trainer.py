"""Per-scene NeuS-style surface reconstruction: training loop, evaluation, mesh extraction.

Usage::

    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.methods.sdf import SdfTrainer, preset
    trainer = SdfTrainer(normalize_scene(load_scene("scene/")), preset("default"), run_dir="outputs/scene-sdf")
    trainer.fit()
    mesh = trainer.extract_mesh(resolution=256, original_units=True)   # recon3d.mesh.TriangleMesh

Meant for object captures (a known background color, ideally alpha or masks): the SDF lives in a
bounding sphere and everything outside it is background. Losses: L1 color, eikonal
``(|grad f| - 1)^2`` on the ray samples, optional BCE between rendered opacity and the mask (the
scene's masks, else the images' alpha).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from recon3d.core.occupancy import OccupancyGrid
from recon3d.core.rays import RayBundle
from recon3d.core.scene_bounds import object_box
from recon3d.mesh import mesh_in_capture_units
from recon3d.methods.ray_batches import RayBatcher, is_object_capture
from recon3d.methods.ray_trainer import RayTrainer

from .config import SdfConfig
from .losses import cos_anneal_ratio, neus_loss_terms, weighted_neus_losses
from .meshing import clipped_world_sdf, extract_sdf_mesh
from .model import SdfField
from .rendering import render_neus
from recon3d.runtime.optim import adam

log = logging.getLogger(__name__)

def bounding_radius(data: RayBatcher, center: Tensor, scale: float = 1.15, resolution: int = 64) -> tuple[float, str]:
    """Radius (world units) of a sphere around ``center`` holding the object of a capture.

    Two bounds, the smaller wins: what every camera frames (an object fully visible in all views
    lies within :func:`object_box`'s half-size ``min D tan(fov / 2)``), and, with alpha or masks,
    the farthest cell of the visual hull (space carving on a ``resolution^3`` grid) plus one cell
    (tight with many views, loose with few). Times ``scale``. Returns the radius and its source.
    """
    cams = data.cameras[data.indices]
    frustum = float(object_box(cams, 1.0, center).half_size[0])
    coverage = None
    if data.mask is not None:
        coverage = [m[..., 0] for m in data.image_maps(data.mask)]
    elif data.has_alpha:
        coverage = [a[..., 0] for a in data.image_maps(data.alpha)]
    if coverage is None:
        return scale * frustum, "camera frustum"
    grid = OccupancyGrid(object_box(cams, 1.6, center), resolution)
    grid.mark_invisible(cams)
    if grid.carve(cams, coverage) <= 0:
        return scale * frustum, "camera frustum (empty visual hull)"
    pts = grid.cell_points(grid.visible.nonzero()[:, 0], jitter=False)
    hull = float((pts - torch.as_tensor(center, dtype=torch.float32)).norm(dim=-1).max()) + grid.cell_size()
    return (scale * hull, "visual hull") if hull < frustum else (scale * frustum, "camera frustum")


class SdfTrainer(RayTrainer):
    """Fits an :class:`SdfField` with NeuS volume rendering (see module docstring)."""

    method_name = "sdf"

    def __init__(self, scene, cfg: SdfConfig, run_dir: str | Path, device: str = "auto") -> None:
        super().__init__(scene, cfg, run_dir, device)
        self.data = RayBatcher(scene, device=self.device, load_masks=cfg.mask_weight > 0)
        if not is_object_capture(scene):
            log.warning("sdf: the scene has no known background (not an object capture); NeuS models only "
                        "the bounding sphere, the rest is treated as a black background")
        center = scene.center.cpu()
        if cfg.radius is not None:
            radius, how = float(cfg.radius), "config"
        else:
            radius, how = bounding_radius(self.data, center, cfg.radius_scale)
        self.field = SdfField(center, radius, cfg.field, seed=cfg.seed).to(self.device)
        rest, grid_params = self.field.parameter_groups()
        groups = [{"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
        if grid_params:
            groups.append({"params": grid_params, "lr": cfg.lr_grid, "base_lr": cfg.lr_grid})
        self.optimizer = adam(groups, betas=(0.9, 0.99), eps=1e-15)
        self.train_background = bg = self._resolve_train_background(cfg.background, self.data.has_alpha)
        self.mask_source = None
        if cfg.mask_weight > 0:
            self.mask_source = "masks" if self.data.mask is not None else ("alpha" if self.data.has_alpha else None)
        log.info("sdf: sphere center %s radius %.4f (%s), geometry %s, background %s, mask loss from %s",
                 [round(v, 3) for v in center.tolist()], radius, how, cfg.field.geometry, bg, self.mask_source)

    # ------------------------------------------------------------------ pieces
    def _modules(self) -> dict:
        return {"field": self.field}

    def _optimizers(self) -> dict:
        return {"adam": self.optimizer}

    def lr_factor(self) -> float:
        cfg = self.cfg
        warm = min(1.0, (self.step + 1) / max(cfg.lr_warmup_steps, 1))
        p = self.progress()
        cosine = 0.5 * (1 + math.cos(math.pi * p))
        return warm * (cfg.lr_final_factor + (1 - cfg.lr_final_factor) * cosine)

    def cos_anneal_ratio(self) -> float:
        return cos_anneal_ratio(self.step, self.cfg.cos_anneal_steps)

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        cfg = self.cfg
        f = self.lr_factor()
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        batch = self.data.sample(cfg.rays_per_batch, self.generator)
        bg = self._batch_background(cfg.rays_per_batch)
        self.field.train()
        out = render_neus(self.field, batch.rays, cfg.sampling, True, background=bg,
                          cos_anneal_ratio=self.cos_anneal_ratio(), create_graph=True, generator=self.sampling_generator)
        target = batch.target(bg)
        m = None
        if self.mask_source is not None:
            m = batch.mask if self.mask_source == "masks" else batch.alpha
        terms = neus_loss_terms(out, target, m)
        loss = sum(weighted_neus_losses(terms, cfg.eikonal_weight, cfg.mask_weight).values())
        eik = terms["eikonal"]
        stats = {"mask": float(terms["mask"].detach())} if "mask" in terms else {}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        mse = float(((out["rgb"].detach() - target) ** 2).mean())
        return {"loss": float(loss.detach()), "psnr": -10.0 * math.log10(max(mse, 1e-10)), "eikonal": float(eik.detach()),
                "s": float(self.field.inv_s.detach()), **stats}

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render_rays(self, rays: RayBundle, camera_indices: Optional[Tensor] = None) -> dict:
        """Premultiplied ``rgb`` (R, 3), ``opacity`` (R, 1), ``depth`` (R, 1) ray distance, ``normals`` (R, 3)."""
        self.field.eval()
        out = render_neus(self.field, rays, self.cfg.sampling, False, create_graph=False, prune=True)
        return {k: out[k].detach() for k in ("rgb", "opacity", "depth", "normals")}

    # ------------------------------------------------------------------ meshing
    def sdf_fn(self, x: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) world-unit SDF, clipped to the bounding sphere (outside there)."""
        return clipped_world_sdf(self.field, x)

    def model_facts(self) -> dict:
        return {"sphere_radius_normalized": self.field.radius}

    @torch.no_grad()
    def extract_mesh(self, resolution: Optional[int] = None, colors: bool = True, original_units: bool = False,
                     chunk: int = 1 << 16):
        """Marching cubes on the SDF's zero level set inside the bounding sphere.

        Args:
            resolution: grid nodes per axis of the sphere's bounding cube (default ``cfg.mesh_resolution``).
            colors: vertex colors from the color network, viewed from outside along the normal.
            original_units: map the mesh back to the capture's source units (undo the normalization).
        Returns:
            :class:`recon3d.mesh.TriangleMesh` (normalized world unless ``original_units``), faces
            counter-clockwise seen from outside, decimated to ``cfg.mesh_max_faces``; empty
            (``metadata['note']``) when the SDF has no zero crossing in the sphere.
        """
        mesh = extract_sdf_mesh(self.field, int(resolution or self.cfg.mesh_resolution), self.cfg.mesh_max_faces,
                                colors=colors, chunk=chunk)
        return mesh_in_capture_units(mesh, self.scene.normalization) if original_units else mesh
