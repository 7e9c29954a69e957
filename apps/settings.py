"""Configuration of the web app: where it may read and write, how big uploads may be, how fast jobs run.

Every file the app writes lives under ``workdir``::

    workdir/
      gradio/            Gradio's upload cache (GRADIO_TEMP_DIR points here)
      jobs/<job id>/     one folder per image-to-3D request: inputs/ (sanitized copies), out/
      runs/<job id>/     one folder per fit request: photos/ (sanitized copies), run/ (the fit run folder)

Both folders are bounded (:mod:`apps.jobs`): at most ``max_jobs`` image-to-3D jobs and ``max_fit_runs``
fit runs are kept (and none older than ``max_job_age_h`` hours when that is set); older ones are
removed, oldest first, except those a live session is still running or showing.

The viewer reads run folders only under ``runs_roots`` (``workdir/runs`` first, then ``outputs/`` by
default); nothing else on disk is reachable through the page.

Environment: ``RECON3D_APP_FAST=1`` (used by the browser tests) lowers the mesh resolution and the
number of turntable frames and novel views so an image-to-3D request takes seconds on a CPU;
``RECON3D_APP_DEVICE`` picks the device; ``RECON3D_APP_DENSITY_THRESHOLD`` overrides the mesh iso-level;
``RECON3D_APP_MAX_JOBS``, ``RECON3D_APP_MAX_FIT_RUNS`` and ``RECON3D_APP_MAX_JOB_AGE_H`` bound the job
folders; ``RECON3D_CHECKPOINTS`` (folders separated by ``os.pathsep``, as ``recon3d demo --checkpoints``)
names where published checkpoints are looked for (OpenLRM folders: ``model.safetensors`` +
``config.json``), offered beside the shipped models. The image-to-3D defaults (mesh resolution, turntable frames, views, iso-level, device) are
``recon3d predict``'s (:data:`recon3d.feedforward.options.DEFAULTS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from recon3d.feedforward.options import DEFAULTS as PREDICT
from recon3d.io.images import MAX_IMAGE_PIXELS
from recon3d.runtime.config import ConfigIO

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_number(name: str, kind=int):
    """``$name`` as a number >= 0 (None when unset or empty); ValueError naming the variable otherwise."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        v = kind(text)
    except ValueError:
        v = -1
    if not v >= 0:
        raise ValueError(f"{name} must be a {'whole ' if kind is int else ''}number >= 0, got {text!r}")
    return v


