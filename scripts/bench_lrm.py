#!/usr/bin/env python
"""Benchmark LRM on held-out synthetic objects: novel views, meshes, CPU time, against trivial baselines.

    /work/heavy .venv/bin/python scripts/bench_lrm.py --data outputs/ffdata64 [--checkpoint data/checkpoints/lrm.pt]

For every object of the ``--split`` (default ``test``: objects the model never saw) it takes the
split's fixed views (view 0 = the input, the next ``--eval-views`` = held out) and measures:

* novel views: PSNR / SSIM (``recon3d.core.metrics``, 11-px Gaussian window) of the held-out views;
* geometry: the marching-cubes mesh (density level ``--threshold``, default the model's) against the
  ground-truth surface, regenerated from the manifest's object seed and kind with
  ``recon3d.io.synthetic.make_object`` (the exact mesh the data set was rendered from): symmetric
  Chamfer distance (mean of both directions, not squared) and F-score at ``--fscore`` world units,
  on ``--points`` area-uniform samples of each surface (object radius 0.95 world units);
* CPU time per object: encode, one 64 x 64 view, the mesh.

Baselines in the same run, from the same input view only:

* ``input-image``: the input photo itself as the prediction of every held-out view (views only);
* ``sphere``: a sphere of the input's mean object colour, radius from the input silhouette (the
  sphere whose projected disc has the silhouette's area at the camera's distance), rendered by the
  same renderer, its mesh an icosphere.

Prints a table (means over objects) and writes ``--json`` if given.

Threshold calibration (run on the ``val`` split, never on test)::

    scripts/bench_lrm.py --calibrate --split val [--write-checkpoint data/checkpoints/lrm.pt]

sweeps the density level, prints mean Chamfer / F-score per level and, with ``--write-checkpoint``,
stores the level with the best F-score at the first ``--fscore`` threshold as the checkpoint's
``config.mesh_threshold`` (what ``recon3d predict`` then uses).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recon3d.core.metrics import chamfer_distance, fscore, psnr, sample_mesh_points, ssim
from recon3d.feedforward.base import ConditionedRadianceField
from recon3d.feedforward.rendering import RenderOptions, render_view


class SphereField(ConditionedRadianceField):
    """Baseline: a uniformly coloured sphere (latent: radius (B,), colour (B, 3))."""

    name = "sphere-baseline"

    def __init__(self) -> None:
        super().__init__(config=None)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, images, K, c2w):
        raise NotImplementedError("built from silhouettes by sphere_from_input")

    def query(self, latent, points, directions):
        radius, color = latent
        inside = points.norm(dim=-1) < radius[:, None]
        sigma = torch.where(inside, torch.full_like(points[..., 0], 200.0), torch.zeros_like(points[..., 0]))
        return sigma, color[:, None, :].expand(*points.shape[:-1], 3)

    def training_step(self, batch, step):
        raise NotImplementedError

    def validation_step(self, batch):
        raise NotImplementedError


def sphere_from_input(image: torch.Tensor, mask: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor):
    """Radius (world units) and mean colour of the baseline sphere from one view.

    image (3, H, W), mask (1, H, W), K (3, 3), c2w (4, 4). A sphere of radius r at distance d projects
    to a disc of radius f r / sqrt(d^2 - r^2) pixels; solve for the silhouette's equivalent disc.
    """
    m = mask[0] > 0.5
    area = float(m.sum())
    rho = math.sqrt(max(area, 1.0) / math.pi)
    f = float(K[0, 0] + K[1, 1]) / 2
    d = float(c2w[:3, 3].norm())
    r = rho * d / math.sqrt(f * f + rho * rho)
    color = image[:, m].mean(dim=1) if m.any() else torch.full((3,), 0.5)
    return torch.tensor([r]), color[None]


def gt_surface_points(record: dict, n: int, seed: int = 0) -> np.ndarray:
    from recon3d.io.synthetic import make_object

    obj = make_object(int(record["seed"]), record["kind"])
    return sample_mesh_points(np.asarray(obj.mesh.vertices), np.asarray(obj.mesh.triangles), n, seed=seed)


def mesh_metrics(verts, faces, gt_pts: np.ndarray, n: int, thresholds: list[float]) -> dict:
    pts = sample_mesh_points(verts, faces, n, seed=1)
    out = {"chamfer": chamfer_distance(pts, gt_pts)["chamfer"]}
    for t in thresholds:
        out[f"f@{t:g}"] = fscore(pts, gt_pts, t)["fscore"]
    return out


def view_metrics(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """pred, gt: (T, H, W, 3) in [0, 1] -> mean PSNR / SSIM over the T views."""
    return {"psnr": float(psnr(pred.clamp(0, 1), gt).mean()), "ssim": float(ssim(pred.clamp(0, 1), gt))}


def calibrate(args) -> int:
    """Mean mesh metrics per density level on ``args.split`` objects; optionally store the best level."""
    from tqdm import tqdm

    from recon3d.feedforward.base import load_payload
    from recon3d.feedforward.data import MultiViewDataset
    from recon3d.feedforward.registry import load_model, shipped_checkpoint
    from recon3d.runtime.checkpoint import atomic_torch_save

    if args.split == "test":
        print("warning: calibrating on the test split leaks into the benchmark; use --split val", file=sys.stderr)
    ckpt = args.checkpoint or shipped_checkpoint("lrm")
    model = load_model("lrm", ckpt)
    ds = MultiViewDataset(args.data, args.split, views_per_item=1)
    n_obj = min(len(ds), args.max_objects)
    key = f"f@{args.fscore[0]:g}"
    scores: dict[float, list[dict]] = {lv: [] for lv in args.levels}
    for i in tqdm(range(n_obj), desc=f"calibrate ({args.split})"):
        b = {k: v[None] for k, v in ds[i].items()}
        gt_pts = gt_surface_points(ds.items[i], args.points)
        with torch.no_grad():
            lat = model.encode(b["images"], b["K"], b["c2w"])
            for lv in args.levels:
                try:
                    mesh = model.extract_mesh(lat, resolution=args.mesh_resolution, threshold=lv)
                    scores[lv].append(mesh_metrics(mesh.vertices, mesh.faces, gt_pts, args.points, args.fscore))
                except ValueError:  # no surface at this level
                    scores[lv].append({"chamfer": float("nan"), **{f"f@{t:g}": 0.0 for t in args.fscore}})
    print(f"\ndensity level sweep on {n_obj} {args.split} objects (marching cubes {args.mesh_resolution}^3)")
    print(f"{'level':>8}{'chamfer':>10}" + "".join(f"{f'f@{t:g}':>10}" for t in args.fscore) + f"{'empty':>8}")
    best, best_f = None, -1.0
    for lv, rs in scores.items():
        ch = [r["chamfer"] for r in rs if not math.isnan(r["chamfer"])]
        fs = {t: float(np.mean([r[f"f@{t:g}"] for r in rs])) for t in args.fscore}
        empty = sum(math.isnan(r["chamfer"]) for r in rs)
        print(f"{lv:>8g}{(np.mean(ch) if ch else float('nan')):>10.4f}" + "".join(f"{fs[t]:>10.4f}" for t in args.fscore)
              + f"{empty:>8d}")
        if fs[args.fscore[0]] > best_f:
            best, best_f = lv, fs[args.fscore[0]]
    print(f"best level {best:g} ({key} {best_f:.4f})")
    if args.write_checkpoint is not None:
        payload = load_payload(args.write_checkpoint)
        payload["config"]["mesh_threshold"] = float(best)
        payload.setdefault("calibration", {})["mesh_threshold"] = {
            "split": args.split, "objects": n_obj, "metric": key, "value": best_f, "levels": list(args.levels)}
        atomic_torch_save(payload, args.write_checkpoint)
        print(f"wrote mesh_threshold {best:g} into {args.write_checkpoint}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("outputs/ffdata64"))
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: data/checkpoints/lrm.pt")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-objects", type=int, default=20)
    ap.add_argument("--eval-views", type=int, default=4, help="held-out views per object")
    ap.add_argument("--mesh-resolution", type=int, default=96)
    ap.add_argument("--threshold", type=float, default=None, help="density level (1/world units)")
    ap.add_argument("--fscore", type=float, nargs="+", default=[0.05, 0.1], help="F-score thresholds, world units")
    ap.add_argument("--points", type=int, default=20000, help="surface samples per mesh")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--calibrate", action="store_true", help="sweep the mesh density level instead (use --split val)")
    ap.add_argument("--levels", type=float, nargs="+", default=[1, 2, 3, 5, 7, 10, 15, 20, 30])
    ap.add_argument("--write-checkpoint", type=Path, default=None, help="with --calibrate: store the best level here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.calibrate:
        return calibrate(args)

    from tqdm import tqdm

    from recon3d.feedforward.data import MultiViewDataset
    from recon3d.feedforward.registry import load_model, shipped_checkpoint
    from recon3d.io.atomic import atomic_write_json

    ckpt = args.checkpoint or shipped_checkpoint("lrm")
    model = load_model("lrm", ckpt)
    thr = args.threshold if args.threshold is not None else model.mesh_density_threshold
    ds = MultiViewDataset(args.data, args.split, views_per_item=1 + args.eval_views)
    n_obj = min(len(ds), args.max_objects)
    opts = RenderOptions()
    sphere = SphereField()
    rows: dict[str, list[dict]] = {"lrm": [], "sphere": [], "input-image": []}
    times = {"encode": [], "view": [], "mesh": []}
    empty = 0
    for i in tqdm(range(n_obj), desc=f"bench lrm ({args.split})"):
        item = ds[i]
        rec = ds.items[i]
        b = {k: v[None] for k, v in item.items()}
        T = args.eval_views
        gt = b["images"][0, 1:1 + T].permute(0, 2, 3, 1)
        H, W = gt.shape[1:3]
        gt_pts = gt_surface_points(rec, args.points)

        with torch.no_grad():
            t = time.perf_counter()
            lat = model.encode(b["images"][:, :1], b["K"][:, :1], b["c2w"][:, :1])
            times["encode"].append(time.perf_counter() - t)
            preds = []
            for v in range(1, 1 + T):
                t = time.perf_counter()
                preds.append(render_view(model, lat, b["K"][:, v], b["c2w"][:, v], H, W, opts)["rgb"][0])
                times["view"].append(time.perf_counter() - t)
            row = view_metrics(torch.stack(preds), gt)
            t = time.perf_counter()
            try:
                mesh = model.extract_mesh(lat, resolution=args.mesh_resolution, threshold=thr)
                times["mesh"].append(time.perf_counter() - t)
                row.update(mesh_metrics(mesh.vertices, mesh.faces, gt_pts, args.points, args.fscore))
                row["faces"] = mesh.num_faces
            except ValueError:
                empty += 1
                row.update({"chamfer": float("nan"), **{f"f@{t:g}": 0.0 for t in args.fscore}})
            rows["lrm"].append(row)

            radius, color = sphere_from_input(b["images"][0, 0], b["masks"][0, 0], b["K"][0, 0], b["c2w"][0, 0])
            spreds = [render_view(sphere, (radius, color), b["K"][:, v], b["c2w"][:, v], H, W,
                                  RenderOptions(num_coarse=96, num_fine=0))["rgb"][0] for v in range(1, 1 + T)]
            srow = view_metrics(torch.stack(spreds), gt)
            import open3d as o3d

            ico = o3d.geometry.TriangleMesh.create_sphere(float(radius), resolution=40)
            srow.update(mesh_metrics(np.asarray(ico.vertices), np.asarray(ico.triangles), gt_pts, args.points, args.fscore))
            rows["sphere"].append(srow)
            src = b["images"][0, 0].permute(1, 2, 0)
            rows["input-image"].append(view_metrics(src.expand(T, H, W, 3), gt))

    def mean(rs, k):
        vals = [r[k] for r in rs if k in r and not math.isnan(r[k])]
        return float(np.mean(vals)) if vals else float("nan")

    keys = ["psnr", "ssim", "chamfer"] + [f"f@{t:g}" for t in args.fscore]
    summary = {name: {k: mean(rs, k) for k in keys} for name, rs in rows.items()}
    timing = {k: float(np.median(v)) if v else float("nan") for k, v in times.items()}
    print(f"\nLRM benchmark: {n_obj} {args.split} objects of {args.data}, input view 0, {args.eval_views} held-out "
          f"views each ({H}x{W}); mesh: marching cubes {args.mesh_resolution}^3 at density {thr:g}; "
          f"Chamfer / F-score in world units (object radius 0.95), {args.points} samples per surface; "
          f"checkpoint {ckpt}")
    head = f"{'method':<13}" + "".join(f"{k:>10}" for k in keys)
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        print(f"{name:<13}" + "".join(f"{s[k]:>10.4f}" if not math.isnan(s[k]) else f"{'-':>10}" for k in keys))
    print(f"\nempty LRM meshes: {empty}/{n_obj}; CPU ({args.threads} thread) median time per object: encode "
          f"{1000 * timing['encode']:.0f} ms, one {H}x{W} view {timing['view']:.2f} s, mesh "
          f"{timing['mesh']:.2f} s")
    if args.json:
        atomic_write_json(args.json, {"summary": summary, "timing_s": timing, "empty_meshes": empty, "objects": n_obj,
                                      "split": args.split, "checkpoint": str(ckpt), "per_object": rows,
                                      "args": {k: str(v) for k, v in vars(args).items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
