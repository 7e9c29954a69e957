#!/usr/bin/env python
"""Novel-view quality of pixelNeRF on held-out objects, from 1 and from 3 input views, against trivial
baselines computed in the same run. Prints a table (and writes JSON with ``--out``).

For each object of the split (default ``test``: never seen in training), the data set's fixed view
order gives sources = the first 1 or 3 views and targets = views 3 .. 3 + targets - 1 (the same targets
for both source counts). Baselines predict each target as:

- ``white``: an all-white image (the background);
- ``mean train image``: the per-pixel mean of training-split images (white background included);
- ``source view``: the first source image itself (what a model that copies its input would score).

Usage::

    /work/heavy .venv/bin/python scripts/bench_pixelnerf.py --data outputs/ffdata64 [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.core.metrics import psnr, ssim  # noqa: E402
from recon3d.feedforward.data import MultiViewDataset  # noqa: E402
from recon3d.feedforward.registry import load_model  # noqa: E402


def mean_train_image(data: Path, max_objects: int, views: int, size: int) -> torch.Tensor:
    """(H, W, 3) per-pixel mean over ``views`` views of the first ``max_objects`` training objects."""
    ds = MultiViewDataset(data, "train", views_per_item=views, seed=0)
    acc = torch.zeros(size, size, 3)
    n = 0
    for i in range(min(max_objects, len(ds))):
        imgs = ds[(i, 0)]["images"]  # (V, 3, H, W)
        acc += imgs.permute(0, 2, 3, 1).sum(0)
        n += imgs.shape[0]
    return acc / n


def scores(pred: torch.Tensor, gt: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-image PSNR and SSIM of (N, H, W, 3) predictions."""
    return psnr(pred, gt).tolist(), [float(ssim(p, g)) for p, g in zip(pred, gt)]


