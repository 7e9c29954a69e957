"""The training loop base of the ray-based methods (NeRF, NeuS-style SDF): progress, checkpoints with
exact resume (through :func:`recon3d.runtime.fit_loop.run_fit_loop`), chunked rendering and evaluation
on held-out views.

Subclasses provide ``train_step() -> dict``, ``render_rays(rays, camera_indices) -> dict`` (no-grad,
eval mode), ``_modules()`` / ``_optimizers()`` (saved in checkpoints), extra state via
``_extra_state()`` / ``_load_extra_state()``, and ``extract_mesh()``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from recon3d.core.background import background_color
from recon3d.core.cameras import Cameras
from recon3d.core.rays import RayBundle
from recon3d.runtime.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from recon3d.runtime.device import resolve_device
from recon3d.runtime.fit_loop import FitLoop, run_fit_loop
from recon3d.runtime.seeding import seed_everything

from .base import PerSceneMethod, mesh_files_metrics
from .evaluation import evaluate_split
from .render_result import RenderResult

log = logging.getLogger(__name__)


class RayTrainer(PerSceneMethod):
    """Base class: see the module docstring. Subclasses set ``method_name`` and the hooks."""

    method_name = "rays"

    def __init__(self, scene, cfg, run_dir: str | Path, device: str = "auto") -> None:
        self.scene = scene
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.cameras: Cameras = scene.cameras.to(self.device)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # CPU: batches, backgrounds, grid updates
        # samplers draw their jitter on the rays' device: this CPU generator there, the (checkpointed)
        # global CUDA RNG on a GPU
        self.sampling_generator = self.generator if self.device.type == "cpu" else None
        self.step = 0
        self.elapsed = 0.0  # training seconds so far (kept across resumes)
        seed_everything(cfg.seed)

    # ------------------------------------------------------------------ hooks
    def train_step(self) -> dict:
        raise NotImplementedError

    def render_rays(self, rays: RayBundle, camera_indices: Optional[Tensor] = None) -> dict:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _modules(self) -> dict:
        """name -> nn.Module saved in checkpoints."""
        raise NotImplementedError

    def _optimizers(self) -> dict:
        raise NotImplementedError

    def extract_mesh(self, resolution: Optional[int] = None, **kw):
        """A :class:`recon3d.mesh.TriangleMesh` of the fitted surface, normalized world frame."""
        raise NotImplementedError

    def write_mesh(self, out: Path) -> dict:
        """The marching-cubes mesh of the fitted field as ``out/mesh.glb/.obj/.ply``; metrics entries."""
        return mesh_files_metrics(self.extract_mesh(), out, self.scene)

    def eval_background(self) -> Tensor:
        """(3,) background of rendered images: the scene's, else black."""
        return background_color("scene", getattr(self.scene, "background", None))

    def _resolve_train_background(self, name: str, has_alpha: bool) -> str:
        """``cfg.background`` -> ``'random'``, ``'scene'``, ``'white'`` or ``'black'``.

        ``'auto'``: random colors per ray when the images have alpha (so the model cannot paint
        the background into the object), else the scene's own background.
        """
        bg = ("random" if has_alpha else "scene") if name == "auto" else name
        if bg not in ("random", "scene", "white", "black"):
            raise ValueError(f"background must be 'auto', 'random', 'scene', 'white' or 'black', got {name!r}")
        return bg

    def _batch_background(self, n: int) -> Tensor:
        """(n, 3) training background colors of a batch (``self.train_background``)."""
        bg = self.train_background
        if bg == "random":
            return torch.rand(n, 3, generator=self.generator).to(self.device)
        return background_color(bg, getattr(self.scene, "background", None)).to(self.device).expand(n, 3)

    def progress(self) -> float:
        """Training progress in [0, 1] for schedules (by steps, or by time under ``max_seconds``)."""
        p = self.step / max(self.cfg.max_steps, 1)
        if getattr(self.cfg, "max_seconds", 0) > 0:
            p = max(p, self.elapsed / self.cfg.max_seconds)
        return min(p, 1.0)

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render(self, cameras: Cameras, background: Optional[Tensor] = None, chunk: Optional[int] = None) -> RenderResult:
        """Render cameras one at a time in chunks of rays (bounded memory). Same-size cameras only.

        Colors are composited over ``background`` (default :meth:`eval_background`); depths are
        camera z-depths (0 where nothing was hit).
        """
        cams = cameras.to(self.device)
        if len(set(cams.width.tolist())) > 1 or len(set(cams.height.tolist())) > 1:
            raise ValueError("render() needs cameras of one image size; render them in groups")
        bg = (self.eval_background() if background is None else torch.as_tensor(background)).to(self.device)
        chunk = chunk or getattr(self.cfg, "eval_chunk", 8192)
        colors, alphas, depths = [], [], []
        for i in range(len(cams)):
            rays = cams.rays(i).flatten()
            H, W = int(cams.height[i]), int(cams.width[i])
            outs = [self.render_rays(rays[s:s + chunk]) for s in range(0, H * W, chunk)]
            rgb = torch.cat([o["rgb"] for o in outs])
            acc = torch.cat([o["opacity"] for o in outs]).clamp(0, 1)
            depth = torch.cat([o["depth"] for o in outs]) * rays.z_scale * (acc > 1e-3)
            colors.append((rgb + (1 - acc) * bg).clamp(0, 1).reshape(H, W, 3))
            alphas.append(acc.reshape(H, W, 1))
            depths.append(depth.reshape(H, W, 1))
        return RenderResult(torch.stack(colors), torch.stack(alphas), torch.stack(depths))

    # ------------------------------------------------------------------ training loop
    def fit(self, resume: bool = False, progress=True, log_every: int = 50) -> dict:
        """Train to ``cfg.max_steps`` (or ``cfg.max_seconds``); checkpoints in ``run_dir/checkpoints``."""
        cfg = self.cfg
        return run_fit_loop(self, FitLoop(
            self.run_dir / "checkpoints", cfg.max_steps, checkpoint_every=cfg.checkpoint_every,
            keep_checkpoints=cfg.keep_checkpoints, eval_every=cfg.eval_every,
            eval_views=getattr(cfg, "eval_views", None) or None, max_seconds=getattr(cfg, "max_seconds", 0.0),
            desc=self.method_name, postfix=("loss", "psnr", "rays", "samples")), resume, progress, log_every)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test", save_renders: bool = True, max_views: Optional[int] = None) -> dict:
        """PSNR / SSIM / render time on a split; renders go to ``run_dir/renders/<split>/``."""
        return evaluate_split(self.render, self.scene, self.cameras, self.device, self.run_dir, split,
                              save_renders, max_views)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "method": self.method_name,
            "step": self.step,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "modules": {k: {n: v.detach().clone() for n, v in m.state_dict().items()} for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "generator": self.generator.get_state(),
            "rng": rng_state(),
            "extra": self._extra_state(),
        }

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location="cpu")  # modules/optimizers copy to their devices
        if state.get("method") != self.method_name:
            raise ValueError(f"{path}: a {state.get('method')!r} checkpoint, not {self.method_name!r}")
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self._optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self._load_extra_state(state["extra"])
        set_rng_state(state["rng"])
