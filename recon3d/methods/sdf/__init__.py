"""NeuS-style SDF surface reconstruction: field, volume rendering, trainer, level-set meshing."""

from .config import PRESETS, SdfConfig, preset
from .model import SdfField, SdfFieldConfig
from .rendering import NeusSamplingConfig, neus_alphas, render_neus
from .trainer import SdfTrainer

__all__ = ["SdfConfig", "SdfTrainer", "SdfField", "SdfFieldConfig", "NeusSamplingConfig", "neus_alphas",
           "render_neus", "PRESETS", "preset"]
