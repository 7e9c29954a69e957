"""Reader for the NeRF-synthetic ("Blender") layout.

Layout::

    scene/transforms_train.json   (required)
    scene/transforms_val.json     (optional)
    scene/transforms_test.json    (optional)
    scene/train/r_0.png ...       (RGBA renders)

Each JSON holds ``camera_angle_x`` (horizontal field of view, radians), optionally
``camera_angle_y``, and ``frames`` with ``file_path`` (relative to the JSON's folder, often without
the ``.png`` extension) and ``transform_matrix`` (4x4 camera-to-world, OpenGL/Blender camera axes,
converted here with :func:`recon3d.core.conventions.blender_to_opencv`).

Intrinsics: ``fx = W / (2 tan(camera_angle_x / 2))``, ``fy`` likewise from ``camera_angle_y`` (or
``fy = fx``), principal point at the image centre (W/2, H/2). Image sizes come from the files.
Explicit pixel intrinsics ``fl_x, fl_y, cx, cy`` (top level or per frame, instant-ngp style) win
over the angles; they refer to the JSON's ``w, h`` when given and are scaled to the actual files.
Optional per-frame ``mask_path`` (or ``mask_file_path``) become the scene's masks.

Splits follow the files: frames are ordered train, val, test. Without ``transforms_test.json`` the
val frames are the test set; with only ``transforms_train.json`` every 8th train frame (0, 8, ...)
is held out as test and the rest train.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from recon3d.core.cameras import Cameras
from recon3d.core.conventions import blender_to_opencv

from ._common import TEST_EVERY, as_number, as_pose, every_nth_split, read_json, require_dict, require_key
from .errors import DataError
from .images import find_image, image_size
from .scene import Scene, finalize_scene

SPLIT_FILES = {"train": "transforms_train.json", "val": "transforms_val.json", "test": "transforms_test.json"}


def _frame_intrinsics(meta: dict, fr: dict, w: int, h: int, jp: Path, where: str) -> tuple[float, ...]:
    """(fx, fy, cx, cy) in pixels of the ``w`` x ``h`` image file of one frame."""

    def get(key):
        v = fr.get(key, meta.get(key))
        return None if v is None else as_number(v, jp, f"{where} {key!r}")

    if get("fl_x") is not None:  # explicit pixel intrinsics (instant-ngp style), given at (w, h) of the JSON
        jw, jh = get("w") or w, get("h") or h
        sx, sy = w / jw, h / jh
        fx = get("fl_x")
        fy = get("fl_y") if get("fl_y") is not None else fx
        cx = get("cx") if get("cx") is not None else 0.5 * jw
        cy = get("cy") if get("cy") is not None else 0.5 * jh
        return fx * sx, fy * sy, cx * sx, cy * sy
    if "camera_angle_x" not in meta:
        raise DataError(jp, "missing key 'camera_angle_x' (and no 'fl_x')")
    angles = [get("camera_angle_x"), get("camera_angle_y")]
    for name, a in zip(("camera_angle_x", "camera_angle_y"), angles):
        if a is not None and not 0 < a < math.pi:
            raise DataError(jp, f"{name!r} must be a field of view in radians in (0, pi), got {a}")
    fx = 0.5 * w / math.tan(0.5 * angles[0])
    fy = fx if angles[1] is None else 0.5 * h / math.tan(0.5 * angles[1])
    return fx, fy, 0.5 * w, 0.5 * h


def _read_split(json_path: Path) -> tuple[list[Path], list[Path | None], list[np.ndarray], list[tuple]]:
    meta = require_dict(read_json(json_path), json_path)
    frames = require_key(meta, "frames", json_path)
    if not isinstance(frames, list):
        raise DataError(json_path, f"'frames' must be a list, got {type(frames).__name__}")
    paths, masks, poses, intr = [], [], [], []
    for i, fr in enumerate(frames):
        where = f"frame {i}"
        if not isinstance(fr, dict):
            raise DataError(json_path, f"{where} must be a JSON object")
        fp = require_key(fr, "file_path", json_path, where)
        pose = as_pose(require_key(fr, "transform_matrix", json_path, where), json_path, f"{where} 'transform_matrix'")
        img = find_image(json_path.parent, fp, json_path, where)
        w, h = image_size(img)
        mp = fr.get("mask_path", fr.get("mask_file_path"))
        masks.append(None if mp is None else find_image(json_path.parent, mp, json_path, f"{where} mask"))
        paths.append(img)
        poses.append(pose)
        intr.append((*_frame_intrinsics(meta, fr, w, h, json_path, where), w, h))
    return paths, masks, poses, intr


def read_blender(path: str | Path, downscale: float = 1, background="white") -> Scene:
    """Read a NeRF-synthetic dataset folder (or one of its ``transforms_*.json`` files).

    Args:
        path: the dataset folder, or a path to any file inside it.
        downscale: image shrink factor (2 halves); cameras are rescaled to match.
        background: colour the RGBA renders are composited onto: ``'white'`` (default, the
            NeRF-synthetic convention), ``'black'``, 3 floats, or None (alpha ignored).
    Returns:
        Scene with ``source_format='blender'``.
    """
    root = Path(path)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    train_json = root / SPLIT_FILES["train"]
    if not train_json.is_file():
        raise DataError(root, f"no {SPLIT_FILES['train']} (the Blender/NeRF-synthetic layout needs transforms_train.json, "
                              "optionally transforms_val.json and transforms_test.json)")
    all_paths, all_masks, all_poses, all_intr, blocks = [], [], [], [], {}
    for split, fname in SPLIT_FILES.items():
        jp = root / fname
        if not jp.is_file():
            continue
        paths, masks, poses, intr = _read_split(jp)
        if split == "train" and not paths:
            raise DataError(jp, "has no frames")
        blocks[split] = list(range(len(all_paths), len(all_paths) + len(paths)))
        all_paths += paths
        all_masks += masks
        all_poses += poses
        all_intr += intr
    if "test" in blocks:
        train, test, val = blocks["train"], blocks["test"], blocks.get("val")
    elif "val" in blocks:
        train, test, val = blocks["train"], blocks["val"], blocks["val"]
    else:
        train, test = every_nth_split(len(blocks["train"]), TEST_EVERY)
        val = None
    fx, fy, cx, cy, w, h = (list(col) for col in zip(*all_intr))
    c2w = blender_to_opencv(torch.from_numpy(np.stack(all_poses)).float())
    cams = Cameras(c2w, fx, fy, cx, cy, w, h)
    return finalize_scene(
        cams, all_paths, downscale=downscale, source=train_json,
        train_indices=train, test_indices=test, val_indices=val, background=background,
        mask_paths=all_masks if any(m is not None for m in all_masks) else None,
        name=root.name, source_format="blender",
    )
