"""Dataset readers and writers producing one :class:`Scene`.

``load_scene(path)`` detects the layout (first match wins)::

    transforms_train.json            -> blender     (NeRF-synthetic)
    transforms.json                  -> nerfstudio
    sparse/ or cameras.bin/.txt      -> colmap
    poses_bounds.npy                 -> llff

Every problem with the input raises :class:`DataError`, whose message starts with the file at fault.
"""

from __future__ import annotations

from pathlib import Path

from .blender import read_blender
from .colmap import read_colmap
from .errors import DataError
from .images import IMAGE_EXTENSIONS, image_size, list_images, load_image, load_mask, save_image
from .llff import read_llff
from .nerfstudio import read_nerfstudio, write_nerfstudio_transforms
from .normalize import Normalization, compute_normalization, normalize_scene
from .scene import Scene

FORMATS = ("blender", "nerfstudio", "colmap", "llff")
_READERS = {"blender": read_blender, "nerfstudio": read_nerfstudio, "colmap": read_colmap, "llff": read_llff}
_LOOKED_FOR = ("transforms_train.json (blender), transforms.json (nerfstudio), "
               "sparse/ or cameras.bin/cameras.txt (colmap), poses_bounds.npy (llff)")


def detect_format(path: str | Path) -> str:
    """Name of the dataset format at ``path`` (a folder, or a transforms/poses file), see module doc."""
    path = Path(path)
    if path.is_file():
        by_name = {"transforms.json": "nerfstudio", "poses_bounds.npy": "llff"}
        if path.name in by_name:
            return by_name[path.name]
        if path.name.startswith("transforms_") and path.suffix == ".json":
            return "blender"
        if path.suffix == ".json":
            return "nerfstudio"
        if path.name in ("cameras.bin", "cameras.txt"):
            return "colmap"
        raise DataError(path, f"cannot tell the dataset format of this file; expected a folder with {_LOOKED_FOR}")
    if not path.is_dir():
        raise DataError(path, "dataset path not found")
    if (path / "transforms_train.json").is_file():
        return "blender"
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if (path / "sparse").is_dir() or any((path / f"cameras.{e}").is_file() for e in ("bin", "txt")):
        return "colmap"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    raise DataError(path, f"unknown dataset layout; looked for {_LOOKED_FOR}")


def load_scene(path: str | Path, format: str = "auto", downscale: float = 1, background=None, **kwargs) -> Scene:
    """Read a dataset into a :class:`Scene`.

    Args:
        path: dataset folder (or its transforms/poses file).
        format: ``'auto'`` (see :func:`detect_format`) or one of :data:`FORMATS`.
        downscale: image shrink factor (2 halves); cameras are rescaled to match.
        background: colour RGBA images are composited onto (``'white'``, ``'black'``, 3 floats);
            None keeps each format's default (white for blender, alpha ignored otherwise).
        kwargs: passed to the reader (e.g. ``images_dir=`` / ``model=`` for colmap).
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in _READERS:
        raise ValueError(f"unknown format {format!r}; expected 'auto' or one of {FORMATS}")
    if background is not None:
        kwargs["background"] = background
    return _READERS[fmt](path, downscale=downscale, **kwargs)


__all__ = [
    "DataError", "Scene", "Normalization", "compute_normalization", "normalize_scene",
    "load_scene", "detect_format", "FORMATS",
    "read_blender", "read_nerfstudio", "read_colmap", "read_llff", "write_nerfstudio_transforms",
    "IMAGE_EXTENSIONS", "list_images", "load_image", "load_mask", "save_image", "image_size",
]
