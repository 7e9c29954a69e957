"""What per-scene methods share: device choice, the render result type, and for the ray-based
methods (NeRF, NeuS-style SDF) random ray batches across training images and a training loop with
progress bar, checkpoints and exact resume, chunked rendering and evaluation on held-out views.

Ray batches: pixels of all training images are flattened into one table (images may differ in
size); a batch is ``n`` uniformly drawn pixels with their rays (:meth:`Cameras.rays_at` through
pixel centers), their colors, and when available their alpha and mask. Colors are stored
*premultiplied* (``rgb * alpha``, composited over black) with alpha whenever the images have an
alpha channel, so a batch can be composited over any background:
``target = premultiplied + (1 - alpha) * background``. Without alpha, alpha is 1 everywhere.

:class:`RayTrainer` subclasses provide ``train_step() -> dict``, ``render_rays(rays,
camera_indices) -> dict`` (no-grad, eval mode), ``_modules()`` / ``_optimizers()`` (saved in
checkpoints), extra state via ``_extra_state()`` / ``_load_extra_state()``, and ``extract_mesh()``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from recon3d.core.cameras import Cameras
from recon3d.core.fields import SceneBox
from recon3d.core.metrics import psnr, ssim
from recon3d.core.rays import RayBundle
from recon3d.methods.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from recon3d.methods.fit_loop import FitLoop, run_fit_loop

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; an explicit ``'cuda'`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    return dev


@dataclass
class RenderResult:
    """Images for C cameras: colors (C, H, W, 3), alphas (C, H, W, 1), depths (C, H, W, 1) camera z-depth."""

    colors: Tensor
    alphas: Tensor
    depths: Tensor


def is_object_capture(scene) -> bool:
    """True for object captures (images composited on a known background: Blender, synthetic)."""
    return getattr(scene, "background", None) is not None


def object_box(cameras: Cameras, scale: float = 1.1, center: Optional[Tensor] = None) -> SceneBox:
    """A cube around what every camera of an object capture sees.

    Cameras at distance ``D`` from the center with half field of view ``f`` frame a region of
    half-size ``D tan f``; the cube has half-size ``scale * min(D) * tan(min f)``.
    """
    cameras = cameras.to("cpu")
    c = cameras.look_at() if center is None else torch.as_tensor(center, dtype=torch.float32)
    dist = float((cameras.centers - c).norm(dim=-1).min())
    fx, fy = cameras.fov()
    half = scale * dist * math.tan(0.5 * float(torch.minimum(fx, fy).min()))
    return SceneBox(torch.stack([c - half, c + half]))


def unbounded_box(cameras: Cameras, center: Optional[Tensor] = None) -> SceneBox:
    """The cube holding all cameras (contracted beyond it)."""
    cameras = cameras.to("cpu")
    c = torch.zeros(3) if center is None else torch.as_tensor(center, dtype=torch.float32)
    half = float((cameras.centers - c).abs().max()) * 1.05
    return SceneBox(torch.stack([c - half, c + half]), contraction="linf")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def maybe_compile(module, mode: str, device: torch.device, probe) -> bool:
    """Turn on ``module.compile()`` when ``mode`` is ``'on'``, or ``'auto'`` and a probe call works.

    ``probe`` runs the module once on a tiny input; with ``'auto'`` any failure falls back to eager.
    """
    if mode == "off":
        return False
    module.compile(True)
    if mode == "on":
        return True
    try:
        probe()
        return True
    except Exception as e:  # no compiler, unsupported backend...
        log.warning("torch.compile unavailable here (%s: %s); running eagerly", e.__class__.__name__, str(e)[:200])
        module.compile(False)
        return False


# ---------------------------------------------------------------------------------------------
# Ray batches
# ---------------------------------------------------------------------------------------------
@dataclass
class RayBatch:
    """``R`` training rays with what they saw.

    Attributes:
        rays: flat RayBundle (R,), ``camera_indices`` set (scene frame indices).
        rgb: (R, 3) premultiplied colors in [0, 1] (equal to the image colors when opaque).
        alpha: (R, 1) coverage in [0, 1] (ones without an alpha channel).
        mask: (R, 1) float 0/1 foreground mask, or None when the scene has no masks.
    """

    rays: RayBundle
    rgb: Tensor
    alpha: Tensor
    mask: Optional[Tensor] = None

    def target(self, background: Tensor) -> Tensor:
        """(R, 3) ground truth composited over ``background`` ((R, 3) or (3,))."""
        return self.rgb + (1.0 - self.alpha) * background


class RayBatcher:
    """Pixels of ``scene``'s training images, ready to be sampled as ray batches.

    Args:
        scene: the Scene (its cameras in the frame the method works in).
        indices: frames to use (default: ``scene.train_indices``).
        device: where the pixel table lives.
        load_masks: also keep the scene's masks (if any).
    """

    def __init__(self, scene, indices=None, device="cpu", load_masks: bool = False):
        self.scene = scene
        self.indices = list(scene.train_indices if indices is None else indices)
        if not self.indices:
            raise ValueError("the scene has no training images")
        self.device = torch.device(device)
        self.cameras = scene.cameras.to(self.device)
        bg = getattr(scene, "background", None)
        self.scene_background = None if bg is None else torch.as_tensor(bg, dtype=torch.float32)
        rgbs, alphas, masks = [], [], []
        for i in self.indices:
            img = scene.image(i).reshape(-1, 3)
            a = scene.alpha(i).reshape(-1, 1) if self.scene_background is not None else torch.ones_like(img[:, :1])
            if self.scene_background is not None:  # undo the reader's compositing: premultiplied colors
                img = (img - (1.0 - a) * self.scene_background).clamp(0.0, 1.0)
            rgbs.append(img)
            alphas.append(a)
            if load_masks:
                m = scene.mask(i)
                masks.append(None if m is None else m.reshape(-1, 1).float())
        self.has_alpha = any(bool((a < 1).any()) for a in alphas)
        self.rgb = torch.cat(rgbs).to(self.device)
        self.alpha = torch.cat(alphas).to(self.device)
        self.mask = None
        if load_masks and any(m is not None for m in masks):
            filled = [torch.ones_like(a) if m is None else m for m, a in zip(masks, alphas)]
            self.mask = torch.cat(filled).to(self.device)
        sizes = torch.tensor([int(self.cameras.width[i]) * int(self.cameras.height[i]) for i in self.indices])
        self._starts = torch.cumsum(sizes, 0) - sizes
        self._frame = torch.tensor(self.indices)
        self._widths = torch.tensor([int(self.cameras.width[i]) for i in self.indices])
        self.num_pixels = int(sizes.sum())
        log.info("%d training pixels from %d images (alpha: %s, masks: %s)", self.num_pixels, len(self.indices),
                 self.has_alpha, self.mask is not None)

    def image_maps(self, values: Tensor) -> list[Tensor]:
        """Split a per-pixel table ((P,) or (P, C), e.g. :attr:`alpha`) into per-image (H, W, ...) maps."""
        out = []
        for k, i in enumerate(self.indices):
            H, W = int(self.cameras.height[i]), int(self.cameras.width[i])
            s = int(self._starts[k])
            out.append(values[s:s + H * W].reshape(H, W, *values.shape[1:]))
        return out

    def rays_of(self, pixels: Tensor) -> tuple[RayBundle, Tensor]:
        """(R,) flat pixel indices -> rays through their centers and (R,) scene frame indices."""
        img = torch.searchsorted(self._starts, pixels, right=True) - 1
        local = pixels - self._starts[img]
        w = self._widths[img]
        uv = torch.stack([(local % w).float() + 0.5, (local // w).float() + 0.5], dim=-1)
        frames = self._frame[img].to(self.device)
        return self.cameras.rays_at(frames, uv.to(self.device)), frames

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> RayBatch:
        """``n`` random training pixels (with replacement)."""
        pixels = torch.randint(0, self.num_pixels, (n,), generator=generator)
        rays, _ = self.rays_of(pixels)
        pix = pixels.to(self.device)
        return RayBatch(rays, self.rgb[pix], self.alpha[pix], None if self.mask is None else self.mask[pix])


# ---------------------------------------------------------------------------------------------
# Training loop of ray-based methods
# ---------------------------------------------------------------------------------------------
class RayTrainer:
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

    def eval_background(self) -> Tensor:
        """(3,) background of rendered images: the scene's, else black."""
        bg = getattr(self.scene, "background", None)
        return torch.zeros(3) if bg is None else torch.as_tensor(bg, dtype=torch.float32)

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
        named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
        color = self.eval_background() if bg == "scene" else torch.tensor(named[bg])
        return color.to(self.device).expand(n, 3)

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
    def fit(self, resume: bool = False, progress: bool = True, log_every: int = 50) -> dict:
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


