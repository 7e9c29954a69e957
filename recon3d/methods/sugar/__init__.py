"""SuGaR: surface-aligned Gaussian splatting and mesh extraction (Guedon & Lepetit, CVPR 2024).

* :class:`SugarTrainer` -- continues a fitted :class:`~recon3d.methods.splat.SplatTrainer` with the
  opacity-entropy, SDF-alignment and normal regularization (:mod:`.regularization`).
* :func:`extract_mesh` -- density level-set points from the training views, Poisson, trimming,
  decimation, vertex colours or a baked UV texture (:mod:`.extract`).
* :mod:`.refine` -- optional refinement with Gaussians bound to the mesh triangles.
"""

from .config import PRESETS, RUN_PRESETS, SugarConfig, SugarRunConfig, preset
from .extract import extract_mesh, sample_surface_points
from .refine import BoundGaussians, RefineConfig, refine_mesh
from .trainer import SugarTrainer

__all__ = ["SugarConfig", "SugarRunConfig", "SugarTrainer", "PRESETS", "RUN_PRESETS", "preset", "extract_mesh", "sample_surface_points",
           "BoundGaussians", "RefineConfig", "refine_mesh"]
