"""The triangle mesh every recon3d method produces and every exporter consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np


@dataclass
class TriangleMesh:
    """A triangle mesh in recon3d's world frame (the scene's *normalized* frame unless stated).

    Attributes:
        vertices: (V, 3) float32 positions, world units.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside (normals point out).
        vertex_colors: (V, 3) float32 linear-free sRGB in [0, 1], or None.
        vertex_normals: (V, 3) float32 unit normals, or None (computed by exporters when needed).
        uvs: (V, 2) float32 texture coordinates in [0, 1] (origin bottom-left, glTF/OBJ flip handled
            by the exporter), or None. When set, ``texture`` is set too.
        texture: (H, W, 3) uint8 sRGB texture image, or None.
        metadata: free-form provenance (method, thresholds, counts) stored in exported files' extras.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: Optional[np.ndarray] = None
    vertex_normals: Optional[np.ndarray] = None
    uvs: Optional[np.ndarray] = None
    texture: Optional[np.ndarray] = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        n = len(self.vertices)
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= n):
            raise ValueError(f"faces index vertices outside [0, {n})")
        for name, width in (("vertex_colors", 3), ("vertex_normals", 3), ("uvs", 2)):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float32).reshape(-1, width)
                if len(v) != n:
                    raise ValueError(f"{name} has {len(v)} rows for {n} vertices")
                setattr(self, name, v)
        if (self.uvs is None) != (self.texture is None):
            raise ValueError("uvs and texture must be given together")
        if self.texture is not None:
            self.texture = np.asarray(self.texture)
            if self.texture.dtype != np.uint8:
                self.texture = (np.clip(self.texture, 0, 1) * 255 + 0.5).astype(np.uint8)

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    def transformed(self, T: np.ndarray) -> "TriangleMesh":
        """Apply a 4x4 similarity (uniform scale, rotation, translation); normals are rotated."""
        T = np.asarray(T, dtype=np.float64)
        A = T[:3, :3]
        verts = self.vertices.astype(np.float64) @ A.T + T[:3, 3]
        normals = None
        if self.vertex_normals is not None:
            R = A / np.cbrt(np.linalg.det(A))
            normals = self.vertex_normals.astype(np.float64) @ R.T
        faces = self.faces if np.linalg.det(A) > 0 else self.faces[:, ::-1].copy()
        return replace(self, vertices=verts, faces=faces, vertex_normals=normals)
