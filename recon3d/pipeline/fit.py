"""``recon3d fit``: a posed dataset (or a folder of photos) in; a fitted model, renders, metrics out.

One flow for every method: the method's :class:`~recon3d.methods.registry.MethodSpec` builds its
config and trainer, and the trainer's interface (:mod:`recon3d.methods.base`) writes what it makes.

Run folder layout (``FitOptions.out``)::

    run.json             the fit options (FitOptions)
    config.json          the method config actually used (reloaded by --resume)
    scene.json           the cameras, splits, image files and normalization fitted (reopened by
                         render / export / eval / the viewer: no SfM or VGGT again)
    progress.jsonl       progress events (recon3d.runtime.progress), read by the web app
    checkpoints/         step_XXXXXXX.pt, atomic, the latest few kept
    renders/test/        held-out views rendered by the fitted model
    orbit.gif            a turntable around the capture
    splats.ply           (splat, sugar) 3DGS .ply in the capture's original units
    mesh.glb/.obj/.ply   (sugar, nerf, sdf) the mesh, capture units, Blender-ready axes: SuGaR's,
                         the NeRF density level set, or the SDF zero level set (marching cubes)
    sugar/checkpoints/   (--method sugar) regularization checkpoints
    transforms.json      nerfstudio cameras of the scene (with recon3d's normalization recorded)
    transforms_refined.json   (--pose-opt) the refined cameras
    metrics.json         PSNR/SSIM on held-out views, times, counts
    sfm/                 (--images only) prepared images, COLMAP model, SfM cache
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from recon3d.io.errors import DataError
from recon3d.methods.registry import MethodSpec, get_method, names_with
from recon3d.runtime.progress import PROGRESS_FILE, ConsoleSink, JsonlSink, Progress

from recon3d.runtime.run_lock import RunBusy, RunLock

from .options import FitOptions, default_out_dir, save_run_options
from .outputs import held_out_metrics, write_orbit, write_refined_cameras
from .run_folder import prepare_run_folder
from .scene_source import load_fit_scene

log = logging.getLogger(__name__)


def method_config(opts: FitOptions, spec: MethodSpec, out: Path):
    """The method config: the run's config.json on --resume, else --config, else the preset; the fit
    options the method takes (--max-steps, --backend, --pose-opt, --appearance, --mesh-resolution) applied.

    ``--appearance`` (None: the config's, "auto" by default) cannot change on --resume: the run's
    checkpoints hold (or lack) the per-image appearance transforms."""
    if opts.pose_opt and not spec.supports("pose_opt"):
        raise DataError("--pose-opt", f"pose refinement is available for --method "
                                      f"{' and '.join(names_with('pose_opt'))}, not {spec.name}")
    appearance = opts.appearance
    options = {"max_steps": opts.max_steps, "backend": opts.backend, "pose_opt": opts.pose_opt,
               "appearance": appearance, "mesh_resolution": opts.mesh_resolution}
    options = {k: v for k, v in options.items() if k in spec.option_fields or v not in (None, False)}
    cfg_path = out / "config.json"
    if opts.resume and cfg_path.exists():
        cfg = spec.load_config(cfg_path)
        if opts.pose_opt and not spec.get_option(cfg, "pose_opt"):
            raise DataError(cfg_path, "this run was fitted without --pose-opt; resume it without the flag, "
                                      "or fit with --pose-opt into a new --out")
        saved = spec.get_option(cfg, "appearance")
        if appearance is not None and saved is not None and appearance != saved:
            raise DataError(cfg_path, f"this run was fitted with --appearance {saved}; resume it without "
                                      f"--appearance (or with --appearance {saved}), or fit with --appearance "
                                      f"{appearance} into a new --out")
        return spec.apply_options(cfg, **options)
    if opts.config is not None:
        return spec.apply_options(spec.load_config(opts.config), **options)
    return spec.config(opts.preset, **options)


def run_fit(opts: FitOptions) -> dict:
    """Fit, evaluate and export; returns the metrics written to ``metrics.json``.

    Progress events go to ``out/progress.jsonl`` (and console bars when ``opts.progress``); a
    DataError is recorded there as an ``error`` event before it propagates."""
    spec = get_method(opts.method)
    check_sources(opts)
    out = Path(opts.out) if opts.out is not None else default_out_dir(opts)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder; --out must name a folder")
    try:
        lock = RunLock(out).acquire()
    except RunBusy as e:
        raise DataError(out, str(e)) from None
    try:
        opts.run_id = prepare_run_folder(opts, out)
        events_file = out / PROGRESS_FILE
        if not opts.resume:
            events_file.unlink(missing_ok=True)
        events = Progress(JsonlSink(events_file), ConsoleSink() if opts.progress else None)
        try:
            metrics = _fit(opts, spec, out, events)
            events.emit("done", message=str(out / "metrics.json"),
                        **{k: metrics[k] for k in ("test_psnr", "test_ssim", "steps") if k in metrics})
            return metrics
        except DataError as e:
            events.emit("error", message=str(e))
            raise
        except KeyboardInterrupt:
            events.emit("error", message="interrupted")
            raise
        finally:
            events.close()
    finally:
        lock.release()


def check_sources(opts: FitOptions) -> None:
    """The photo folder / dataset / video exists, a video is readable, complete and has 3+ frames
    (checked before anything is written)."""
    if sum(x is not None for x in (opts.data, opts.images, opts.video)) != 1:
        raise DataError("recon3d fit", "pass exactly one of --data (posed dataset), --images (photos) or "
                                       "--video (a video file)")
    if opts.frames is not None and opts.video is None:
        raise DataError("--frames", "goes with --video")
    if opts.resume and opts.overwrite:
        raise DataError("--overwrite", "cannot be combined with --resume")
    src = Path(next(x for x in (opts.data, opts.images, opts.video) if x is not None))
    if not src.exists():
        raise DataError(src, "no such file or folder")
    if opts.video is not None:
        from recon3d.io.video import probe_video

        probe_video(opts.video)
    if opts.masks is not None and not Path(opts.masks).is_dir():
        raise DataError(opts.masks, "--masks: no such folder")
    for flag, p in (("--config", opts.config), ("--vggt-checkpoint", opts.vggt_checkpoint)):
        if p is not None and not Path(p).is_file():
            raise DataError(p, f"{flag}: no such file")


def _fit(opts: FitOptions, spec: MethodSpec, out: Path, events: Progress) -> dict:
    from recon3d.io.atomic import atomic_write_json
    from recon3d.io.nerfstudio import write_nerfstudio_transforms
    from recon3d.io.run_scene import save_run_scene

    t_start = time.perf_counter()
    scene, pose_info = load_fit_scene(opts, out, events)
    if scene.cameras.is_distorted and not spec.supports("distortion"):
        from recon3d.sfm.undistort import undistort_scene

        events.stage("undistort", "undistorting the images to pinhole cameras (pycolmap)")
        scene, n = undistort_scene(scene, out / "undistorted")
        pose_info["undistorted_views"] = n
    cfg = method_config(opts, spec, out)
    cfg.save(out / "config.json")
    save_run_options(opts, out)
    save_run_scene(scene, out)
    write_nerfstudio_transforms(scene, out / "transforms.json")

    if spec.supports("splats"):  # the rasterizer backend, checked before any training (one line if unusable)
        from recon3d.core.gaussians import GsplatUnavailableError, check_backend
        from recon3d.runtime.device import resolve_device

        try:
            check_backend(spec.get_option(cfg, "backend") or "auto", resolve_device(opts.device))
        except GsplatUnavailableError as e:
            raise DataError("--backend", str(e)) from None
    trainer = spec.build(scene, cfg, out, device=opts.device)
    trainer.run_id = opts.run_id
    log.info("fitting %s with %s: %d train / %d test views, %d steps, device %s", scene.name, spec.name,
             len(scene.train_indices), len(scene.test_indices), spec.get_option(cfg, "max_steps"), trainer.device)
    events.stage("fit", f"fitting {spec.name}")
    summary = trainer.fit(resume=opts.resume, progress=events)
    metrics: dict = {"method": spec.name, "run_id": opts.run_id, "preset": opts.preset, "source": str(opts.data or opts.images or opts.video),
                     **pose_info, "device": str(trainer.device), "steps": summary["steps"],
                     "train_seconds": round(summary["train_seconds"], 2), **trainer.model_facts(),
                     "train_views": len(scene.train_indices), "test_views": len(scene.test_indices)}
    metrics.update({k: summary[k] for k in ("gaussians", "sugar_seconds", "sugar_gaussians") if k in summary})
    events.stage("evaluate", "held-out views")
    metrics.update(held_out_metrics(trainer, scene))
    metrics.update(write_refined_cameras(trainer, scene, out))
    metrics.update(trainer.write_model(out))
    if opts.orbit_frames > 0:
        events.stage("orbit", f"{opts.orbit_frames}-frame turntable")
        t_orbit = time.perf_counter()
        metrics["orbit"] = str(write_orbit(trainer, out / "orbit.gif", opts.orbit_frames,
                                           max_size=spec.orbit_max_size))
        metrics["orbit_seconds"] = round(time.perf_counter() - t_orbit, 2)
    if spec.supports("mesh"):
        events.stage("mesh", "extracting the mesh")
    metrics.update(trainer.write_mesh(out))
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 2)
    atomic_write_json(out / "metrics.json", metrics)
    metrics["out"] = str(out)
    return metrics
