"""Benchmark: VGGT-style feed-forward cameras/depth vs pycolmap SfM on held-out synthetic objects.

For each of ``--scenes`` test-split objects of the feed-forward data set's generation config
(objects the model never saw in training), ``--views`` photos are rendered at ``--size`` px
(:func:`recon3d.feedforward.data.render_object`, the training camera distribution; by default the
objects stand on a tiled floor as in ``recon3d ffdata --background ground``). Both methods
get the same photos (composited on white):

- VGGT: one forward pass (the model resizes to its own resolution, 64 px for the shipped model);
  with ``--refine`` also ``vggt+icp``: the same prediction with coloured-ICP pose refinement of its
  depth maps (:func:`recon3d.feedforward.vggt.refine.refine_poses_icp`), timed together;
- SfM: :func:`recon3d.sfm.run_sfm` (SIFT, exhaustive matching, incremental mapping, 1 thread).

Reported per method: registered views, mean rotation error and camera-centre error (relative to
the camera-ring radius) after a similarity (Umeyama) alignment of the centres, AUC@30 of the
pairwise relative-pose error (max of rotation and translation-direction angle; views SfM did not
register count as failed pairs), and for VGGT the depth AbsRel (median-scaled, valid pixels), with
wall times. Run::

    /work/heavy .venv/bin/python scripts/bench_vggt.py --scenes 6 --views 8 --size 256

``--data DIR`` benchmarks on a posed real dataset instead (any format ``recon3d`` reads, e.g.
``../shared/data/lego_200``; RGBA composited on white): each of ``--scenes`` groups is ``--views``
of its photos at their own resolution, the views whose camera centres lie nearest (in angle about
the scene centre) to a random anchor view, within a cone of apex ``--arc`` degrees (360: random
views from all around); no depth AbsRel
(the dataset has no depth maps)::

    /work/heavy .venv/bin/python scripts/bench_vggt.py --data ../shared/data/lego_200 --views 8 --arc 90
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402  (Pillow before pycolmap, see recon3d.sfm.colmap_sfm)


def pairwise_errors(est_c2w: np.ndarray, gt_c2w: np.ndarray, rotation_only: bool = False) -> np.ndarray:
    """(n(n-1)/2,) per pair max(relative rotation error, relative translation direction error), degrees
    (``rotation_only``: the relative rotation error alone)."""
    errs = []
    n = len(gt_c2w)
    for i in range(n):
        for j in range(i + 1, n):
            def rel(c):
                w2c_i = np.linalg.inv(c[i])
                return w2c_i @ c[j]  # camera j -> camera i

            re, rg = rel(est_c2w), rel(gt_c2w)
            R = re[:3, :3].T @ rg[:3, :3]
            rot = math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
            te, tg = re[:3, 3], rg[:3, 3]
            cosang = float(te @ tg / max(np.linalg.norm(te) * np.linalg.norm(tg), 1e-12))
            trans = math.degrees(math.acos(np.clip(cosang, -1, 1)))
            errs.append(rot if rotation_only else max(rot, trans))
    return np.asarray(errs)


def auc(errors: np.ndarray, max_deg: float = 30.0) -> float:
    """Area under the accuracy-vs-threshold curve on [0, max_deg] degrees, in [0, 1] (integer thresholds)."""
    th = np.arange(1, int(max_deg) + 1)
    return float(np.mean([(errors < t).mean() for t in th])) if len(errors) else 0.0


def run_vggt(model, photos, gt, torch, refine: bool = False) -> dict:
    """``{"vggt": metrics}`` of one forward pass over ``photos``, plus ``"vggt+icp"`` (the same
    prediction after coloured-ICP refinement, timed with the forward pass) when ``refine``."""
    from recon3d.feedforward.vggt.predict import predict_geometry
    from recon3d.feedforward.vggt.refine import refine_poses_icp

    t0 = time.perf_counter()
    geo = predict_geometry(model, [torch.from_numpy(p).float() / 255 for p in photos])
    seconds = time.perf_counter() - t0
    out = {"vggt": vggt_metrics(geo, seconds, gt, torch)}
    if refine:
        t0 = time.perf_counter()
        refined, _ = refine_poses_icp(geo)
        out["vggt+icp"] = vggt_metrics(refined, seconds + time.perf_counter() - t0, gt, torch)
    return out


def vggt_metrics(geo, seconds: float, gt, torch) -> dict:
    """Pose (and, when ``gt`` has depth, depth) accuracy of a VGGT prediction ``geo``."""
    from recon3d.sfm import pose_accuracy

    est = geo.c2w.numpy().astype(np.float64)
    acc = pose_accuracy(est, gt["c2w"])
    n = len(gt["c2w"])
    # the true relative rotations: the error of predicting none (identity cameras)
    rel = pairwise_errors(np.tile(np.eye(4), (n, 1, 1)), gt["c2w"], rotation_only=True)
    out = {"pair_rotation_deg": float(rel.mean()) if len(rel) else 0.0, "registered": n,
           "rot_deg": acc["mean_rotation_error_deg"], "center_rel": acc["mean_center_error_rel"],
           "auc30": auc(pairwise_errors(est, gt["c2w"])),
           "pair_rot_err": float(pairwise_errors(est, gt["c2w"], rotation_only=True).mean()),
           "absrel": float("nan"), "absrel_constant_baseline": float("nan"), "seconds": seconds,
           "forward_seconds": geo.seconds}
    if gt.get("depth") is None:
        return out
    # depth AbsRel at model resolution, median scaling
    h, w = geo.model_hw
    gt_d = torch.from_numpy(gt["depth"].astype(np.float32))[:, None]
    gt_d = torch.nn.functional.interpolate(gt_d, size=(h, w), mode="nearest-exact")[:, 0].numpy()
    pred = geo.depth.numpy()
    valid = gt_d > 0
    s = np.median(gt_d[valid]) / np.median(pred[valid])
    absrel = float(np.mean(np.abs(s * pred[valid] - gt_d[valid]) / gt_d[valid]))
    # reference: a constant depth (the true median) has this AbsRel (objects are shallow vs their distance)
    flat = float(np.mean(np.abs(np.median(gt_d[valid]) - gt_d[valid]) / gt_d[valid]))
    return {**out, "absrel": absrel, "absrel_constant_baseline": flat}


def run_colmap(photos, gt, work: Path):
    from recon3d.io import read_colmap
    from recon3d.io.errors import DataError
    from recon3d.sfm import pose_accuracy, run_sfm

    img_dir = work / "images"
    img_dir.mkdir(parents=True)
    for i, p in enumerate(photos):
        Image.fromarray(p).save(img_dir / f"v{i:03d}.png")
    n = len(photos)
    npairs = n * (n - 1) // 2
    t0 = time.perf_counter()
    try:
        res = run_sfm(img_dir, work, matcher="exhaustive", num_threads=1)
    except DataError as e:
        return {"registered": 0, "rot_deg": float("nan"), "center_rel": float("nan"), "auc30": 0.0, "pair_rot_err": float("nan"),
                "absrel": float("nan"), "seconds": time.perf_counter() - t0, "note": str(e).split(": ", 1)[-1][:80]}
    seconds = time.perf_counter() - t0
    scene = read_colmap(res.model_dir, images_dir=img_dir)
    idx = [int(Path(p).stem[1:]) for p in scene.image_paths]
    est = scene.cameras.c2w.numpy().astype(np.float64)
    acc = pose_accuracy(est, gt["c2w"][idx])
    errs = pairwise_errors(est, gt["c2w"][idx])
    errs = np.concatenate([errs, np.full(npairs - len(errs), 180.0)])  # unregistered pairs fail
    return {"registered": len(idx), "rot_deg": acc["mean_rotation_error_deg"], "center_rel": acc["mean_center_error_rel"],
            "auc30": auc(errs), "pair_rot_err": float(pairwise_errors(est, gt["c2w"][idx], rotation_only=True).mean()),
            "absrel": float("nan"), "seconds": seconds, "forward_seconds": float("nan")}


METHODS = ("vggt", "vggt+icp", "sfm")


def rendered_group(cfg, idx: int) -> dict:
    """Photos ``rgb`` (V, H, W, 3) uint8, ``c2w`` (V, 4, 4) float64, ``depth`` and ``meta`` of one
    held-out object rendered with the data set's generator."""
    from recon3d.feedforward.data import render_object

    t0 = time.perf_counter()
    gt = render_object(cfg, idx)
    gt["c2w"] = gt["c2w"].astype(np.float64)
    gt["meta"] = {**gt["meta"], "id": idx, "seconds": time.perf_counter() - t0}
    return gt


