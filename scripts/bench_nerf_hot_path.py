#!/usr/bin/env python
"""The NeRF trainer's hot path on CPU: hash-grid encoding and ray marching, PyTorch vs compiled kernel.

    python scripts/bench_nerf_hot_path.py ../shared/data/lego_200 [--steps 40] [--threads 2]

Two measurements, each with the hash-grid lookup in PyTorch (``RECON3D_HASHGRID=torch``, the
baseline) and in the compiled kernel (``cpp``, the default on CPU), in the same run:

1. the encoding alone (forward and backward w.r.t. the table) on as many random points as a training
   batch shades (``--points``, default the config's ``target_samples``);
2. ``--steps`` training steps of the default NeRF preset (after ``--warmup`` steps), with the trainer's
   own clock: occupancy-grid update, ray marching (sampling and the density queries that skip empty
   space), the forward pass (shading, compositing, loss), backward, optimizer. Both modes start from
   the same seed and state, so they do the same work.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.core.encodings import ENV_HASHGRID, HashGridEncoding  # noqa: E402

KEYS = ("t_grid", "t_march", "t_forward", "t_backward", "t_optim")


def encoding_times(points: int, cfg, reps: int = 5) -> dict:
    f = cfg.field
    enc = HashGridEncoding(f.num_levels, f.features_per_level, f.log2_hashmap_size, f.base_resolution,
                           f.max_resolution, init_scale=0.1)
    x = torch.rand(points, 3, generator=torch.Generator().manual_seed(0))
    out = {}
    for mode in ("torch", "cpp"):
        os.environ[ENV_HASHGRID] = mode
        fw, bw = [], []
        for _ in range(reps + 1):
            enc.table.grad = None
            t0 = time.perf_counter()
            y = enc(x)
            t1 = time.perf_counter()
            y.square().sum().backward()
            fw.append(t1 - t0)
            bw.append(time.perf_counter() - t1)
        out[mode] = (1000 * min(fw[1:]), 1000 * min(bw[1:]))
    return out


def training_times(data: Path, steps: int, warmup: int) -> dict:
    from recon3d.io import load_scene
    from recon3d.io.normalize import normalize_scene
    from recon3d.methods.nerf import NerfTrainer, preset

    scene = normalize_scene(load_scene(data))
    out = {}
    for mode in ("torch", "cpp"):
        os.environ[ENV_HASHGRID] = mode
        torch.manual_seed(0)
        trainer = NerfTrainer(scene, preset("default", compile="off"), Path(tempfile.mkdtemp(prefix="nerf_hot_")),
                              device="cpu")
        for _ in range(warmup):
            trainer.train_step()
        acc = {k: 0.0 for k in KEYS}
        samples = 0
        t0 = time.perf_counter()
        for _ in range(steps):
            r = trainer.train_step()
            samples += r["samples"]
            for k in KEYS:
                acc[k] += r.get(k, 0.0)
        wall = (time.perf_counter() - t0) / steps
        out[mode] = {"ms_per_step": 1000 * wall, "samples_per_step": samples / steps,
                     **{k: 1000 * v / steps for k, v in acc.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from recon3d.methods.nerf import preset

    cfg = preset("default")
    points = args.points or cfg.target_samples
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    enc = encoding_times(points, cfg)
    (tf, tb), (cf, cb) = enc["torch"], enc["cpp"]
    print(f"hash-grid encoding, {points} points, {cfg.field.num_levels} levels: torch fwd {tf:.1f} + bwd {tb:.1f} ms, "
          f"cpp fwd {cf:.1f} + bwd {cb:.1f} ms: x{(tf + tb) / (cf + cb):.1f}")
    tr = training_times(args.data, args.steps, args.warmup)
    for mode, r in tr.items():
        parts = ", ".join(f"{k[2:]} {r[k]:.1f}" for k in KEYS)
        print(f"training step ({mode} hash grid): {r['ms_per_step']:.1f} ms/step ({parts}; "
              f"{r['samples_per_step']:.0f} shaded samples)")
    print(f"step speed-up with the compiled hash grid: x{tr['torch']['ms_per_step'] / tr['cpp']['ms_per_step']:.2f}")


if __name__ == "__main__":
    main()