@dataclass
class AppSettings(ConfigIO):
    """What the app may touch and how much work one request may cause.

    Paths are resolved (absolute) by :meth:`resolved`; the app only ever uses resolved settings.
    """

    workdir: str = "outputs/app"
    #: folders whose run folders the viewer lists (``workdir/runs`` is always added first)
    runs_roots: list[str] = field(default_factory=lambda: ["outputs"])
    #: photos bundled as examples for image-to-3D (PNG/JPEG files in these folders)
    example_dirs: list[str] = field(default_factory=lambda: [str(REPO_ROOT / "data" / "examples")])
    #: folders searched for published checkpoints (e.g. OpenLRM downloads), offered beside the shipped models
    checkpoint_dirs: list[str] = field(default_factory=list)
    #: the bundled photo set offered by the fit tab
    example_scene: str = str(REPO_ROOT / "data" / "sample_scene" / "images")
    #: device for image-to-3D and fits: auto (CUDA when available), cpu or cuda
    device: str = PREDICT.device
    #: a side longer than this (pixels) is downscaled with a notice
    max_side: int = 1024
    #: images with more pixels than this are refused outright (decompression bombs)
    max_pixels: int = MAX_IMAGE_PIXELS
    #: per-file upload size limit, megabytes (also passed to Gradio's launch)
    max_upload_mb: int = 50
    #: fit: most photos accepted (uploads plus zip members) and fewest needed
    max_photos: int = 200
    min_photos: int = 3
    #: zip: most members and most uncompressed bytes extracted
    max_zip_members: int = 500
    max_zip_bytes: int = 500_000_000
    #: fit defaults shown in the page
    fit_preset: str = "quick"
    fit_steps: int = 300
    fit_max_steps: int = 30_000
    fit_threads: int = 1
    #: image-to-3D knobs, ``recon3d predict``'s defaults (fast mode lowers them); orbit_frames is also
    #: the fits' turntable length
    mesh_resolution: int = PREDICT.mesh_resolution
    orbit_frames: int = PREDICT.orbit_frames  # a multiple of num_views: the views are taken from the orbit frames
    num_views: int = PREDICT.num_views
    #: UV texture size baked when the user ticks "UV texture" (xatlas unwrap; ~25 s for a detailed mesh)
    texture_size: int = 1024
    #: iso-level of the mesh in 1/world units (None: the model's own ``mesh_density_threshold``)
    density_threshold: Optional[float] = PREDICT.density_threshold
    fast: bool = False
    #: wall-clock limit of one fit subprocess, seconds
    fit_timeout_s: int = 3 * 3600
    #: most image-to-3D job folders kept in ``workdir/jobs`` (0: no limit); older ones are removed
    max_jobs: int = 20
    #: most fit run folders kept in ``workdir/runs`` (0: no limit)
    max_fit_runs: int = 10
    #: job folders and fit runs older than this many hours are removed too (0: no age limit)
    max_job_age_h: float = 0.0

    @classmethod
    def from_env(cls, **overrides) -> "AppSettings":
        """Defaults, then the ``RECON3D_APP_*`` variables (see the module docstring), then ``overrides``
        (None ignored). ValueError for a variable that is not a number where one is needed."""
        s = cls()
        if _env_flag("RECON3D_APP_FAST"):
            s.fast = True
        if os.environ.get("RECON3D_APP_DEVICE"):
            s.device = os.environ["RECON3D_APP_DEVICE"]
        if os.environ.get("RECON3D_CHECKPOINTS"):
            s.checkpoint_dirs = [p for p in os.environ["RECON3D_CHECKPOINTS"].split(os.pathsep) if p.strip()]
        if os.environ.get("RECON3D_APP_DENSITY_THRESHOLD"):
            s.density_threshold = float(os.environ["RECON3D_APP_DENSITY_THRESHOLD"])
        for key, name, kind in (("max_jobs", "RECON3D_APP_MAX_JOBS", int),
                                ("max_fit_runs", "RECON3D_APP_MAX_FIT_RUNS", int),
                                ("max_job_age_h", "RECON3D_APP_MAX_JOB_AGE_H", float)):
            if (v := _env_number(name, kind)) is not None:
                setattr(s, key, v)
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        if s.fast:
            s.mesh_resolution = min(s.mesh_resolution, 40)
            s.orbit_frames = min(s.orbit_frames, 8)
            s.num_views = min(s.num_views, 4)
            s.fit_steps = min(s.fit_steps, 100)
        return s

    def resolved(self) -> "AppSettings":
        """A copy with absolute paths, ``workdir/runs`` prepended to ``runs_roots``, folders created."""
        d = self.to_dict()
        work = Path(d["workdir"]).expanduser().resolve()
        d["workdir"] = str(work)
        roots = [str(work / "runs")] + [str(Path(r).expanduser().resolve()) for r in d["runs_roots"]]
        d["runs_roots"] = list(dict.fromkeys(roots))  # keep order, drop duplicates
        d["example_dirs"] = [str(Path(p).expanduser().resolve()) for p in d["example_dirs"]]
        d["example_scene"] = str(Path(d["example_scene"]).expanduser().resolve())
        d["checkpoint_dirs"] = [str(Path(p).expanduser().resolve()) for p in d["checkpoint_dirs"]]
        out = type(self).from_dict(d)
        for sub in ("gradio", "jobs", "runs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        return out

    # convenience paths
    @property
    def work(self) -> Path:
        return Path(self.workdir)

    @property
    def upload_dir(self) -> Path:
        return self.work / "gradio"

    @property
    def jobs_dir(self) -> Path:
        return self.work / "jobs"

    @property
    def fit_runs_dir(self) -> Path:
        return self.work / "runs"

    def readable_roots(self) -> list[Path]:
        """Every folder the app may read from (the work folder, runs roots, example folders)."""
        roots = [self.work, *map(Path, self.runs_roots), *map(Path, self.example_dirs), Path(self.example_scene)]
        return list(dict.fromkeys(roots))
