"""Evaluation of a fitted per-scene model on a split of its scene (every method shares it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from recon3d.core.metrics import psnr, ssim


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
        dict with split, views, mean psnr (dB), mean ssim, ms_per_image, per_view_psnr, and with a
        scene cut out by masks psnr_in_masks (dB over the pixels inside the masks).
    """
    from recon3d.io.images import save_image

    indices = list(scene.test_indices if split == "test" else scene.train_indices)
    if max_views is not None:
        indices = indices[:max_views]
    if not indices:
        raise ValueError(f"the scene has no {split} views to evaluate on")
    psnrs, ssims, times, masked = [], [], [], []
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
        m = scene.mask(i) if getattr(scene, "masks_as_alpha", False) else None
        if m is not None and bool(m.any()):  # cut-out by masks: also the PSNR inside the object
            mm = m.to(device)
            masked.append(float(-10 * torch.log10(((pred - gt)[mm] ** 2).mean().clamp_min(1e-10))))
        ssims.append(float(ssim(pred, gt)))
        if save_renders:
            save_image(out_dir / f"{Path(scene.image_paths[i]).stem}.png", pred.cpu())
    out = {"split": split, "views": len(indices), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
           "ms_per_image": 1000 * float(np.mean(times)), "per_view_psnr": psnrs}
    if masked:
        out["psnr_in_masks"] = float(np.mean(masked))
    return out
