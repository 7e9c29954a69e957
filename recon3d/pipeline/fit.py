"""``recon3d fit``: a posed dataset (or a folder of photos) in; a fitted model, renders, metrics out.

Run folder layout (``FitOptions.out``)::

    config.json          the method config actually used (reloaded by --resume)
    checkpoints/         step_XXXXXXX.pt, atomic, the latest few kept
    renders/test/        held-out views rendered by the fitted model
    orbit.gif            a turntable around the capture
    splats.ply           (splat, sugar) 3DGS .ply in the capture's original units
    mesh.glb/.obj/.ply   (sugar, nerf, sdf) the mesh, capture units, Blender-ready axes: SuGaR's,
                         the NeRF density level set, or the SDF zero level set (marching cubes)
    sugar/checkpoints/   (--method sugar) regularization checkpoints
    transforms.json      nerfstudio cameras of the scene (with recon3d's normalization recorded)
    metrics.json         PSNR/SSIM on held-out views, times, counts
    sfm/                 (--images only) prepared images, COLMAP model, SfM cache
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.io.errors import DataError

log = logging.getLogger(__name__)

METHODS = ("splat", "sugar", "nerf", "sdf")
FIELD_METHODS = ("nerf", "sdf")  # ray-marched neural fields (recon3d.methods.common.RayTrainer)
POSE_OPT_METHODS = ("splat", "sugar")  # those that can refine the camera poses (--pose-opt)
ORBIT_MAX_SIZE = {"nerf": 256, "sdf": 128}  # orbit.gif frame size caps (CPU render cost per pixel)


@dataclass
class FitOptions:
    data: Path | None = None  # a posed dataset
    images: Path | None = None  # or a folder of photos (poses by structure-from-motion)
    format: str = "auto"
    downscale: float = 1
    method: str = "splat"
    preset: str = "default"
    max_steps: int | None = None
    device: str = "auto"
    backend: str | None = None
    out: Path | None = None
    resume: bool = False
    orbit_frames: int = 48
    matcher: str = "auto"  # SfM matcher for --images
    poses: str = "colmap"  # --images poses: "colmap" (pycolmap SfM) or "vggt" (feed-forward model)
    vggt_checkpoint: Path | None = None  # --poses vggt weights (None: the shipped tiny model)
    vggt_refine: bool = False  # --poses vggt: coloured-ICP refinement of the predicted cameras
    pose_opt: bool = False  # splat/sugar: refine the camera poses jointly with the model
    mesh_resolution: int | None = None  # nerf/sdf: marching-cubes nodes per axis (None: the config's)
    config: Path | None = None  # a method config JSON (as written to a run's config.json) instead of --preset


def default_out_dir(opts: FitOptions) -> Path:
    src = Path(opts.data if opts.data is not None else opts.images).resolve()
    if src.name.lower() in ("images", "photos", "input", "imgs"):  # scene/images -> "scene"
        src = src.parent
    return Path("outputs") / f"{src.name}-{opts.method}"


def load_fit_scene(opts: FitOptions, out: Path):
    """The normalized scene to fit, plus a dict describing where its poses came from."""
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene

    if (opts.data is None) == (opts.images is None):
        raise DataError("recon3d fit", "pass exactly one of --data (posed dataset) or --images (photos)")
    if opts.vggt_checkpoint is not None and (opts.poses != "vggt" or opts.data is not None):
        raise DataError(opts.vggt_checkpoint, "--vggt-checkpoint goes with --images and --poses vggt")
    if opts.vggt_refine and (opts.poses != "vggt" or opts.data is not None):
        raise DataError("--vggt-refine", "goes with --images and --poses vggt")
    if opts.data is not None:
        scene = load_scene(opts.data, format=opts.format, downscale=opts.downscale)
        return normalize_scene(scene), {"poses": f"dataset ({scene.source_format})"}
    if opts.poses == "vggt":
        from recon3d.methods.common import resolve_device
        from recon3d.sfm.vggt_poses import scene_from_images_vggt

        scene, info = scene_from_images_vggt(opts.images, out / "vggt", checkpoint=opts.vggt_checkpoint,
                                             device=str(resolve_device(opts.device)), refine=opts.vggt_refine)
        if opts.downscale != 1:
            scene = scene.with_downscale(opts.downscale)
        return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), info
    if opts.poses != "colmap":
        raise DataError("--poses", f"unknown pose source {opts.poses!r}; available: colmap, vggt")
    from recon3d.sfm import scene_from_images

    scene, sfm = scene_from_images(opts.images, out / "sfm", matcher=opts.matcher)
    if opts.downscale != 1:
        scene = scene.with_downscale(opts.downscale)
    info = {"poses": "pycolmap structure-from-motion", "sfm_images": sfm.num_images,
            "sfm_registered": sfm.num_registered, "sfm_points": sfm.num_points,
            "sfm_mean_reprojection_error_px": sfm.mean_reprojection_error, "sfm_seconds": sfm.seconds}
    log.info("SfM registered %d of %d images, mean reprojection error %.3f px",
             sfm.num_registered, sfm.num_images, sfm.mean_reprojection_error)
    return normalize_scene(scene, method="points" if scene.points is not None else "cameras"), info


def _config(opts: FitOptions, out: Path):
    from recon3d.methods.splat.config import SplatConfig, preset

    if opts.pose_opt and opts.method not in POSE_OPT_METHODS:
        raise DataError("--pose-opt", f"pose refinement is available for --method {' and '.join(POSE_OPT_METHODS)}, "
                                      f"not {opts.method}")
    if opts.method in FIELD_METHODS:
        return _field_config(opts, out)
    cfg_path = out / "config.json"
    if opts.resume and cfg_path.exists():
        cfg = SplatConfig.load(cfg_path)
        if opts.max_steps:
            cfg.max_steps = opts.max_steps
        if opts.pose_opt and not cfg.pose_opt:
            raise DataError(cfg_path, "this run was fitted without --pose-opt; resume it without the flag, "
                                      "or fit with --pose-opt into a new --out")
        return cfg
    if opts.config is not None:
        cfg = SplatConfig.load(opts.config)
        cfg.max_steps = opts.max_steps or cfg.max_steps
        cfg.backend = opts.backend or cfg.backend
    else:
        cfg = preset(opts.preset, max_steps=opts.max_steps, backend=opts.backend)
    cfg.pose_opt = cfg.pose_opt or opts.pose_opt
    return cfg


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


def field_method(method: str):
    """(trainer class, config class, preset function) of a ray-based method (``nerf`` or ``sdf``)."""
    if method == "nerf":
        from recon3d.methods.nerf import NerfConfig, NerfTrainer, preset

        return NerfTrainer, NerfConfig, preset
    if method == "sdf":
        from recon3d.methods.sdf import SdfConfig, SdfTrainer, preset

        return SdfTrainer, SdfConfig, preset
    raise DataError("--method", f"{method!r} is not a neural-field method; those are {', '.join(FIELD_METHODS)}")


def _field_config(opts: FitOptions, out: Path):
    """The nerf/sdf config: the run's config.json on --resume, else --config, else the preset;
    --max-steps and --mesh-resolution override."""
    _, config_cls, preset = field_method(opts.method)
    cfg_path = out / "config.json"
    if (opts.resume and cfg_path.exists()) or opts.config is not None:
        cfg = config_cls.load(cfg_path if opts.resume and cfg_path.exists() else opts.config)
        if opts.max_steps:
            cfg.max_steps = opts.max_steps
    else:
        cfg = preset(opts.preset, max_steps=opts.max_steps)
    if opts.mesh_resolution:
        cfg.mesh_resolution = int(opts.mesh_resolution)
    return cfg


def _fit_field_method(opts: FitOptions, scene, cfg, out: Path, pose_info: dict, t_start: float) -> dict:
    """``run_fit`` for nerf/sdf: fit (resumable), test metrics, orbit, mesh (GLB/OBJ/PLY), metrics.json."""
    from recon3d.io.atomic import atomic_write_json
    from recon3d.mesh import export_mesh_formats, scene_up_axis

    trainer_cls, _, _ = field_method(opts.method)
    trainer = trainer_cls(scene, cfg, out, device=opts.device)
    log.info("fitting %s with %s: %d train / %d test views, %d steps, device %s", scene.name, opts.method,
             len(scene.train_indices), len(scene.test_indices), cfg.max_steps, trainer.device)
    summary = trainer.fit(resume=opts.resume)
    metrics: dict = {"method": opts.method, "preset": opts.preset, "source": str(opts.data or opts.images),
                     **pose_info, "device": str(trainer.device), "steps": summary["steps"],
                     "train_seconds": round(summary["train_seconds"], 2),
                     "train_views": len(scene.train_indices), "test_views": len(scene.test_indices)}
    if opts.method == "nerf":
        metrics.update({"scene_type": trainer.scene_type, "occupancy": round(trainer.grid.occupancy_fraction(), 4)})
    else:
        metrics["sphere_radius_normalized"] = trainer.field.radius
    metrics.update(_test_metrics(trainer, scene))
    if opts.orbit_frames > 0:
        t_orbit = time.perf_counter()
        metrics["orbit"] = str(write_orbit(trainer, out / "orbit.gif", opts.orbit_frames,
                                           max_size=ORBIT_MAX_SIZE[opts.method]))
        metrics["orbit_seconds"] = round(time.perf_counter() - t_orbit, 2)
    mesh = trainer.extract_mesh()
    metrics["mesh_seconds"] = mesh.metadata.get("seconds")
    if mesh.num_faces:
        files = export_mesh_formats(mesh, out, "mesh", normalization=scene.normalization,
                                    up_axis=scene_up_axis(scene))
        metrics["mesh"] = str(files["glb"][0])
        metrics["mesh_files"] = [str(p) for paths in files.values() for p in paths]
        metrics["mesh_faces"] = mesh.num_faces
    else:
        metrics["mesh"] = None
        metrics["mesh_note"] = f"empty mesh: {mesh.metadata.get('note', 'no surface found')}"
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 2)
    atomic_write_json(out / "metrics.json", metrics)
    metrics["out"] = str(out)
    return metrics


def _test_metrics(trainer, scene) -> dict:
    """Test-split PSNR/SSIM/render time of a fitted trainer for metrics.json (a note without test views)."""
    if not scene.test_indices:
        return {"test_note": "the scene has no held-out views; no test metrics"}
    ev = trainer.evaluate("test")
    log.info("test PSNR %.2f dB, SSIM %.4f, %.1f ms/image (%d views)", ev["psnr"], ev["ssim"],
             ev["ms_per_image"], ev["views"])
    extra = {k: v for k, v in ev.items() if k.startswith("test_pose_alignment")}
    return {"test_psnr": ev["psnr"], "test_ssim": ev["ssim"], "render_ms_per_image": ev["ms_per_image"],
            "test_per_view_psnr": ev["per_view_psnr"], **extra}


def _write_refined_cameras(trainer, scene, out: Path) -> dict:
    """With pose refinement: the refined cameras (training views refined, test views aligned at
    evaluation) as ``transforms_refined.json``, and the sizes of the corrections for metrics.json."""
    from dataclasses import replace

    from recon3d.io.nerfstudio import write_nerfstudio_transforms

    if getattr(trainer, "pose_correction", None) is None:
        return {}
    cams = trainer.refined_cameras()
    path = write_nerfstudio_transforms(replace(scene, cameras=cams.to("cpu")), out / "transforms_refined.json")
    log.info("refined cameras: %s", path)
    return {**trainer.pose_summary(), "transforms_refined": str(path)}


def run_fit(opts: FitOptions) -> dict:
    """Fit, evaluate and export; returns the metrics written to ``metrics.json``."""
    from recon3d.io.nerfstudio import write_nerfstudio_transforms
    from recon3d.methods.splat import SplatTrainer
    from recon3d.io.atomic import atomic_write_json

    if opts.method not in METHODS:
        raise DataError("--method", f"unknown method {opts.method!r}; available: {', '.join(METHODS)}")
    out = Path(opts.out) if opts.out is not None else default_out_dir(opts)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scene, pose_info = load_fit_scene(opts, out)
    cfg = _config(opts, out)
    cfg.save(out / "config.json")
    from .run import save_run_options

    save_run_options(opts, out)
    write_nerfstudio_transforms(scene, out / "transforms.json")
    if opts.method in FIELD_METHODS:
        return _fit_field_method(opts, scene, cfg, out, pose_info, t_start)

    trainer = SplatTrainer(scene, cfg, out, device=opts.device)
    log.info("fitting %s with %s: %d train / %d test views, %d steps, device %s", scene.name, opts.method,
             len(scene.train_indices), len(scene.test_indices), cfg.max_steps, trainer.device)
    summary = trainer.fit(resume=opts.resume)
    if opts.method == "sugar":
        from recon3d.methods.sugar import SugarTrainer
        from recon3d.methods.sugar import preset as sugar_preset

        trainer = SugarTrainer(trainer, sugar_preset(opts.preset))
        sugar_summary = trainer.fit(resume=opts.resume)
    metrics: dict = {"method": opts.method, "preset": opts.preset, "source": str(opts.data or opts.images),
                     **pose_info, "device": str(trainer.device), "steps": summary["steps"],
                     "train_seconds": round(summary["train_seconds"], 2), "gaussians": summary["gaussians"],
                     "train_views": len(scene.train_indices), "test_views": len(scene.test_indices)}
    metrics.update(_test_metrics(trainer, scene))
    metrics.update(_write_refined_cameras(trainer, scene, out))
    metrics["splats_ply"] = str(trainer.export_ply(out / "splats.ply"))
    if opts.orbit_frames > 0:
        metrics["orbit"] = str(write_orbit(trainer, out / "orbit.gif", opts.orbit_frames))
    if opts.method == "sugar":
        from recon3d.mesh import export_mesh_formats, scene_up_axis

        metrics["sugar_seconds"] = round(sugar_summary["train_seconds"], 2)
        metrics["sugar_gaussians"] = sugar_summary["gaussians"]
        mesh = trainer.extract_mesh(progress=True)
        files = export_mesh_formats(mesh, out, "mesh", normalization=scene.normalization,
                                    up_axis=scene_up_axis(scene))
        metrics["mesh"] = str(files["glb"][0])
        metrics["mesh_files"] = [str(p) for paths in files.values() for p in paths]
        metrics["mesh_faces"] = mesh.num_faces
        metrics["mesh_seconds"] = mesh.metadata.get("seconds_total")
    else:
        metrics["mesh"] = None
        metrics["mesh_note"] = "no mesh for --method splat; use --method sugar"
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 2)
    atomic_write_json(out / "metrics.json", metrics)
    metrics["out"] = str(out)
    return metrics

