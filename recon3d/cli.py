"""The ``recon3d`` command line.

    recon3d info    --data PATH                 summarize a dataset (format, cameras, splits, bounds)
    recon3d convert --data PATH --out FILE      write a nerfstudio transforms.json for any supported dataset
    recon3d fit     --images DIR | --data PATH | --video FILE [--frames N]
                    [--method splat|sugar|nerf|sdf] [--preset quick|default|high] [--out DIR] [--resume]
    recon3d render  --run DIR [--split test|train|all] [--orbit N]
                    [--path orbit|spiral|interpolate] [--mp4 out.mp4] [--seconds 10 --fps 30 --size PX]
    recon3d export  --run DIR [--splats out.ply] [--mesh out.glb|obj|ply]   (nerf/sdf runs: the mesh)
    recon3d eval    --run DIR [--gt DATASET]        PSNR/SSIM, and pose error vs ground-truth cameras

Every error in user input exits with status 2 and a one-line message naming the file and the problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

#: modules adding further subcommands (``train``, ``predict``, ``ffdata``); each defines
#: ``add_commands(subparsers)`` and must import heavy dependencies only inside its handlers.
COMMAND_MODULES: tuple[str, ...] = ("recon3d.feedforward.cli",)
#: entry-point group through which layers above this one (the web app's ``demo``) add commands:
#: each entry point is an ``add_commands(subparsers)`` function (see pyproject.toml)
COMMAND_ENTRY_POINTS = "recon3d.commands"


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (``recon3d fit: error: argument --x: ...``) with
    exit status 2, without the usage block (``--help`` still prints it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


from recon3d.runtime.options import at_most, between, checked, non_negative  # noqa: E402  (no torch import)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from recon3d.pipeline.options import DATA_FORMATS

    p.add_argument("--data", required=True, type=Path, help="dataset folder (Blender, nerfstudio, COLMAP or LLFF)")
    p.add_argument("--format", default="auto", choices=DATA_FORMATS, help="dataset format (default: detect)")
    p.add_argument("--downscale", type=checked(float, at_most(64)), default=1,
                   help="load images downscaled by this factor")


def _load(args):
    from recon3d.io import load_scene

    return load_scene(args.data, format=args.format, downscale=args.downscale)


def cmd_info(args) -> int:
    scene = _load(args)
    cams = scene.cameras
    print(f"scene      {scene.name}  ({scene.source_format})")
    print(f"images     {len(cams)}  train {len(scene.train_indices)}  test {len(scene.test_indices)}")
    sizes = sorted({(int(w), int(h)) for w, h in zip(cams.width, cams.height)})
    print(f"sizes      {', '.join(f'{w}x{h}' for w, h in sizes)}")
    print(f"camera     {cams.model}  fx {float(cams.fx.mean()):.2f}  fy {float(cams.fy.mean()):.2f}")
    print(f"points     {0 if scene.points is None else len(scene.points)}")
    c = cams.centers
    print(f"centers    min {c.min(0).values.tolist()}  max {c.max(0).values.tolist()}")
    print(f"normalize  scale {scene.normalization.scale:.4f} (world -> normalized)")
    return 0


def cmd_convert(args) -> int:
    from recon3d.io.nerfstudio import write_nerfstudio_transforms

    scene = _load(args)
    out = write_nerfstudio_transforms(scene, args.out)
    print(f"wrote {out}")
    return 0


def cmd_fit(args) -> int:
    from recon3d.pipeline import FitOptions, run_fit
    from recon3d.runtime.options import from_args

    opts = from_args(FitOptions, args)
    m = run_fit(opts)
    if "test_psnr" in m:
        print(f"test PSNR {m['test_psnr']:.2f} dB  SSIM {m['test_ssim']:.4f}  "
              f"{m['render_ms_per_image']:.1f} ms/image ({m['test_views']} views)")
    files = ["metrics.json", "splats.ply" if m.get("splats_ply") else None, "orbit.gif" if m.get("orbit") else None,
             "renders/test/" if "test_psnr" in m else None, "transforms.json", "config.json", "scene.json",
             "checkpoints/"]
    print(f"outputs in {m['out']}: {', '.join(f for f in files if f)}")
    if m.get("mesh"):
        print(f"mesh: {', '.join(m['mesh_files'])} ({m['mesh_faces']} faces)")
    else:
        print(f"mesh: {m['mesh_note']}")
    return 0


def cmd_render(args) -> int:
    from recon3d.io.images import save_image
    from recon3d.pipeline.outputs import write_orbit
    from recon3d.pipeline.run import load_run

    video = None
    if args.mp4 is not None or args.path is not None:  # a camera-path video: checked before loading the run
        from recon3d.io.errors import DataError

        frames = round(args.seconds * args.fps)
        if frames < 2:
            raise DataError("--seconds", f"{args.seconds:g} s at {args.fps:g} fps is {frames} frame"
                                         f"{'s' * (frames != 1)}; a video needs at least 2")
        video = args.mp4 or (args.out or args.run / "renders") / f"{args.path or 'orbit'}.mp4"
        if video.is_dir():
            raise DataError(video, "is a folder; --mp4 takes the video file to write (e.g. out.mp4)")
    trainer, _ = load_run(args.run, device=args.device)
    out = args.out or args.run / "renders"
    scene = trainer.scene
    split = args.split or ("test" if video is None else None)  # a video alone renders no split views
    splits = [] if split is None else ["train", "test"] if split == "all" else [split]
    cameras = trainer.render_cameras()  # a pose-refined run renders its training views from the refined poses
    for split in splits:
        idx = list(scene.train_indices if split == "train" else scene.test_indices)
        for i in idx:
            img = trainer.render(cameras[i]).colors[0]
            save_image(out / split / f"{Path(scene.image_paths[i]).stem}.png", img.cpu())
        print(f"rendered {len(idx)} {split} views to {out / split}")
    if args.orbit:
        gif = write_orbit(trainer, out / 'orbit.gif', args.orbit)
        print(f"wrote {gif}" + (f" and {gif.with_suffix('.mp4')}" if gif.with_suffix(".mp4").is_file() else ""))
    if video is not None:
        from recon3d.pipeline.outputs import write_path_video

        v = write_path_video(trainer, video, args.path or "orbit", seconds=args.seconds, fps=args.fps, size=args.size)
        print(f"wrote {v['path']} ({v['camera_path']} path, {v['frames']} frames, {v['width']}x{v['height']}, "
              f"{v['fps']:g} fps, H.264)")
    return 0


def _mp4_file(path: Path) -> Path:
    if path.suffix.lower() != ".mp4":
        raise ValueError("must be an .mp4 file name")
    return path


def cmd_export(args) -> int:
    from recon3d.methods.registry import get_method
    from recon3d.pipeline.run import load_run

    trainer, opts = load_run(args.run, device="cpu")
    spec = get_method(opts.method)
    if not spec.supports("splats"):
        return _export_field_mesh(args, trainer, opts.method)
    path = args.splats or args.run / "splats.ply"
    trainer.export_splats(path, original_units=not args.normalized)
    units = "normalized scene units" if args.normalized else "the capture's original units"
    print(f"wrote {path} ({len(trainer.model)} Gaussians, {units})")
    if args.mesh is not None:
        from recon3d.io.errors import DataError
        from recon3d.mesh import export_mesh, scene_up_axis

        if not spec.supports("mesh"):
            raise DataError("--mesh", f"a {opts.method} run has no mesh method; fit it with --method sugar")
        mesh = trainer.extract_mesh(_sugar_mesh_config(args, trainer))
        norm = None if args.normalized else trainer.scene.normalization
        written = export_mesh(mesh, args.mesh, normalization=norm, up_axis=scene_up_axis(trainer.scene))
        print(f"wrote {', '.join(map(str, written))} ({mesh.num_faces} faces, {units})")
    return 0


def _sugar_mesh_config(args, trainer):
    """The run's SuGaR config with ``--texture-size`` / ``--texture-source`` applied (None: unchanged)."""
    from dataclasses import replace

    from recon3d.io.errors import DataError

    changes = {k: v for k, v in (("texture_size", args.texture_size), ("texture_source", args.texture_source))
               if v is not None}
    if not changes:
        return None
    if args.texture_size is not None and not 0 <= args.texture_size <= 8192:
        raise DataError("--texture-size", f"{args.texture_size} is not in [0, 8192]")
    if args.mesh is not None and Path(args.mesh).suffix.lower() == ".ply" and changes.get("texture_size", 0) > 0:
        raise DataError(args.mesh, "PLY holds no UV texture; use .glb or .obj with --texture-size")
    return replace(trainer.sugar_cfg, **changes)


