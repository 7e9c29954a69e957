"""Run-folder outputs shared by ``fit`` and ``render``: the orbit GIF (and MP4), camera-path videos and
the test metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_orbit(trainer, path: Path, frames: int, max_size: int | None = None, mp4: bool = True) -> Path:
    """Render a turntable of the fitted model to an animated GIF (atomic write).

    ``max_size``: downscale the frames so their longer side is at most this many pixels (ray-marched
    methods render a few pixels per millisecond on a CPU). ``mp4``: also encode the same frames as an
    H.264 MP4 next to the GIF (``orbit.mp4``, 24 fps, what the web app's viewer shows; encoding costs
    milliseconds, nothing is rendered twice); when that fails the GIF is kept and a warning logged."""
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
    if mp4:
        _write_orbit_mp4(imgs, Path(path).with_suffix(".mp4"))
    return path


def _write_orbit_mp4(imgs, path: Path) -> None:
    from recon3d.io.video_writer import write_mp4

    try:
        write_mp4(path, imgs, fps=24)
    except Exception as e:  # noqa: BLE001  (the GIF is the output that must exist)
        log.warning("no %s (%s: %s); the GIF is written", path.name, type(e).__name__, e)
        path.unlink(missing_ok=True)  # never leave an older video beside the new GIF


#: the long side of path videos when ``--size`` is not given: the training images', at most this
DEFAULT_VIDEO_SIZE = 1080


def path_cameras(trainer, kind: str, frames: int, size: int | None = None):
    """The cameras of a ``kind`` path (``orbit``, ``spiral``, ``interpolate``) through the run's training
    views (as fitted: pose-refined runs use their refined poses), ``frames`` of them, their long side
    ``size`` pixels (default: the training images' long side, at most :data:`DEFAULT_VIDEO_SIZE`),
    even sizes (H.264), pinhole, OpenCV c2w."""
    from recon3d.core.camera_paths import (PATHS, forwardness, interpolate_path, orbit_path, resize_path,
                                           spiral_path)

    scene = trainer.scene
    train = list(scene.train_indices)
    cams = trainer.render_cameras().to("cpu")[train]
    if kind == "orbit":
        path_cams = orbit_path(cams, num_frames=frames)
    elif kind == "spiral":
        if forwardness(cams) < 0.5:
            log.warning("the cameras look in many directions (a capture around the object): the spiral "
                        "circles the mean camera, for forward-facing captures; --path orbit suits this one")
        near_far = scene.near_far[train] if scene.near_far is not None else None
        path_cams = spiral_path(cams, num_frames=frames, near_far=near_far, points=scene.points)
    elif kind == "interpolate":
        path_cams = interpolate_path(cams, num_frames=frames)
    else:
        raise ValueError(f"unknown camera path {kind!r}; expected one of {', '.join(PATHS)}")
    longest = int(max(int(path_cams.width[0]), int(path_cams.height[0])))
    return resize_path(path_cams, int(size) if size else min(longest, DEFAULT_VIDEO_SIZE))


def write_path_video(trainer, path: Path, kind: str = "orbit", seconds: float = 10.0, fps: float = 30.0,
                     size: int | None = None, progress: bool = True) -> dict:
    """Render the fitted model along a camera path (:func:`path_cameras`) into an H.264 MP4 (atomic
    write; frames streamed to the encoder, never all in memory) with a progress bar; returns what was
    written (path, frames, width, height, fps, seconds)."""
    from tqdm.auto import tqdm

    from recon3d.io.video_writer import Mp4Writer

    frames = max(2, round(float(seconds) * float(fps)))
    cams = path_cameras(trainer, kind, frames, size)
    w, h = int(cams.width[0]), int(cams.height[0])
    log.info("rendering a %d-frame %s path at %dx%d, %g fps", frames, kind, w, h, fps)
    with Mp4Writer(path, fps=fps) as video, tqdm(total=frames, desc=f"render {kind}", unit="frame",
                                                 disable=not progress, dynamic_ncols=True) as bar:
        for i in range(frames):
            video.write(trainer.render(cams[i]).colors[0])
            bar.update(1)
    return {"path": str(path), "frames": frames, "width": w, "height": h, "fps": float(fps),
            "seconds": frames / float(fps), "camera_path": kind}


def held_out_metrics(trainer, scene) -> dict:
    """Test-split PSNR/SSIM/render time of a fitted trainer for metrics.json (a note without test views)."""
    if not scene.test_indices:
        return {"test_note": "the scene has no held-out views; no test metrics"}
    ev = trainer.evaluate("test")
    log.info("test PSNR %.2f dB, SSIM %.4f, %.1f ms/image (%d views)", ev["psnr"], ev["ssim"],
             ev["ms_per_image"], ev["views"])
    extra = {k: v for k, v in ev.items() if k.startswith("test_pose_alignment")}
    extra.update({f"test_{k}": ev[k] for k in ("psnr_uncompensated", "ssim_uncompensated", "appearance_eval") if k in ev})
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
