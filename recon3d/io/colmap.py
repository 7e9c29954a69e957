"""Reader for COLMAP sparse reconstructions (text or binary), through pycolmap.

Layouts accepted (``path`` may be any of these folders)::

    scene/images/...            scene/images/...           model/cameras.{bin,txt}
    scene/sparse/0/cameras.bin  scene/sparse/cameras.bin   model/images.{bin,txt}
    scene/sparse/0/images.bin   ...                        model/points3D.{bin,txt}

With several models (``sparse/0``, ``sparse/1``, ...) model ``0`` is read unless ``model`` says
otherwise. The image folder is ``scene/images`` (searched upwards from the model folder) unless
``images_dir`` is given.

Conventions: COLMAP stores world-to-camera poses with OpenCV camera axes and places the centre of
the top-left pixel at (0.5, 0.5), exactly like recon3d, so only the pose is inverted
(:func:`recon3d.core.conventions.w2c_to_c2w`). Camera models map onto recon3d's as::

    SIMPLE_PINHOLE f,cx,cy            -> pinhole (fx = fy = f)
    PINHOLE fx,fy,cx,cy               -> pinhole
    SIMPLE_RADIAL f,cx,cy,k           -> opencv (k1 = k)
    RADIAL f,cx,cy,k1,k2              -> opencv
    OPENCV fx,fy,cx,cy,k1,k2,p1,p2    -> opencv
    FULL_OPENCV (k4 = k5 = k6 = 0)    -> opencv with k3
    OPENCV_FISHEYE fx,fy,cx,cy,k1..k4 -> opencv_fisheye
    SIMPLE_RADIAL_FISHEYE f,cx,cy,k   -> opencv_fisheye (k1 = k)
    RADIAL_FISHEYE f,cx,cy,k1,k2      -> opencv_fisheye

Anything else (FOV, THIN_PRISM_FISHEYE, ...) raises DataError. Only registered images (with a pose)
are returned, sorted naturally by name; every 8th (0, 8, ...) is the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon3d.core.cameras import OPENCV, OPENCV_FISHEYE, PINHOLE, Cameras
from recon3d.core.conventions import w2c_to_c2w

from ._common import TEST_EVERY, every_nth_split, natural_key
from .errors import DataError
from .scene import Scene, finalize_scene

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                    "OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


def map_colmap_camera(model: str, params, where: Path) -> tuple[str, list[float], list[float]]:
    """COLMAP model name + params -> (recon3d model, [fx, fy, cx, cy], distortion (5,))."""
    p = [float(x) for x in params]
    need = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "FULL_OPENCV": 12,
            "OPENCV_FISHEYE": 8, "SIMPLE_RADIAL_FISHEYE": 4, "RADIAL_FISHEYE": 5}
    if model not in need:
        raise DataError(where, f"unsupported COLMAP camera model {model!r}; supported: {', '.join(SUPPORTED_MODELS)}")
    if len(p) != need[model]:
        raise DataError(where, f"camera model {model} needs {need[model]} parameters, got {len(p)}")
    if not np.all(np.isfinite(p)):
        raise DataError(where, f"camera model {model} has non-finite parameters {p}")
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        f, cx, cy, *k = p
        K = [f, f, cx, cy]
    else:
        fx, fy, cx, cy, *k = p
        K = [fx, fy, cx, cy]
    k = k + [0.0] * (4 - len(k))
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return PINHOLE, K, [0.0] * 5
    if model in ("SIMPLE_RADIAL", "RADIAL"):
        return OPENCV, K, [k[0], k[1], 0.0, 0.0, 0.0]
    if model == "OPENCV":
        return OPENCV, K, [k[0], k[1], k[2], k[3], 0.0]
    if model == "FULL_OPENCV":  # k1 k2 p1 p2 k3 k4 k5 k6: the rational terms must vanish
        if any(p[9:12]):
            raise DataError(where, "FULL_OPENCV with non-zero rational terms k4, k5, k6 is not supported")
        return OPENCV, K, p[4:9]
    return OPENCV_FISHEYE, K, [k[0], k[1], k[2], k[3], 0.0]  # OPENCV_FISHEYE / (SIMPLE_)RADIAL_FISHEYE


def _has_model(d: Path) -> bool:
    return any((d / f"cameras.{ext}").is_file() for ext in ("bin", "txt"))


def find_colmap_model(path: Path, model: str | None = None) -> Path:
    """The sparse-model folder for a scene folder or model folder (see module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "COLMAP scene folder not found")
    if model is not None:
        candidates = [path / "sparse" / model, path / model]
    else:
        candidates = [path, path / "sparse" / "0", path / "sparse", path / "0"]
    for c in candidates:
        if _has_model(c):
            return c
    if model is None and (path / "sparse").is_dir():
        subs = sorted((d for d in (path / "sparse").iterdir() if d.is_dir() and _has_model(d)), key=lambda d: natural_key(d.name))
        if subs:
            return subs[0]
    raise DataError(path, "no COLMAP model found (looked for cameras.bin/.txt in the folder, sparse/0/ and sparse/)")


def find_images_dir(model_dir: Path) -> Path | None:
    for d in [model_dir, *model_dir.parents][:4]:
        if (d / "images").is_dir():
            return d / "images"
    return None


