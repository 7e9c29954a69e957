"""Point clouds as PLY files: a tiny binary writer and a trimesh-based reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import atomic_write_bytes
from .errors import DataError


def write_points_ply(path: str | Path, points: Tensor, colors: Tensor | None = None) -> Path:
    """Write a binary little-endian PLY point cloud atomically.

    Args:
        path: destination ``.ply``.
        points: (P, 3) world points (stored as float32).
        colors: optional (P, 3) colours, floats in [0, 1] (stored as uint8 red/green/blue).
    """
    pts = torch.as_tensor(points).detach().cpu().to(torch.float32).reshape(-1, 3).numpy()
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.zeros(len(pts), dtype=props)
    data["x"], data["y"], data["z"] = pts.T
    if colors is not None:
        c = torch.as_tensor(colors).detach().cpu().to(torch.float32).reshape(-1, 3).numpy()
        if len(c) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(c)} colours")
        c8 = (np.clip(c, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        data["red"], data["green"], data["blue"] = c8.T
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(pts)}"]
    header += [f"property {types[t]} {name}" for name, t in props] + ["end_header", ""]
    atomic_write_bytes(Path(path), "\n".join(header).encode("ascii") + data.tobytes())
    return Path(path)


def read_points_ply(path: str | Path) -> tuple[Tensor, Tensor | None]:
    """Read the vertices of a PLY (point cloud or mesh) with trimesh.

    Returns:
        points (P, 3) float32 and colours (P, 3) float32 in [0, 1] (None if the file has none).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "point cloud file not found")
    import trimesh  # lazy: only needed when a scene ships points

    try:
        geom = trimesh.load(path, process=False)
    except Exception as e:
        raise DataError(path, f"cannot read PLY ({type(e).__name__}: {e})") from e
    verts = getattr(geom, "vertices", None)
    if verts is None:
        raise DataError(path, "PLY has no vertices")
    pts = torch.from_numpy(np.asarray(verts, dtype=np.float32).reshape(-1, 3).copy())
    cols = getattr(geom, "colors", None)
    if cols is None and getattr(getattr(geom, "visual", None), "kind", None) == "vertex":
        cols = geom.visual.vertex_colors
    cols = None if cols is None or len(cols) != len(pts) else np.asarray(cols)[:, :3]
    if not torch.isfinite(pts).all():
        raise DataError(path, "PLY has non-finite vertex coordinates")
    colors = None if cols is None else torch.from_numpy(cols.astype(np.float32) / 255.0)
    return pts, colors
