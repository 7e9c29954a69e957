"""``recon3d predict --model vggt``: photos -> cameras, depth maps, a point cloud, transforms.json.

:func:`predict_geometry` runs the model once over all images (one scene) and returns cameras at the
photos' own resolution plus depth / world-point maps at the model's resolution; :func:`run_predict`
writes them::

    out/cameras.json          per image: file, size, K, c2w (OpenCV camera-to-world), fov; conventions
    out/depth/<name>.png      16-bit depth, millimetres of the prediction's units (0 = filtered out)
    out/depth/<name>.npy      float32 depth (model resolution); <name>_conf.npy its confidence
    out/points.ply            fused, confidence-filtered, coloured point cloud (binary PLY)
    out/transforms.json       nerfstudio cameras (+ ``ply_file_path`` to points.ply)

The world frame of the predictions is the first image's camera (OpenCV axes) and the unit is
arbitrary (the model was trained on scenes scaled to unit mean point distance).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.runtime.device import resolve_device

from ..options import DEFAULT_CONF_THRESHOLD, DEFAULTS
from .pose_encoding import PIXEL_OFFSET

log = logging.getLogger(__name__)


@dataclass
class Geometry:
    """What the model predicts for S images of one scene.

    Attributes:
        c2w: (S, 4, 4) camera-to-world (OpenCV axes), world = the first camera's frame.
        K: (S, 3, 3) intrinsics at each photo's own resolution, pixels.
        sizes: S (height, width) of the photos.
        model_hw: (h, w) resolution the model ran at (multiples of the patch size).
        K_model: (S, 3, 3) intrinsics at ``model_hw``.
        depth, depth_conf: (S, h, w) predicted z-depth and its confidence (> 1).
        points: (S, h, w, 3) world points from unprojecting ``depth`` with the predicted cameras.
        points_head, points_conf: (S, h, w, 3) the point head's world points and (S, h, w) confidence.
        colors: (S, h, w, 3) the input images at ``model_hw``, [0, 1].
        seconds: wall time of the forward pass.
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

    def point_cloud(self, conf_threshold: float = DEFAULT_CONF_THRESHOLD) -> tuple[Tensor, Tensor]:
        """(P, 3) world points and (P, 3) colours of pixels with ``depth_conf >= conf_threshold``."""
        keep = (self.depth_conf >= conf_threshold) & torch.isfinite(self.points).all(-1) & (self.depth > 0)
        return self.points[keep], self.colors[keep]


def model_resolution(height: int, width: int, size: int, patch: int) -> tuple[int, int]:
    """(h, w) the model runs at: width ``size``, height keeping the aspect ratio, both multiples of ``patch``."""
    w = max(patch, int(round(size / patch)) * patch)
    h = max(patch, int(round(height * w / width / patch)) * patch)
    return h, w


def unproject_depth(depth: Tensor, K: Tensor, c2w: Tensor) -> Tensor:
    """Predicted depth -> world points with :meth:`Cameras.unproject_depth` at :data:`PIXEL_OFFSET`.

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
def predict_geometry(model, images: Sequence[Tensor], device: str | torch.device = "cpu") -> Geometry:
    """Run ``model`` (a :class:`~.model.VGGT`) on S photos of one scene, on ``device`` (``auto``, ``cpu``,
    ``cuda``, ...; :func:`~recon3d.runtime.device.resolve_device`).

    Args:
        images: S (H_i, W_i, 3) float tensors in [0, 1] (photos may differ in size; each is resized
            to the model resolution of the first one, and its intrinsics are scaled back).
    """
    if not images:
        raise ValueError("no images to predict from")
    cfg = model.config
    H0, W0 = images[0].shape[:2]
    h, w = model_resolution(H0, W0, cfg.img_size, cfg.patch_size)
    batch = torch.stack([F.interpolate(im.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear",
                                       align_corners=False, antialias=True)[0] for im in images]).clamp(0, 1)
    model = model.to(resolve_device(device)).eval()
    t0 = time.perf_counter()
    out = model(batch[None].to(device))
    seconds = time.perf_counter() - t0
    out = {k: v.float().cpu() for k, v in out.items() if isinstance(v, Tensor)}
    c2w, K_model = model.cameras_from_encoding(out["pose_enc"][0], (h, w))
    sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
    scale = torch.tensor([[W / w, H / h, 1.0] for H, W in sizes])  # per-image x / y scale back to the photo
    K = K_model * scale[:, :, None]
    depth = out["depth"][0, ..., 0]
    return Geometry(c2w=c2w, K=K, sizes=sizes, model_hw=(h, w), K_model=K_model, depth=depth,
                    depth_conf=out["depth_conf"][0], points=unproject_depth(depth, K_model, c2w),
                    points_head=out["world_points"][0], points_conf=out["world_points_conf"][0],
                    colors=batch.permute(0, 2, 3, 1), seconds=seconds)


def load_photos(image_paths: Sequence[str | Path]) -> list[Tensor]:
    """(H, W, 3) float images in [0, 1]; RGBA composited on white. DataError names a bad file."""
    from recon3d.io.errors import DataError
    from recon3d.io.images import load_image

    if not image_paths:
        raise DataError("--images", "no input images")
    photos = []
    for p in image_paths:
        try:
            photos.append(load_image(p, background="white"))
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises many types for corrupt files
            raise DataError(p, f"cannot read image ({type(e).__name__}: {e})") from e
    return photos


def _save_depth_png(path: Path, depth_mm: np.ndarray) -> None:
    from PIL import Image

    from recon3d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(depth_mm.astype(np.uint16)).save(tmp, format="PNG")


def write_outputs(geo: Geometry, image_paths: Sequence[Path], out_dir: Path,
                  conf_threshold: float = DEFAULT_CONF_THRESHOLD, refinement: dict | None = None) -> dict:
    """Write cameras.json, depth/, points.ply and transforms.json (all atomically); returns a summary
    (``refinement``: the pose refinement's info, recorded as ``pose_refinement``)."""
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
        mm = np.where(c >= conf_threshold, np.clip(d * 1000.0 + 0.5, 0, 65535), 0)
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
               "pose_refinement": refinement,
               "conventions": "c2w: OpenCV camera axes (x right, y down, z forward), camera-to-world; world = the "
                              "first image's camera; arbitrary unit (depth PNG: millimetres of that unit, 0 = "
                              "below the confidence threshold); pixel centres at +0.5",
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
            ``conf_threshold``, ``device`` and ``refine_poses`` (coloured ICP of the depth maps,
            :func:`~.refine.refine_poses_icp`) when present, else their PredictOptions defaults.
    Returns:
        the summary written to ``cameras.json`` (without the per-frame list) plus ``out``.
    """
    paths = [Path(p) for p in image_paths]
    conf = float(getattr(args, "conf_threshold", None) or DEFAULTS.conf_threshold)
    device = resolve_device(getattr(args, "device", None) or DEFAULTS.device)
    geo = predict_geometry(model, load_photos(paths), device=device)
    refinement = None
    if getattr(args, "refine_poses", DEFAULTS.refine_poses):
        from .refine import refine_poses_icp

        geo, refinement = refine_poses_icp(geo, conf_threshold=conf)
    summary = write_outputs(geo, paths, Path(out_dir), conf, refinement)
    log.info("vggt: %d images at %dx%d in %.2f s; %d points -> %s", len(paths), geo.model_hw[1], geo.model_hw[0],
             geo.seconds, summary["points"], out_dir)
    summary.pop("frames")
    return {**summary, "out": str(out_dir)}
