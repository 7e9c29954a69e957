"""NeRF: hash-grid radiance field with occupancy-grid ray marching, trainer, density meshing."""

from .config import PRESETS, NerfConfig, preset
from .model import FieldConfig, NerfField
from .renderer import MarchConfig, render_rays
from .trainer import NerfTrainer

__all__ = ["NerfConfig", "NerfTrainer", "NerfField", "FieldConfig", "MarchConfig", "render_rays", "PRESETS", "preset"]