def _read_reconstruction(model_dir: Path):
    import pycolmap

    for kind in ("cameras", "images"):
        if not any((model_dir / f"{kind}.{ext}").is_file() for ext in ("bin", "txt")):
            raise DataError(model_dir, f"COLMAP model has no {kind}.bin or {kind}.txt")
    try:
        return pycolmap.Reconstruction(str(model_dir))
    except Exception as e:  # pycolmap raises ValueError/RuntimeError with its own wording
        raise DataError(model_dir, f"cannot read COLMAP model ({e})") from e


def _has_pose(image) -> bool:
    """Whether a pycolmap Image is registered (``has_pose`` in pycolmap 4.x, ``registered`` before)."""
    for attr in ("has_pose", "registered"):
        v = getattr(image, attr, None)
        if v is not None:
            return bool(v() if callable(v) else v)
    return True


def _cam_from_world(image) -> np.ndarray:
    """(3, 4) world-to-camera of a pycolmap Image (a method in pycolmap >= 3.12, a property before)."""
    cfw = image.cam_from_world
    if callable(cfw):
        cfw = cfw()
    return np.asarray(cfw.matrix(), dtype=np.float64)


def read_colmap(
    path: str | Path,
    downscale: float = 1,
    background=None,
    images_dir: str | Path | None = None,
    model: str | None = None,
) -> Scene:
    """Read a COLMAP sparse reconstruction and its images.

    Args:
        path: scene folder (with ``sparse/`` and ``images/``) or the model folder itself.
        downscale: image shrink factor (2 halves); cameras are rescaled to match.
        background: colour RGBA images are composited onto (None: alpha ignored).
        images_dir: image folder (default: ``images/`` next to ``sparse/``). Its images may be resized
            copies (e.g. ``images_4/``) when the aspect ratio matches; intrinsics follow them.
        model: sub-model name under ``sparse/`` (default ``0``).
    Returns:
        Scene with ``source_format='colmap'``, points (P, 3) and colours (P, 3) in [0, 1] from points3D.
    """
    path = Path(path)
    model_dir = find_colmap_model(path, model)
    rec = _read_reconstruction(model_dir)
    img_dir = Path(images_dir) if images_dir is not None else find_images_dir(model_dir)
    if img_dir is None or not img_dir.is_dir():
        raise DataError(img_dir or path, "image folder not found (expected images/ next to sparse/; pass images_dir)")

    images = sorted((im for im in rec.images.values() if _has_pose(im)), key=lambda im: natural_key(im.name))
    if not images:
        raise DataError(model_dir, "COLMAP model has no registered images")
    cam_info = {}
    for cid, cam in rec.cameras.items():
        name = cam.model.name if hasattr(cam.model, "name") else str(cam.model)
        cam_info[cid] = (map_colmap_camera(name, cam.params, model_dir / "cameras"), int(cam.width), int(cam.height))
    families = {"fisheye" if cam_info[im.camera_id][0][0] == OPENCV_FISHEYE else "perspective" for im in images}
    if len(families) > 1:
        raise DataError(model_dir, "model mixes fisheye and perspective cameras; recon3d needs one family per scene")

    paths, w2c, K, dist, sizes = [], [], [], [], []
    any_dist = False
    for im in images:
        (cm, k, d), w, h = cam_info[im.camera_id]
        m = _cam_from_world(im)
        if not np.isfinite(m).all():
            raise DataError(model_dir, f"image {im.name!r} has a non-finite pose")
        paths.append(img_dir / im.name)
        w2c.append(np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]], axis=0))
        K.append(k)
        dist.append(d)
        sizes.append((w, h))
        any_dist |= cm != PINHOLE
    for p in paths:
        if not p.is_file():
            raise DataError(p, f"image registered in the COLMAP model {model_dir} is missing on disk")
    cam_model = (OPENCV_FISHEYE if "fisheye" in families else OPENCV) if any_dist else PINHOLE
    fx, fy, cx, cy = np.asarray(K, dtype=np.float64).T
    w, h = np.asarray(sizes, dtype=np.int64).T
    c2w = w2c_to_c2w(torch.from_numpy(np.stack(w2c)).float())
    cams = Cameras(c2w, fx, fy, cx, cy, w, h, torch.tensor(dist, dtype=torch.float32), cam_model)

    points = colors = None
    if len(rec.points3D) > 0:
        pts = sorted(rec.points3D.items())
        points = torch.from_numpy(np.stack([p.xyz for _, p in pts]).astype(np.float32))
        colors = torch.from_numpy(np.stack([p.color for _, p in pts]).astype(np.float32) / 255.0)
        keep = torch.isfinite(points).all(-1)
        points, colors = points[keep], colors[keep]
    train, test = every_nth_split(len(paths), TEST_EVERY)
    scene_dir = model_dir
    if model_dir.parent.name == "sparse":
        scene_dir = model_dir.parent.parent
    elif model_dir.name == "sparse":
        scene_dir = model_dir.parent
    masks = None
    if (img_dir.parent / "masks").is_dir():  # masks/ beside images/, as nerfstudio's mask_path
        from .images import find_masks

        masks = find_masks(paths, img_dir.parent / "masks")
        masks = masks if any(m is not None for m in masks) else None
    return finalize_scene(
        cams, paths, downscale=downscale, source=model_dir, allow_resized=images_dir is not None,
        mask_paths=masks,
        train_indices=train, test_indices=test, points=points, point_colors=colors, background=background,
        name=scene_dir.name,
        source_format="colmap",
        metadata={"colmap_model": str(model_dir), "colmap_image_ids": [int(im.image_id) for im in images]},
    )
