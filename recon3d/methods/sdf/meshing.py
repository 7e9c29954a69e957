"""Meshing an :class:`~recon3d.methods.sdf.SdfField`: marching cubes of its zero level set inside the
bounding sphere, with vertex colours from its colour network. Used by
:meth:`recon3d.methods.sdf.SdfTrainer.extract_mesh` and the nerfstudio exporter
(:mod:`recon3d.integrations.nerfstudio.export_mesh`)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from recon3d.mesh.ops import finish_mesh

from .model import SdfField


def clipped_world_sdf(field: SdfField, x: Tensor) -> Tensor:
    """(N, 3) world points -> (N,) float32 CPU world-unit SDF, clipped to the bounding sphere
    (positive outside it, so the surface closes there)."""
    xn = field.to_unit(x.to(field.center.device))
    f = field.sdf(xn)
    return (torch.maximum(f, xn.norm(dim=-1) - 1.0) * field.radius).float().cpu()


def sdf_vertex_colors(field: SdfField, vertices: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """(V, 3) float32 colours in [0, 1] from the colour network at (V, 3) world ``vertices``,
    viewed from outside along minus the SDF normal."""
    v = torch.from_numpy(np.asarray(vertices, dtype=np.float32))
    out = []
    for s in range(0, len(v), chunk):
        xn = field.to_unit(v[s:s + chunk].to(field.center.device))
        _, g, feat = field.sdf_and_gradient(xn, create_graph=False)
        n = torch.nn.functional.normalize(g, dim=-1)
        out.append(field.color(xn, g, -n, feat).detach().float().cpu())
    return torch.cat(out).clamp(0, 1).numpy()


@torch.no_grad()
def extract_sdf_mesh(field: SdfField, resolution: int, max_faces: int = 0, colors: bool = True,
                     chunk: int = 1 << 16):
    """Marching cubes on the field's zero level set inside its bounding sphere.

    Args:
        field: the SDF field (evaluated on its own device, in eval mode).
        resolution: grid nodes per axis of the sphere's bounding cube.
        max_faces: quadric decimation above this many faces (0: keep every face).
        colors: vertex colours from the colour network (:func:`sdf_vertex_colors`).
        chunk: points per field evaluation.
    Returns:
        :class:`recon3d.mesh.TriangleMesh` in the field's world frame (the frame its ``center`` and
        ``radius`` are in), faces counter-clockwise seen from outside, with vertex normals;
        empty (``metadata['note']``) when the SDF has no zero crossing in the sphere.
        ``metadata``: method, resolution, seconds, faces_extracted.
    """
    from recon3d.mesh import TriangleMesh, extract_isosurface

    field.eval()
    res = int(resolution)
    c, r = field.center.cpu(), field.radius
    aabb = torch.stack([c - r, c + r])
    t = time.perf_counter()
    try:
        mesh = extract_isosurface(lambda x: clipped_world_sdf(field, x), aabb, res, level=0.0, inside="below",
                                  chunk=chunk, device=field.center.device)
    except ValueError as e:
        mesh = TriangleMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), metadata={"note": str(e)})
    mesh = finish_mesh(mesh, max_faces)
    mesh.metadata.update({"method": "sdf", "resolution": res, "seconds": round(time.perf_counter() - t, 2)})
    if colors and mesh.num_vertices:
        mesh.vertex_colors = sdf_vertex_colors(field, mesh.vertices, chunk)
    return mesh
