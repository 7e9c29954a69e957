"""Rendering and meshing of image-conditioned radiance fields through the shared core.

Works for any :class:`~recon3d.feedforward.base.ConditionedRadianceField` (pixelNeRF, LRM): rays are
clipped to the model's scene cube, sampled uniformly then by importance (core samplers), and
composited by the core volume renderer. Nothing here knows about a particular model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from recon3d.core.cameras import Cameras
from recon3d.core.sampling import importance_samples, intersect_aabb, uniform_samples
from recon3d.core.volume_rendering import Background, render_samples

from .base import ConditionedRadianceField


@dataclass
class RenderOptions:
    """Ray sampling for conditioned fields.

    Attributes:
        num_coarse: uniform bins per ray inside the scene cube.
        num_fine: extra importance bins per ray (0 disables the second pass). The same network is
            queried in both passes (no separate coarse network).
        stratified: jitter bins (training) or not (evaluation).
        background: compositing background, e.g. ``"white"`` (the synthetic data set's).
    """

    num_coarse: int = 48
    num_fine: int = 32
    stratified: bool = False
    background: Background = "white"


def render_rays(
    model: ConditionedRadianceField,
    latent: Any,
    origins: Tensor,
    directions: Tensor,
    options: RenderOptions = RenderOptions(),
    generator: Optional[torch.Generator] = None,
) -> dict[str, Tensor]:
    """Render rays through a conditioned field.

    Args:
        model, latent: the field and its latent code from ``model.encode`` (batch size B).
        origins, directions: (B, R, 3) world-space rays (unit directions).
        options: sampling and background.
    Returns:
        dict with ``rgb`` (B, R, 3) in [0, 1] over the background, ``opacity`` (B, R, 1), ``depth``
        (B, R, 1) expected distance along the ray, world units (0 where nothing is hit).

    A model may render rays its own way (the released pixelNeRF networks: the official renderer) by
    defining ``render_rays_override(latent, origins, directions, options, generator)`` that returns such
    a dict, or None to use the shared sampler below.
    """
    override = getattr(model, "render_rays_override", None)
    if override is not None:
        out = override(latent, origins, directions, options, generator)
        if out is not None:
            return out
    B, R = origins.shape[:2]
    b = model.scene_bound
    nears, fars, _ = intersect_aabb(origins, directions, (-b, -b, -b), (b, b, b), near_min=1e-3)
    samples = uniform_samples(nears, fars, options.num_coarse, options.stratified, generator)

    def shade(s):
        pts = origins[..., None, :] + directions[..., None, :] * s.t_mid[..., None]  # (B, R, S, 3)
        S = pts.shape[2]
        dirs = directions[:, :, None, :].expand(B, R, S, 3)
        sigma, rgb = model.query(latent, pts.reshape(B, R * S, 3), dirs.reshape(B, R * S, 3))
        return sigma.reshape(B, R, S), rgb.reshape(B, R, S, 3)

    sigma, rgb = shade(samples)
    if options.num_fine > 0:
        coarse = render_samples(sigma, rgb, samples)
        samples = importance_samples(samples, coarse["weights"], options.num_fine, options.stratified,
                                     include_existing=True, generator=generator)
        sigma, rgb = shade(samples)
    out = render_samples(sigma, rgb, samples, background=options.background, generator=generator)
    return {"rgb": out["rgb"], "opacity": out["opacity"], "depth": out["depth"] * out["opacity"].gt(1e-4)}


def camera_rays(K: Tensor, c2w: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rays through every pixel center of a batch of cameras (:meth:`Cameras.rays_all`).

    Args:
        K: (B, 3, 3) intrinsics in pixels; c2w: (B, 4, 4) OpenCV camera-to-world; one image size.
    Returns:
        origins, directions: (B, H * W, 3) world units, row-major pixel order, unit directions, in
        ``K``'s dtype.
    """
    B = K.shape[0]
    rays = Cameras.from_K(K, c2w, width, height).rays_all()
    return (rays.origins.reshape(B, height * width, 3).to(K.dtype),
            rays.directions.reshape(B, height * width, 3).to(K.dtype))


@torch.no_grad()
def render_view(
    model: ConditionedRadianceField,
    latent: Any,
    K: Tensor,
    c2w: Tensor,
    height: int,
    width: int,
    options: RenderOptions = RenderOptions(),
    chunk: int = 4096,
) -> dict[str, Tensor]:
    """Render whole images in ray chunks (bounded memory).

    Args:
        K: (B, 3, 3), c2w: (B, 4, 4) target cameras, one per latent in the batch.
    Returns:
        dict with ``rgb`` (B, H, W, 3), ``opacity`` (B, H, W, 1), ``depth`` (B, H, W, 1).
    """
    o, d = camera_rays(K, c2w, height, width)
    parts: dict[str, list[Tensor]] = {}
    for s in range(0, o.shape[1], chunk):
        out = render_rays(model, latent, o[:, s:s + chunk], d[:, s:s + chunk], options)
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    B = K.shape[0]
    return {k: torch.cat(v, dim=1).reshape(B, height, width, -1) for k, v in parts.items()}


@torch.no_grad()
def density_mesh(
    model: ConditionedRadianceField,
    latent: Any,
    resolution: int = 96,
    threshold: float = 10.0,
    chunk: int = 65_536,
    min_component_faces: int = 32,
    texture_size: int = 0,
):
    """Marching cubes of the density of batch item 0 at ``threshold`` (1/world units), with colors.

    Vertex colors are the field's view-independent color (``directions=None``) queried slightly
    inside the surface (half a grid cell along the negative vertex normal), where the density is
    high. With ``texture_size > 0`` the mesh is also UV-unwrapped (xatlas) and a ``texture_size``^2
    texture is baked from the same field (:func:`surface_color_fn`), which keeps colour detail finer
    than the marching-cubes vertices.

    Returns:
        :class:`recon3d.mesh.types.TriangleMesh` in world units (the model's frame).
    Raises:
        ValueError: the density never crosses ``threshold`` in the scene cube (empty prediction).
    """
    from recon3d.mesh.marching_cubes import extract_isosurface

    device = next(model.parameters()).device
    b = model.scene_bound
    aabb = np.array([[-b] * 3, [b] * 3], dtype=np.float32)

    def density(points: Tensor) -> Tensor:
        sigma, _ = model.query(_first(latent), points[None].to(device), None)
        return sigma[0]

    mesh = extract_isosurface(density, aabb, resolution=resolution, level=threshold, inside="above",
                              chunk=chunk, device=device, min_component_faces=min_component_faces)
    step = 2 * b / (resolution - 1)
    color = surface_color_fn(model, latent, inset=0.5 * step, chunk=chunk)
    normals = mesh.vertex_normals if mesh.vertex_normals is not None else np.zeros_like(mesh.vertices)
    mesh.vertex_colors = color(mesh.vertices, normals) if len(mesh.vertices) else None
    mesh.metadata.update({"density_threshold": float(threshold), "resolution": int(resolution)})
    if texture_size > 0 and mesh.num_faces > 0:
        from recon3d.mesh.texture import bake_texture

        mesh = bake_texture(mesh, color, size=texture_size)
        mesh.metadata["texture_size"] = int(texture_size)
    return mesh


def surface_color_fn(model: ConditionedRadianceField, latent: Any, inset: float = 0.01, chunk: int = 65_536):
    """``fn(points (M, 3), normals (M, 3)) -> (M, 3)`` float32 numpy colours in [0, 1] of batch item 0:
    the field's view-independent colour ``inset`` world units inside the surface (along -normal).
    Used for vertex colours and by :func:`recon3d.mesh.texture.bake_texture`."""
    device = next(model.parameters()).device
    lat = _first(latent)

    def fn(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        p = torch.from_numpy(np.asarray(points - inset * normals, np.float32)).to(device)
        cols = []
        with torch.no_grad():
            for s in range(0, len(p), chunk):
                _, rgb = model.query(lat, p[None, s:s + chunk], None)
                cols.append(rgb[0].clamp(0, 1).float().cpu())
        return torch.cat(cols).numpy() if cols else np.zeros((0, 3), np.float32)

    return fn


def _first(latent: Any) -> Any:
    """Batch item 0 of a latent (tensor, or tuple/list/dict of tensors), keeping the batch dim."""
    if isinstance(latent, Tensor):
        return latent[:1]
    if isinstance(latent, (tuple, list)):
        return type(latent)(_first(x) for x in latent)
    if isinstance(latent, dict):
        return {k: _first(v) for k, v in latent.items()}
    return latent