def mesh_in_original_units(mesh, scene):
    """A copy of ``mesh`` (normalized world) in the capture's source units (the normalization undone)."""
    norm = getattr(scene, "normalization", None)
    if norm is None or norm.is_identity:
        return mesh
    out = mesh.transformed(np.linalg.inv(np.asarray(norm.transform, dtype=np.float64)))
    out.metadata = {**mesh.metadata, "units": "source"}
    return out


def finish_mesh(mesh, max_faces: int):
    """Decimate ``mesh`` to at most ``max_faces`` faces (quadric error; 0: no limit) and make sure
    it has vertex normals; metadata records the face count before decimation."""
    from recon3d.mesh.ops import simplify, with_vertex_normals

    if mesh.num_faces == 0:
        return mesh
    mesh.metadata["faces_extracted"] = mesh.num_faces
    if max_faces and mesh.num_faces > max_faces:
        mesh = simplify(mesh, max_faces)
    return mesh if mesh.vertex_normals is not None else with_vertex_normals(mesh)


@torch.no_grad()
def evaluate_split(render, scene, cameras, device: torch.device, run_dir: Path, split: str = "test",
                   save_renders: bool = True, max_views: Optional[int] = None) -> dict:
    """PSNR / SSIM / render time of a fitted model on a scene split (shared by every per-scene method).

    Args:
        render: ``render(camera) -> RenderResult`` whose ``colors`` is (1, H, W, 3) in [0, 1].
        scene, cameras: the Scene and its (normalized) Cameras; ``split`` is ``"test"`` or ``"train"``.
        run_dir: renders go to ``run_dir/renders/<split>/<image stem>.png`` when ``save_renders``.
        max_views: evaluate only the first N views of the split.
    Returns:
        dict with split, views, mean psnr (dB), mean ssim, ms_per_image and per_view_psnr.
    """
    from recon3d.io.images import save_image

    indices = list(scene.test_indices if split == "test" else scene.train_indices)
    if max_views is not None:
        indices = indices[:max_views]
    if not indices:
        raise ValueError(f"the scene has no {split} views to evaluate on")
    psnrs, ssims, times = [], [], []
    out_dir = Path(run_dir) / "renders" / split
    for i in indices:
        gt = scene.image(i).to(device)
        t = time.perf_counter()
        res = render(cameras[i])
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        pred = res.colors[0]
        psnrs.append(float(psnr(pred, gt)))
        ssims.append(float(ssim(pred, gt)))
        if save_renders:
            save_image(out_dir / f"{Path(scene.image_paths[i]).stem}.png", pred.cpu())
    return {"split": split, "views": len(indices), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "ms_per_image": 1000 * float(np.mean(times)), "per_view_psnr": psnrs}
