"""Camera poses for unposed photos: pycolmap structure-from-motion, alignment helpers.

``scene_from_images(photos_dir, work_dir)`` is the entry point of ``recon3d fit --images``::

    scene, sfm = scene_from_images("photos/", "run/sfm")
    sfm.num_registered, sfm.mean_reprojection_error

See :mod:`recon3d.sfm.colmap_sfm` for the stages, outputs and caching.
"""

from __future__ import annotations

# Pillow's C module must be loaded before pycolmap (see the note in colmap_sfm): import it first.
from PIL import Image as _PILImage  # noqa: F401  isort: skip

from .align import align_similarity, apply_similarity, pose_accuracy
from .colmap_sfm import CAMERA_MODELS, MATCHERS, SfmResult, run_sfm, scene_from_images
from .prepare import MIN_IMAGES, prepare_images, scan_image_folder

__all__ = [
    "prepare_images", "scan_image_folder", "run_sfm", "scene_from_images", "SfmResult",
    "align_similarity", "apply_similarity", "pose_accuracy", "MATCHERS", "CAMERA_MODELS", "MIN_IMAGES",
]
