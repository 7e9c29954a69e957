#!/usr/bin/env python
"""Benchmark: fit 3D Gaussian splats to a posed dataset and print quality, time and memory.

    python scripts/bench_splat.py ../shared/data/lego_200 [--preset default] [--max-steps N] [--device cpu]

Prints test PSNR/SSIM, wall time, steps, Gaussian count, peak memory, and the rasterizer's
forward+backward time per step: the chosen backend against the brute-force reference, measured in the
same run on the fitted model (on a random subset of its Gaussians small enough for the reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.core.gaussians import rasterize  # noqa: E402
from recon3d.io import load_scene  # noqa: E402
from recon3d.io.normalize import normalize_scene  # noqa: E402
from recon3d.methods.splat import SplatTrainer, preset  # noqa: E402


def time_fwd_bwd(fn, reps: int = 3) -> float:
    """Median seconds of forward + backward of ``fn()`` (which returns a rendered image)."""
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def raster_comparison(trainer: SplatTrainer, subset: int, backend: str) -> dict:
    m = trainer.model
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(m), generator=g)[: min(subset, len(m))].to(m.means.device)
    cam = trainer.cameras[int(trainer.scene.test_indices[0] if trainer.scene.test_indices else 0)]

    def leaf(t):
        return t.detach()[idx].clone().requires_grad_(True)

    gs = m.gaussians().map(leaf)
    kw = dict(viewmats=cam.w2c, Ks=cam.K, width=int(cam.width[0]), height=int(cam.height[0]),
              sh_degree=m.max_sh_degree, backgrounds=torch.ones(1, 3, device=gs.device))
    fast = time_fwd_bwd(lambda: rasterize(gs, backend=backend, **kw).colors)
    ref = time_fwd_bwd(lambda: rasterize(gs, backend="reference", **kw).colors, reps=1)
    return {"gaussians": int(idx.numel()), "backend_ms": 1000 * fast, "reference_ms": 1000 * ref,
            "speedup": ref / fast}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--ref-subset", type=int, default=3000, help="Gaussians used for the reference timing")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    scene = normalize_scene(load_scene(args.data))
    cfg = preset(args.preset, max_steps=args.max_steps, backend=args.backend)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_splat_"))
    trainer = SplatTrainer(scene, cfg, out, device=args.device)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    summary = trainer.fit(progress=sys.stderr.isatty(), log_every=100)
    for h in summary["history"]:
        logging.info("step %(step)d loss %(loss).4f train-psnr %(psnr).2f gaussians %(gaussians)d", h)
    train_s = time.perf_counter() - t0
    ev = trainer.evaluate("test", save_renders=args.out is not None)
    peak_rss_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the reference's big tables
    raster = raster_comparison(trainer, args.ref_subset, args.backend)
    figures = {
        "data": str(args.data), "preset": args.preset, "device": str(trainer.device), "steps": summary["steps"],
        "train_seconds": round(train_s, 1), "gaussians": summary["gaussians"],
        "test_psnr": round(ev["psnr"], 3), "test_ssim": round(ev["ssim"], 4), "test_views": ev["views"],
        "render_ms_per_image": round(ev["ms_per_image"], 1),
        "peak_rss_mb_fit_and_eval": round(peak_rss_train, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if trainer.device.type == "cuda" else None,
        "raster_fwd_bwd": {k: round(v, 2) if isinstance(v, float) else v for k, v in raster.items()},
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
