"""Meshes: the common triangle-mesh type, extraction helpers and Blender-ready export.

* :class:`TriangleMesh` — the mesh every method produces (normalized frame).
* :func:`extract_isosurface` — marching cubes on a field (SDF, density, occupancy).
* :mod:`.ops` — Poisson reconstruction, cleaning, decimation, components (open3d / numpy).
* :mod:`.texture` — UV unwrapping (xatlas) and texture baking.
* :func:`export_mesh` / :func:`load_mesh` — GLB / OBJ(+MTL+PNG) / PLY in capture units, Blender axes.
"""

from .export import (FORMATS, export_mesh, export_mesh_formats, load_mesh, mesh_in_capture_units, normalized_to_world,
                     scene_up_axis, up_from_cameras)
from .marching_cubes import extract_isosurface
from .types import TriangleMesh

__all__ = ["TriangleMesh", "export_mesh", "export_mesh_formats", "load_mesh", "scene_up_axis", "up_from_cameras",
           "extract_isosurface", "FORMATS", "mesh_in_capture_units", "normalized_to_world"]
