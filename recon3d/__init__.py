"""recon3d: 3D reconstruction and rendering on one shared camera / ray / rendering core."""

# Pillow's C module must be loaded before pycolmap: the pycolmap wheel exports its own zlib symbols,
# and a PNG written after ``import pycolmap`` without this crashes with "free(): invalid pointer".
import PIL.Image  # noqa: F401

__version__ = "0.1.0"
