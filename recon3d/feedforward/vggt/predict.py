"""``recon3d predict --model vggt``: photos -> cameras, depth maps, a point cloud, transforms.json.

:func:`predict_geometry` preprocesses the photos as the official ``load_and_preprocess_images``
(:mod:`.preprocess`: ``crop`` by default, or ``pad``; EXIF orientation not applied unless asked),
runs the model once over all of them (one scene) and returns cameras for the photos' own pixels
plus depth / world-point maps at the model's resolution; :func:`run_predict` writes them::

    out/cameras.json          per image: file, size, K, c2w (OpenCV camera-to-world), fov; conventions
    out/depth/<name>.png      16-bit depth, millimetres of the prediction's units (0 = filtered out)
    out/depth/<name>.npy      float32 depth (model resolution); <name>_conf.npy its confidence
    out/points.ply            fused, confidence-filtered, coloured point cloud (binary PLY)
    out/transforms.json       nerfstudio cameras (+ ``ply_file_path`` to points.ply)

The world frame of the predictions is the first image's camera (OpenCV axes) and the unit is
arbitrary (the model was trained on scenes scaled to unit mean point distance). Every camera is in
recon3d's pixel convention (pixel centres at +0.5; :meth:`~.model.VGGT.cameras_from_encoding`), so
the depth-unprojected points equal the official ``unproject_depth_map_to_point_map`` for the
published weights (integer pixel coordinates there).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from recon3d.runtime.device import resolve_device

from ..options import DEFAULT_CONF_THRESHOLD, DEFAULTS
from .pose_encoding import PIXEL_OFFSET
from .preprocess import ModelInputs, preprocess_images

log = logging.getLogger(__name__)


@dataclass
class Geometry:
    """What the model predicts for S images of one scene.

    Attributes:
        c2w: (S, 4, 4) camera-to-world (OpenCV axes), world = the first camera's frame.
        K: (S, 3, 3) intrinsics of each photo's own pixels (as read; crop / pad / resize undone).
        sizes: S (height, width) of the photos' pixel grids.
        model_hw: (h, w) resolution the model ran at (multiples of the patch size).
        K_model: (S, 3, 3) intrinsics at ``model_hw``.
        depth, depth_conf: (S, h, w) predicted z-depth and its confidence (> 1).
        points: (S, h, w, 3) world points from unprojecting ``depth`` with the predicted cameras.
        points_head, points_conf: (S, h, w, 3) the point head's world points and (S, h, w) confidence.
        colors: (S, h, w, 3) the input images at ``model_hw``, [0, 1].
        seconds: wall time of the forward pass.
        inside: (S, h, w) bool, pixels that show the photo (False on padding), or None (all).
        preprocessing: how the frames were made (``mode``, ``exif``), {} when not recorded.
        notes: lines for the user (e.g. an EXIF rotation that was not applied).
    """

    c2w: Tensor
    K: Tensor
    sizes: list[tuple[int, int]]
    model_hw: tuple[int, int]
    K_model: Tensor
    depth: Tensor
    depth_conf: Tensor
    points: Tensor
    points_head: Tensor
    points_conf: Tensor
    colors: Tensor
    seconds: float
    inside: Optional[Tensor] = None
    preprocessing: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def valid(self, conf_threshold: float = DEFAULT_CONF_THRESHOLD) -> Tensor:
        """(S, h, w) bool: photo pixels (not padding) with ``depth_conf >= conf_threshold``, finite points, depth > 0."""
        keep = (self.depth_conf >= conf_threshold) & torch.isfinite(self.points).all(-1) & (self.depth > 0)
        return keep if self.inside is None else keep & self.inside

    def point_cloud(self, conf_threshold: float = DEFAULT_CONF_THRESHOLD) -> tuple[Tensor, Tensor]:
        """(P, 3) world points and (P, 3) colours of the pixels :meth:`valid` keeps."""
        keep = self.valid(conf_threshold)
        return self.points[keep], self.colors[keep]


def unproject_depth(depth: Tensor, K: Tensor, c2w: Tensor) -> Tensor:
    """Predicted depth -> world points with :meth:`Cameras.unproject_depth` at :data:`PIXEL_OFFSET`
    (pixel centres; ``K`` in that convention, as :meth:`~.model.VGGT.cameras_from_encoding` returns it).

    Args:
        depth: (S, h, w) z-depth (the prediction's units); K: (S, 3, 3) intrinsics at (h, w), pixels;
            c2w: (S, 4, 4) OpenCV camera-to-world.
    Returns:
        (S, h, w, 3) float32 world points.
    """
    from recon3d.core.cameras import Cameras

    S, h, w = depth.shape
    return Cameras.from_K(K, c2w, w, h).unproject_depth(depth, pixel_offset=PIXEL_OFFSET)


@torch.no_grad()
def predict_geometry(model, images, device: str | torch.device = "cpu", mode: str = DEFAULTS.vggt_preprocess,
                     exif: bool = DEFAULTS.vggt_exif) -> Geometry:
    """Run ``model`` (a :class:`~.model.VGGT`) on S photos of one scene, on ``device`` (``auto``, ``cpu``,
    ``cuda``, ...; :func:`~recon3d.runtime.device.resolve_device`).

    Args:
        images: S photos (files, or (H, W, 3|4) arrays / tensors, uint8 or float in [0, 1]; sizes may
            differ), preprocessed by :func:`~.preprocess.preprocess_images` (``mode``, ``exif``) at the
            model's ``img_size`` / ``patch_size``; or already prepared :class:`~.preprocess.ModelInputs`.
    """
    cfg = model.config
    if isinstance(images, ModelInputs):
        inputs = images
    else:
        if not len(images):
            raise ValueError("no images to predict from")
        inputs = preprocess_images(images, mode=mode, size=cfg.img_size, patch=cfg.patch_size, exif=exif)
    batch = inputs.images
    h, w = batch.shape[-2:]
    dev = resolve_device(device)
    model = model.to(dev).eval()
    t0 = time.perf_counter()
    out = model(batch[None].to(dev))
    seconds = time.perf_counter() - t0
    out = {k: v.float().cpu() for k, v in out.items() if isinstance(v, Tensor)}
    c2w, K_model = model.cameras_from_encoding(out["pose_enc"][0], (h, w))
    depth = out["depth"][0, ..., 0]
    return Geometry(c2w=c2w, K=inputs.photo_intrinsics(K_model), sizes=list(inputs.sizes), model_hw=(h, w),
                    K_model=K_model, depth=depth, depth_conf=out["depth_conf"][0],
                    points=unproject_depth(depth, K_model, c2w), points_head=out["world_points"][0],
                    points_conf=out["world_points_conf"][0], colors=batch.permute(0, 2, 3, 1), seconds=seconds,
                    inside=inputs.inside, preprocessing={"mode": inputs.mode, "exif": inputs.exif},
                    notes=list(inputs.notes))


def _save_depth_png(path: Path, depth_mm: np.ndarray) -> None:
    from PIL import Image

    from recon3d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(depth_mm.astype(np.uint16)).save(tmp, format="PNG")


def write_outputs(geo: Geometry, image_paths: Sequence[Path], out_dir: Path,
                  conf_threshold: float = DEFAULT_CONF_THRESHOLD, refinement: dict | None = None,
                  checkpoint: dict | None = None) -> dict:
    """Write cameras.json, depth/, points.ply and transforms.json (all atomically); returns a summary
    (``refinement``: the pose refinement's info, recorded as ``pose_refinement``; ``checkpoint``:
    what a published checkpoint held, recorded when given)."""
    from recon3d.core.cameras import Cameras
    from recon3d.io.atomic import atomic_path, atomic_write_json
    from recon3d.io.nerfstudio import write_nerfstudio_transforms
    from recon3d.io.ply import write_points_ply

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "depth").mkdir(exist_ok=True)
    frames = []
    for i, p in enumerate(image_paths):
        H, W = geo.sizes[i]
        K = geo.K[i]
        d = geo.depth[i].numpy().astype(np.float32)
        c = geo.depth_conf[i].numpy().astype(np.float32)
        stem = Path(p).stem
        for name, arr in ((f"{stem}.npy", d), (f"{stem}_conf.npy", c)):
            with atomic_path(out_dir / "depth" / name) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
        keep = c >= conf_threshold if geo.inside is None else (c >= conf_threshold) & geo.inside[i].numpy()
        mm = np.where(keep, np.clip(d * 1000.0 + 0.5, 0, 65535), 0)
        _save_depth_png(out_dir / "depth" / f"{stem}.png", mm)
        fov = [float(np.degrees(2 * np.arctan(H / 2 / float(K[1, 1])))), float(np.degrees(2 * np.arctan(W / 2 / float(K[0, 0]))))]
        frames.append({"file": str(p), "width": W, "height": H, "fx": float(K[0, 0]), "fy": float(K[1, 1]),
                       "cx": float(K[0, 2]), "cy": float(K[1, 2]), "fov_deg_vertical_horizontal": fov,
                       "c2w": geo.c2w[i].tolist(), "depth": f"depth/{stem}.png"})
    pts, cols = geo.point_cloud(conf_threshold)
    if len(pts) == 0:  # the transforms writer below writes points.ply only when there are points
        write_points_ply(out_dir / "points.ply", pts, cols)
    cams = Cameras.from_K(geo.K, geo.c2w, [s[1] for s in geo.sizes], [s[0] for s in geo.sizes])
    write_nerfstudio_transforms(cams, out_dir / "transforms.json", image_paths=[Path(p).resolve() for p in image_paths],
                                points=pts, point_colors=cols, ply_name="points.ply")
    summary = {"model": "vggt", "images": len(image_paths), "model_resolution_hw": list(geo.model_hw),
               "points": int(len(pts)), "conf_threshold": conf_threshold, "forward_seconds": round(geo.seconds, 4),
               "pose_refinement": refinement, "preprocessing": geo.preprocessing, "notes": geo.notes,
               **({"checkpoint": checkpoint} if checkpoint else {}),
               "conventions": "c2w: OpenCV camera axes (x right, y down, z forward), camera-to-world; world = the "
                              "first image's camera; arbitrary unit (depth PNG: millimetres of that unit, 0 = "
                              "below the confidence threshold or padding); K for each photo's pixels as stored "
                              "(EXIF orientation applied only with preprocessing.exif); pixel centres at +0.5; "
                              "depth maps at model_resolution_hw (the preprocessed frame)",
               "frames": frames}
    atomic_write_json(out_dir / "cameras.json", summary)
    return summary


def run_predict(model, image_paths: Sequence[str | Path], out_dir: str | Path, args=None) -> dict:
    """Entry point of ``recon3d predict --model vggt``.

    Args:
        model: a loaded :class:`~.model.VGGT`.
        image_paths: the photos of one scene (the first defines the world frame).
        out_dir: output folder (created).
        args: optional namespace (e.g. :class:`~recon3d.feedforward.options.PredictOptions`); reads
            ``conf_threshold``, ``device``, ``vggt_preprocess`` (``crop`` / ``pad``), ``vggt_exif``
            and ``refine_poses`` (coloured ICP of the depth maps, :func:`~.refine.refine_poses_icp`)
            when present, else their PredictOptions defaults.
    Returns:
        the summary written to ``cameras.json`` (without the per-frame list) plus ``out``.
    """
    paths = [Path(p) for p in image_paths]
    conf = float(getattr(args, "conf_threshold", None) or DEFAULTS.conf_threshold)
    device = resolve_device(getattr(args, "device", None) or DEFAULTS.device)
    geo = predict_geometry(model, paths, device=device,
                           mode=getattr(args, "vggt_preprocess", None) or DEFAULTS.vggt_preprocess,
                           exif=bool(getattr(args, "vggt_exif", DEFAULTS.vggt_exif)))
    refinement = None
    if getattr(args, "refine_poses", DEFAULTS.refine_poses):
        from .refine import refine_poses_icp

        geo, refinement = refine_poses_icp(geo, conf_threshold=conf)
    summary = write_outputs(geo, paths, Path(out_dir), conf, refinement,
                            checkpoint=getattr(model, "external_checkpoint", None))
    log.info("vggt: %d images at %dx%d in %.2f s; %d points -> %s", len(paths), geo.model_hw[1], geo.model_hw[0],
             geo.seconds, summary["points"], out_dir)
    summary.pop("frames")
    return {**summary, "out": str(out_dir)}
