"""Pose refinement of a VGGT prediction by coloured ICP of its own depth maps (open3d).

The camera head regresses poses in one pass; its depth maps are usually better than its poses (the
shipped tiny model: depth AbsRel 0.05, pairwise rotation error ~35 degrees). :func:`refine_poses_icp`
aligns each view's depth-unprojected, confidence-filtered point cloud (in its own camera frame,
coloured by the photo) to the first view's cloud with open3d's coloured ICP (Park et al. 2017:
geometry and photometric terms), starting from the predicted relative pose and going coarse to fine
(correspondence distances ``voxel * (4, 2, 1) * 1.5``, ``voxel`` = ``voxel_fraction`` of the first
view's median depth). It needs views that overlap the first one and an initial pose within the
basin of ICP (tens of degrees); it cannot fix views from the far side of an object. A view whose
alignment keeps fewer than ``min_fitness`` of its points as inliers, or finds no correspondences at
all, keeps its predicted pose.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import torch

from .predict import DEFAULT_CONF_THRESHOLD, Geometry, unproject_depth

log = logging.getLogger(__name__)

#: fewest confident points a view needs to be aligned.
MIN_POINTS = 50


def _camera_cloud(geo: Geometry, i: int, conf_threshold: float):
    """open3d point cloud of view ``i``'s confident depth pixels in its camera frame (model resolution)."""
    import open3d as o3d

    pts = unproject_depth(geo.depth[i:i + 1], geo.K_model[i:i + 1], torch.eye(4)[None])[0]
    keep = (geo.depth_conf[i] >= conf_threshold) & (geo.depth[i] > 0) & torch.isfinite(pts).all(-1)
    if geo.inside is not None:  # not the padding of a preprocessed frame
        keep &= geo.inside[i]
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(pts[keep].double().numpy())
    cloud.colors = o3d.utility.Vector3dVector(geo.colors[i][keep].double().clamp(0, 1).numpy())
    return cloud


def refine_poses_icp(geo: Geometry, conf_threshold: float = DEFAULT_CONF_THRESHOLD, voxel_fraction: float = 0.02,
                     max_iteration: int = 50, min_fitness: float = 0.3) -> tuple[Geometry, dict]:
    """Refine views 1..S-1 of ``geo`` against view 0 (module docstring).

    Args:
        geo: a :func:`~.predict.predict_geometry` result (world = the first camera's frame).
        conf_threshold: minimum depth confidence of the points used.
        voxel_fraction: ICP length scale as a fraction of the first view's median depth.
        max_iteration: ICP iterations per scale.
        min_fitness: inlier fraction (open3d ``fitness``) below which a view keeps its predicted pose.
    Returns:
        ``(geometry, info)``: ``geo`` with refined ``c2w`` and re-unprojected ``points``; ``info`` has
        per-view ``fitness`` (None for view 0 and skipped views), ``refined`` (view indices changed)
        and ``seconds``.
    """
    import open3d as o3d

    reg = o3d.pipelines.registration
    t0 = time.perf_counter()
    S = geo.c2w.shape[0]
    c2w = geo.c2w.double().numpy().copy()
    fitness: list[float | None] = [None] * S
    refined: list[int] = []
    clouds = [_camera_cloud(geo, i, conf_threshold) for i in range(S)]
    if S > 1 and len(clouds[0].points) >= MIN_POINTS:
        voxel = voxel_fraction * float(np.median(np.asarray(clouds[0].points)[:, 2]))
        for cloud in clouds:
            cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel, max_nn=30))
        world0 = np.linalg.inv(c2w[0])  # the predicted first camera is the identity; stay general
        for i in range(1, S):
            if len(clouds[i].points) < MIN_POINTS:
                continue
            pose = world0 @ c2w[i]  # camera i -> camera 0
            try:
                for scale in (4, 2, 1):
                    result = reg.registration_colored_icp(
                        clouds[i], clouds[0], 1.5 * scale * voxel, pose, reg.TransformationEstimationForColoredICP(),
                        reg.ICPConvergenceCriteria(max_iteration=max_iteration))
                    pose = result.transformation
            except RuntimeError:  # open3d: no correspondences within reach (the clouds do not overlap)
                fitness[i] = 0.0
                continue
            fitness[i] = float(result.fitness)
            if result.fitness >= min_fitness:
                c2w[i] = c2w[0] @ pose
                refined.append(i)
    new_c2w = torch.from_numpy(c2w).to(geo.c2w.dtype)
    out = replace(geo, c2w=new_c2w, points=unproject_depth(geo.depth, geo.K_model, new_c2w))
    info = {"method": "colored ICP to view 0", "fitness": fitness, "refined": refined,
            "seconds": round(time.perf_counter() - t0, 3)}
    log.info("vggt: coloured ICP refined %d of %d views in %.2f s", len(refined), S - 1, info["seconds"])
    return out, info
