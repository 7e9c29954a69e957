"""A run folder belongs to one run: identity, refusal to mix runs, ``--overwrite``, ``--resume`` checks,
and removal of what a killed run left half-written.

* A fit into a folder that holds another run stops with a one-line error naming ``--resume`` and
  ``--overwrite``; ``--overwrite`` removes every file of the old run first (:data:`RUN_ENTRIES`; other
  files the user keeps there are left alone); ``--resume`` refuses options that cannot continue the
  saved run (another method, data source, pose source or image scale).
* Each run has an id (``run.json: run_id``) that its checkpoints and ``metrics.json`` carry, so a
  reopened run is never served another run's model.
* Hidden temporary files and folders of an interrupted write (atomic-write temps ``.NAME.XXXX.tmp*``,
  ``.sfm-*`` SfM work folders, ``.NAME.old-*`` swap folders) are removed when the next process takes
  the folder's lock (:mod:`recon3d.runtime.run_lock`).
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path

from recon3d.io.errors import DataError

from .options import RUN_FILE, FitOptions, load_run_options

log = logging.getLogger(__name__)

#: what a fit writes into its folder (removed by --overwrite)
RUN_ENTRIES = ("run.json", "config.json", "scene.json", "progress.jsonl", "metrics.json", "eval.json",
               "checkpoints", "sugar", "renders", "sfm", "vggt", "undistorted", "video_frames", "splats.ply", "orbit.gif", "orbit.mp4", "transforms.json",
               "transforms_refined.json")
RUN_GLOBS = ("mesh.*", "mesh_*")
_STALE = re.compile(r"^\..+\.tmp(\.[^.]*)?$|^\.sfm-.+|^\..+\.old-.+|^\..+\.tmp-.+")
#: options that must match the saved run for --resume
RESUME_KEYS = ("method", "data", "images", "video", "frames", "masks", "format", "downscale", "poses", "vggt_checkpoint", "vggt_refine")


def is_run_folder(out: Path) -> bool:
    return out.is_dir() and any((out / n).exists() for n in ("run.json", "checkpoints", "metrics.json"))


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete hidden temporaries of interrupted writes anywhere under ``out``; returns what went."""
    if not out.is_dir():
        return []
    removed = []
    for p in sorted(out.rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        if p.name == ".lock" or not _STALE.match(p.name) or not p.exists():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), out)
    return removed


def remove_run(out: Path) -> None:
    """Delete every file a fit writes in ``out`` (the lock file stays: the caller holds it)."""
    for name in RUN_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for pattern in RUN_GLOBS:
        for p in out.glob(pattern):
            if p.is_file():
                p.unlink()


def _same(key: str, a, b) -> bool:
    if key in ("data", "images", "video", "masks", "vggt_checkpoint"):
        return (a is None) == (b is None) and (a is None or Path(a).resolve() == Path(b).resolve())
    if key == "downscale":
        return float(a) == float(b)
    return a == b


def prepare_run_folder(opts: FitOptions, out: Path) -> str:
    """Check ``out`` for this fit (the caller holds its lock); returns the run id to use.

    Raises DataError: ``out`` is a file; it holds another run and neither ``--resume`` nor
    ``--overwrite`` was given; ``--resume`` with options the saved run cannot continue with."""
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder; --out must name a folder")
    if opts.resume and opts.overwrite:
        raise DataError("--overwrite", "cannot be combined with --resume")
    remove_stale_temps(out)
    if not is_run_folder(out):
        return new_run_id()
    if opts.overwrite:
        log.info("--overwrite: removing the previous run in %s", out)
        remove_run(out)
        return new_run_id()
    saved = load_run_options(out) if (out / RUN_FILE).is_file() else None
    if not opts.resume:
        what = f" (a {saved.method} fit of {saved.data or saved.images or saved.video})" if saved is not None else ""
        raise DataError(out, f"already holds a run{what}; pass --resume to continue it or --overwrite to "
                             f"replace it")
    if saved is None:
        raise DataError(out / RUN_FILE, "missing, so this folder cannot be resumed; use --overwrite")
    for key in RESUME_KEYS:
        a, b = getattr(saved, key), getattr(opts, key)
        if not _same(key, a, b):
            flag = "--" + key.replace("_", "-")
            raise DataError(out / RUN_FILE, f"this run was fitted with {flag} {a}, not {b}; resume with the same "
                                            f"options or fit into a new --out (or --overwrite)")
    if opts.preset != saved.preset:
        log.warning("--resume continues the run's own config.json (preset %s); --preset %s is ignored",
                    saved.preset, opts.preset)
        opts.preset = saved.preset
    return saved.run_id or new_run_id()
