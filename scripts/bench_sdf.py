"""Benchmark the NeuS-style SDF method against a ground-truth mesh (generated scenes).

    python scripts/bench_sdf.py data/sample_scene --minutes 10

Trains for at most ``--minutes`` (and the preset's steps), extracts the zero level set with marching
cubes, maps it back to the scene's world units and compares it with ``<scene>/gt_mesh.ply`` (same
world frame as the cameras): Chamfer distance (mean of accuracy and completeness) and F-score at a
few thresholds, on points sampled uniformly on both surfaces. Distances are in the scene's world
units; the figures also give them relative to the ground-truth bounding-box diagonal.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from recon3d.runtime.config import PRESET_NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=Path("data/sample_scene"))
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--preset", default="default", choices=PRESET_NAMES)
    ap.add_argument("--geometry", default=None, choices=("mlp", "hashgrid"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shared 2-core machine: 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=256, help="marching-cubes grid")
    ap.add_argument("--points", type=int, default=100_000, help="surface samples per mesh for the metrics")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02, 0.05], help="F-score, world units")
    ap.add_argument("--eval-views", type=int, default=2, help="test views to render for PSNR (0: none)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_sdf"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import trimesh

    from recon3d.core.metrics import chamfer_distance, fscore, sample_mesh_points
    from recon3d.mesh import export_mesh
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.methods.sdf import SdfTrainer, preset

    gt_path = args.data / "gt_mesh.ply"
    if not gt_path.is_file():
        raise SystemExit(f"{gt_path}: no ground-truth mesh (this benchmark needs a generated scene)")
    t0 = time.perf_counter()
    scene = normalize_scene(load_scene(args.data))
    cfg = preset(args.preset, max_steps=args.max_steps)
    if args.geometry:
        cfg.field.geometry = args.geometry
    cfg.max_seconds = 60.0 * args.minutes
    cfg.checkpoint_every = 0
    trainer = SdfTrainer(scene, cfg, args.out, device=args.device)
    summary = trainer.fit(progress=not args.no_progress, log_every=100)
    t_fit = time.perf_counter() - t0

    t1 = time.perf_counter()
    mesh = trainer.extract_mesh(resolution=args.resolution, original_units=True)
    t_mesh = time.perf_counter() - t1
    gt = trimesh.load(gt_path, force="mesh", process=False)
    gt_v, gt_f = np.asarray(gt.vertices, dtype=np.float64), np.asarray(gt.faces, dtype=np.int64)
    diag = float(np.linalg.norm(gt_v.max(0) - gt_v.min(0)))
    gt_radius = float(np.linalg.norm(gt_v, axis=-1).max())  # the generator centers objects at the origin
    result = {"scene": str(args.data), "preset": args.preset, "geometry": cfg.field.geometry, "steps": summary["steps"],
              "train_seconds": round(summary["train_seconds"], 1), "wall_seconds_fit": round(t_fit, 1),
              "mesh_seconds": round(t_mesh, 1), "mesh_resolution": args.resolution,
              "mesh_vertices": mesh.num_vertices, "mesh_faces": mesh.num_faces,
              "extraction": mesh.metadata.get("extraction", "none"), "gt_bbox_diagonal": round(diag, 4),
              "gt_radius": round(gt_radius, 4),
              "units": "scene world units (gt_mesh.ply frame)", "sphere_radius_normalized": trainer.field.radius}
    if mesh.num_faces == 0:
        result["error"] = "empty mesh"
    else:
        pred_pts = sample_mesh_points(mesh.vertices, mesh.faces, args.points, seed=0)
        gt_pts = sample_mesh_points(gt_v, gt_f, args.points, seed=1)
        ch = chamfer_distance(pred_pts, gt_pts)
        result.update({k: round(v, 5) for k, v in ch.items()})
        result["chamfer_relative_to_diag"] = round(ch["chamfer"] / diag, 5)
        result["fscore"] = {}
        for th in args.thresholds:
            f = fscore(pred_pts, gt_pts, th)
            result["fscore"][str(th)] = {k: round(v, 4) for k, v in f.items()}
    if args.eval_views > 0 and scene.test_indices:
        t2 = time.perf_counter()
        ev = trainer.evaluate("test", save_renders=True, max_views=args.eval_views)
        result.update({"test_views": ev["views"], "test_psnr": round(ev["psnr"], 3), "test_ssim": round(ev["ssim"], 4),
                       "eval_seconds": round(time.perf_counter() - t2, 1)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({**result, "history": summary["history"]}, indent=2))
    if mesh.num_faces:  # the mesh is already in world units: no normalization to undo; PLY keeps the axes
        export_mesh(mesh, args.out / "mesh.ply")

    print(f"SDF bench on {args.data} (device {trainer.device}, {args.threads} threads, geometry {cfg.field.geometry})")
    print(f"  steps {summary['steps']}, training {summary['train_seconds']:.1f} s, mesh {t_mesh:.1f} s at "
          f"{args.resolution}^3 ({mesh.num_faces} faces, {result['extraction']})")
    print(f"  ground truth: {gt_path}, world units: object radius {gt_radius:.3f} (farthest vertex from the "
          f"origin), bbox diagonal {diag:.3f}")
    if "chamfer" in result:
        print(f"  Chamfer {result['chamfer']:.5f} (accuracy {result['accuracy']:.5f}, completeness "
              f"{result['completeness']:.5f}) = {100 * result['chamfer_relative_to_diag']:.2f}% of the diagonal")
        for th, f in result["fscore"].items():
            print(f"  F-score@{th}: {f['fscore']:.4f} (precision {f['precision']:.4f}, recall {f['recall']:.4f})")
    else:
        print("  empty mesh: no geometry metrics")
    if "test_psnr" in result:
        print(f"  test PSNR {result['test_psnr']:.2f} dB on {result['test_views']} views")


if __name__ == "__main__":
    main()
