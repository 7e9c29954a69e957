"""The shared core: cameras, rays, sampling, volume rendering, rasterization backends, metrics.

Nothing in here imports from the method, feed-forward, mesh, pipeline or app layers.
"""

from .cameras import CAMERA_MODELS, OPENCV, OPENCV_FISHEYE, PINHOLE, Cameras
from .rays import RayBundle

__all__ = ["Cameras", "RayBundle", "CAMERA_MODELS", "PINHOLE", "OPENCV", "OPENCV_FISHEYE"]
