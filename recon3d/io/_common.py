"""Small helpers shared by the readers and writers of :mod:`recon3d.io` (not public API)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import DataError

#: Default hold-out rule of every reader without explicit splits: every 8th frame (0, 8, 16, ...)
#: is a test frame, the rest train (the LLFF / mip-NeRF 360 "llffhold=8" convention).
TEST_EVERY = 8


def natural_key(name: str) -> list:
    """Sort key ordering embedded integers numerically: ``r_2`` before ``r_10``, case-insensitive."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", str(name))]


def read_json(path: Path) -> Any:
    """Parse a JSON file; missing files and syntax errors become :class:`DataError` (with line/col)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read file ({e})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e


def require_dict(obj: Any, path: Path, what: str = "top level") -> dict:
    if not isinstance(obj, dict):
        raise DataError(path, f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def require_key(d: dict, key: str, path: Path, where: str = "") -> Any:
    """``d[key]`` or a DataError like ``"frame 3 has no 'transform_matrix'"``."""
    if key not in d:
        raise DataError(path, f"{where} has no {key!r}" if where else f"missing key {key!r}")
    return d[key]


def as_number(value: Any, path: Path, what: str) -> float:
    """A finite float from a JSON value, else DataError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(path, f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise DataError(path, f"{what} is not finite ({value!r})")
    return x


def as_pose(value: Any, path: Path, what: str) -> np.ndarray:
    """(4, 4) float64 matrix from a nested list (4x4 or 3x4, bottom row added); checks finiteness."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"{what} is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
    if m.shape != (4, 4):
        raise DataError(path, f"{what} must be 4x4 (or 3x4), got shape {m.shape}")
    check_pose(m, path, what)
    return m


def check_pose(m: np.ndarray, path: Path, what: str, tol: float = 1e-2) -> None:
    """Finite entries and a (nearly) orthonormal, right-handed or left-handed 3x3 rotation block."""
    if not np.isfinite(m).all():
        raise DataError(path, f"{what} has non-finite entries (NaN or inf)")
    R = m[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol:
        raise DataError(path, f"{what} has a rotation block that is not orthonormal (max |R^T R - I| = {err:.3g})")


def every_nth_split(n: int, every: int = TEST_EVERY) -> tuple[list[int], list[int]]:
    """(train, test) index lists: test = 0, every, 2*every, ...; train = the rest. One frame: both."""
    test = list(range(0, n, every))
    train = [i for i in range(n) if i % every != 0]
    if not train:  # a single frame: train on it and test on it rather than train on nothing
        train = list(test)
    return train, test


def resolve_background(background: Any) -> Tensor | None:
    """``None | 'white' | 'black' | (3,) floats`` -> (3,) float32 tensor in [0, 1] or None."""
    from recon3d.core.background import background_color

    if isinstance(background, str) and background.lower() == "scene":
        raise ValueError("background must be 'white', 'black', None or 3 floats, got 'scene'")
    return background_color(background)


def rescale_cameras_to(cameras, widths: Sequence[int], heights: Sequence[int]):
    """Cameras resized to per-camera sizes (N,) ``widths``/``heights``; intrinsics scale per axis.

    With pixel centers at +0.5 the continuous image plane scales exactly (see ``Cameras.rescale``).
    """
    from dataclasses import replace

    w = torch.as_tensor(list(widths), dtype=torch.int64, device=cameras.device).reshape(-1)
    h = torch.as_tensor(list(heights), dtype=torch.int64, device=cameras.device).reshape(-1)
    if torch.equal(w, cameras.width) and torch.equal(h, cameras.height):
        return cameras
    sx = w.float() / cameras.width.float()
    sy = h.float() / cameras.height.float()
    return replace(cameras, fx=cameras.fx * sx, fy=cameras.fy * sy, cx=cameras.cx * sx, cy=cameras.cy * sy,
                   width=w, height=h, c2w=cameras.c2w.clone(), distortion=cameras.distortion.clone())


def relpath_posix(target: Path, start: Path) -> str:
    """``target`` relative to folder ``start`` with forward slashes (absolute if on another drive)."""
    try:
        return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()
    except ValueError:
        return Path(target).resolve().as_posix()


def unique(seq: Iterable) -> list:
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out