@torch.no_grad()
def calibrate_threshold(model, ds: MultiViewDataset, n_objects: int, num_source: int = 1) -> tuple[float, float]:
    """Density level that best separates inside from free space on ``n_objects`` objects of ``ds``.

    From each object's non-source views, pixels with mask > 0.99 give an inside point 0.03 world
    units behind the surface (depth map) and a free-space point 0.1 units in front of it; pixels
    with mask 0 give a free-space point at a random distance in the scene cube. Returns the level
    (log-spaced grid, 1/world units) with the best balanced accuracy, and that accuracy.
    """
    from recon3d.feedforward.rendering import camera_rays

    gen = torch.Generator().manual_seed(0)
    inside, outside = [], []
    for i in range(n_objects):
        item = ds[i]
        b = {k: v[None] for k, v in item.items()}
        latent = model.encode(b["images"][:, :num_source], b["K"][:, :num_source], b["c2w"][:, :num_source])
        for v in range(num_source, item["images"].shape[0]):
            H, W = item["images"].shape[-2:]
            o, d = camera_rays(item["K"][v][None], item["c2w"][v][None], H, W)
            fwd = item["c2w"][v][:3, 2]
            z = item["depths"][v].reshape(-1)
            m = item["masks"][v].reshape(-1)
            t = z / (d[0] @ fwd).clamp_min(1e-6)
            fg, bg = (m > 0.99) & (z > 0), m == 0
            p_in = o[0][fg] + (t[fg] + 0.03)[:, None] * d[0][fg]
            p_front = o[0][fg] + (t[fg] - 0.1)[:, None] * d[0][fg]
            tb = 2.0 + 3.0 * torch.rand(int(bg.sum()), generator=gen)
            p_bg = o[0][bg] + tb[:, None] * d[0][bg]
            p_bg = p_bg[(p_bg.abs() < model.scene_bound).all(-1)]
            pts = torch.cat([p_in, p_front, p_bg])
            sigma, _ = model.query(latent, pts[None], None)
            inside.append(sigma[0, :len(p_in)])
            outside.append(sigma[0, len(p_in):])
    inside, outside = torch.cat(inside), torch.cat(outside)
    best = (0.0, 10.0)
    for level in torch.logspace(-1, 3, 81).tolist():
        acc = 0.5 * (float((inside > level).float().mean()) + float((outside <= level).float().mean()))
        if acc > best[0]:
            best = (acc, level)
    return best[1], best[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("outputs/ffdata64"), help="feed-forward data set folder")
    p.add_argument("--checkpoint", type=Path, default=None, help="pixelNeRF checkpoint (default: the shipped one)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--objects", type=int, default=0, help="objects to evaluate (0: the whole split)")
    p.add_argument("--targets", type=int, default=2, help="target views per object")
    p.add_argument("--sources", default="1,3", help="comma-separated source-view counts")
    p.add_argument("--num-coarse", type=int, default=None, help="ray samples (default: the model config's)")
    p.add_argument("--num-fine", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--calibrate-threshold", type=int, default=0, metavar="N",
                   help="also print the mesh density level that best separates inside from outside on N "
                        "val objects (1 source view)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = load_model("pixelnerf", args.checkpoint)
    if args.num_coarse is not None:
        model.config.num_coarse = args.num_coarse
    if args.num_fine is not None:
        model.config.num_fine = args.num_fine
    sources = [int(s) for s in args.sources.split(",")]
    first_target = max(sources)
    ds = MultiViewDataset(args.data, args.split, views_per_item=first_target + args.targets, seed=0)
    n_obj = len(ds) if args.objects <= 0 else min(args.objects, len(ds))
    size = ds.image_size
    mean_img = mean_train_image(args.data, 100, 8, size)
    targets = list(range(first_target, first_target + args.targets))

    calibration = None
    if args.calibrate_threshold > 0:
        val = MultiViewDataset(args.data, "val", views_per_item=4, seed=0)
        level, acc = calibrate_threshold(model, val, min(args.calibrate_threshold, len(val)))
        calibration = {"mesh_threshold": level, "balanced_accuracy": acc}
        print(f"mesh density level {level:.3g} / world unit separates inside from free space with balanced "
              f"accuracy {acc:.3f} (val split, 1 source view); current config: {model.config.mesh_threshold:g}")

    rows: dict[str, dict[str, list[float]]] = {}

    def add(name: str, pred: torch.Tensor, gt: torch.Tensor) -> None:
        ps, ss = scores(pred, gt)
        r = rows.setdefault(name, {"psnr": [], "ssim": []})
        r["psnr"] += ps
        r["ssim"] += ss

    t_model, n_views = 0.0, 0
    for i in range(n_obj):
        item = ds[i]
        batch = {k: v[None] for k, v in item.items()}
        gt = item["images"][targets].permute(0, 2, 3, 1)  # (T, H, W, 3)
        add("white", torch.ones_like(gt), gt)
        add("mean train image", mean_img.expand_as(gt), gt)
        add("source view", item["images"][0].permute(1, 2, 0).expand_as(gt).contiguous(), gt)
        for s in sources:
            t = time.perf_counter()
            with torch.no_grad():
                pred = model.render_novel_views(batch, s, targets)[0]
            t_model += time.perf_counter() - t
            n_views += len(targets)
            add(f"pixelNeRF, {s} view{'s' if s > 1 else ''}", pred.clamp(0, 1), gt)
        print(f"object {i + 1}/{n_obj}: " + ", ".join(f"{k} {sum(v['psnr'][-len(targets):]) / len(targets):.2f} dB"
                                                   for k, v in rows.items()), flush=True)

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"\npixelNeRF novel views, {args.split} split: {n_obj} objects x {len(targets)} target views, "
          f"{size}x{size}, checkpoint {args.checkpoint or 'shipped'}; "
          f"{t_model / max(n_views, 1):.2f} s per rendered view ({args.threads} thread(s))")
    print(f"{'method':<24} {'PSNR (dB)':>10} {'SSIM':>8}")
    for name, r in rows.items():
        print(f"{name:<24} {mean(r['psnr']):>10.2f} {mean(r['ssim']):>8.4f}")
    if args.out is not None:
        from recon3d.io.atomic import atomic_write_json

        atomic_write_json(args.out, {
            "split": args.split, "objects": n_obj, "targets_per_object": len(targets), "image_size": size,
            "checkpoint": str(args.checkpoint or "shipped"), "seconds_per_view": t_model / max(n_views, 1),
            "results": {k: {"psnr": mean(v["psnr"]), "ssim": mean(v["ssim"]), "n": len(v["psnr"])} for k, v in rows.items()},
            "calibration": calibration,
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
