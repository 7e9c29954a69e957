"""Lens undistortion of a scene's images to pinhole cameras, with COLMAP's undistorter (pycolmap), as
the reference 3D Gaussian splatting pipelines do after SfM.

Rasterized Gaussians assume a pinhole camera, so ``--method splat`` / ``sugar`` train and evaluate on
undistorted images: each distorted view (recon3d ``opencv`` or ``opencv_fisheye`` camera) is resampled
by ``pycolmap.undistort_image`` into a pinhole camera whose intrinsics and size COLMAP chooses so the
image holds only valid pixels. Alpha and masks are undistorted with the image. Results are cached
under the run folder (``undistorted/``): a re-run with the same source files and cameras reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from recon3d.core.cameras import OPENCV_FISHEYE, PINHOLE, Cameras
from recon3d.io.atomic import atomic_path, atomic_write_json
from recon3d.io.errors import DataError
from recon3d.io.images import image_has_alpha, load_image, load_mask

log = logging.getLogger(__name__)

CACHE_FILE = "undistorted.json"


def colmap_camera(cameras: Cameras, i: int):
    """recon3d camera ``i`` as a ``pycolmap.Camera`` (OPENCV / FULL_OPENCV / OPENCV_FISHEYE / PINHOLE).

    Both use pixel centres at +0.5 and the same radial-tangential (k1, k2, p1, p2, k3) and
    equidistant fisheye (k1..k4) models."""
    import pycolmap

    fx, fy, cx, cy = (float(v[i]) for v in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
    d = [float(x) for x in cameras.distortion[i]]
    w, h = int(cameras.width[i]), int(cameras.height[i])
    if cameras.model == OPENCV_FISHEYE:
        model, params = "OPENCV_FISHEYE", [fx, fy, cx, cy, d[0], d[1], d[2], d[3]]
    elif cameras.model == PINHOLE:
        model, params = "PINHOLE", [fx, fy, cx, cy]
    elif d[4] != 0:
        model, params = "FULL_OPENCV", [fx, fy, cx, cy, d[0], d[1], d[2], d[3], d[4], 0.0, 0.0, 0.0]
    else:
        model, params = "OPENCV", [fx, fy, cx, cy, d[0], d[1], d[2], d[3]]
    return pycolmap.Camera(model=model, width=w, height=h, params=params)


def _bitmap(arr: np.ndarray):
    import pycolmap

    return pycolmap.Bitmap.from_array(np.ascontiguousarray(arr))


def _key(path: Path, cam) -> str:
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, cam.model.name, cam.width, cam.height,
                       [round(float(p), 10) for p in cam.params]])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def undistort_scene(scene, out_dir: str | Path):
    """The scene with every distorted view undistorted to a pinhole camera (images written to
    ``out_dir``); pinhole views are kept as they are. Returns ``(scene, number of views undistorted)``."""
    import pycolmap

    cams = scene.cameras.to("cpu")
    if not cams.is_distorted:
        return scene, 0
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cache_path = out / CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    opts = pycolmap.UndistortCameraOptions()
    fx, fy, cx, cy, W, H = ([] for _ in range(6))
    paths, masks = [], []
    has_masks = scene.mask_paths is not None
    stems = [Path(p).stem for p in scene.image_paths]
    unique = len(set(stems)) == len(stems)  # keep the photos' names (eval --gt matches by name)
    for i in range(len(cams)):
        src = Path(scene.image_paths[i])
        cam = colmap_camera(cams, i)
        key = _key(src, cam)
        name = f"{src.stem}.png" if unique else f"{i:05d}_{src.stem}.png"
        dst, mdst = out / "images" / name, out / "masks" / name
        entry = cache.get(name)
        if entry is None or entry["key"] != key or not dst.is_file() or (entry.get("mask") and not mdst.is_file()):
            entry = _undistort_view(scene, i, cam, opts, dst, mdst)
            entry["key"] = key
            cache[name] = entry
            atomic_write_json(cache_path, cache)
        fx.append(entry["fx"])
        fy.append(entry["fy"])
        cx.append(entry["cx"])
        cy.append(entry["cy"])
        W.append(entry["width"])
        H.append(entry["height"])
        paths.append(dst)
        masks.append(mdst if entry.get("mask") else None)
    new = Cameras(c2w=cams.c2w.clone(), fx=torch.tensor(fx), fy=torch.tensor(fy), cx=torch.tensor(cx),
                  cy=torch.tensor(cy), width=torch.tensor(W), height=torch.tensor(H), model=PINHOLE)
    log.info("undistorted %d views to pinhole cameras (%s)", len(cams), out)
    return replace(scene, cameras=new, image_paths=paths, mask_paths=masks if has_masks else None), len(cams)


def _undistort_view(scene, i: int, cam, opts, dst: Path, mdst: Path) -> dict:
    import pycolmap

    src = Path(scene.image_paths[i])
    size = (int(scene.cameras.height[i]), int(scene.cameras.width[i]))
    try:
        if image_has_alpha(src):
            rgba = load_image(src, with_alpha=True, size=size).numpy()
        else:
            rgba = load_image(src, size=size).numpy()
    except DataError:
        raise
    u8 = (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)
    img, pin = pycolmap.undistort_image(opts, _bitmap(u8[..., :3]), cam)
    rgb = np.asarray(img.to_array())
    if u8.shape[-1] == 4:
        a, _ = pycolmap.undistort_image(opts, _bitmap(u8[..., 3]), cam)
        rgb = np.concatenate([rgb, np.asarray(a.to_array()).reshape(*rgb.shape[:2], 1)], axis=-1)
    from PIL import Image

    with atomic_path(dst) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    entry = {"fx": float(pin.params[0]), "fy": float(pin.params[1]), "cx": float(pin.params[2]),
             "cy": float(pin.params[3]), "width": int(pin.width), "height": int(pin.height), "mask": False}
    mask = scene.mask(i) if scene.mask_paths is not None else None
    if mask is not None:
        m8 = (mask.numpy().astype(np.uint8) * 255)
        mu, _ = pycolmap.undistort_image(opts, _bitmap(m8), cam)
        mdst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(mdst) as tmp:
            Image.fromarray((np.asarray(mu.to_array()) >= 128).astype(np.uint8) * 255).save(tmp, format="PNG")
        entry["mask"] = True
    return entry
