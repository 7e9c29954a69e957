"""The scene of a fit, saved in its run folder (``scene.json``) so the run can be reopened exactly.

A run is the source of truth for its own cameras: ``render``, ``export``, ``eval`` and the web app's
viewer read the cameras, splits, image files and normalization the fit used from ``RUN/scene.json``,
and never redo structure-from-motion or a VGGT forward pass. Sparse points (used only to initialize
a fit) are not kept.

Layout (JSON): ``version``, ``name``, ``source_format``, ``downscale``, ``background`` (3 floats or
null), ``normalization`` (source world -> normalized world 4x4), ``train_indices``, ``test_indices``,
``val_indices``, ``frames``: one per camera with ``image`` and ``mask`` (paths relative to the run
folder when inside it, else absolute), ``fx fy cx cy width height`` (pixels), ``distortion``,
``c2w`` (4x4, OpenCV axes, the *normalized* world), and ``model`` (the camera model) at the top level,
plus ``near_far`` per frame when the dataset has bounds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from recon3d.core.cameras import Cameras

from .atomic import atomic_write_json
from .errors import DataError
from .normalize import Normalization
from .scene import Scene

SCENE_FILE = "scene.json"
VERSION = 1


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    p = Path(path).resolve()
    try:
        return os.path.relpath(p, root) if p.is_relative_to(root) else str(p)
    except ValueError:
        return str(p)


def save_run_scene(scene: Scene, run_dir: str | Path) -> Path:
    """Write ``run_dir/scene.json`` (atomically) describing ``scene`` as the fit uses it."""
    root = Path(run_dir).resolve()
    cams = scene.cameras.to("cpu")
    frames = []
    for i in range(len(cams)):
        f = {"image": _rel(scene.image_paths[i], root),
             "mask": _rel(scene.mask_paths[i], root) if scene.mask_paths is not None else None,
             "fx": float(cams.fx[i]), "fy": float(cams.fy[i]), "cx": float(cams.cx[i]), "cy": float(cams.cy[i]),
             "width": int(cams.width[i]), "height": int(cams.height[i]),
             "distortion": [float(x) for x in cams.distortion[i].tolist()],
             "c2w": [[float(x) for x in row] for row in cams.c2w[i].tolist()]}
        if scene.near_far is not None:
            f["near_far"] = [float(x) for x in scene.near_far[i].tolist()]
        frames.append(f)
    d = {"version": VERSION, "name": scene.name, "source_format": scene.source_format,
         "downscale": float(scene.downscale), "model": cams.model, "masks_as_alpha": bool(scene.masks_as_alpha),
         "background": None if scene.background is None else [float(x) for x in scene.background.tolist()],
         "normalization": scene.normalization.to_dict()["transform"],
         "train_indices": list(scene.train_indices), "test_indices": list(scene.test_indices),
         "val_indices": None if scene.val_indices is None else list(scene.val_indices), "frames": frames}
    return atomic_write_json(root / SCENE_FILE, d)


def has_run_scene(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SCENE_FILE).is_file()


def load_run_scene(run_dir: str | Path) -> Scene:
    """The Scene saved by :func:`save_run_scene`; DataError naming the file when it is missing or bad."""
    root = Path(run_dir).resolve()
    path = root / SCENE_FILE
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(path, "missing; this run folder was not written by recon3d fit") from e
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    try:
        frames = d["frames"]
        if not frames:
            raise ValueError("no frames")

        def col(key, dtype=torch.float32):
            return torch.tensor([f[key] for f in frames], dtype=dtype)

        cams = Cameras(c2w=col("c2w"), fx=col("fx"), fy=col("fy"), cx=col("cx"), cy=col("cy"),
                       width=col("width", torch.int64), height=col("height", torch.int64),
                       distortion=col("distortion"), model=d["model"])

        def path_of(p):
            return None if p is None else (Path(p) if Path(p).is_absolute() else root / p)

        masks = [path_of(f.get("mask")) for f in frames]
        scene = Scene(
            cameras=cams, image_paths=[path_of(f["image"]) for f in frames],
            train_indices=d["train_indices"], test_indices=d["test_indices"], val_indices=d.get("val_indices"),
            mask_paths=masks if any(m is not None for m in masks) else None,
            background=d.get("background"), downscale=d.get("downscale", 1),
            normalization=Normalization(torch.tensor(d["normalization"], dtype=torch.float64)),
            name=d.get("name", ""), source_format=d.get("source_format", ""),
            masks_as_alpha=bool(d.get("masks_as_alpha", False)),
            near_far=col("near_far") if all("near_far" in f for f in frames) else None)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(path, f"not a valid run scene ({e.__class__.__name__}: {e})") from e
    missing = [p for p in scene.image_paths if not p.is_file()]
    if missing:
        raise DataError(missing[0], f"image of this run is missing ({len(missing)} of {len(scene.image_paths)} "
                                    f"images are; {path} names them)")
    return scene
