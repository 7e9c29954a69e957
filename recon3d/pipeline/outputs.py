"""Run-folder outputs shared by ``fit`` and ``render``: the orbit GIF and the test metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_orbit(trainer, path: Path, frames: int, max_size: int | None = None) -> Path:
    """Render a turntable of the fitted model to an animated GIF (atomic write).

    ``max_size``: downscale the frames so their longer side is at most this many pixels (ray-marched
    methods render a few pixels per millisecond on a CPU)."""
    import imageio.v2 as imageio

    from recon3d.core.camera_paths import orbit_path
    from recon3d.io.atomic import atomic_path

    train = trainer.scene.cameras[list(trainer.scene.train_indices)]
    path_cams = orbit_path(train, num_frames=frames)
    longest = int(max(int(path_cams.width[0]), int(path_cams.height[0])))
    if max_size and longest > max_size:
        path_cams = path_cams.rescale(max_size / longest)
    imgs = []
    for i in range(len(path_cams)):
        rgb = trainer.render(path_cams[i]).colors[0]
        imgs.append((rgb.cpu().numpy() * 255 + 0.5).astype(np.uint8))
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, imgs, format="GIF", duration=1000 / 24, loop=0)
    return path


def held_out_metrics(trainer, scene) -> dict:
    """Test-split PSNR/SSIM/render time of a fitted trainer for metrics.json (a note without test views)."""
    if not scene.test_indices:
        return {"test_note": "the scene has no held-out views; no test metrics"}
    ev = trainer.evaluate("test")
    log.info("test PSNR %.2f dB, SSIM %.4f, %.1f ms/image (%d views)", ev["psnr"], ev["ssim"],
             ev["ms_per_image"], ev["views"])
    extra = {k: v for k, v in ev.items() if k.startswith("test_pose_alignment")}
    if "psnr_in_masks" in ev:
        extra["test_psnr_in_masks"] = ev["psnr_in_masks"]
        log.info("test PSNR inside the masks %.2f dB", ev["psnr_in_masks"])
    return {"test_psnr": ev["psnr"], "test_ssim": ev["ssim"], "render_ms_per_image": ev["ms_per_image"],
            "test_per_view_psnr": ev["per_view_psnr"], **extra}


def write_refined_cameras(trainer, scene, out: Path) -> dict:
    """With pose refinement: the refined cameras (training views refined, test views aligned at
    evaluation) as ``transforms_refined.json``, and the sizes of the corrections for metrics.json."""
    from dataclasses import replace

    from recon3d.io.nerfstudio import write_nerfstudio_transforms

    refined = trainer.pose_refinement()
    if refined is None:
        return {}
    cams, summary = refined
    path = write_nerfstudio_transforms(replace(scene, cameras=cams.to("cpu")), out / "transforms_refined.json")
    log.info("refined cameras: %s", path)
    return {**summary, "transforms_refined": str(path)}
