#!/usr/bin/env python
"""Benchmark: fit 3D Gaussian splats to a posed dataset and print quality, time and memory.

    python scripts/bench_splat.py ../shared/data/lego_200 [--preset default] [--max-steps N] [--device cpu]

Prints test PSNR/SSIM, wall time, steps, Gaussian count, peak memory, the rasterizer's
forward+backward time per step (the chosen backend against the brute-force reference, measured in the
same run on the fitted model, on a random subset of its Gaussians small enough for the reference), and
where a training step's time goes (rasterizer forward/backward, SSIM loss, densification, optimizer,
data; profiled on the fitted model after the evaluation).
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


def step_breakdown(trainer: SplatTrainer, steps: int = 20) -> dict:
    """Where a training step's time goes: ``steps`` more steps of the fitted model under the profiler
    (after the evaluation, so the reported quality is unaffected), in ms per step. ``rasterize`` is
    the rasterizer's forward, ``raster_backward`` its backward (the custom autograd functions of the
    cpp/torch backends), ``loss`` the L1 + SSIM forward, ``backward_rest`` the rest of the backward
    pass (mostly SSIM's), ``densify`` the statistics and the clone/split/prune steps, ``optimizer``
    Adam, ``data`` picking the view and its image."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):  # warm-up
        trainer.train_step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    wall = (time.perf_counter() - t0) / steps
    totals: dict = {}
    raster_bwd = 0.0
    for ev in prof.key_averages():
        if ev.key.startswith("step."):
            totals[ev.key[5:]] = ev.cpu_time_total / 1e3 / steps
        elif ev.key in ("_CompositeCppBackward", "_ProjectCppBackward", "_CompositeBackward",
                        "ProjectedCovarianceBackward", "_CombineBasesBackward"):
            raster_bwd += ev.self_cpu_time_total / 1e3 / steps
    out = {"ms_per_step_profiled": round(1000 * wall, 1), "gaussians": len(trainer.model)}
    for k in ("data", "rasterize", "loss", "backward", "densify", "optimizer"):
        out[k] = round(totals.get(k, 0.0), 1)
    out["raster_backward"] = round(raster_bwd, 1)
    out["backward_rest"] = round(out.pop("backward") - raster_bwd, 1)
    accounted = sum(v for k, v in out.items() if k not in ("ms_per_step_profiled", "gaussians"))
    out["rasterizer_share"] = round((out["rasterize"] + out["raster_backward"]) / max(accounted, 1e-9), 3)
    return out


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
    breakdown = step_breakdown(trainer)
    figures = {
        "data": str(args.data), "preset": args.preset, "device": str(trainer.device), "steps": summary["steps"],
        "train_seconds": round(train_s, 1), "gaussians": summary["gaussians"],
        "test_psnr": round(ev["psnr"], 3), "test_ssim": round(ev["ssim"], 4), "test_views": ev["views"],
        "render_ms_per_image": round(ev["ms_per_image"], 1),
        "peak_rss_mb_fit_and_eval": round(peak_rss_train, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if trainer.device.type == "cuda" else None,
        "ms_per_step": round(1000 * train_s / max(summary["steps"], 1), 1),
        "raster_fwd_bwd": {k: round(v, 2) if isinstance(v, float) else v for k, v in raster.items()},
        "step_breakdown_ms": breakdown,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
