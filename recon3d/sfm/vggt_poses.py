"""Camera poses and initial points for unposed photos from the VGGT-style model (``--poses vggt``).

The feed-forward counterpart of :func:`recon3d.sfm.scene_from_images`: the same photo preparation
(:func:`~recon3d.sfm.prepare.prepare_images` into ``work_dir/images``), then one forward pass of
the VGGT model over all photos instead of feature matching and bundle adjustment. The Scene has the
same shape as the COLMAP one: registered photos (here: all of them) in natural name order, every
8th a test view, pinhole cameras sized like the prepared photos, and a coloured point cloud (the
confidence-filtered depth maps unprojected with the predicted cameras) as initial points. The world
frame is the first photo's camera at the model's (arbitrary) scale; the Scene is not normalized here.

``work_dir/transforms.json`` (nerfstudio) and ``work_dir/vggt.json`` (what was predicted, times)
are written as for SfM.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from recon3d.io._common import every_nth_split
from recon3d.io.errors import DataError
from recon3d.io.images import list_images
from recon3d.io.nerfstudio import write_nerfstudio_transforms
from recon3d.io.scene import finalize_scene
from recon3d.runtime.device import resolve_device

from ._common import read_json_or_none, write_json
from .prepare import MANIFEST, MIN_IMAGES, prepare_images

log = logging.getLogger("recon3d.sfm")

#: most points kept for the initial point cloud (a random, seeded subset beyond that).
MAX_POINTS = 100_000


def scene_from_images_vggt(src_dir: str | Path, work_dir: str | Path, checkpoint: str | Path | None = None,
                           max_size: int = 1600, device: str = "cpu", conf_threshold: float | None = None,
                           refine: bool = False, mode: str = "crop"):
    """Photos in ``src_dir`` -> (posed :class:`~recon3d.io.Scene`, info dict) using the VGGT model.

    Args:
        src_dir: folder of photos.
        work_dir: output folder (``images/``, ``transforms.json``, ``vggt.json``).
        checkpoint: VGGT weights (default: the shipped ``data/checkpoints/vggt.pt``; the published
            ``model.pt`` of ``facebook/VGGT-1B`` works too, read by the loader ``recon3d predict``
            uses, :func:`recon3d.feedforward.registry.load_model`).
        max_size: longest side of the prepared photos, pixels.
        device: torch device for the forward pass (``auto``: CUDA when available; see
            :func:`recon3d.runtime.device.resolve_device`).
        conf_threshold: minimum depth confidence of the initial points (default: predict's).
        refine: refine the cameras by coloured ICP of the predicted depth maps
            (:func:`recon3d.feedforward.vggt.refine.refine_poses_icp`).
        mode: the official preprocessing mode (:mod:`recon3d.feedforward.vggt.preprocess`), ``crop``
            or ``pad``. The photos fed are the prepared ones (EXIF orientation applied, at most
            ``max_size`` pixels), so that the cameras fit the images the fit reads; the cameras are
            returned for the whole prepared photo (a crop only limits where points come from).
    Returns:
        ``(scene, info)``; ``info`` has ``num_images``, ``num_points``, ``seconds``, ``forward_seconds``,
        ``checkpoint``, ``pose_refinement`` (None unless ``refine``).
    """
    import torch

    from recon3d.core.cameras import Cameras
    from recon3d.feedforward.registry import load_model, shipped_checkpoint
    from recon3d.feedforward.vggt.predict import DEFAULT_CONF_THRESHOLD, predict_geometry

    src, work = Path(src_dir), Path(work_dir)
    device = resolve_device(device)  # fail fast on a bad name, before preparing photos
    t0 = time.perf_counter()
    images_dir = work / "images"
    prepare_images(src, images_dir, max_size=max_size)
    paths = list_images(images_dir)
    if len(paths) < MIN_IMAGES:
        raise DataError(images_dir, f"found {len(paths)} images; VGGT poses need at least {MIN_IMAGES}")
    ckpt = Path(checkpoint) if checkpoint is not None else shipped_checkpoint("vggt")
    if checkpoint is None:
        log.warning("--poses vggt with the shipped tiny VGGT model (64 px, trained on synthetic objects): its "
                    "poses are rough (see data/checkpoints/vggt.md); for real captures pass the published "
                    "VGGT-1B weights (--vggt-checkpoint model.pt) or use SfM")
    model = load_model("vggt", ckpt, device=device)
    geo = predict_geometry(model, paths, device=device, mode=mode)
    thr = DEFAULT_CONF_THRESHOLD if conf_threshold is None else float(conf_threshold)
    refinement = None
    if refine:
        from recon3d.feedforward.vggt.refine import refine_poses_icp

        geo, refinement = refine_poses_icp(geo, conf_threshold=thr)
    points, colors = geo.point_cloud(thr)
    if len(points) > MAX_POINTS:
        keep = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))[:MAX_POINTS]
        points, colors = points[keep], colors[keep]
    cams = Cameras.from_K(geo.K, geo.c2w, [s[1] for s in geo.sizes], [s[0] for s in geo.sizes])
    records = (read_json_or_none(images_dir / MANIFEST) or {}).get("images", [])
    cutouts = bool(records) and all(r.get("has_alpha") for r in records)
    train, test = every_nth_split(len(paths))
    info = {"poses": "vggt feed-forward", "num_images": len(paths), "num_points": int(len(points)),
            "forward_seconds": round(geo.seconds, 3), "model_resolution_hw": list(geo.model_hw),
            "checkpoint": str(ckpt), "conf_threshold": thr, "pose_refinement": refinement,
            "preprocessing": geo.preprocessing}
    scene = finalize_scene(cams, paths, source=images_dir, train_indices=train, test_indices=test,
                           points=points if len(points) else None, point_colors=colors if len(points) else None,
                           background="white" if cutouts else None, name=src.resolve().name, source_format="vggt",
                           metadata={"vggt": info, "source_images": str(src)})
    info["seconds"] = round(time.perf_counter() - t0, 3)
    scene = replace(scene, metadata={**scene.metadata, "vggt": info})
    write_nerfstudio_transforms(scene, work / "transforms.json")
    write_json(work / "vggt.json", info)
    log.info("VGGT posed %d photos in %.1fs (forward %.2fs at %dx%d), %d initial points", len(paths), info["seconds"],
             geo.seconds, geo.model_hw[1], geo.model_hw[0], len(points))
    return scene, info