def dataset_groups(root: Path, groups: int, views: int, arc: float, seed: int):
    """Yield ``groups`` view groups of a posed dataset (as :func:`rendered_group`, no depth): a
    random anchor view and the ``views - 1`` views whose camera centres are nearest to it in angle
    about the scene centre, within ``arc / 2`` degrees of it (a cone of apex ``arc``); ``arc >= 360``:
    ``views`` random views. Exits when too few views qualify."""
    from recon3d.io import load_scene

    scene = load_scene(root, background="white")
    c2w = scene.cameras.c2w.numpy().astype(np.float64)
    centre = scene.center.numpy().astype(np.float64)
    dirs = c2w[:, :3, 3] - centre
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    for anchor in rng.choice(len(c2w), size=groups, replace=False):
        if arc >= 360:
            others = rng.permutation(np.delete(np.arange(len(c2w)), anchor))[: views - 1]
            pick = [int(anchor)] + [int(i) for i in others]
        else:
            ang = np.degrees(np.arccos(np.clip(dirs @ dirs[anchor], -1, 1)))
            pick = [int(i) for i in np.argsort(ang, kind="stable")[:views] if ang[i] <= arc / 2]
        if len(pick) < views:
            raise SystemExit(f"{root}: only {len(pick)} views within {arc:g} deg of view {anchor}; lower --views")
        t0 = time.perf_counter()
        rgb = np.stack([(scene.image(i).numpy() * 255).round().astype(np.uint8) for i in pick])
        yield {"rgb": rgb, "c2w": c2w[pick], "depth": None,
               "meta": {"id": int(anchor), "kind": f"{scene.name} anchor view", "seconds": time.perf_counter() - t0}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="rendered photo size, pixels")
    ap.add_argument("--background", choices=["ground", "white"], default="ground",
                    help="ground: objects on a tiled floor, cameras 5-60 deg up (the shipped model's training "
                         "distribution, like a tabletop capture); white: the object alone, cameras -20-70 deg")
    ap.add_argument("--arc", type=float, default=360.0,
                    help="camera azimuths within this arc, degrees (default 360: all around; e.g. 90 for a "
                         "partial walk-around with overlapping views)")
    ap.add_argument("--checkpoint", default=None, help="VGGT weights (default: the shipped tiny model)")
    ap.add_argument("--data", type=Path, default=None,
                    help="a posed real dataset to sample view groups from instead of rendering objects")
    ap.add_argument("--seed", type=int, default=0, help="--data: anchor-view draw")
    ap.add_argument("--refine", action="store_true",
                    help="also report VGGT with coloured-ICP pose refinement (recon3d predict --refine-poses)")
    ap.add_argument("--no-sfm", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the per-scene results here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from recon3d.feedforward.data import GenerationConfig, split_assignment
    from recon3d.feedforward.registry import load_model

    model = load_model("vggt", args.checkpoint)
    if args.data is not None:
        groups = dataset_groups(args.data, args.scenes, args.views, args.arc, args.seed)
        where = f"{args.data} (real photos at their own size)"
    else:
        scene = {"background": "ground", "elevation_range": (5.0, 60.0)} if args.background == "ground" else {}
        cfg = GenerationConfig(image_size=args.size, views=args.views, azimuth_range=(0.0, args.arc), **scene)
        test_ids = [i for i, s in enumerate(split_assignment(cfg)) if s == "test"][: args.scenes]
        groups = (rendered_group(cfg, idx) for idx in test_ids)
        where = f"held-out objects at {args.size} px, background {args.background}"
    rows = []
    for k, gt in enumerate(groups):
        r = {"object": gt["meta"]["id"], "kind": gt["meta"]["kind"], "render_seconds": gt["meta"]["seconds"],
             **run_vggt(model, list(gt["rgb"]), gt, torch, refine=args.refine)}
        if not args.no_sfm:
            work = Path(tempfile.mkdtemp(prefix="bench_vggt_sfm_"))
            try:
                r["sfm"] = run_colmap(list(gt["rgb"]), gt, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        rows.append(r)
        line = " ".join(f"{m}: reg {r[m]['registered']}/{args.views} rot {r[m]['rot_deg']:.1f} deg "
                        f"AUC30 {r[m]['auc30']:.3f} {r[m]['seconds']:.2f}s" for m in METHODS if m in r)
        print(f"[{k + 1}/{args.scenes}] {r['kind']} {r['object']}: {line}", flush=True)

    def agg(method, key):
        vals = [r[method][key] for r in rows if method in r and np.isfinite(r[method][key])]
        return float(np.mean(vals)) if vals else float("nan")

    print(f"\n{len(rows)} groups x {args.views} views, {where}, azimuth arc {args.arc:g} deg "
          f"(VGGT model {model.config.img_size} px, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params)")
    print("| method | registered | rot err (deg) | centre err (rel) | pair rot err (deg) | AUC@30 | depth AbsRel | time / scene (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in METHODS:
        if not any(m in r for r in rows):
            continue
        reg = sum(r[m]["registered"] for r in rows)
        print(f"| {m} | {reg}/{len(rows) * args.views} | {agg(m, 'rot_deg'):.2f} | {agg(m, 'center_rel'):.3f} | "
              f"{agg(m, 'pair_rot_err'):.2f} | {agg(m, 'auc30'):.3f} | {agg(m, 'absrel'):.3f} | {agg(m, 'seconds'):.2f} |")
    print("(rotation / centre errors: mean over registered views after a similarity alignment of the centres, scenes "
          "with >= 3 registered; pair rot err: mean relative-rotation error over registered pairs; NaN = none)")
    print(f"depth AbsRel of a constant depth (the true median), for reference: {agg('vggt', 'absrel_constant_baseline'):.3f}")
    print(f"mean true rotation between two views (the error of predicting no relative rotation): "
          f"{agg('vggt', 'pair_rotation_deg'):.1f} deg")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
