"""Image(s) -> 3D with a feed-forward model: input preparation, default cameras, renders, mesh, files.

The one call apps use is :func:`image_to_3d`; ``recon3d predict`` wraps it. Output folder::

    inputs/input_XX.png      the prepared model inputs (object cut out, centred, on white)
    views/view_XX.png        novel views on a ring around the object (the source cameras' elevation)
    orbit.gif (+ orbit.mp4)  a turntable (MP4 only when imageio-ffmpeg is installed)
    mesh.glb, mesh.obj (+ .mtl), mesh.ply    the density level set with vertex colours
                             (GLB/OBJ +Y up so Blender shows the object upright; PLY Z-up)
    prediction.json          model, inputs, cameras, notes, file list, mesh size, timings

Camera convention for object photos with unknown cameras (:func:`canonical_source_cameras`): the
training set's frame (+Z up, object at the origin); source view ``i`` of ``n`` sits at azimuth
``360 i / n`` degrees (view 0 on the +X axis looking towards -X), elevation
:data:`CANONICAL_ELEVATION_DEG`, distance :data:`CANONICAL_RADIUS` (the middle of the training
range), horizontal FOV :data:`CANONICAL_FOV_DEG`, principal point at the image centre, no roll.
:func:`load_input_images` scales the object so its bounding box spans :data:`CANONICAL_FILL` of the
image side, the median of the training set (see :func:`measure_fill`), so objects come out at the
training set's typical size (radius ~0.95).
"""

from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from recon3d.io.atomic import atomic_path, atomic_write_json
from recon3d.io.errors import DataError
from recon3d.runtime.device import resolve_device

from .options import DEFAULTS

CANONICAL_RADIUS = 3.6  #: world units, middle of the training set's radius_range (3.2, 4.0)
CANONICAL_ELEVATION_DEG = 20.0  #: degrees above the xy-plane (typical product-photo height)
CANONICAL_FOV_DEG = 40.0  #: horizontal = vertical FOV of the training set
CANONICAL_FILL = 0.64  #: object bounding-box side / image side (median of outputs/ffdata64, measure_fill)
BACKGROUND_THRESHOLD = 0.12  #: RGB distance (0..sqrt(3)) from the border colour that counts as object


@dataclass
class PredictResult:
    """Files and objects :func:`predict_radiance_field` / :func:`image_to_3d` produced.

    Attributes:
        out_dir: the output folder.
        views: novel-view PNG paths; orbit: turntable GIF (None when no frames); orbit_mp4: MP4 or None.
        meshes: {"glb": [paths], "obj": [obj, mtl, ...], "ply": [paths]} (empty when the prediction
            had no surface at the density threshold); mesh: the :class:`TriangleMesh` (world units) or None.
        inputs: prepared input PNGs; summary: ``prediction.json``; notes: warnings for the user.
        timings: seconds per stage (``load``, ``encode``, ``views``, ``orbit``, ``mesh``, ``total``).
        extra: what a model-specific ``run_predict`` returned (VGGT), else {}.
    """

    out_dir: Path
    views: list[Path] = field(default_factory=list)
    orbit: Optional[Path] = None
    orbit_mp4: Optional[Path] = None
    meshes: dict[str, list[Path]] = field(default_factory=dict)
    mesh: Any = None
    inputs: list[Path] = field(default_factory=list)
    summary: Optional[Path] = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------- inputs