def _export_field_mesh(args, trainer, method: str) -> int:
    """``export`` of a nerf/sdf run: marching cubes (density level set / SDF zero level set) to --mesh."""
    from recon3d.io.errors import DataError
    from recon3d.mesh import export_mesh, scene_up_axis

    if args.splats is not None:
        raise DataError("--splats", f"a {method} run has no Gaussians to export; use --mesh out.glb|obj|ply")
    if args.texture_size or args.texture_source:
        raise DataError("--texture-size", f"UV texture baking is for sugar runs; a {method} mesh has vertex colours")
    mesh = trainer.extract_mesh(resolution=args.mesh_resolution)
    if mesh.num_faces == 0:
        raise DataError(args.run, f"the fitted {method} field gives an empty mesh ({mesh.metadata.get('note', '')})")
    path = args.mesh or args.run / "mesh.glb"
    norm = None if args.normalized else trainer.scene.normalization
    written = export_mesh(mesh, path, normalization=norm, up_axis=scene_up_axis(trainer.scene))
    units = "normalized scene units" if args.normalized else "the capture's original units"
    print(f"wrote {', '.join(map(str, written))} ({mesh.num_faces} faces, {mesh.metadata['resolution']}^3 grid, {units})")
    return 0


def cmd_eval(args) -> int:
    from recon3d.io import load_scene
    from recon3d.io.atomic import atomic_write_json
    from recon3d.pipeline.run import load_run, pose_errors_against

    trainer, _ = load_run(args.run, device=args.device)
    result: dict = {"step": trainer.step, **trainer.model_facts()}
    if trainer.scene.test_indices:
        ev = trainer.evaluate("test", save_renders=False)
        result.update({"test_psnr": ev["psnr"], "test_ssim": ev["ssim"], "render_ms_per_image": ev["ms_per_image"]})
        print(f"test PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.4f}  ({ev['views']} views)")
    if args.gt is not None:
        from dataclasses import replace

        gt = load_scene(args.gt)
        scenes = {"pose_vs_gt": ("poses", trainer.scene)}
        refined = trainer.pose_refinement()
        if refined is not None:  # --pose-opt run: the refined cameras too
            scenes["refined_pose_vs_gt"] = ("refined poses", replace(trainer.scene, cameras=refined[0].to("cpu")))
        for key, (label, scene) in scenes.items():
            pose = pose_errors_against(scene, gt)
            result[key] = pose
            print(f"{label} vs {args.gt}: {pose['matched_views']} views, camera centers off by "
                  f"{100 * pose['mean_center_error_rel']:.2f}% (max {100 * pose['max_center_error_rel']:.2f}%) of "
                  f"the rig size, rotations by {pose['mean_rotation_error_deg']:.2f} deg "
                  f"(max {pose['max_rotation_error_deg']:.2f})")
    path = atomic_write_json(args.run / "eval.json", result)
    print(f"wrote {path}")
    return 0


