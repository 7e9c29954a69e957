"""NeuS-style SDF surface reconstruction: field, volume rendering, trainer, level-set meshing."""

from .config import PRESETS, SdfConfig, preset
from .meshing import extract_level_set, marching_cubes, marching_tetrahedra, mesh_in_original_units
from .model import SdfField, SdfFieldConfig
from .rendering import NeusSamplingConfig, neus_alphas, render_neus
from .trainer import SdfTrainer

__all__ = ["SdfConfig", "SdfTrainer", "SdfField", "SdfFieldConfig", "NeusSamplingConfig", "neus_alphas",
           "render_neus", "extract_level_set", "marching_cubes", "marching_tetrahedra", "mesh_in_original_units",
           "PRESETS", "preset"]
