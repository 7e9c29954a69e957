"""The shared core: cameras, rays, sampling, volume rendering, rasterization backends, metrics.

Nothing in here imports from the method, feed-forward, mesh, pipeline or app layers.
"""

from .cameras import CAMERA_MODELS, OPENCV, OPENCV_FISHEYE, PINHOLE, Cameras
from .rays import RayBundle
from .sampling import (
    SPACINGS, RaySamples, Spacing, contract, contract_inverse, importance_samples, intersect_aabb, intersect_sphere,
    spacing_fn, uniform_samples,
)
from .volume_rendering import (
    accumulate_opacity, alphas_from_densities, blend_background, composite, composite_depth, composite_normals,
    render_samples, transmittance_from_alphas, transmittance_from_densities, weights_from_alphas,
    weights_from_densities,
)

__all__ = [
    "Cameras", "RayBundle", "CAMERA_MODELS", "PINHOLE", "OPENCV", "OPENCV_FISHEYE",
    "RaySamples", "Spacing", "SPACINGS", "intersect_aabb", "intersect_sphere", "uniform_samples",
    "importance_samples", "spacing_fn", "contract", "contract_inverse",
    "alphas_from_densities", "transmittance_from_alphas", "transmittance_from_densities", "weights_from_alphas",
    "weights_from_densities", "composite", "accumulate_opacity", "composite_depth", "composite_normals",
    "blend_background", "render_samples",
]