def _device(text: str) -> str:
    from recon3d.runtime.device import check_device

    return checked(str, check_device)(text)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="recon3d", description="3D reconstruction and rendering")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--threads", type=checked(int, at_most(1024)), default=None,
                   help="CPU threads for torch (default: torch's choice; use 1 when other jobs share the cores)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)

    s = sub.add_parser("info", help="summarize a dataset")
    _add_data_args(s)
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("convert", help="write a nerfstudio transforms.json for a dataset")
    _add_data_args(s)
    s.add_argument("--out", required=True, type=Path, help="output transforms.json path")
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("fit", help="fit a per-scene model to photos or a posed dataset")
    from recon3d.pipeline.options import FitOptions
    from recon3d.runtime.options import add_arguments

    add_arguments(s.add_mutually_exclusive_group(required=True), FitOptions, only=("images", "data", "video"))
    add_arguments(s, FitOptions, skip=("images", "data", "video"))
    s.set_defaults(fn=cmd_fit)

    s = sub.add_parser("render", help="render views, an orbit and camera-path videos from a fit run folder")
    s.add_argument("--run", required=True, type=Path, help="run folder written by `recon3d fit`")
    s.add_argument("--split", default=None, choices=("train", "test", "all"),
                   help="render this split's views as PNGs (default: test; none when only a video is asked for)")
    s.add_argument("--orbit", type=checked(int, at_most(3600, non_negative)), default=0,
                   help="also write an orbit GIF (and the same frames as orbit.mp4) with this many frames")
    s.add_argument("--path", default=None, choices=("orbit", "spiral", "interpolate"),
                   help="camera path of an MP4 video: orbit (a circle around the object), spiral (forward-facing, "
                        "around the mean camera, as LLFF/nerfstudio), interpolate (smoothly through the training "
                        "cameras); default orbit when --mp4 is given")
    s.add_argument("--mp4", type=checked(Path, _mp4_file), default=None,
                   help="write the camera-path video to this .mp4 (H.264; default OUT/<path>.mp4 with --path)")
    s.add_argument("--seconds", type=checked(float, between(0.1, 3600)), default=10.0,
                   help="video length in seconds (default %(default)s)")
    s.add_argument("--fps", type=checked(float, between(1, 240)), default=30.0,
                   help="video frames per second (default %(default)s)")
    s.add_argument("--size", type=checked(int, between(16, 8192)), default=None,
                   help="long side of the video frames in pixels, rounded to even (intrinsics rescaled; default: "
                        "the training images' long side, at most 1080)")
    s.add_argument("--out", type=Path, default=None, help="output folder (default RUN/renders)")
    s.add_argument("--device", default="auto", type=_device, help="auto, cpu or cuda")
    s.set_defaults(fn=cmd_render)

    s = sub.add_parser("export", help="export the fitted model of a run folder")
    s.add_argument("--run", required=True, type=Path)
    s.add_argument("--splats", type=Path, default=None, help="3DGS .ply path (default RUN/splats.ply)")
    s.add_argument("--normalized", action="store_true", help="keep recon3d's normalized units")
    s.add_argument("--mesh", type=Path, default=None,
                   help="also extract the mesh to this .glb/.obj/.ply (runs fitted with --method sugar, nerf "
                        "or sdf; for nerf/sdf runs the mesh is what export writes, default RUN/mesh.glb)")
    s.add_argument("--mesh-resolution", type=checked(int, between(8, 2048)), default=None,
                   help="nerf/sdf runs: marching-cubes nodes per axis (default: the run config's mesh_resolution)")
    s.add_argument("--texture-size", type=checked(int, between(0, 8192)), default=None,
                   help="sugar runs: bake a UV texture of N x N texels into the GLB/OBJ (xatlas unwrap; 0: vertex "
                        "colours; default: the run config's texture_size)")
    s.add_argument("--texture-source", choices=["views", "gaussians"], default=None,
                   help="sugar runs: texels from the training photos (default) or from the Gaussians")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("eval", help="metrics of a run folder, and pose error against ground truth")
    s.add_argument("--run", required=True, type=Path)
    s.add_argument("--gt", type=Path, default=None,
                   help="dataset with ground-truth cameras for the same images (e.g. data/sample_scene)")
    s.add_argument("--device", default="auto", type=_device, help="auto, cpu or cuda")
    s.set_defaults(fn=cmd_eval)

    # Commands defined next to the code they drive: each module has ``add_commands(subparsers)``;
    # the layers above (the web app) register theirs as entry points.
    import importlib
    from importlib.metadata import entry_points

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    for ep in entry_points(group=COMMAND_ENTRY_POINTS):
        try:
            ep.load()(sub)
        except ImportError as e:  # an optional layer that is not installed here
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s", ep.name, e)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from recon3d.io.errors import DataError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    try:
        rc = args.fn(args)
    except DataError as e:
        print(f"recon3d {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recon3d {args.command}: interrupted (checkpoints written so far are kept; rerun with --resume)",
              file=sys.stderr)
        return 130
    logging.debug("%s took %.1fs", args.command, time.perf_counter() - t)
    return rc


if __name__ == "__main__":
    sys.exit(main())
