"""The ``recon3d`` command line.

    recon3d info    --data PATH                 summarize a dataset (format, cameras, splits, bounds)
    recon3d convert --data PATH --out FILE      write a nerfstudio transforms.json for any supported dataset
    recon3d fit     --data PATH [--method splat] [--preset quick|default|high] [--out DIR] [--resume]

Every error in user input exits with status 2 and a one-line message naming the file and the problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

DATA_FORMATS = ("auto", "blender", "nerfstudio", "colmap", "llff")


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="dataset folder (Blender, nerfstudio, COLMAP or LLFF)")
    p.add_argument("--format", default="auto", choices=DATA_FORMATS, help="dataset format (default: detect)")
    p.add_argument("--downscale", type=float, default=1, help="load images downscaled by this factor")


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
    from recon3d.methods.splat import SplatTrainer, preset
    from recon3d.methods.splat.trainer import write_metrics

    if args.images is not None:
        raise UserError("--images (structure-from-motion from unposed photos) is not available yet; "
                        "pass a posed dataset with --data")
    if args.method != "splat":
        raise UserError(f"--method {args.method}: only 'splat' is available in this version")
    from recon3d.io.normalize import normalize_scene

    scene = normalize_scene(_load(args))
    out = args.out or Path("outputs") / f"{scene.name}-{args.method}"
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if args.resume and cfg_path.exists():
        from recon3d.methods.splat.config import SplatConfig

        cfg = SplatConfig.load(cfg_path)
        if args.max_steps:
            cfg.max_steps = args.max_steps
    else:
        cfg = preset(args.preset, max_steps=args.max_steps, backend=args.backend)
    cfg.save(cfg_path)
    trainer = SplatTrainer(scene, cfg, out, device=args.device)
    logging.info("fitting %s: %d train / %d test views, %d steps, device %s", scene.name,
                 len(scene.train_indices), len(scene.test_indices), cfg.max_steps, trainer.device)
    summary = trainer.fit(resume=args.resume)
    metrics = {"method": args.method, "preset": args.preset, "scene": str(args.data),
               "steps": summary["steps"], "train_seconds": summary["train_seconds"], "gaussians": summary["gaussians"]}
    if scene.test_indices:
        ev = trainer.evaluate("test")
        metrics.update({f"test_{k}": v for k, v in ev.items() if k != "split"})
        print(f"test PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.4f}  {ev['ms_per_image']:.1f} ms/image "
              f"({ev['views']} views)")
    ply = trainer.export_ply(out / "splats.ply")
    metrics["splats_ply"] = str(ply)
    metrics["mesh"] = None
    metrics["mesh_note"] = "mesh extraction (SuGaR) is not available in this version"
    write_metrics(out / "metrics.json", metrics)
    print(f"outputs in {out}: config.json, checkpoints/, renders/test/, splats.ply, metrics.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recon3d", description="3D reconstruction and rendering")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="summarize a dataset")
    _add_data_args(s)
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("convert", help="write a nerfstudio transforms.json for a dataset")
    _add_data_args(s)
    s.add_argument("--out", required=True, type=Path, help="output transforms.json path")
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("fit", help="fit a per-scene model to a posed dataset")
    s.add_argument("--data", type=Path, help="posed dataset folder (Blender, nerfstudio, COLMAP or LLFF)")
    s.add_argument("--images", type=Path, default=None, help=argparse.SUPPRESS)
    s.add_argument("--format", default="auto", choices=DATA_FORMATS)
    s.add_argument("--downscale", type=float, default=1)
    s.add_argument("--method", default="splat", help="per-scene method (default: splat)")
    s.add_argument("--preset", default="default", choices=("quick", "default", "high"))
    s.add_argument("--max-steps", type=int, default=None)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--backend", default=None, choices=("auto", "torch", "gsplat"), help="rasterizer backend")
    s.add_argument("--out", type=Path, default=None, help="output folder (default outputs/<scene>-<method>)")
    s.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    s.set_defaults(fn=cmd_fit)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.command == "fit" and args.data is None and args.images is None:
        print("recon3d fit: error: --data is required", file=sys.stderr)
        return 2
    from recon3d.io.errors import DataError

    t = time.perf_counter()
    try:
        rc = args.fn(args)
    except (UserError, DataError) as e:
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
