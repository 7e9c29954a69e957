"""Benchmark joint camera-pose refinement (``recon3d fit --pose-opt``) on a scene with perturbed poses.

The training cameras of a posed scene are perturbed by a random rotation (``--noise-deg``, RMS angle)
and a random shift (``--noise-trans``, a fraction of the cameras' extent); the splat model is fitted
three ways in the same run, on the same views:

    clean        the true poses (the ceiling)
    noisy        the perturbed poses, no refinement (the baseline)
    noisy+opt    the perturbed poses with pose_opt

and the script prints the training-pose errors against the truth after removing the reconstruction's
rigid drift (degrees; translation as a fraction of the extent), test PSNR / SSIM from the given test
poses and after aligning each test camera to its image (the protocol for pose-refined fits), and
wall times.

    .venv/bin/python scripts/bench_pose_opt.py --data data/sample_scene --preset quick
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.core.pose_correction import correction_matrices, rigid_drift, so3_log  # noqa: E402
from recon3d.io import load_scene  # noqa: E402
from recon3d.io.normalize import normalize_scene  # noqa: E402
from recon3d.methods.splat import SplatTrainer, preset  # noqa: E402


def perturb(scene, noise_deg: float, noise_trans: float, extent: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    train = list(scene.train_indices)
    d = torch.zeros(len(scene.cameras), 6)
    d[train, :3] = torch.randn(len(train), 3, generator=g) * noise_trans * extent / math.sqrt(3)
    d[train, 3:] = torch.randn(len(train), 3, generator=g) * math.radians(noise_deg) / math.sqrt(3)
    return replace(scene, cameras=replace(scene.cameras, c2w=scene.cameras.c2w @ correction_matrices(d)))


def pose_errors(c2w: torch.Tensor, truth: torch.Tensor, extent: float) -> tuple[float, float]:
    """Mean rotation error (deg) and center error (fraction of extent) after removing the rigid drift."""
    aligned = rigid_drift(truth, c2w) @ truth
    rot = torch.rad2deg(so3_log(c2w[:, :3, :3].transpose(1, 2) @ aligned[:, :3, :3]).norm(dim=-1))
    return float(rot.mean()), float((c2w[:, :3, 3] - aligned[:, :3, 3]).norm(dim=-1).mean()) / extent


def run(name: str, scene, truth, cfg, extent: float, out: Path) -> dict:
    train = list(scene.train_indices)
    trainer = SplatTrainer(scene, cfg, out / name)
    t0 = time.perf_counter()
    trainer.fit(progress=False, log_every=10**9)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = trainer.evaluate("test", save_renders=False)
    eval_s = time.perf_counter() - t0
    test_idx = list(scene.test_indices)
    row = {"name": name, "fit_s": fit_s}
    row["rot"], row["trans"] = pose_errors(trainer.fitted_cameras().c2w[train].cpu(), truth[train], extent)
    if trainer.pose_correction is None:  # given test poses, then aligned with the same protocol
        row["psnr"], row["ssim"] = ev["psnr"], ev["ssim"]
        t0 = time.perf_counter()
        cams, _ = trainer.align_test_cameras(test_idx)
        row["align_s"] = time.perf_counter() - t0
        ev2 = _eval_with(trainer, cams)
        row["psnr_al"], row["ssim_al"] = ev2["psnr"], ev2["ssim"]
    else:
        row["psnr"], row["ssim"] = float("nan"), float("nan")
        row["psnr_al"], row["ssim_al"] = ev["psnr"], ev["ssim"]
        row["align_s"] = eval_s
    return row


def _eval_with(trainer, cams):
    from recon3d.methods.evaluation import evaluate_split

    return evaluate_split(trainer.render, trainer.scene, cams, trainer.device, trainer.run_dir, "test", False, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/sample_scene"))
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--noise-deg", type=float, default=2.0, help="RMS rotation noise of the training cameras")
    ap.add_argument("--noise-trans", type=float, default=0.02, help="RMS shift, fraction of the camera extent")
    ap.add_argument("--pose-lr", type=float, default=None, help="override the config's pose_lr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="clean,noisy,noisy+opt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    scene = normalize_scene(load_scene(args.data))
    truth = scene.cameras.c2w.clone()
    centers = truth[list(scene.train_indices), :3, 3]
    extent = float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max())
    noisy = perturb(scene, args.noise_deg, args.noise_trans, extent, args.seed)
    base = preset(args.preset, max_steps=args.max_steps)
    opt_cfg = replace(base, pose_opt=True, pose_lr=args.pose_lr or base.pose_lr)
    print(f"{args.data}: {len(scene.train_indices)} train / {len(scene.test_indices)} test views, preset "
          f"{args.preset} ({base.max_steps} steps), noise {args.noise_deg} deg / {args.noise_trans} x extent, "
          f"pose_lr {opt_cfg.pose_lr}, {opt_cfg.pose_test_steps} test alignment steps")
    plans = {"clean": (scene, base), "noisy": (noisy, base), "noisy+opt": (noisy, opt_cfg)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs.split(","):
            s, cfg = plans[name]
            rows.append(run(name, s, truth, cfg, extent, Path(tmp)))
            r = rows[-1]
            print(f"  {name}: done in {r['fit_s']:.0f} s", flush=True)
    init_rot, init_trans = pose_errors(noisy.cameras.c2w[list(scene.train_indices)], truth[list(scene.train_indices)],
                                       extent)
    print(f"\ninitial training-pose error of the noisy cameras: {init_rot:.3f} deg, {init_trans:.4f} x extent\n")
    print("| run | train rot err (deg) | train center err (x extent) | test PSNR / SSIM (given poses) "
          "| test PSNR / SSIM (aligned) | fit s | alignment s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        given = "-" if math.isnan(r["psnr"]) else f"{r['psnr']:.2f} / {r['ssim']:.4f}"
        align = f"{r['align_s']:.0f}"
        print(f"| {r['name']} | {r['rot']:.3f} | {r['trans']:.4f} | {given} | {r['psnr_al']:.2f} / {r['ssim_al']:.4f} "
              f"| {r['fit_s']:.0f} | {align} |")


if __name__ == "__main__":
    main()
