"""The scene a fit starts from: a posed dataset (``--data``) or photos posed by SfM or VGGT
(``--images``), normalized into the unit region recon3d's methods work in."""

from __future__ import annotations

import logging
from pathlib import Path

from recon3d.io.errors import DataError
from recon3d.runtime.progress import Progress

from .options import FitOptions

log = logging.getLogger(__name__)


def load_fit_scene(opts: FitOptions, out: Path, events: Progress | None = None):
    """The normalized scene to fit, plus a dict describing where its poses came from."""
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene

    events = events or Progress()
    if (opts.data is None) == (opts.images is None):
        raise DataError("recon3d fit", "pass exactly one of --data (posed dataset) or --images (photos)")
    if opts.vggt_checkpoint is not None and (opts.poses != "vggt" or opts.data is not None):
        raise DataError(opts.vggt_checkpoint, "--vggt-checkpoint goes with --images and --poses vggt")
    if opts.vggt_refine and (opts.poses != "vggt" or opts.data is not None):
        raise DataError("--vggt-refine", "goes with --images and --poses vggt")
    if opts.data is not None:
        events.stage("load", f"reading {opts.data}")
        scene = load_scene(opts.data, format=opts.format, downscale=opts.downscale)
        return normalize_scene(scene), {"poses": f"dataset ({scene.source_format})"}
    if opts.poses == "vggt":
        from recon3d.runtime.device import resolve_device
        from recon3d.sfm.vggt_poses import scene_from_images_vggt

        events.stage("poses", "camera poses by the VGGT model")
        scene, info = scene_from_images_vggt(opts.images, out / "vggt", checkpoint=opts.vggt_checkpoint,
                                             device=str(resolve_device(opts.device)), refine=opts.vggt_refine)
        if opts.downscale != 1:
            scene = scene.with_downscale(opts.downscale)
        return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), info
    if opts.poses != "colmap":
        raise DataError("--poses", f"unknown pose source {opts.poses!r}; available: colmap, vggt")
    from recon3d.sfm import scene_from_images

    events.stage("sfm", "structure from motion (pycolmap)")
    scene, sfm = scene_from_images(opts.images, out / "sfm", matcher=opts.matcher)
    if opts.downscale != 1:
        scene = scene.with_downscale(opts.downscale)
    info = {"poses": "pycolmap structure-from-motion", "sfm_images": sfm.num_images,
            "sfm_registered": sfm.num_registered, "sfm_points": sfm.num_points,
            "sfm_mean_reprojection_error_px": sfm.mean_reprojection_error, "sfm_seconds": sfm.seconds}
    log.info("SfM registered %d of %d images, mean reprojection error %.3f px",
             sfm.num_registered, sfm.num_images, sfm.mean_reprojection_error)
    events.emit("log", "sfm", message=f"registered {sfm.num_registered} of {sfm.num_images} images")
    return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), info
