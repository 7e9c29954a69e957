"""nerfstudio ``transforms.json``: reader and writer.

Format (all paths relative to the JSON's folder)::

    {
      "camera_model": "OPENCV",            # PINHOLE | OPENCV | OPENCV_FISHEYE (+ SIMPLE_PINHOLE,
                                           #   SIMPLE_RADIAL, RADIAL as perspective aliases)
      "fl_x": 500, "fl_y": 500, "cx": 320, "cy": 240, "w": 640, "h": 480,
      "k1": 0, "k2": 0, "k3": 0, "k4": 0, "p1": 0, "p2": 0,
      "frames": [{"file_path": "images/0001.png", "transform_matrix": [[...4x4...]],
                  "mask_path": "masks/0001.png", "fl_x": ...per-frame overrides...}, ...],
      "ply_file_path": "sparse_pc.ply",      # optional points, same world as the poses
      "applied_transform": [[...3x4...]],    # kept in scene.metadata, not applied
      "train_filenames": [...], "val_filenames": [...], "test_filenames": [...]   # optional
      "recon3d_normalization": {"transform": 4x4}, "recon3d_world": "original"   # recon3d's own, optional
    }

Every intrinsic may be top-level (shared) or per frame (a frame's value wins). ``transform_matrix``
is camera-to-world with OpenGL camera axes (x right, y up, z back), converted with
:func:`recon3d.core.conventions.nerfstudio_to_opencv`. Pixel coordinates (cx, cy) use the same
corner-origin convention as recon3d, so they are taken as is.

recon3d writes poses and points in the capture's world and records the scene normalization
(``recon3d_normalization``, applied again on reading when ``recon3d_world`` is ``"original"``;
files without ``recon3d_world`` hold already-normalized poses and are read as they are).

Defaults: ``fl_y = fl_x``; ``cx, cy = w/2, h/2``; ``w, h`` from the image file; a missing
``fl_x`` may be given as ``camera_angle_x``. Like nerfstudio, a perspective model applies whatever
k1, k2, k3, p1, p2 are present (so ``PINHOLE`` with coefficients reads as ``opencv``); fisheye uses
k1..k4. Frames keep their JSON order. Splits: the ``*_filenames`` lists when present (test falls
back to val; train to the remaining frames), otherwise every 8th frame (0, 8, ...) is test and the
rest train (nerfstudio's own default is a 90/10 fraction split of the name-sorted frames).
``ns-process-data`` layouts: ``images/`` with the ``images_2/``, ``images_4/``, ``images_8/``
downscaled copies (and ``masks_N/``), ``colmap/`` (the SfM model it came from, ignored: the JSON is
the source of truth), ``sparse_pc.ply`` through ``ply_file_path`` (already in the JSON's world), and
``applied_transform`` (the COLMAP-to-JSON world change ns-process-data applied; recorded in
``scene.metadata`` and written back unchanged). An integer ``downscale`` with an ``images_{d}/``
folder uses those pre-shrunk files the way nerfstudio's own parser does (``images_{d}/<file name>``,
masks from ``masks_{d}/`` when present), otherwise the full-size images are shrunk on load.
Not supported: depth files, equirectangular and FISHEYE624 cameras.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from recon3d.core.cameras import OPENCV, OPENCV_FISHEYE, PINHOLE, Cameras
from recon3d.core.conventions import nerfstudio_to_opencv, opencv_to_nerfstudio

from .atomic import atomic_write_bytes
from ._common import (TEST_EVERY, as_number, as_pose, every_nth_split, read_json,
                      relpath_posix, require_dict, require_key)
from .errors import DataError
from .images import find_image, image_size
from .normalize import Normalization
from .ply import read_points_ply, write_points_ply
from .scene import Scene, finalize_scene

_PERSPECTIVE = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
_FISHEYE = ("OPENCV_FISHEYE",)
_DIST_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _frame_intrinsics(meta: dict, fr: dict, i: int, img: Path, jp: Path) -> tuple[str, list[float], list[float]]:
    """(model family 'perspective'|'fisheye', [fx, fy, cx, cy, w, h], distortion (5,))."""
    where = f"frame {i}"

    def get(key):
        return fr[key] if key in fr else meta.get(key)

    model = get("camera_model") or "OPENCV"
    if model not in _PERSPECTIVE + _FISHEYE:
        raise DataError(jp, f"{where}: unknown or unsupported camera_model {model!r}; "
                            f"supported: {', '.join(_PERSPECTIVE + _FISHEYE)}")
    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = image_size(img)
    w, h = as_number(w, jp, f"{where} 'w'"), as_number(h, jp, f"{where} 'h'")
    if w < 1 or h < 1 or w != int(w) or h != int(h):
        raise DataError(jp, f"{where}: image size w={w}, h={h} must be positive integers")
    fx = get("fl_x")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * as_number(get("camera_angle_x"), jp, f"{where} 'camera_angle_x'"))
    if fx is None:
        raise DataError(jp, f"{where} has no 'fl_x' (neither per frame nor at the top level)")
    fx = as_number(fx, jp, f"{where} 'fl_x'")
    fy = as_number(get("fl_y"), jp, f"{where} 'fl_y'") if get("fl_y") is not None else fx
    cx = as_number(get("cx"), jp, f"{where} 'cx'") if get("cx") is not None else 0.5 * w
    cy = as_number(get("cy"), jp, f"{where} 'cy'") if get("cy") is not None else 0.5 * h
    if fx <= 0 or fy <= 0:
        raise DataError(jp, f"{where}: focal lengths must be positive (fl_x={fx}, fl_y={fy})")
    k = {key: as_number(get(key), jp, f"{where} {key!r}") if get(key) is not None else 0.0 for key in _DIST_KEYS}
    if model in _FISHEYE:
        if k["p1"] or k["p2"]:
            raise DataError(jp, f"{where}: OPENCV_FISHEYE has no tangential terms but p1/p2 are non-zero")
        return "fisheye", [fx, fy, cx, cy, w, h], [k["k1"], k["k2"], k["k3"], k["k4"], 0.0]
    if k["k4"]:
        raise DataError(jp, f"{where}: k4 is only supported with camera_model OPENCV_FISHEYE")
    return "perspective", [fx, fy, cx, cy, w, h], [k["k1"], k["k2"], k["p1"], k["p2"], k["k3"]]


def _split_lists(meta: dict, paths: list[Path], jp: Path) -> tuple[list[int], list[int], list[int] | None] | None:
    """Splits from ``train/val/test_filenames`` (matched against resolved frame paths), or None."""
    keys = [k for k in ("train_filenames", "val_filenames", "test_filenames") if k in meta]
    if not keys:
        return None
    index = {p.resolve(): i for i, p in enumerate(paths)}
    found: dict[str, list[int]] = {}
    for key in keys:
        names = meta[key]
        if not isinstance(names, list):
            raise DataError(jp, f"{key!r} must be a list of file paths")
        idx = []
        for name in names:
            if not isinstance(name, str):
                raise DataError(jp, f"{key!r} entry {name!r} is not a string")
            p = Path(name) if Path(name).is_absolute() else jp.parent / name
            if p.resolve() not in index:
                raise DataError(jp, f"{key!r} lists {name!r}, which is not the file_path of any frame")
            idx.append(index[p.resolve()])
        found[key.split("_")[0]] = sorted(set(idx))
    val = found.get("val")
    test = found.get("test", val)
    if test is None:
        _, test = every_nth_split(len(paths), TEST_EVERY)
    held = set(test) | set(val or [])
    train = found.get("train", [i for i in range(len(paths)) if i not in held])
    return train, test, val


def read_nerfstudio(path: str | Path, downscale: float = 1, background=None) -> Scene:
    """Read a nerfstudio dataset: a folder with ``transforms.json``, or the JSON file itself.

    Args:
        path: dataset folder or JSON file.
        downscale: image shrink factor (2 halves); cameras are rescaled to match.
        background: colour RGBA images are composited onto (None: alpha ignored).
    Returns:
        Scene with ``source_format='nerfstudio'``; points from ``ply_file_path`` if given.
    """
    path = Path(path)
    jp = path / "transforms.json" if path.is_dir() else path
    meta = require_dict(read_json(jp), jp)
    frames = require_key(meta, "frames", jp)
    if not isinstance(frames, list) or not frames:
        raise DataError(jp, "'frames' must be a non-empty list")
    paths, masks, poses, intr, dist, families = [], [], [], [], [], []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise DataError(jp, f"frame {i} must be a JSON object")
        img = find_image(jp.parent, require_key(fr, "file_path", jp, f"frame {i}"), jp, f"frame {i}")
        pose = as_pose(require_key(fr, "transform_matrix", jp, f"frame {i}"), jp, f"frame {i} 'transform_matrix'")
        fam, k, d = _frame_intrinsics(meta, fr, i, img, jp)
        mp = fr.get("mask_path")
        if mp is not None and not isinstance(mp, str):
            raise DataError(jp, f"frame {i}: 'mask_path' must be a string")
        masks.append(None if mp is None else (Path(mp) if Path(mp).is_absolute() else jp.parent / mp))
        paths.append(img)
        poses.append(pose)
        intr.append(k)
        dist.append(d)
        families.append(fam)
    if len(set(families)) > 1:
        raise DataError(jp, "frames mix fisheye and perspective camera models; recon3d needs one family per scene")
    dist_arr = np.asarray(dist, dtype=np.float64)
    model = OPENCV_FISHEYE if families[0] == "fisheye" else (OPENCV if np.any(dist_arr != 0) else PINHOLE)
    fx, fy, cx, cy, w, h = np.asarray(intr, dtype=np.float64).T
    c2w = nerfstudio_to_opencv(torch.from_numpy(np.stack(poses)).float())
    cams = Cameras(c2w, fx, fy, cx, cy, np.round(w).astype(np.int64), np.round(h).astype(np.int64),
                   torch.from_numpy(dist_arr).float(), model)

    points = colors = None
    if meta.get("ply_file_path") is not None:
        ply = meta["ply_file_path"]
        if not isinstance(ply, str):
            raise DataError(jp, "'ply_file_path' must be a string")
        ply_path = Path(ply) if Path(ply).is_absolute() else jp.parent / ply
        if not ply_path.is_file():
            raise DataError(jp, f"'ply_file_path' {ply!r} not found on disk ({ply_path})")
        points, colors = read_points_ply(ply_path)
    splits = _split_lists(meta, paths, jp)
    train, test, val = splits if splits is not None else (*every_nth_split(len(paths), TEST_EVERY), None)
    metadata = {k: meta[k] for k in ("applied_transform", "applied_scale") if k in meta}
    paths, masks, files_ds = _downscaled_copies(jp.parent, paths, masks, downscale)
    if files_ds != 1:
        metadata.update(files_downscale=files_ds, images_dir=str(jp.parent / f"images_{files_ds}"))
    norm = Normalization.identity()
    if "recon3d_normalization" in meta:
        try:
            norm = Normalization.from_dict(meta["recon3d_normalization"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(jp, f"invalid 'recon3d_normalization' ({e})") from e
        if meta.get("recon3d_world") == "original":  # poses/points in the capture's world: normalize them again
            cams = norm.apply_cameras(cams)
            points = None if points is None else norm.apply_points(points)
    name = jp.parent.name
    scene = finalize_scene(
        cams, paths, downscale=downscale / files_ds, allow_resized=files_ds != 1, source=jp,
        mask_paths=masks if any(m is not None for m in masks) else None,
        train_indices=train, test_indices=test, val_indices=val, points=points, point_colors=colors,
        background=background, normalization=norm, name=name, source_format="nerfstudio", metadata=metadata,
    )
    scene.downscale = downscale
    return scene


def _downscaled_copies(root: Path, paths: list[Path], masks: list[Path | None],
                       downscale: float) -> tuple[list[Path], list[Path | None], int]:
    """ns-process-data's pre-shrunk copies for an integer ``downscale`` d: ``root/images_{d}/<name>``.

    Used only when every frame has its copy (else the full-size files, factor 1). Masks move to
    ``root/masks_{d}/<name>`` where those exist (a full-size mask is resized on load otherwise).
    Returns (image paths, mask paths, the factor the returned files are already shrunk by).
    """
    if downscale == 1 or not float(downscale).is_integer():
        return paths, masks, 1
    d = int(downscale)
    folder = root / f"images_{d}"
    if not folder.is_dir():
        return paths, masks, 1
    small = [folder / p.name for p in paths]
    if not all(p.is_file() for p in small):
        return paths, masks, 1
    mask_folder = root / f"masks_{d}"
    small_masks = [m if m is None or not (mask_folder / m.name).is_file() else mask_folder / m.name for m in masks]
    return small, small_masks, d


# ---------------------------------------------------------------------------------- writer
def _intrinsics_dict(cams: Cameras, i: int) -> dict:
    d = {"fl_x": float(cams.fx[i]), "fl_y": float(cams.fy[i]), "cx": float(cams.cx[i]), "cy": float(cams.cy[i]),
         "w": int(cams.width[i]), "h": int(cams.height[i])}
    k = [float(x) for x in cams.distortion[i]]
    if cams.model == OPENCV:
        d.update(k1=k[0], k2=k[1], p1=k[2], p2=k[3], k3=k[4])
    elif cams.model == OPENCV_FISHEYE:
        d.update(k1=k[0], k2=k[1], k3=k[2], k4=k[3])
    return d


def write_nerfstudio_transforms(
    scene_or_cameras: Scene | Cameras,
    path: str | Path,
    image_paths: Sequence[str | Path] | None = None,
    *,
    mask_paths: Sequence[str | Path | None] | None = None,
    points=None,
    point_colors=None,
    splits: dict[str, Sequence[int]] | None = None,
    ply_name: str = "sparse_pc.ply",
    match_image_sizes: bool = True,
) -> Path:
    """Write a nerfstudio ``transforms.json`` (atomically) that nerfstudio's own parser accepts.

    Args:
        scene_or_cameras: a Scene (cameras, image/mask paths, points, splits and normalization are
            taken from it) or Cameras (then ``image_paths`` is required).
        path: output JSON file, or a folder (``transforms.json`` inside it).
        image_paths / mask_paths / points (P, 3) / point_colors (P, 3) in [0, 1]: for Cameras input,
            or to override the scene's.
        splits: ``{'train': [...], 'test': [...], 'val': [...]}`` frame indices written as
            ``*_filenames`` lists (default: the scene's splits; none for Cameras input). All three
            lists are written (val defaults to test, train to the rest): nerfstudio requires each.
        ply_name: file name of the points PLY written next to the JSON when there are points
            (colours default to mid-gray: nerfstudio expects them).
        match_image_sizes: rescale each camera to its image file's actual size when the file exists,
            so a downscaled scene is written against its full-resolution images.
    Returns:
        the JSON path. Poses are written as OpenGL camera-to-world; intrinsics top-level when all
        frames share them, else per frame; file paths relative to the JSON's folder. A normalized
        Scene is written in its original (capture) world, the world of recon3d's ``splats.ply`` and
        meshes, with ``recon3d_normalization`` and ``"recon3d_world": "original"`` recorded so that
        :func:`read_nerfstudio` returns the normalized scene again; nerfstudio ignores both keys.
    """
    out = Path(path)
    if out.is_dir() or out.suffix.lower() != ".json":
        out = out / "transforms.json"
    folder = out.parent
    extra: dict = {}
    if isinstance(scene_or_cameras, Scene):
        sc = scene_or_cameras
        cams = sc.cameras
        image_paths = sc.image_paths if image_paths is None else image_paths
        mask_paths = sc.mask_paths if mask_paths is None else mask_paths
        if points is None and sc.points is not None:
            points, point_colors = sc.points, sc.point_colors
        if splits is None:
            splits = {"train": sc.train_indices, "test": sc.test_indices}
            if sc.val_indices is not None:
                splits["val"] = sc.val_indices
        if not sc.normalization.is_identity:
            # poses and points go out in the capture's world (the one splats.ply and meshes use);
            # the normalization is recorded so read_nerfstudio rebuilds the normalized scene
            norm = sc.normalization
            cams = replace(cams, c2w=norm.inverse_c2w(cams.c2w).float(), distortion=cams.distortion.clone())
            if points is not None:
                points = norm.inverse_points(torch.as_tensor(points, dtype=torch.float32))
            extra["recon3d_normalization"] = norm.to_dict()
            extra["recon3d_world"] = "original"
        for key in ("applied_transform", "applied_scale"):
            if key in sc.metadata:
                extra[key] = sc.metadata[key]
    else:
        cams = scene_or_cameras
        if image_paths is None:
            raise ValueError("write_nerfstudio_transforms(cameras, ...) needs image_paths")
    image_paths = [Path(p) for p in image_paths]
    if len(image_paths) != len(cams):
        raise ValueError(f"{len(cams)} cameras but {len(image_paths)} image paths")
    if mask_paths is not None:
        have = [m is not None for m in mask_paths]
        if len(mask_paths) != len(cams) or (any(have) and not all(have)):
            raise ValueError("nerfstudio needs a mask_path for every frame or for none")
        mask_paths = mask_paths if all(have) else None
    if match_image_sizes:
        from ._common import rescale_cameras_to

        sizes = [image_size(p) if p.is_file() else (int(cams.width[i]), int(cams.height[i]))
                 for i, p in enumerate(image_paths)]
        cams = rescale_cameras_to(cams, [s[0] for s in sizes], [s[1] for s in sizes])

    per_frame = [_intrinsics_dict(cams, i) for i in range(len(cams))]
    shared = all(d == per_frame[0] for d in per_frame)
    model_name = {PINHOLE: "PINHOLE", OPENCV: "OPENCV", OPENCV_FISHEYE: "OPENCV_FISHEYE"}[cams.model]
    meta: dict = {"camera_model": model_name}
    if shared:
        meta.update(per_frame[0])
    c2w_gl = opencv_to_nerfstudio(cams.c2w.detach().cpu())
    names = [relpath_posix(p, folder) for p in image_paths]
    frames = []
    for i in range(len(cams)):
        fr: dict = {"file_path": names[i], "transform_matrix": [[float(x) for x in row] for row in c2w_gl[i].tolist()]}
        if mask_paths is not None:
            fr["mask_path"] = relpath_posix(Path(mask_paths[i]), folder)
        if not shared:
            fr.update(per_frame[i])
        frames.append(fr)
    meta["frames"] = frames
    if points is not None and len(points) > 0:
        pts = torch.as_tensor(points, dtype=torch.float32)
        cols = point_colors if point_colors is not None else torch.full_like(pts, 0.5)
        write_points_ply(folder / ply_name, pts, cols)
        meta["ply_file_path"] = ply_name
    if splits:
        # nerfstudio insists on every split it asks for (train, val, test) once any list is present
        splits = {k: v for k, v in splits.items() if v is not None}
        splits.setdefault("val", splits.get("test", []))
        splits.setdefault("test", splits["val"])
        splits.setdefault("train", sorted(set(range(len(cams))) - set(splits["test"]) - set(splits["val"])))
        for split in ("train", "val", "test"):
            meta[f"{split}_filenames"] = [names[int(i)] for i in splits[split]]
    meta.update(extra)
    atomic_write_bytes(out, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return out


# ------------------------------------------------------------------ nerfstudio's dataparser frame
# ns-process-data's pre-1.0 layouts carry no applied_transform; nerfstudio then assumes this one
# when a colmap/sparse/0 model sits beside transforms.json.
_NS_LEGACY_COLMAP_APPLIED = [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]


def nerfstudio_frame_transform(dataparser_transforms: str | Path | dict,
                               transforms_json: str | Path | None = None) -> np.ndarray:
    """(4, 4) float64 similarity from a transforms.json's world to a nerfstudio run's world.

    nerfstudio trains, views and exports (``ns-export gaussian-splat`` / ``poisson``) in its
    dataparser's frame: poses re-oriented, centered and scaled, recorded by ``ns-train`` as
    ``dataparser_transforms.json`` = ``{"transform": 3x4, "scale": s}``. That 3x4 maps the data's
    *original* coordinates (before ``applied_transform``) into the frame, so the JSON's own world
    maps by ``s * transform @ inverse(applied_transform)``; ``applied_transform`` is read from
    ``transforms_json`` (nerfstudio's legacy COLMAP default when absent and ``colmap/sparse/0``
    exists beside it, identity without a ``transforms_json``).

    Use it to put recon3d outputs in the frame of ``ns-export`` files made from the same data:
    ``save_splat_ply(model, path, transform=M @ inv(scene.normalization.transform))`` or
    ``export_mesh(mesh, path, normalization=scene.normalization.transform @ inv(M))``.
    """
    src = dataparser_transforms
    d = src if isinstance(src, dict) else require_dict(read_json(Path(src)), Path(src))
    where = Path("dataparser_transforms") if isinstance(src, dict) else Path(src)
    try:
        T = np.eye(4)
        T[:3] = np.asarray(d["transform"], dtype=np.float64).reshape(3, 4)
        s = float(d["scale"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(where, f"expected {{'transform': 3x4, 'scale': number}} ({e})") from e
    if not np.isfinite(T).all() or not math.isfinite(s) or s <= 0:
        raise DataError(where, "transform must be finite and scale positive")
    A = np.eye(4)
    if transforms_json is not None:
        jp = Path(transforms_json)
        jp = jp / "transforms.json" if jp.is_dir() else jp
        meta = require_dict(read_json(jp), jp)
        applied = meta.get("applied_transform")
        if applied is None and (jp.parent / "colmap" / "sparse" / "0").exists():
            applied = _NS_LEGACY_COLMAP_APPLIED
        if applied is not None:
            try:
                A[:3] = np.asarray(applied, dtype=np.float64).reshape(3, 4)
            except (TypeError, ValueError) as e:
                raise DataError(jp, f"'applied_transform' must be a 3x4 matrix ({e})") from e
    S = np.diag([s, s, s, 1.0])
    return S @ T @ np.linalg.inv(A)
