"""``recon3d demo``: start the web app (also ``python -m apps`` with the same options).

    recon3d demo [--host 127.0.0.1] [--port 7860] [--workdir outputs/app] [--runs-root outputs]
                 [--share false] [--device cpu] [--fast] [--max-jobs 20] [--max-fit-runs 10] [--max-job-age 0]
                 [--checkpoints DIR]

Gradio is imported only inside the handler, so ``recon3d --help`` stays fast and works without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from recon3d.runtime.device import check_device
from recon3d.runtime.options import between, checked


def _bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def _hours(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of hours >= 0, got {text!r}")
    return v


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=checked(int, between(1, 65535)), default=7860, help="port (default 7860)")
    p.add_argument("--workdir", type=Path, default=Path("outputs/app"),
                   help="the app's working folder: uploads, job outputs, fit runs (default outputs/app)")
    p.add_argument("--runs-root", type=Path, action="append", default=None,
                   help="folder whose run folders the Viewer lists (repeatable; default outputs)")
    p.add_argument("--checkpoints", type=Path, action="append", default=None, metavar="DIR",
                   help="folder holding published checkpoints (e.g. OpenLRM downloads: model.safetensors + "
                        "config.json, in DIR or its subfolders), offered beside the shipped models (repeatable; "
                        "default RECON3D_CHECKPOINTS)")
    p.add_argument("--share", type=_bool, default=False, metavar="true|false",
                   help="create a public gradio.live link (default false; needs internet)")
    p.add_argument("--device", default=None, type=checked(str, check_device),
                   help="device for the models and fits: auto (default), cpu or cuda")
    p.add_argument("--fast", action="store_true",
                   help="coarse meshes and few turntable frames (as RECON3D_APP_FAST=1; used by the browser tests)")
    p.add_argument("--max-jobs", type=_count, default=None, metavar="N",
                   help="image-to-3D job folders kept in WORKDIR/jobs, the oldest removed first (default 20, "
                        "or RECON3D_APP_MAX_JOBS; 0: no limit)")
    p.add_argument("--max-fit-runs", type=_count, default=None, metavar="N",
                   help="fit runs kept in WORKDIR/runs (default 10, or RECON3D_APP_MAX_FIT_RUNS; 0: no limit)")
    p.add_argument("--max-job-age", type=_hours, default=None, metavar="HOURS",
                   help="also remove job folders and fit runs older than this (default 0: no age limit, "
                        "or RECON3D_APP_MAX_JOB_AGE_H)")


def cmd_demo(args) -> int:
    from apps.settings import AppSettings

    try:
        settings = AppSettings.from_env(workdir=str(args.workdir), device=args.device,
                                        fast=True if args.fast else None,
                                        runs_roots=[str(r) for r in args.runs_root] if args.runs_root else None,
                                        max_jobs=args.max_jobs, max_fit_runs=args.max_fit_runs,
                                        max_job_age_h=args.max_job_age,
                                        checkpoint_dirs=[str(c) for c in args.checkpoints] if args.checkpoints else None)
    except ValueError as e:  # a RECON3D_APP_* variable that is not a number
        print(f"recon3d demo: error: {e}", file=sys.stderr)
        return 2
    settings = settings.resolved()
    # Gradio reads these when it is imported: its upload cache goes into the work folder, no telemetry.
    os.environ["GRADIO_TEMP_DIR"] = str(settings.upload_dir)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        from apps.ui import launch
    except ImportError as e:
        print(f"recon3d demo: error: the web app needs gradio ({e}); pip install 'gradio>=6,<7'", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("work folder %s; viewer roots %s%s", settings.workdir,
                                     ", ".join(settings.runs_roots), "; fast mode" if settings.fast else "")
    launch(settings, host=args.host, port=args.port, share=args.share)
    return 0


def add_commands(sub) -> None:
    """The `recon3d demo` command (entry point `recon3d.commands`, see pyproject.toml)."""
    s = sub.add_parser("demo", help="start the web app (image to 3D, fit from photos, viewer)")
    add_demo_args(s)
    s.set_defaults(fn=cmd_demo)


def main(argv: list[str] | None = None) -> int:
    """``python -m apps [options]``: the same as ``recon3d demo [options]``."""
    from recon3d.cli import main as recon3d_main

    return recon3d_main(["demo", *(sys.argv[1:] if argv is None else argv)])
