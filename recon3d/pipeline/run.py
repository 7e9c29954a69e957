"""Reopen a finished (or interrupted) ``recon3d fit`` run folder: render, export, evaluate.

The run folder is the source of truth: its ``scene.json`` gives the cameras, splits, images and
normalization the fit used (no SfM or VGGT again), ``config.json`` the method config, and the
checkpoints the model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from recon3d.io.errors import DataError
from recon3d.methods.registry import get_method

from .options import FitOptions, load_run_options

log = logging.getLogger(__name__)


def load_run_scene_of(run_dir: Path, opts: FitOptions):
    """The scene a run was fitted on: its ``scene.json``; runs written before recon3d saved one are
    rebuilt from their options (SfM cache, dataset) with a notice."""
    from recon3d.io.run_scene import has_run_scene, load_run_scene

    if has_run_scene(run_dir):
        return load_run_scene(run_dir)
    from .scene_source import load_fit_scene

    log.warning("%s has no scene.json (an older run): rebuilding its scene from run.json", run_dir)
    scene, _ = load_fit_scene(opts, run_dir)
    return scene


def load_run(run_dir: str | Path, device: str = "auto"):
    """(trainer with the latest checkpoint loaded, FitOptions) of a run folder."""
    run_dir = Path(run_dir)
    opts = load_run_options(run_dir)
    spec = get_method(opts.method)
    from recon3d.runtime.checkpoint import latest_checkpoint

    if latest_checkpoint(run_dir / "checkpoints") is None:
        raise DataError(run_dir / "checkpoints", "no checkpoint found; the run never saved (rerun `recon3d fit`)")
    scene = load_run_scene_of(run_dir, opts)
    return spec.open(scene, run_dir, device=device, run_id=opts.run_id), opts


def pose_errors_against(scene, gt_scene) -> dict:
    """Camera errors of ``scene`` vs ``gt_scene`` after a similarity alignment, matched by image name.

    Returns the mean/max camera-center error as a fraction of the GT cameras' mean distance to their
    centroid, and mean/max rotation error in degrees.
    """
    from recon3d.sfm.align import pose_accuracy

    names = {Path(p).stem: i for i, p in enumerate(gt_scene.image_paths)}
    pairs = [(i, names[Path(p).stem]) for i, p in enumerate(scene.image_paths) if Path(p).stem in names]
    if len(pairs) < 3:
        raise DataError("--gt", f"only {len(pairs)} images share names with the ground truth; need 3")
    est = scene.normalization.inverse_c2w(scene.cameras.c2w[[a for a, _ in pairs]])
    gt = gt_scene.cameras.c2w[[b for _, b in pairs]]
    acc = pose_accuracy(np.asarray(est, dtype=np.float64), np.asarray(gt, dtype=np.float64))
    keep = ("mean_center_error", "max_center_error", "mean_center_error_rel", "max_center_error_rel",
            "mean_rotation_error_deg", "max_rotation_error_deg", "scale")
    return {"matched_views": len(pairs), **{k: float(acc[k]) for k in keep if k in acc}}
