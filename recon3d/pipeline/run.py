"""Reopen a finished (or interrupted) ``recon3d fit`` run folder: render, export, evaluate."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from recon3d.io.errors import DataError

from .fit import FIELD_METHODS, FitOptions, field_method, load_fit_scene

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def save_run_options(opts: FitOptions, out: Path) -> None:
    from recon3d.io.atomic import atomic_write_json

    d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    atomic_write_json(out / RUN_FILE, d)


def load_run_options(run_dir: Path) -> FitOptions:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DataError(run_dir, f"not a recon3d run folder (no {RUN_FILE}); make one with `recon3d fit`")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    names = {f.name for f in fields(FitOptions)}
    opts = FitOptions(**{k: v for k, v in d.items() if k in names})
    for k in ("data", "images", "out", "config"):
        if getattr(opts, k) is not None:
            setattr(opts, k, Path(getattr(opts, k)))
    return opts


def load_run(run_dir: str | Path, device: str = "auto"):
    """(trainer with the latest checkpoint loaded, FitOptions) of a run folder."""
    from recon3d.methods.checkpoint import latest_checkpoint
    from recon3d.methods.splat import SplatTrainer
    from recon3d.methods.splat.config import SplatConfig

    run_dir = Path(run_dir)
    opts = load_run_options(run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise DataError(run_dir / "checkpoints", "no checkpoint found; the run never saved (rerun `recon3d fit`)")
    scene, _ = load_fit_scene(opts, run_dir)
    if opts.method in FIELD_METHODS:
        return _load_field_run(run_dir, opts, scene, ckpt, device), opts
    trainer = SplatTrainer(scene, SplatConfig.load(run_dir / "config.json"), run_dir, device=device)
    trainer.load(ckpt)
    sugar_ckpt = latest_checkpoint(run_dir / "sugar" / "checkpoints")
    if opts.method == "sugar" and sugar_ckpt is not None:
        from recon3d.methods.sugar import SugarTrainer
        from recon3d.methods.sugar import preset as sugar_preset

        trainer = SugarTrainer(trainer, sugar_preset(opts.preset))
        trainer.load(sugar_ckpt)
        ckpt = sugar_ckpt
    log.info("loaded %s (step %d, %d Gaussians)", ckpt, trainer.step, len(trainer.model))
    return trainer, opts


def _load_field_run(run_dir: Path, opts: FitOptions, scene, ckpt: Path, device: str):
    """A nerf/sdf trainer rebuilt from the run's config.json, with checkpoint ``ckpt`` loaded."""
    trainer_cls, config_cls, _ = field_method(opts.method)
    trainer = trainer_cls(scene, config_cls.load(run_dir / "config.json"), run_dir, device=device)
    try:
        trainer.load(ckpt)
    except (ValueError, KeyError, RuntimeError) as e:  # foreign, corrupt or mismatched checkpoint
        raise DataError(ckpt, f"cannot load this {opts.method} checkpoint: {str(e).splitlines()[0][:200]}") from e
    log.info("loaded %s (%s, step %d)", ckpt, opts.method, trainer.step)
    return trainer


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

