"""SuGaR mesh extraction: points on a level set of the Gaussian density, then Poisson.

For each training view (:func:`sample_surface_points`):

1. render depth, opacity and colour with the rasterizer;
2. back-project a random subset of the covered pixels (alpha >= 0.5) to their rendered depth;
3. along each pixel ray, look for the first crossing of the density level (``surface_level``)
   among ``samples_per_ray`` points spread over +/- ``ray_range`` standard deviations (along the
   ray) of the Gaussian nearest to the depth point; linear interpolation between the two samples
   around the crossing gives the surface point;
4. its normal is the (outward) negated density gradient; its colour the rendered pixel's.

Then (:func:`mesh_from_points`): screened Poisson reconstruction (open3d), removal of vertices of
low Poisson density (and, optionally, far from every sample), small components dropped, quadric
decimation to ``target_faces``, vertex colours (Poisson-interpolated point colours, nearest
Gaussians, or projected training images), optional UV texture baking.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.core.cameras import flat_pixel_centers
from recon3d.core.gaussians import Gaussians, rasterize, sh0_to_rgb
from recon3d.mesh import TriangleMesh
from recon3d.mesh.ops import poisson_reconstruction, remove_small_components, simplify, submesh, vertex_normals

from .config import SugarConfig
from .density import contributions, knn, std_along

log = logging.getLogger(__name__)


@dataclass
class SurfacePoints:
    """Oriented, coloured surface samples: points/normals/colors (P, 3) float32 numpy, view (P,) int."""

    points: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    view: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def _gaussian_subset(model, min_opacity: float) -> Gaussians:
    """Detached activated Gaussians of ``model`` with opacity >= ``min_opacity`` (all of them when
    fewer than max(16, 1%) pass); ``colors`` are the (N, K, 3) SH coefficients."""
    with torch.no_grad():
        op = model.opacities.detach()
        keep = op >= min_opacity
        if int(keep.sum()) < max(16, int(0.01 * len(op))):
            log.warning("only %d Gaussians have opacity >= %.2f; meshing with all %d", int(keep.sum()), min_opacity,
                        len(op))
            keep = torch.ones_like(keep)
        return Gaussians(model.means.detach()[keep], model.quats.detach()[keep], model.scales.detach()[keep],
                         op[keep], model.sh.detach()[keep])


def level_crossings(dens: Tensor, t: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """First crossing of ``level`` (from below) along each row of ``dens`` (R, S) sampled at ``t`` (R, S).

    Returns ``(valid (R,) bool, t_cross (R,))``: rows starting below the level that rise above it.
    """
    above = dens > level
    first = above.float().argmax(dim=-1)
    valid = above.any(dim=-1) & (first > 0) & (dens[:, 0] < level)
    j = first.clamp_min(1)
    d1 = dens.gather(1, j[:, None])[:, 0]
    d0 = dens.gather(1, (j - 1)[:, None])[:, 0]
    t1 = t.gather(1, j[:, None])[:, 0]
    t0 = t.gather(1, (j - 1)[:, None])[:, 0]
    w = ((level - d0) / (d1 - d0).clamp_min(1e-12)).clamp(0, 1)
    return valid, t0 + w * (t1 - t0)


@torch.no_grad()
def sample_surface_points(model, cameras, cfg: SugarConfig, backend: str = "auto", sh_degree: int | None = None,
                          background: Tensor | None = None, generator: torch.Generator | None = None,
                          chunk: int = 4096) -> SurfacePoints:
    """Surface points on the density level set seen from each of ``cameras`` (see module docstring)."""
    g = _gaussian_subset(model, cfg.extraction_opacity)
    dev = g.means.device
    deg = model.max_sh_degree if sh_degree is None else sh_degree
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    pts_all, nrm_all, col_all, view_all = [], [], [], []
    for i in range(len(cameras)):
        cam = cameras[i].to(dev)
        W, H = int(cam.width[0]), int(cam.height[0])
        out = rasterize(g, cam.w2c, cam.K, W, H, sh_degree=deg, backgrounds=background, backend=backend)
        depth, alpha, rgb = out.depths[0, ..., 0], out.alphas[0, ..., 0], out.colors[0]
        if background is not None:  # the surface's own colour: remove the background blended in at edges
            rgb = rgb - (1 - alpha[..., None]) * background.to(rgb).reshape(1, 1, 3)
            rgb = rgb / alpha[..., None].clamp_min(1e-6)
        rgb = rgb.clamp(0, 1)
        pix = torch.nonzero((alpha.reshape(-1) >= 0.5) & (depth.reshape(-1) > 0)).reshape(-1)
        if len(pix) == 0:
            continue
        if len(pix) > cfg.points_per_view:
            pix = pix[torch.randperm(len(pix), generator=gen)[: cfg.points_per_view].to(dev)]
        uv = flat_pixel_centers(pix, W)
        p0 = cam.unproject(uv[None], depth.reshape(-1)[pix][None])[0]
        dirs = F.normalize(p0 - cam.centers[0], dim=-1)
        nbr = knn(g.means, p0, cfg.knn)
        sd = std_along(g.quats[nbr[:, 0]], g.scales[nbr[:, 0]], dirs)
        base = torch.linspace(-cfg.ray_range, cfg.ray_range, cfg.samples_per_ray, device=dev)
        for s in range(0, len(p0), chunk):
            e = min(s + chunk, len(p0))
            t = base[None, :] * sd[s:e, None]  # (R, S)
            samples = p0[s:e, None, :] + t[..., None] * dirs[s:e, None, :]
            R, S = t.shape
            nb = nbr[s:e, None, :].expand(R, S, -1).reshape(R * S, -1)
            c, _, _ = contributions(samples.reshape(-1, 3), nb, g.means, g.quats, g.scales, g.opacities)
            dens = c.sum(-1).reshape(R, S)
            valid, tc = level_crossings(dens, t, cfg.surface_level)
            if not bool(valid.any()):
                continue
            p = p0[s:e][valid] + tc[valid, None] * dirs[s:e][valid]
            c, _, ics = contributions(p, nbr[s:e][valid], g.means, g.quats, g.scales, g.opacities)
            grad = -(c[..., None] * ics).sum(-2)
            n = -F.normalize(grad, dim=-1)
            away = (n * dirs[s:e][valid]).sum(-1, keepdim=True) > 0  # seen from this camera: must face it
            n = torch.where(away, -n, n)
            q = pix[s:e][valid]
            pts_all.append(p.cpu())
            nrm_all.append(n.cpu())
            col_all.append(rgb.reshape(-1, 3)[q].cpu())
            view_all.append(torch.full((len(p),), i, dtype=torch.int64))
    if not pts_all:
        raise ValueError("no surface point found: the model renders nothing opaque from these cameras")
    cat = lambda xs: torch.cat(xs).numpy()  # noqa: E731
    return SurfacePoints(cat(pts_all).astype(np.float32), cat(nrm_all).astype(np.float32),
                         cat(col_all).astype(np.float32), cat(view_all))


def vertex_colors_from_gaussians(model, points: np.ndarray, k: int = 8, min_opacity: float = 0.0,
                                 chunk: int = 65_536) -> np.ndarray:
    """(P, 3) colours at ``points``: the view-independent (degree-0) colours of the k nearest
    Gaussians, weighted by their density contributions (nearest one's colour where all vanish)."""
    g = _gaussian_subset(model, min_opacity)
    rgb = sh0_to_rgb(g.colors[:, 0, :]).clamp(0, 1)
    pts = torch.as_tensor(np.asarray(points, np.float32), device=g.means.device)
    out = torch.empty(len(pts), 3)
    with torch.no_grad():
        for s in range(0, len(pts), chunk):
            p = pts[s:s + chunk]
            nbr = knn(g.means, p, k)
            c, _, _ = contributions(p, nbr, g.means, g.quats, g.scales, g.opacities)
            w = c / c.sum(-1, keepdim=True).clamp_min(1e-12)
            w = torch.where(c.sum(-1, keepdim=True) > 1e-8, w, F.one_hot(torch.zeros(len(p), dtype=torch.long, device=w.device), k).to(w))
            out[s:s + chunk] = (w[..., None] * rgb[nbr]).sum(1).cpu()
    return out.numpy()


def mesh_from_points(sp: SurfacePoints, cfg: SugarConfig, extent: float = 1.0) -> TriangleMesh:
    """Poisson mesh of surface samples, trimmed, cleaned and decimated (see module docstring)."""
    mesh, _ = poisson_reconstruction(sp.points, sp.normals, sp.colors, depth=cfg.poisson_depth,
                                     density_quantile=cfg.density_quantile)
    if cfg.max_point_distance > 0 and mesh.num_vertices:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(sp.points).query(mesh.vertices, k=1, workers=-1)
        mesh = submesh(mesh, keep_vertices=d <= cfg.max_point_distance * extent)
    if cfg.min_component_fraction > 0:
        mesh = remove_small_components(mesh, min_fraction=cfg.min_component_fraction)
    mesh = simplify(mesh, cfg.target_faces)
    return mesh


def extract_mesh(model, cameras, cfg: SugarConfig, images: list[Tensor] | None = None, extent: float = 1.0,
                 backend: str = "auto", sh_degree: int | None = None, background: Tensor | None = None,
                 progress: bool = False, points: SurfacePoints | None = None) -> TriangleMesh:
    """The SuGaR mesh of a (regularized) :class:`GaussianModel` seen from ``cameras`` (normalized frame).

    Args:
        model: the Gaussians; cameras: the training :class:`Cameras` (one image size).
        cfg: extraction settings (``surface_level``, ``points_per_view``, ``poisson_depth``, ...).
        images: (H, W, 3) training images matching ``cameras``; needed for ``vertex_colors="views"``
            and ``texture_source="views"``.
        extent: the scene extent (world units), for ``max_point_distance``.
        points: surface samples already computed by :func:`sample_surface_points` (skips step 1).
    Returns:
        :class:`TriangleMesh` with vertex colours (or a UV texture when ``cfg.texture_size > 0``),
        normals, and ``metadata`` (counts, settings, seconds).
    """
    t0 = time.perf_counter()
    sp = points if points is not None else sample_surface_points(model, cameras, cfg, backend=backend,
                                                                  sh_degree=sh_degree, background=background)
    t1 = time.perf_counter()
    mesh = mesh_from_points(sp, cfg, extent)
    if mesh.num_faces == 0:
        raise ValueError("mesh extraction produced an empty mesh")
    t2 = time.perf_counter()
    if cfg.vertex_colors == "gaussians":
        mesh = replace(mesh, vertex_colors=vertex_colors_from_gaussians(model, mesh.vertices))
    elif cfg.vertex_colors == "views":
        if images is None:
            raise ValueError("vertex_colors='views' needs the training images")
        from recon3d.mesh.texture import project_view_colors

        mesh = replace(mesh, vertex_colors=project_view_colors(mesh, mesh.vertices, None, cameras, images))
    elif cfg.vertex_colors == "none":
        mesh = replace(mesh, vertex_colors=None)
    mesh = replace(mesh, vertex_normals=vertex_normals(mesh.vertices, mesh.faces))
    if cfg.texture_size > 0:
        from recon3d.mesh.texture import bake_texture, view_color_fn

        if cfg.texture_source == "views":
            if images is None:
                raise ValueError("texture_source='views' needs the training images")
            fn = view_color_fn(mesh, cameras, images)
        else:
            def fn(points, normals):
                return vertex_colors_from_gaussians(model, points)
        mesh = bake_texture(mesh, fn, size=cfg.texture_size)
    mesh.metadata = {
        "method": "sugar", "surface_level": cfg.surface_level, "surface_points": len(sp),
        "poisson_depth": cfg.poisson_depth, "density_quantile": cfg.density_quantile,
        "target_faces": cfg.target_faces, "faces": mesh.num_faces, "vertices": mesh.num_vertices,
        "gaussians": len(model), "views": len(cameras), "seconds_points": round(t1 - t0, 2),
        "seconds_poisson": round(t2 - t1, 2), "seconds_total": round(time.perf_counter() - t0, 2),
    }
    if progress:
        log.info("SuGaR mesh: %d faces from %d surface points in %.1f s", mesh.num_faces, len(sp), time.perf_counter() - t0)
    return mesh


__all__ = ["SurfacePoints", "sample_surface_points", "level_crossings", "mesh_from_points", "extract_mesh",
           "vertex_colors_from_gaussians"]
