"""Benchmark the NeRF method on a Blender-format scene (e.g. ../shared/data/lego_200).

    python scripts/bench_nerf.py ../shared/data/lego_200 --minutes 18 --eval-every 500

Trains for at most ``--minutes`` of training time (and ``--max-steps`` steps), then renders the
test split and prints test PSNR / SSIM, wall times and steps, and with ``--eval-every`` a test
PSNR-vs-training-time trace on the first ``--trace-views`` test views (all written to
``<out>/bench.json``). Setup (loading, space carving, ``torch.compile``) and the trace evaluations
are not training time; ``total_wall_seconds`` counts everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from recon3d.runtime.config import PRESET_NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="Blender-format scene folder")
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget")
    ap.add_argument("--max-steps", type=int, default=None, help="step cap (default: the preset's)")
    ap.add_argument("--preset", default="default", choices=PRESET_NAMES)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shared 2-core machine: 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default=None, choices=("off", "on", "auto"))
    ap.add_argument("--eval-views", type=int, default=None, help="evaluate on the first N test views only")
    ap.add_argument("--eval-every", type=int, default=0, help="test PSNR trace every N steps (0: none)")
    ap.add_argument("--trace-views", type=int, default=4, help="test views of the PSNR trace")
    ap.add_argument("--mesh-resolution", type=int, default=0, help="also extract a density mesh (0: no)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_nerf"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.methods.nerf import NerfTrainer, preset

    t0 = time.perf_counter()
    scene = normalize_scene(load_scene(args.data))
    cfg = preset(args.preset, max_steps=args.max_steps, compile=args.compile, eval_every=args.eval_every)
    cfg.max_seconds = 60.0 * args.minutes
    cfg.eval_views = args.trace_views
    cfg.checkpoint_every = 0
    trainer = NerfTrainer(scene, cfg, args.out, device=args.device)
    t_setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = trainer.fit(progress=not args.no_progress, log_every=100)
    t_fit = time.perf_counter() - t1
    t2 = time.perf_counter()
    ev = trainer.evaluate("test", save_renders=True, max_views=args.eval_views)
    t_eval = time.perf_counter() - t2
    result = {
        "scene": str(args.data), "preset": args.preset, "device": str(trainer.device), "threads": args.threads,
        "compiled": trainer.compiled, "steps": summary["steps"], "train_seconds": round(summary["train_seconds"], 1),
        "fit_wall_seconds": round(t_fit, 1), "setup_seconds": round(t_setup, 1),
        "test_views": ev["views"], "test_psnr": round(ev["psnr"], 3), "test_ssim": round(ev["ssim"], 4),
        "render_ms_per_image": round(ev["ms_per_image"], 1), "eval_seconds": round(t_eval, 1),
        "occupancy": round(trainer.grid.occupancy_fraction(), 4),
        "per_view_psnr": [round(p, 2) for p in ev["per_view_psnr"]],
        "history": summary["history"],
        "total_wall_seconds": round(time.perf_counter() - t0, 1),
    }
    if args.mesh_resolution:
        t3 = time.perf_counter()
        mesh = trainer.extract_mesh(resolution=args.mesh_resolution)
        result.update({"mesh_vertices": mesh.num_vertices, "mesh_faces": mesh.num_faces,
                       "mesh_seconds": round(time.perf_counter() - t3, 1)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(f"NeRF bench on {args.data} ({ev['views']} test views, device {trainer.device}, {args.threads} threads, "
          f"compiled={trainer.compiled})")
    print(f"  steps {summary['steps']}, training {summary['train_seconds']:.1f} s (budget {60 * args.minutes:.0f} s), "
          f"setup {t_setup:.1f} s, eval {t_eval:.1f} s ({ev['ms_per_image']:.0f} ms/image)")
    print(f"  test PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f}; wall time from start to metrics "
          f"{result['total_wall_seconds']:.0f} s")
    trace = [h for h in summary["history"] if "test_psnr" in h]
    if trace:
        print(f"  test PSNR vs training time (first {trace[0]['test_views']} test views):")
        for h in trace:
            print(f"    step {h['step']:6d}  {h['seconds']:7.1f} s  {h['test_psnr']:.2f} dB  SSIM {h['test_ssim']:.4f}")
        print(f"    step {summary['steps']:6d}  {summary['train_seconds']:7.1f} s  {ev['psnr']:.2f} dB  SSIM "
              f"{ev['ssim']:.4f} (all {ev['views']} test views)")
    if args.mesh_resolution:
        print(f"  density mesh: {result['mesh_vertices']} vertices, {result['mesh_faces']} faces "
              f"({result['mesh_seconds']} s)")


if __name__ == "__main__":
    main()
