"""3D Gaussian splatting: model, densification, trainer, .ply I/O."""

from .config import PRESETS, SplatConfig, preset
from .model import GaussianModel
from .ply import load_splat_ply, save_splat_ply
from .trainer import SplatTrainer

__all__ = ["GaussianModel", "SplatConfig", "SplatTrainer", "PRESETS", "preset", "load_splat_ply", "save_splat_ply"]