def remove_background(rgb: np.ndarray, threshold: float = BACKGROUND_THRESHOLD) -> tuple[np.ndarray, list[str]]:
    """Object mask of a photo of one object on a roughly uniform background.

    What it does: the background colour is the median of the 2-pixel image border; pixels farther
    than ``threshold`` (Euclidean RGB distance, values in [0, 1]) from it are object candidates; a
    3x3 opening removes speckle, the largest connected component is kept and its holes are filled.
    Works for studio / product shots; cluttered backgrounds need a mask (``masks=``) or an RGBA cut-out.

    Args:
        rgb: (H, W, 3) float in [0, 1].
    Returns:
        (H, W) bool mask and notes (e.g. a non-uniform border warning).
    """
    from scipy import ndimage

    H, W, _ = rgb.shape
    b = max(1, min(2, H // 8, W // 8))
    border = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3), rgb[:, :b].reshape(-1, 3),
                             rgb[:, -b:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    notes = []
    spread = float(np.median(np.linalg.norm(border - bg, axis=1)))
    if spread > threshold / 2:
        notes.append(f"background is not uniform (median border deviation {spread:.2f}); the cut-out may be poor")
    cand = np.linalg.norm(rgb - bg, axis=-1) > threshold
    cand = ndimage.binary_opening(cand, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(cand)
    if n == 0:
        return np.zeros((H, W), bool), notes
    sizes = ndimage.sum(cand, labels, index=np.arange(1, n + 1))
    mask = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    return mask, notes


def _crop_square(arr: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
    """Crop (H, W, C) ``arr`` around ``mask``'s bounding box, padded to a square whose side is
    bbox_side / ``fill`` (centred on the box; outside the image: white RGB, zero alpha)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) / fill
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    s = int(math.ceil(side))
    top, left = int(round(cy - s / 2)), int(round(cx - s / 2))
    out = np.ones((s, s, arr.shape[2]), np.float32)
    out[..., 3:] = 0.0
    H, W = mask.shape
    sy0, sx0 = max(0, top), max(0, left)
    sy1, sx1 = min(H, top + s), min(W, left + s)
    out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = arr[sy0:sy1, sx0:sx1]
    return out


def _resize_square(arr: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def load_input_images(paths: Sequence[str | Path], size: int, masks: Optional[Sequence[str | Path]] = None,
                      crop: str = "object", fill: float = CANONICAL_FILL) -> tuple[Tensor, Tensor, list[str]]:
    """Prepare object photos as model inputs like the training set's views.

    The mask of each image comes from ``masks`` (grayscale files, > 0.5 = object), else its alpha
    channel (RGBA with transparency), else :func:`remove_background`. With ``crop="object"`` the image
    is cropped around the mask, padded to a square so the object's bounding box spans ``fill`` of
    the side, and resized to ``size``; ``crop="center"`` (known cameras: use
    :func:`center_crop_intrinsics` on K) takes the centred square and resizes it. The result is
    composited over white.

    Returns:
        images (S, 3, size, size) float32 in [0, 1] on white, masks (S, 1, size, size) float32 in
        [0, 1], notes (one line each). Raises DataError naming the file for unreadable images or
        when no object can be found.
    """
    from recon3d.io.images import decode_image

    if masks is not None and len(masks) != len(paths):
        raise DataError(Path(masks[0]) if masks else Path("masks"), f"{len(masks)} masks for {len(paths)} images")
    imgs, msks, notes = [], [], []
    for i, p in enumerate(paths):
        p = Path(p)
        arr = decode_image(p)
        rgb = arr[..., :3]
        if masks is not None:
            m = decode_image(masks[i])[..., :3].mean(-1)
            if m.shape != rgb.shape[:2]:
                raise DataError(masks[i], f"mask is {m.shape[1]}x{m.shape[0]}, image {p.name} is {rgb.shape[1]}x{rgb.shape[0]}")
            alpha = (m > 0.5).astype(np.float32)
        elif arr.shape[-1] == 4 and float(arr[..., 3].min()) < 0.99:
            alpha = arr[..., 3]
        else:
            mask, n = remove_background(rgb)
            notes += [f"{p.name}: {x}" for x in n]
            alpha = mask.astype(np.float32)
            if mask.mean() > 0:
                notes.append(f"{p.name}: background removed (border colour + threshold), object covers "
                             f"{100 * mask.mean():.0f}% of the photo")
        if crop == "object":
            if not (alpha > 0.5).any():
                raise DataError(p, "no object found: the image is empty or the object cannot be told from the "
                                   "background (give an RGBA cut-out or a mask)")
            rgba = _crop_square(np.concatenate([rgb, alpha[..., None]], -1), alpha > 0.5, fill)
        elif crop == "center":
            H, W = alpha.shape
            s = min(H, W)
            y0, x0 = (H - s) // 2, (W - s) // 2
            rgba = np.concatenate([rgb, alpha[..., None]], -1)[y0:y0 + s, x0:x0 + s]
        else:
            raise ValueError(f"crop must be 'object' or 'center', not {crop!r}")
        rgba = _resize_square(rgba, size)
        a = rgba[..., 3:]
        imgs.append(torch.from_numpy(rgba[..., :3] * a + (1 - a)).permute(2, 0, 1))
        msks.append(torch.from_numpy(a).permute(2, 0, 1))
    return torch.stack(imgs).float(), torch.stack(msks).float(), notes


def center_crop_intrinsics(K: Tensor, width: int, height: int, size: int) -> Tensor:
    """(N, 3, 3) intrinsics after ``crop="center"`` of a ``width`` x ``height`` image to ``size``."""
    s = min(width, height)
    K = K.clone().float()
    K[:, 0, 2] -= (width - s) // 2
    K[:, 1, 2] -= (height - s) // 2
    K[:, :2] *= size / s
    return K


def canonical_source_cameras(n: int, size: int) -> tuple[Tensor, Tensor]:
    """Default cameras for ``n`` object photos of unknown pose (see the module docstring).

    Returns:
        K (n, 3, 3) pixels for ``size`` x ``size`` images, c2w (n, 4, 4) OpenCV camera-to-world.
    """
    from recon3d.io.synthetic import look_at

    az = np.radians(360.0 * np.arange(n) / n)
    el = math.radians(CANONICAL_ELEVATION_DEG)
    eyes = CANONICAL_RADIUS * np.stack([math.cos(el) * np.cos(az), math.cos(el) * np.sin(az),
                                        np.full(n, math.sin(el))], -1)
    f = 0.5 * size / math.tan(0.5 * math.radians(CANONICAL_FOV_DEG))
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]]).expand(n, 3, 3).clone()
    return K, look_at(eyes, np.zeros((n, 3)))


def load_cameras(path: str | Path) -> dict:
    """Cameras of the input images from JSON: recon3d's ``{"frames": [{"file", "K", "c2w", "width",
    "height"}]}`` (OpenCV c2w, K in pixels) or a nerfstudio / Blender ``transforms.json`` (OpenGL
    ``transform_matrix``; ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` per frame or shared, or
    ``camera_angle_x``). Returns ``{"K": (N, 3, 3), "c2w": (N, 4, 4), "width": [N], "height": [N],
    "files": [N]}``; DataError naming the file on malformed input."""
    from recon3d.core.conventions import opengl_to_opencv

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        frames = doc["frames"] if isinstance(doc, dict) else doc
        if not isinstance(frames, list) or not frames:
            raise ValueError("no frames")
    except FileNotFoundError:
        raise DataError(path, "camera file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"not a camera JSON with a 'frames' list ({type(e).__name__}: {e})") from e
    Ks, c2ws, ws, hs, files = [], [], [], [], []
    for i, fr in enumerate(frames):
        try:
            if "c2w" in fr:
                c2w = torch.tensor(fr["c2w"], dtype=torch.float32)
                K = torch.tensor(fr["K"], dtype=torch.float32)
                w, h = int(fr["width"]), int(fr["height"])
            else:
                c2w = opengl_to_opencv(torch.tensor(fr["transform_matrix"], dtype=torch.float32)[None])[0]
                get = lambda k, d=None: fr.get(k, doc.get(k, d) if isinstance(doc, dict) else d)  # noqa: E731
                w, h = int(get("w")), int(get("h"))
                fx = get("fl_x") or 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
                fy = get("fl_y") or fx
                K = torch.tensor([[float(fx), 0, float(get("cx", w / 2))], [0, float(fy), float(get("cy", h / 2))], [0, 0, 1]])
            if c2w.shape != (4, 4) or K.shape != (3, 3):
                raise ValueError(f"shapes {tuple(K.shape)} / {tuple(c2w.shape)}")
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"frame {i}: bad camera ({type(e).__name__}: {e})") from e
        Ks.append(K)
        c2ws.append(c2w)
        ws.append(w)
        hs.append(h)
        files.append(fr.get("file") or fr.get("file_path"))
    return {"K": torch.stack(Ks), "c2w": torch.stack(c2ws), "width": ws, "height": hs, "files": files}


def measure_fill(data_dir: str | Path, max_objects: int = 64) -> float:
    """Median over views of (mask bounding-box side / image side) in a data set (for CANONICAL_FILL)."""
    from .data import MultiViewDataset

    ds = MultiViewDataset(data_dir, "train", views_per_item=1)
    fills = []
    for i in range(min(len(ds), max_objects)):
        m = ds._shard(ds.items[i]["shard"])["mask"][ds.items[i]["offset"]] > 127
        for v in m:
            ys, xs = np.nonzero(v)
            if len(ys):
                fills.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / v.shape[0])
    return float(np.median(fills))


# ------------------------------------------------------------------------------- prediction
def _write_gif(path: Path, frames: list[np.ndarray], fps: float = 24.0) -> Path:
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, frames, format="GIF", duration=1000 / fps, loop=0)
    return path


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float = 24.0) -> Optional[Path]:
    """MP4 via imageio-ffmpeg when installed; None otherwise (optional output)."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return None
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, frames, format="FFMPEG", fps=fps, macro_block_size=1)
    return path


def _render_ring(model, latent, cameras, size: int, options) -> list[np.ndarray]:
    """Render each camera of ``cameras``; rays go through the field in chunks of ``model.render_chunk``
    (default 1024: small chunks keep per-sample activations in cache, measured ~2x faster on CPU than 4096)."""
    from .rendering import render_view

    dev = next(model.parameters()).device
    chunk = int(getattr(model, "render_chunk", 1024))
    own = getattr(model, "render_view", None)  # a model's own image renderer (published OpenLRM: the official rays)
    frames = []
    for i in range(len(cameras)):
        K, c2w = cameras.K[i:i + 1].to(dev), cameras.c2w[i:i + 1].to(dev)
        out = (own(latent, K, c2w, size, size, options, chunk=chunk) if own is not None
               else render_view(model, latent, K, c2w, size, size, options, chunk=chunk))
        frames.append((out["rgb"][0].float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))
    return frames


@torch.no_grad()
def predict_radiance_field(model, images: Tensor, K: Tensor, c2w: Tensor, out_dir: str | Path,
                           num_views: int = DEFAULTS.num_views, orbit_frames: int = DEFAULTS.orbit_frames,
                           mesh_resolution: int = DEFAULTS.mesh_resolution,
                           density_threshold: Optional[float] = DEFAULTS.density_threshold,
                           formats: Sequence[str] = ("glb", "obj", "ply"), render_size: Optional[int] = None,
                           render_options=None, notes: Optional[list[str]] = None,
                           texture_size: int = DEFAULTS.texture_size) -> PredictResult:
    """Encode source views with a :class:`ConditionedRadianceField`, render novel views and an orbit,
    extract and export a mesh; every file written atomically (see the module docstring).

    Args:
        images: (S, 3, H, W) in [0, 1] on white; K: (S, 3, 3); c2w: (S, 4, 4) OpenCV, training-set frame.
        num_views: novel views on a ring at the source cameras' mean elevation and distance.
        orbit_frames: turntable frames (0: none); mesh_resolution: marching-cubes grid per axis (0: no mesh).
        density_threshold: iso-level in 1/world units (default: the model's ``mesh_density_threshold``, else 10).
        render_size: side of rendered views (default H).
        texture_size: > 0: the mesh also gets a baked UV texture of this size (GLB/OBJ; PLY keeps vertex colours).
    Defaults: :class:`~.options.PredictOptions` (the ``recon3d predict`` flags).
    """
    from recon3d.core.cameras import Cameras
    from recon3d.core.camera_paths import orbit_path
    from recon3d.io.images import save_image
    from recon3d.mesh import export_mesh_formats

    from .rendering import RenderOptions, density_mesh

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = PredictResult(out_dir=out, notes=list(notes or []))
    dev = next(model.parameters()).device
    S, _, H, W = images.shape
    size = int(render_size or getattr(model, "predict_render_size", None) or H)  # published OpenLRM: its render size
    opts = render_options or RenderOptions()
    for i in range(S):
        res.inputs.append(save_image(out / "inputs" / f"input_{i:02d}.png", images[i].permute(1, 2, 0)))
    t = time.perf_counter()
    latent = model.encode(images[None].to(dev), K[None].float().to(dev), c2w[None].float().to(dev))
    res.timings["encode"] = time.perf_counter() - t
    src = Cameras(c2w.float().cpu(), fx=K[:, 0, 0].float(), fy=K[:, 1, 1].float(), cx=K[:, 0, 2].float(),
                  cy=K[:, 1, 2].float(), width=W, height=H).rescale(width=size, height=size)
    if S < 3:  # too few cameras for a well-posed look-at point: add the first one turned 120 / 240 deg about +Z
        ring = torch.cat([src.c2w[:1]] + [_rot_z(src.c2w[:1], a) for a in (120.0, 240.0)])
        src = Cameras(ring, fx=src.fx[:1].repeat(3), fy=src.fy[:1].repeat(3), cx=src.cx[:1].repeat(3),
                      cy=src.cy[:1].repeat(3), width=size, height=size)
    t = time.perf_counter()
    frames = _render_ring(model, latent, orbit_path(src, orbit_frames), size, opts) if orbit_frames > 0 else []
    res.timings["orbit"] = time.perf_counter() - t
    t = time.perf_counter()
    if num_views > 0:
        if frames and orbit_frames % num_views == 0:  # the views are orbit frames: render nothing twice
            views = frames[::orbit_frames // num_views]
        else:
            views = _render_ring(model, latent, orbit_path(src, num_views), size, opts)
        for i, frame in enumerate(views):
            res.views.append(save_image(out / "views" / f"view_{i:02d}.png", frame))
    res.timings["views"] = time.perf_counter() - t
    if frames:
        res.orbit = _write_gif(out / "orbit.gif", frames)
        res.orbit_mp4 = _write_mp4(out / "orbit.mp4", frames)
    t = time.perf_counter()
    if mesh_resolution > 0:
        thr = float(density_threshold if density_threshold is not None else getattr(model, "mesh_density_threshold", 10.0))
        try:
            res.mesh = density_mesh(model, latent, resolution=mesh_resolution, threshold=thr, texture_size=texture_size)
        except ValueError as e:
            res.notes.append(f"no mesh: {e}")
        if res.mesh is not None and res.mesh.num_faces > 0:
            res.meshes = export_mesh_formats(res.mesh, out, "mesh", formats, up_axis="z")
        elif res.mesh is not None:
            res.notes.append(f"no mesh: the density never exceeds {thr:g} inside the scene cube")
            res.mesh = None
    res.timings["mesh"] = time.perf_counter() - t
    res.timings["total"] = time.perf_counter() - t0
    res.summary = atomic_write_json(out / "prediction.json", _summary(model, res, K, c2w, size))
    return res


def _rot_z(c2w: Tensor, degrees: float) -> Tensor:
    """Cameras (N, 4, 4) rotated by ``degrees`` about the world +Z axis through the origin."""
    a = math.radians(degrees)
    R = torch.eye(4, dtype=c2w.dtype)
    R[0, 0], R[0, 1], R[1, 0], R[1, 1] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return R @ c2w


def _summary(model, res: PredictResult, K: Tensor, c2w: Tensor, size: int) -> dict:
    rel = lambda p: str(Path(p).relative_to(res.out_dir)) if p is not None else None  # noqa: E731
    return {
        "model": getattr(model, "name", type(model).__name__),
        "source_cameras": {"K": K.tolist(), "c2w": c2w.tolist(), "convention": "OpenCV camera-to-world, world +Z up"},
        "render_size": size, "inputs": [rel(p) for p in res.inputs], "views": [rel(p) for p in res.views],
        "orbit": rel(res.orbit), "orbit_mp4": rel(res.orbit_mp4),
        "meshes": {k: [rel(p) for p in v] for k, v in res.meshes.items()},
        "mesh": None if res.mesh is None else {"vertices": int(res.mesh.num_vertices), "faces": int(res.mesh.num_faces),
                                               "units": "world units of the training set (object radius ~0.95)",
                                               **{k: v for k, v in res.mesh.metadata.items() if isinstance(v, (int, float, str))}},
        "notes": res.notes, "timings_s": {k: round(v, 3) for k, v in res.timings.items()},
    }


def expand_image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with each folder replaced by the images directly inside it, in natural order
    (:func:`recon3d.io.images.list_images`, as ``fit --images``); files are kept as given.
    DataError naming a folder that holds no image."""
    from recon3d.io.images import IMAGE_EXTENSIONS, list_images

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(p, f"no images in this folder (looked for {', '.join(IMAGE_EXTENSIONS)})")
            out += found
        else:
            out.append(p)
    return out


def model_input_size(model) -> int:
    """Input image side a model expects: ``model.predict_image_size``, ``config.image_size``, else 64."""
    return int(getattr(model, "predict_image_size", None) or getattr(model.config, "image_size", None) or 64)


def image_to_3d(model_name: str, image_paths: Sequence[str | Path], out_dir: str | Path,
                checkpoint: Optional[str | Path] = None, device: str = DEFAULTS.device,
                cameras: Optional[str | Path] = None,
                masks: Optional[Sequence[str | Path]] = None, variant: Optional[str] = None,
                **opts) -> PredictResult:
    """Photos of one object -> novel views, turntable and mesh with model ``model_name``.

    Loads the model (``checkpoint`` or the shipped one), prepares the images
    (:func:`load_input_images`), uses ``cameras`` (:func:`load_cameras`) or the canonical cameras,
    and runs :func:`predict_radiance_field` with ``opts`` (num_views, orbit_frames, mesh_resolution,
    density_threshold, formats, render_size). Models that are not conditioned radiance fields but
    ship ``recon3d/feedforward/<name>/predict.py:run_predict`` (VGGT) are run through it instead
    (its summary in ``extra``). ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``
    (:func:`recon3d.runtime.device.resolve_device`). Defaults: :class:`~.options.PredictOptions`.
    Raises DataError for bad inputs or checkpoints.
    """
    from .base import ConditionedRadianceField
    from .registry import load_model

    t0 = time.perf_counter()
    device = str(resolve_device(device))
    paths = expand_image_paths(image_paths)
    if masks is not None:
        masks = expand_image_paths(masks)
    if not paths:
        raise DataError(Path("images"), "no input images given")
    model = load_model(model_name, checkpoint, device=device, variant=variant)
    if not isinstance(model, ConditionedRadianceField):
        run = model_predict_hook(model_name)
        if run is None:
            raise DataError(Path(model_name), f"model {model_name!r} is not an image-conditioned radiance field "
                                              "and has no predict hook")
        extra = run(model, paths, out_dir, _Args(device=device, **opts))
        return PredictResult(out_dir=Path(out_dir), extra=extra, timings={"total": time.perf_counter() - t0})
    size = model_input_size(model)
    if cameras is not None:
        cams = load_cameras(cameras)
        if len(cams["files"]) != len(paths):
            raise DataError(cameras, f"{len(cams['files'])} cameras for {len(paths)} images")
        images, _, notes = load_input_images(paths, size, masks, crop="center")
        K = torch.cat([center_crop_intrinsics(cams["K"][i:i + 1], cams["width"][i], cams["height"][i], size)
                       for i in range(len(paths))])
        c2w = cams["c2w"]
    else:
        images, _, notes = load_input_images(paths, size, masks, fill=getattr(model, "predict_fill", CANONICAL_FILL))
        own = getattr(model, "default_source_cameras", None)  # a published model's fixed source camera (OpenLRM)
        K, c2w = own(len(paths), size) if own is not None else canonical_source_cameras(len(paths), size)
    t_load = time.perf_counter() - t0
    res = predict_radiance_field(model, images, K, c2w, out_dir, notes=notes, **opts)
    res.timings["load"] = t_load
    res.timings["total"] = time.perf_counter() - t0
    return res


class _Args:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def model_predict_hook(name: str):
    """``run_predict`` of ``recon3d.feedforward.<name>.predict`` if that module exists, else None."""
    try:
        mod = importlib.import_module(f"recon3d.feedforward.{name}.predict")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(f"recon3d.feedforward.{name}"):
            return None
        raise
    return getattr(mod, "run_predict", None)
