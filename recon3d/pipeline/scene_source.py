"""The scene a fit starts from: a posed dataset (``--data``) or photos posed by SfM or VGGT
(``--images``, or the frames picked from ``--video``), normalized into the unit region recon3d's methods work in."""

from __future__ import annotations

import logging
from pathlib import Path

from recon3d.io.errors import DataError
from recon3d.runtime.progress import Progress

from .options import FitOptions

log = logging.getLogger(__name__)


def load_fit_scene(opts: FitOptions, out: Path, events: Progress | None = None):
    """The normalized scene to fit, plus a dict describing where its poses (and background) came from."""
    scene, info = _load_posed_scene(opts, out, events or Progress())
    if scene.has_masks and (opts.masks is not None or scene.source_format in ("llff", "colmap")):
        # masks of object captures (turntables, cut-outs) cut the object out for every method
        from dataclasses import replace

        scene = replace(scene, masks_as_alpha=True)
        info["masks"] = sum(p is not None for p in scene.mask_paths)
    scene, bg_info = with_background(scene, opts.background)
    return scene, {**info, **bg_info}


def with_background(scene, choice: str = "auto"):
    """The scene with the background its fit composites on, and metrics entries saying which.

    Images with alpha keep the colour their reader composited them on. Opaque photos get ``choice``:
    ``auto`` estimates a plain backdrop colour from the image borders
    (:func:`recon3d.io.plain_background.estimate_plain_background`; none for photos of a scene),
    ``none`` keeps none, else the named or ``R,G,B`` colour."""
    from dataclasses import replace

    if scene.masks_as_alpha:  # cut out by masks: composited on the chosen colour (white by default)
        from recon3d.core.background import background_color

        spec = choice if choice not in ("auto", "none") else "white"
        color = background_color([float(x) for x in spec.split(",")] if "," in spec else spec)
        return replace(scene, background=color), {"background": [round(float(x), 4) for x in color],
                                                  "background_source": "masks (the object cut out)"}
    if scene.background is not None:
        return scene, {"background": [round(float(x), 4) for x in scene.background], "background_source": "alpha"}
    if choice == "none":
        return scene, {"background": None, "background_source": "none (--background none)"}
    if choice == "auto":
        from recon3d.io.plain_background import estimate_plain_background

        est = estimate_plain_background(scene)
        log.info("%s", est.describe())
        if est.color is None:
            return scene, {"background": None, "background_source": "none (no plain backdrop at the image borders)"}
        color, source = est.color, "estimated from the image borders"
    else:
        from recon3d.core.background import background_color

        color = background_color([float(x) for x in choice.split(",")] if "," in choice else choice)
        source = "given (--background)"
    return replace(scene, background=color), {"background": [round(float(x), 4) for x in color],
                                              "background_source": source}


def _load_posed_scene(opts: FitOptions, out: Path, events: Progress):
    """The normalized scene to fit, plus a dict describing where its poses came from."""
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene

    if sum(x is not None for x in (opts.data, opts.images, opts.video)) != 1:
        raise DataError("recon3d fit", "pass exactly one of --data (posed dataset), --images (photos) or "
                                       "--video (a video file)")
    if opts.vggt_checkpoint is not None and (opts.poses != "vggt" or opts.data is not None):
        raise DataError(opts.vggt_checkpoint, "--vggt-checkpoint goes with --images and --poses vggt")
    if opts.vggt_refine and (opts.poses != "vggt" or opts.data is not None):
        raise DataError("--vggt-refine", "goes with --images and --poses vggt")
    if opts.masks is not None and (opts.images is None or opts.poses != "colmap"):
        raise DataError(opts.masks, "--masks goes with --images (SfM poses); datasets read masks/ beside images/")
    if opts.data is not None:
        events.stage("load", f"reading {opts.data}")
        scene = load_scene(opts.data, format=opts.format, downscale=opts.downscale)
        return normalize_scene(scene), {"poses": f"dataset ({scene.source_format})"}
    photos, source = (opts.images, {}) if opts.video is None else _video_frames(opts, out, events)
    if opts.poses == "vggt":
        from recon3d.runtime.device import resolve_device
        from recon3d.sfm.vggt_poses import scene_from_images_vggt

        events.stage("poses", "camera poses by the VGGT model")
        scene, info = scene_from_images_vggt(photos, out / "vggt", checkpoint=opts.vggt_checkpoint,
                                             device=str(resolve_device(opts.device)), refine=opts.vggt_refine)
        if opts.downscale != 1:
            scene = scene.with_downscale(opts.downscale)
        scene = _named(scene, opts)
        return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), {**source, **info}
    if opts.poses != "colmap":
        raise DataError("--poses", f"unknown pose source {opts.poses!r}; available: colmap, vggt")
    from recon3d.sfm import scene_from_images

    events.stage("sfm", "structure from motion (pycolmap)")
    scene, sfm = scene_from_images(photos, out / "sfm", matcher=opts.matcher, masks_dir=opts.masks)
    if opts.downscale != 1:
        scene = scene.with_downscale(opts.downscale)
    info = {"poses": "pycolmap structure-from-motion", "sfm_images": sfm.num_images,
            "sfm_registered": sfm.num_registered, "sfm_points": sfm.num_points,
            "sfm_mean_reprojection_error_px": sfm.mean_reprojection_error, "sfm_seconds": sfm.seconds}
    log.info("SfM registered %d of %d images, mean reprojection error %.3f px",
             sfm.num_registered, sfm.num_images, sfm.mean_reprojection_error)
    events.emit("log", "sfm", message=f"registered {sfm.num_registered} of {sfm.num_images} images")
    scene = _named(scene, opts)
    return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), {**source, **info}


def _video_frames(opts: FitOptions, out: Path, events: Progress) -> tuple[Path, dict]:
    """``--video``: its frames in ``out/video_frames`` (extracted, or reused from an earlier run with the
    same file and --frames), plus metrics entries saying where they came from."""
    from recon3d.io.video import DEFAULT_FRAMES, FRAMES_DIR, extract_video_frames

    n = opts.frames or DEFAULT_FRAMES
    events.stage("video", f"picking {n} sharp frames from {Path(opts.video).name}")
    frames = extract_video_frames(opts.video, out / FRAMES_DIR, frames=n)
    what = "reused" if frames.reused else "kept"
    message = (f"{what} {frames.kept} of {frames.decoded} frames (mean sharpness {frames.mean_sharpness:.1f})")
    log.info("video %s: %s", opts.video, message)
    events.emit("log", "video", message=message)
    return frames.folder, {"source": str(opts.video), **frames.info()}


def _named(scene, opts: FitOptions):
    """A video's frames make a scene named after the video (not after its frame folder)."""
    from dataclasses import replace

    return scene if opts.video is None else replace(scene, name=Path(opts.video).stem)
