"""Differentiable 3D Gaussian splatting rasterization: gsplat (CUDA), compiled C++ (CPU), PyTorch (any device).

Quick use::

    from recon3d.core.gaussians import Gaussians, rasterize
    gaussians = Gaussians(means, quats, scales, opacities, sh)   # (N, ...) activated parameters
    out = rasterize(gaussians, viewmats, Ks, W, H, sh_degree=3, backgrounds=torch.ones(C, 3))
    out.means2d.retain_grad()          # for densification
    loss = (out.colors - target).abs().mean(); loss.backward()
    grad2d = out.means2d.grad          # (C, N, 2) screen-space gradients, pixels

See :class:`Gaussians` for the shapes, units and conventions of the inputs, :mod:`.api` for the
backend rules and :class:`RasterOutput` for the outputs.
"""

from .api import (BACKENDS, ENV_BACKEND, CppUnavailableError, RasterOutput, check_backend, rasterize, rasterize_cameras,
                  resolve_backend)
from .gaussians import Gaussians
from .projection import ALPHA_MAX, ALPHA_MIN, EPS2D, T_MIN, project_gaussians, quat_scale_to_covar, quat_to_rotmat
from .rasterize_gsplat import GsplatStatus, GsplatUnavailableError, gsplat_available, gsplat_status, reset_gsplat_status
from .sh import eval_sh, num_sh_bases, rgb_to_sh0, sh0_to_rgb, sh_basis, sh_to_rgb

__all__ = [
    "Gaussians", "rasterize", "rasterize_cameras", "RasterOutput", "resolve_backend", "BACKENDS", "ENV_BACKEND",
    "check_backend", "CppUnavailableError", "gsplat_available", "gsplat_status", "GsplatStatus", "GsplatUnavailableError",
    "reset_gsplat_status", "project_gaussians", "quat_to_rotmat", "quat_scale_to_covar",
    "EPS2D", "ALPHA_MIN", "ALPHA_MAX", "T_MIN",
    "num_sh_bases", "sh_basis", "eval_sh", "sh_to_rgb", "rgb_to_sh0", "sh0_to_rgb",
]
