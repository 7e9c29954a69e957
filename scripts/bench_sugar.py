#!/usr/bin/env python
"""Benchmark: splats -> SuGaR regularization -> mesh, scored against a ground-truth mesh.

    python scripts/bench_sugar.py [data/sample_scene] [--preset quick] [--sugar-preset quick]
                                  [--max-steps N] [--sugar-steps N] [--vanilla] [--out DIR]

Fits Gaussian splats (SplatTrainer), continues with SuGaR's regularization (SugarTrainer), extracts
the mesh, exports it (GLB / OBJ / PLY, capture units, Blender axes) and prints, as JSON: times,
Gaussian / face counts, test PSNR before and after regularization, and when the dataset has a
``gt_mesh.ply`` (recon3d synthetic scenes: same world frame as the cameras), Chamfer distance and
F-scores between points sampled on the two meshes (``*_visible``: against only the GT surface that
some training camera sees -- the underside of an object photographed from above cannot be
reconstructed by any method). Distances are in the dataset's world units
(NOT the normalized frame): for the bundled sample scene the object fits in a ball of radius 0.95.
``--vanilla`` also meshes the unregularized splats with the same extractor, for comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.core.metrics import chamfer_distance, fscore, sample_mesh_points  # noqa: E402
from recon3d.io import load_scene  # noqa: E402
from recon3d.io.normalize import normalize_scene  # noqa: E402
from recon3d.mesh import export_mesh  # noqa: E402
from recon3d.methods.splat import SplatTrainer, preset  # noqa: E402
from recon3d.methods.sugar import SugarTrainer  # noqa: E402
from recon3d.methods.sugar import preset as sugar_preset  # noqa: E402
from recon3d.methods.sugar.extract import extract_mesh  # noqa: E402


def visible_mask(points_world: np.ndarray, gt_world, normalization, cameras, tol: float = 0.005) -> np.ndarray:
    """(P,) which GT surface points at least one training camera sees (depth test against the GT mesh)."""
    from recon3d.mesh import TriangleMesh
    from recon3d.mesh.texture import mesh_depth_maps

    T = np.asarray(normalization.transform, dtype=np.float64)
    gtn = TriangleMesh(np.asarray(gt_world.vertices), np.asarray(gt_world.faces)).transformed(T)
    pts = torch.from_numpy((points_world @ T[:3, :3].T + T[:3, 3]).astype(np.float32))
    cams = cameras.to("cpu")
    depths = mesh_depth_maps(gtn, cams)
    diag = float(np.linalg.norm(gtn.vertices.max(0) - gtn.vertices.min(0)))
    seen = np.zeros(len(pts), bool)
    for i in range(len(cams)):
        uv, z = cams[i].project(pts)
        uv, z = uv[0].numpy(), z[0].numpy()
        H, W = depths[i].shape
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        px = np.clip(uv[:, 0].astype(int), 0, W - 1)
        py = np.clip(uv[:, 1].astype(int), 0, H - 1)
        seen |= ok & (z <= depths[i][py, px] + tol * diag)
    return seen


def mesh_scores(mesh, normalization, gt_path: Path | None, n: int, thresholds: list[float], cameras=None) -> dict:
    """Chamfer / F-score of ``mesh`` (normalized frame) against the GT mesh file (world units); with
    ``cameras``, also completeness / F-score against only the GT points the training views see."""
    out = {"faces": mesh.num_faces, "vertices": mesh.num_vertices}
    if gt_path is None:
        return out
    import trimesh

    T = np.linalg.inv(np.asarray(normalization.transform, dtype=np.float64))
    world = mesh.transformed(T)
    gt = trimesh.load(gt_path, process=False, force="mesh")
    p = sample_mesh_points(world.vertices, world.faces, n, seed=0)
    g = sample_mesh_points(np.asarray(gt.vertices), np.asarray(gt.faces), n, seed=1)
    cd = chamfer_distance(p, g)
    out.update({k: round(v, 5) for k, v in cd.items()})
    for t in thresholds:
        out[f"fscore@{t}"] = round(fscore(p, g, t)["fscore"], 4)
    if cameras is not None:
        vis = visible_mask(g, gt, normalization, cameras)
        gv = g[vis]
        out["gt_visible_fraction"] = round(float(vis.mean()), 4)
        out["completeness_visible"] = round(chamfer_distance(p, gv)["completeness"], 5)
        for t in thresholds:
            out[f"fscore_visible@{t}"] = round(fscore(p, gv, t)["fscore"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[1] / "data" / "sample_scene"))
    ap.add_argument("--preset", default="quick", help="splat preset")
    ap.add_argument("--sugar-preset", default="quick")
    ap.add_argument("--max-steps", type=int, default=None, help="splat steps")
    ap.add_argument("--sugar-steps", type=int, default=None)
    ap.add_argument("--downscale", type=float, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--vanilla", action="store_true", help="also mesh the unregularized splats")
    ap.add_argument("--points", type=int, default=200_000, help="points sampled per mesh for the metrics")
    ap.add_argument("--thresholds", default="0.01,0.02,0.05", help="F-score thresholds, world units")
    ap.add_argument("--texture", type=int, default=0, help="also bake a UV texture of this size from the images")
    ap.add_argument("--refine", type=int, default=0, help="also refine bound Gaussians for this many steps")
    ap.add_argument("--refine-faces", type=int, default=20_000, help="decimate to this many faces before refining")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_sugar_"))
    data = Path(args.data)
    gt = data / "gt_mesh.ply"
    gt = gt if gt.exists() else None
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    scene = normalize_scene(load_scene(data, downscale=args.downscale))
    cfg = preset(args.preset, max_steps=args.max_steps, backend=args.backend)
    scfg = sugar_preset(args.sugar_preset, steps=args.sugar_steps)
    res: dict = {"data": str(data), "train_views": len(scene.train_indices), "test_views": len(scene.test_indices),
                 "splat_preset": args.preset, "sugar_preset": args.sugar_preset, "splat_steps": cfg.max_steps,
                 "sugar_steps": scfg.steps, "units": "dataset world units" if gt else "no ground truth",
                 "normalization_scale": scene.normalization.scale}

    t0 = time.perf_counter()
    splat = SplatTrainer(scene, cfg, out, device=args.device)
    splat.fit(progress=False)
    res["splat_seconds"] = round(time.perf_counter() - t0, 1)
    res["device"] = str(splat.device)
    res["splat_gaussians"] = len(splat.model)
    if scene.test_indices:
        res["splat_test_psnr"] = round(splat.evaluate("test", save_renders=False)["psnr"], 3)

    if args.vanilla:
        t = time.perf_counter()
        train = list(scene.train_indices)
        vm = extract_mesh(splat.model, splat.cameras[train], scfg, extent=splat.extent, backend=cfg.backend,
                          sh_degree=cfg.sh_degree, background=splat._background(1)[0])
        res["vanilla_mesh"] = {**mesh_scores(vm, scene.normalization, gt, args.points, thresholds,
                                             splat.cameras[train]),
                               "seconds": round(time.perf_counter() - t, 1)}
        print(json.dumps({"vanilla_mesh": res["vanilla_mesh"]}), flush=True)

    t = time.perf_counter()
    sugar = SugarTrainer.from_splat(splat, scfg)
    summary = sugar.fit(progress=False)
    res["sugar_seconds"] = round(time.perf_counter() - t, 1)
    res["sugar_gaussians"] = summary["gaussians"]
    res["sugar_last_losses"] = summary["history"][-1] if summary["history"] else None
    if scene.test_indices:
        res["sugar_test_psnr"] = round(sugar.evaluate("test", save_renders=False)["psnr"], 3)

    t = time.perf_counter()
    mesh = sugar.extract_mesh()
    res["extract_seconds"] = round(time.perf_counter() - t, 1)
    train = list(scene.train_indices)
    res["mesh"] = {**mesh_scores(mesh, scene.normalization, gt, args.points, thresholds, sugar.cameras[train]), **{
        k: mesh.metadata[k] for k in ("surface_points", "seconds_points", "seconds_poisson")}}
    t = time.perf_counter()
    files = []
    for suffix in (".glb", ".obj", ".ply"):
        files += [str(p) for p in export_mesh(mesh, out / f"mesh{suffix}", normalization=scene.normalization)]
    res["export_seconds"] = round(time.perf_counter() - t, 2)
    res["files"] = files
    if args.texture > 0:
        from recon3d.mesh.texture import bake_texture, view_color_fn

        t = time.perf_counter()
        train = list(scene.train_indices)
        cams = sugar.cameras[train].to("cpu")
        images = [sugar.splat._image(j).cpu() for j in train]
        tex = bake_texture(mesh, view_color_fn(mesh, cams, images), size=args.texture)
        for suffix in (".glb", ".obj"):
            files += [str(p) for p in export_mesh(tex, out / f"mesh_textured{suffix}",
                                                  normalization=scene.normalization)]
        res["texture_seconds"] = round(time.perf_counter() - t, 1)
        res["texture_coverage"] = round(tex.metadata["texture_coverage"], 3)
    if args.refine > 0:
        from recon3d.core.gaussians import rasterize
        from recon3d.core.metrics import psnr
        from recon3d.mesh.ops import simplify

        t = time.perf_counter()
        coarse = simplify(mesh, args.refine_faces)
        refined, bound, rsum = sugar.refine(coarse, steps=args.refine)
        files.append(str(sugar.export_bound_ply(bound, out / "bound_gaussians.ply")))
        files += [str(p) for p in export_mesh(refined, out / "mesh_refined.glb", normalization=scene.normalization)]
        res["refine"] = {"seconds": round(time.perf_counter() - t, 1), "steps": args.refine,
                         "bound_gaussians": len(bound), "train_psnr_ema": round(rsum["last"]["psnr"], 3),
                         "coarse": mesh_scores(coarse, scene.normalization, gt, args.points, thresholds),
                         "refined": mesh_scores(refined, scene.normalization, gt, args.points, thresholds)}
        if scene.test_indices:
            bm = bound.to_model().to(sugar.device)
            vals = []
            for i in scene.test_indices:
                cam = sugar.cameras[i]
                with torch.no_grad():
                    o = rasterize(bm.gaussians(), cam.w2c, cam.K, int(cam.width[0]), int(cam.height[0]),
                                  sh_degree=bm.max_sh_degree, backgrounds=sugar.splat._background(1))
                vals.append(float(psnr(o.colors[0].clamp(0, 1), scene.image(i).to(sugar.device))))
            res["refine"]["test_psnr"] = round(float(np.mean(vals)), 3)
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
