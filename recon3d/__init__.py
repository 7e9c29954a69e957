"""recon3d: 3D reconstruction and rendering on one shared camera / ray / rendering core."""

__version__ = "0.1.0"
