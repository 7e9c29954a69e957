"""``recon3d ffdata`` / ``train`` / ``predict``: the feed-forward commands (hooked in via COMMAND_MODULES).

Heavy imports (torch models, open3d) happen inside the handlers so ``recon3d --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from recon3d.runtime.device import check_device
from recon3d.runtime.options import at_most, between, checked, non_negative

# --------------------------------------------------------------------------------------- ffdata
def _add_ffdata_args(p: argparse.ArgumentParser) -> None:
    # defaults (None) come from recon3d.feedforward.data.GenerationConfig, imported only in the handler
    p.add_argument("--out", required=True, type=Path, help="data set folder (created; resumed if it exists)")
    p.add_argument("--objects", type=checked(int, at_most(1_000_000)), help="number of objects (default 480)")
    p.add_argument("--views", type=checked(int, at_most(1_000_000)), help="views per object (default 24)")
    p.add_argument("--size", type=checked(int, between(8, 4096)), help="square image size, pixels (default 64)")
    p.add_argument("--seed", type=checked(int, non_negative), help="seed of everything (default 0)")
    p.add_argument("--val", type=checked(int, non_negative), help="objects in the val split (default 20)")
    p.add_argument("--test", type=checked(int, non_negative), help="objects in the test split (default 20)")
    p.add_argument("--per-shard", type=checked(int, at_most(1_000_000)), help="objects per shard file (default 16)")
    p.add_argument("--radius", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="camera distance range, world units (default 3.2 4.0)")
    p.add_argument("--elevation", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="camera elevation range, degrees (default -20 70)")
    p.add_argument("--fov", type=checked(float, between(1, 179)), help="field of view, degrees (default 40)")
    p.add_argument("--background", choices=["white", "ground"],
                   help="white (object alone, default) or ground (object on a tiled floor; for pose models)")
    p.add_argument("--texture", choices=["part", "voronoi", "mixed"],
                   help="object textures: low-frequency part colours, the fine Voronoi texture, or mixed "
                        "(default: mixed, 80 %% part / 20 %% voronoi)")
    p.add_argument("--workers", type=checked(int, at_most(256)), default=1, help="processes rendering shards in parallel")
    p.add_argument("--overwrite", action="store_true", help="replace a data set made with another config")
    p.add_argument("--no-ready", action="store_true", help="do not write the READY marker at the end")


def cmd_ffdata(args) -> int:
    from recon3d.feedforward.data import GenerationConfig, generate_dataset
    from recon3d.io.atomic import atomic_write_bytes

    given = {"num_objects": args.objects, "views": args.views, "image_size": args.size, "seed": args.seed,
             "num_val": args.val, "num_test": args.test, "objects_per_shard": args.per_shard,
             "radius_range": tuple(args.radius) if args.radius else None,
             "elevation_range": tuple(args.elevation) if args.elevation else None, "fov_deg": args.fov,
             "background": args.background,
             "texture_weights": {"part": {"part": 1.0}, "voronoi": {"voronoi": 1.0}, "mixed": None}[args.texture]
             if args.texture else None}
    cfg = GenerationConfig(**{k: v for k, v in given.items() if v is not None})
    try:
        cfg.validate()
    except ValueError as e:
        raise SystemExit(f"recon3d ffdata: error: {e}")
    t0 = time.perf_counter()
    try:
        m = generate_dataset(args.out, cfg, workers=args.workers, overwrite=args.overwrite)
    except FileExistsError as e:
        raise SystemExit(f"recon3d ffdata: error: {e}")
    dt = time.perf_counter() - t0
    size = sum(s["bytes"] for s in m["shards"]) / 1e6
    print(f"wrote {args.out}: {m['num_objects']} objects x {m['views_per_object']} views at "
          f"{m['image_size']}px in {len(m['shards'])} shards ({size:.1f} MB); splits {m['splits']}; "
          f"{dt:.1f} s ({m['num_objects'] / max(dt, 1e-9):.2f} objects/s incl. skipped shards)")
    if not args.no_ready:
        atomic_write_bytes(Path(args.out) / "READY", (json.dumps({"seconds": round(dt, 1), **m["splits"]}) + "\n").encode())
    return 0


def ffdata_main(argv=None) -> int:
    """Entry point of ``scripts/make_ff_dataset.py`` (same options as ``recon3d ffdata``)."""
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description="generate a multi-object feed-forward data set")
    _add_ffdata_args(p)
    return cmd_ffdata(p.parse_args(argv))


# ---------------------------------------------------------------------------------------- train
def split_sets(pairs: list[str]) -> tuple[dict, dict]:
    """``--set`` KEY=VALUE pairs -> (train config overrides for ``train.KEY``, model config overrides)."""
    from recon3d.feedforward.train import parse_value

    train_over, model_over = {}, {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SystemExit(f"recon3d: error: --set expects KEY=VALUE, got {pair!r}")
        if key.startswith("train."):
            train_over[key[len("train."):]] = parse_value(value)
        else:
            model_over[key] = parse_value(value)
    return train_over, model_over


def cmd_train(args) -> int:
    from recon3d.feedforward.train import train

    train_over, model_over = split_sets(args.set)
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size), ("num_workers", args.workers)):
        if value is not None:
            train_over[key] = value
    out = args.out or Path("outputs") / "train" / args.model
    from recon3d.io.errors import DataError

    try:
        res = train(args.model, args.data, out, train_over, model_over, resume=args.resume, device=args.device,
                    stop_at=args.stop_at)
    except DataError:
        raise
    except (KeyError, ValueError) as e:  # unknown model / option, bad value: one line, exit 2
        import sys

        print(f"recon3d train: error: {str(e).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    import os

    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only rank 0 reports
        return 0
    val = " ".join(f"{k} {v:.4f}" for k, v in res.last_val.items())
    print(f"trained {args.model} to step {res.step} in {res.seconds:.1f} s; {val or 'no validation'}; "
          f"outputs in {res.out_dir}" + (f"; model {res.final}" if res.final else " (stopped early: --resume continues)"))
    return 0


# -------------------------------------------------------------------------------------- predict
def cmd_predict(args) -> int:
    import sys

    from recon3d.feedforward import registry
    from recon3d.feedforward.options import predict_options
    from recon3d.feedforward.predict import expand_image_paths, image_to_3d, model_predict_hook
    from recon3d.runtime.device import resolve_device

    opts = predict_options(args)
    if opts.model not in registry.MODELS:
        print(f"recon3d predict: error: --model: unknown model {opts.model!r}; known models: "
              f"{', '.join(sorted(registry.MODELS))}", file=sys.stderr)
        return 2
    try:
        device = str(resolve_device(opts.device))
    except ValueError as e:
        print(f"recon3d predict: error: {e}", file=sys.stderr)
        return 2
    from recon3d.io.images import check_image_pixels

    out = opts.out or Path("outputs") / "predict" / f"{opts.model}-{Path(opts.images[0]).stem}"  # a folder: its name
    opts = replace(opts, images=expand_image_paths(opts.images),  # folders -> their images, natural order
                   masks=expand_image_paths(opts.masks) if opts.masks else opts.masks)
    for p in [*opts.images, *(opts.masks or [])]:  # before anything is decoded or written
        check_image_pixels(p)
    hook = model_predict_hook(opts.model)
    if hook is not None and opts.cameras is None:  # model-specific outputs (VGGT: cameras, depth, points)
        model = registry.load_model(opts.model, opts.checkpoint, device=device, variant=opts.variant)
        summary = hook(model, opts.images, out, replace(opts, device=device))
        print(f"predicted with {opts.model}: outputs in {out}" + (f" ({summary.get('points')} points)"
                                                                 if isinstance(summary, dict) and "points" in summary else ""))
        return 0
    if opts.refine_poses:
        raise SystemExit(f"recon3d predict: error: --refine-poses is for --model vggt (cameras), not {opts.model}")
    res = image_to_3d(opts.model, opts.images, out, checkpoint=opts.checkpoint, device=device,
                      cameras=opts.cameras, masks=opts.masks, variant=opts.variant, **opts.field_kwargs())
    for note in res.notes:
        print(f"note: {note}")
    mesh = f"mesh {res.mesh.num_faces} faces ({', '.join(res.meshes)})" if res.mesh is not None else "no mesh"
    print(f"predicted with {opts.model} in {res.timings.get('total', 0):.1f} s: {len(res.views)} views, "
          f"{'orbit.gif, ' if res.orbit else ''}{mesh}; outputs in {out}")
    return 0


# ----------------------------------------------------------------------------------------- hook
def add_commands(sub) -> None:
    from recon3d.feedforward.options import add_predict_arguments

    s = sub.add_parser("predict", help="photos of an object -> novel views, turntable and mesh (feed-forward model)")
    add_predict_arguments(s)
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("train", help="train a feed-forward model on a data set made by `recon3d ffdata`")
    s.add_argument("model", help="registered model name (pixelnerf, lrm, vggt, ...)")
    s.add_argument("--data", required=True, type=Path, help="data set folder (manifest.json + shards)")
    s.add_argument("--out", type=Path, default=None, help="run folder (default outputs/train/MODEL)")
    s.add_argument("--steps", type=checked(int, at_most(100_000_000)), default=None, help="total optimizer steps")
    s.add_argument("--batch-size", type=checked(int, at_most(1_000_000)), default=None, help="objects per batch per process")
    s.add_argument("--workers", type=checked(int, at_most(256, non_negative)), default=None, help="data loader processes")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config option (dotted for nested), or train.OPTION for the trainer; repeatable")
    s.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    s.add_argument("--stop-at", type=checked(int, at_most(100_000_000)), default=None, help="stop after this step (checkpointed; resume later)")
    s.add_argument("--device", default=None, type=checked(str, check_device),
                   help="auto | cpu | cuda (default: the train config's, auto)")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("ffdata", help="generate a multi-object multi-view data set for feed-forward training")
    _add_ffdata_args(s)
    s.set_defaults(fn=cmd_ffdata)
