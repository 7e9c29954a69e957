"""Options of ``recon3d predict``: one definition of every flag, its default, help text and check.

:class:`PredictOptions` generates the ``recon3d predict`` arguments (:func:`add_predict_arguments`,
through :mod:`recon3d.runtime.options`), and the predict code (:func:`.predict.image_to_3d`,
:func:`.predict.predict_radiance_field`, :func:`.vggt.predict.run_predict`) takes its defaults from
it, so the command line and the Python API never disagree. This module imports neither torch nor a
model, so ``recon3d --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from recon3d.runtime.options import add_arguments, at_most, from_args, non_negative, option, positive

#: default minimum depth confidence of VGGT (1 + exp(logit), so > 1) for points and saved depth; on
#: held-out scenes of its training distribution the shipped model keeps 88 % of the surface pixels
#: (median confidence 4.5) and 0.25 % of the empty background (its confidence ~1.0) at this value.
DEFAULT_CONF_THRESHOLD = 1.5

#: largest ``--texture-size`` (texels per side of the baked UV texture).
MAX_TEXTURE_SIZE = 8192

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(v):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (availability is checked when the device is resolved)."""
    if v is not None and not _DEVICE.fullmatch(str(v)):
        raise ValueError("is not a device: use auto, cpu, cuda or cuda:N")
    return v


def mesh_resolution(v):
    """0 (no mesh) or a marching-cubes grid of at least 2 samples per axis."""
    v = non_negative(v)
    if v == 1:
        raise ValueError("must be 0 (no mesh) or at least 2")
    return v


@dataclass
class PredictOptions:
    """Everything ``recon3d predict`` takes; field order is the ``--help`` order.

    Attributes:
        model: registered model name; images: the photos (paths); masks: optional object masks.
        cameras: optional JSON of the images' cameras; checkpoint: weights (None: the shipped ones).
        variant: released variant of a published ``checkpoint`` (pixelNeRF: srn_car, srn_chair, sn64,
            sn64_unseen, dtu; None: from the file's folder name, e.g. ``checkpoints/sn64/pixel_nerf_latest``).
        out: output folder (None: ``outputs/predict/MODEL-IMAGE``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        num_views: novel views rendered on a ring (0: none); orbit_frames: turntable frames (0: none).
        mesh_resolution: marching-cubes samples per axis (0: no mesh).
        density_threshold: mesh iso-level, 1/world units (None: the model's ``mesh_density_threshold``).
        texture_size: side of a baked UV texture, texels (0: vertex colours only).
        refine_poses: VGGT: refine the predicted cameras by coloured ICP of its depth maps.
        vggt_preprocess: VGGT: the official ``load_and_preprocess_images`` mode, ``crop`` (default,
            as the official demo) or ``pad``; vggt_exif: VGGT: apply EXIF orientation first (the
            official code does not).
        conf_threshold: VGGT: minimum depth confidence of the points and saved depth (not a flag).
    """

    model: Optional[str] = option(None, "registered model name (lrm, pixelnerf, vggt, ...)", required=True)
    images: Optional[list[Path]] = option(
        None, "photo(s) of one object, or a folder of them (every image in it, natural order)", required=True)
    masks: Optional[list[Path]] = option(None, "object masks, one per image (optional)")
    cameras: Optional[Path] = option(
        None, "JSON of the images' cameras (recon3d K/c2w frames or nerfstudio transforms.json)")
    checkpoint: Optional[Path] = option(None, "model checkpoint (default: the shipped one)")
    variant: Optional[str] = option(
        None, "released variant of a published --checkpoint (pixelnerf: srn_car, srn_chair, sn64, sn64_unseen, "
              "dtu; default: the file's folder name)")
    out: Optional[Path] = option(None, "output folder (default outputs/predict/MODEL-IMAGE)")
    device: str = option("auto", "auto | cpu | cuda", check=device_name)
    num_views: int = option(8, "novel views to render", flag="--views", metavar="VIEWS", check=non_negative)
    orbit_frames: int = option(
        32, "turntable frames (0: no orbit; a multiple of --views reuses them as the views)", check=non_negative)
    mesh_resolution: int = option(96, "marching-cubes grid per axis (0: no mesh)", check=mesh_resolution)
    density_threshold: Optional[float] = option(
        None, "mesh density threshold, 1/world units", flag="--threshold", metavar="THRESHOLD", check=positive)
    texture_size: int = option(
        0, "also bake an N x N UV texture into mesh.glb/.obj (xatlas unwrap; 0: vertex colours only)",
        check=at_most(MAX_TEXTURE_SIZE, non_negative))
    refine_poses: bool = option(
        False, "vggt: refine the predicted cameras by coloured ICP of the predicted depth maps (open3d)")
    vggt_preprocess: str = option(
        "crop", "vggt: official load_and_preprocess_images mode: crop (width = the model's size, 518 for "
                "VGGT-1B; taller frames centre-cropped to a square) or pad (longer side = that size, padded "
                "with white to a square)", choices=("crop", "pad"))
    vggt_exif: bool = option(
        False, "vggt: rotate photos by their EXIF orientation first (the official VGGT code does not)")
    conf_threshold: float = option(DEFAULT_CONF_THRESHOLD, "vggt: minimum depth confidence", cli=False)

    def field_kwargs(self) -> dict:
        """Keyword options of :func:`.predict.predict_radiance_field` (and ``image_to_3d``'s ``**opts``)."""
        return {"num_views": self.num_views, "orbit_frames": self.orbit_frames,
                "mesh_resolution": self.mesh_resolution, "density_threshold": self.density_threshold,
                "texture_size": self.texture_size}


#: the defaults, for function signatures (``num_views: int = DEFAULTS.num_views``).
DEFAULTS = PredictOptions()


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``recon3d predict`` flags, generated from :class:`PredictOptions`."""
    add_arguments(parser, PredictOptions)


def predict_options(args: argparse.Namespace, **overrides) -> PredictOptions:
    """:class:`PredictOptions` from parsed ``recon3d predict`` arguments."""
    return from_args(PredictOptions, args, **overrides)
