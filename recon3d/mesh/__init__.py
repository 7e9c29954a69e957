"""Meshes: the common triangle-mesh type, extraction helpers and Blender-ready export."""

from .types import TriangleMesh

__all__ = ["TriangleMesh"]
