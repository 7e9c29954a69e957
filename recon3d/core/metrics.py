"""Image and geometry metrics: PSNR, SSIM / D-SSIM, Chamfer distance, F-score, mesh sampling.

Image layout is the project's channels-last convention: ``(H, W, C)`` or ``(..., H, W, C)``
float tensors with values in ``[0, data_range]`` (normally ``[0, 1]``).

Point-set metrics run on the CPU with ``scipy.spatial.cKDTree`` and accept numpy arrays or torch
tensors of shape ``(N, 3)`` in world units; they return plain Python floats.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

__all__ = [
    "psnr",
    "ssim",
    "dssim_loss",
    "chamfer_distance",
    "fscore",
    "sample_mesh_points",
    "mean_metrics",
]

ArrayLike = Union[np.ndarray, Tensor]

SSIM_K1 = 0.01
SSIM_K2 = 0.03


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _check_image_pair(pred: Tensor, target: Tensor, fn: str) -> None:
    if not (isinstance(pred, Tensor) and isinstance(target, Tensor)):
        raise TypeError(f"{fn}: pred and target must be torch tensors")
    if pred.shape != target.shape:
        raise ValueError(f"{fn}: shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim < 3:
        raise ValueError(f"{fn}: expected images (..., H, W, C), got shape {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"{fn}: empty images {tuple(pred.shape)}")


def psnr(
    pred: Tensor, target: Tensor, mask: Optional[Tensor] = None, max_val: float = 1.0
) -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10 * log10(max_val**2 / MSE)``.

    Args:
        pred, target: (..., H, W, C) float images with values in ``[0, max_val]``.
        mask: optional (..., H, W) or (..., H, W, 1) mask (bool or float weights in [0, 1]);
            the MSE is averaged only over masked pixels (and all channels). Its leading dims must
            broadcast to the images' leading dims.
        max_val: peak signal value (1.0 for [0, 1] images, 255 for 8-bit).

    Returns:
        Tensor of shape ``(...)``: one PSNR per leading batch element (0-d for a single image).
        ``inf`` where the images are identical.

    Raises:
        ValueError: on shape mismatch, or if some image's mask selects no pixel.
    """
    _check_image_pair(pred, target, "psnr")
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    sq = (pred.to(dtype) - target.to(dtype)) ** 2
    if mask is None:
        mse = sq.mean(dim=(-3, -2, -1))
    else:
        m = mask.to(sq.dtype)
        if not (m.ndim == sq.ndim and m.shape[-1] == 1):
            m = m.unsqueeze(-1)  # (..., H, W) -> (..., H, W, 1); else already (..., H, W, 1)
        if m.shape[-3:-1] != sq.shape[-3:-1]:
            raise ValueError(
                f"psnr: mask shape {tuple(mask.shape)} does not match images {tuple(sq.shape)}"
            )
        m = torch.broadcast_to(m, sq.shape[:-1] + (1,))
        weight = m.sum(dim=(-3, -2, -1)) * sq.shape[-1]
        if bool((weight <= 0).any()):
            raise ValueError("psnr: mask selects no pixel for at least one image")
        mse = (sq * m).sum(dim=(-3, -2, -1)) / weight
    return 10.0 * torch.log10(max_val**2 / mse)


def _gaussian_kernel_1d(window: int, sigma: float, dtype, device) -> Tensor:
    """(window,) normalized Gaussian taps centred on the middle tap."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(
    pred: Tensor,
    target: Tensor,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window; differentiable.

    Per pixel and channel, with Gaussian-weighted local means ``mu``, variances ``s^2`` and
    covariance ``s_xy`` (population statistics, i.e. no N/(N-1) correction, as in the paper and
    its reference MATLAB code; ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``)::

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

    Padding: 'valid' -- the map is computed only where the whole window lies inside the image,
    so it has size ``(H - window + 1, W - window + 1)``, which matches the original definition
    and scikit-image (which filters then crops the ``(window - 1) / 2`` border). No border
    pixels are averaged with padded values. (Many 3DGS codebases use zero 'same' padding instead,
    which gives slightly lower values near the border.)

    The Gaussian filter is applied separably (a (window, 1) then a (1, window) depthwise
    ``conv2d``), and the five filtered quantities (x, y, x^2, y^2, xy) share one pair of conv
    calls: a 200x200x3 image costs ~2 ms forward, ~7-10 ms forward+backward on one CPU core.

    Args:
        pred, target: (H, W, C) or (B, H, W, C) float images with values in ``[0, data_range]``.
        window: odd Gaussian window size in pixels (H and W must be >= window).
        sigma: Gaussian standard deviation in pixels.
        data_range: dynamic range L of the images (1.0 for [0, 1] images).
        reduction: ``'mean'`` -> 0-d mean over everything (batch, pixels, channels);
            ``'image'`` -> per-image mean, shape (B,) (0-d for unbatched input);
            ``'none'`` -> the SSIM map, (B, H', W', C) or (H', W', C) with
            ``H' = H - window + 1``, ``W' = W - window + 1``.

    Returns:
        SSIM in ``[-1, 1]`` (1 for identical images), shape depending on ``reduction``.
    """
    _check_image_pair(pred, target, "ssim")
    if reduction == "mean" and _native_ssim_ok(pred, target, window):
        return _SsimCpp.apply(pred, target, window, sigma, data_range)
    if pred.ndim not in (3, 4):
        raise ValueError(f"ssim: expected (H, W, C) or (B, H, W, C), got {tuple(pred.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"ssim: window must be a positive odd integer, got {window}")
    if reduction not in ("mean", "image", "none"):
        raise ValueError(f"ssim: reduction must be 'mean', 'image' or 'none', got {reduction!r}")
    unbatched = pred.ndim == 3
    if unbatched:
        pred, target = pred[None], target[None]
    b, h, w, c = pred.shape
    if h < window or w < window:
        raise ValueError(f"ssim: image {h}x{w} is smaller than the {window}x{window} window")

    dtype = pred.dtype if pred.dtype in (torch.float32, torch.float64) else torch.float32
    x = pred.to(dtype).permute(0, 3, 1, 2)  # (B, C, H, W)
    y = target.to(dtype).permute(0, 3, 1, 2)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)

    g = _gaussian_kernel_1d(window, sigma, dtype, pred.device)
    ch = 5 * c
    filt = F.conv2d(stack, g.view(1, 1, window, 1).expand(ch, 1, window, 1), groups=ch)
    filt = F.conv2d(filt, g.view(1, 1, 1, window).expand(ch, 1, 1, window), groups=ch)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.split(c, dim=1)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = e_xx - mu_xx
    var_y = e_yy - mu_yy
    cov = e_xy - mu_xy
    smap = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))

    if reduction == "mean":
        return smap.mean()
    if reduction == "image":
        out = smap.mean(dim=(1, 2, 3))
        return out[0] if unbatched else out
    out = smap.permute(0, 2, 3, 1)  # (B, H', W', C)
    return out[0] if unbatched else out


ENV_SSIM = "RECON3D_SSIM"  # "auto" (default): the compiled kernel on CPU where it applies; "torch"


def _native_ssim_ok(pred: Tensor, target: Tensor, window: int) -> bool:
    """Whether :func:`ssim` (mean) can run in the compiled kernel ``recon3d/core/csrc/ssim_cpu.cpp``: CPU
    float32/float64 images of one dtype, gradients wanted for ``pred`` only (the training loss), at most
    16 channels, image at least the window. ``RECON3D_SSIM=torch`` forces the PyTorch formulation."""
    mode = os.environ.get(ENV_SSIM, "auto").strip().lower() or "auto"
    if mode not in ("auto", "torch"):
        raise ValueError(f"{ENV_SSIM}={mode!r} is not one of auto, torch")
    if mode == "torch" or pred.device.type != "cpu" or target.device.type != "cpu":
        return False
    if pred.dtype not in (torch.float32, torch.float64) or target.dtype != pred.dtype or target.requires_grad:
        return False
    if pred.ndim not in (3, 4) or pred.shape[-1] > 16 or window < 1 or window % 2 == 0:
        return False
    if min(pred.shape[-3], pred.shape[-2]) < window:
        return False
    from .native import native_status

    return native_status().usable


class _SsimCpp(torch.autograd.Function):
    """Mean SSIM of (H, W, C) or (B, H, W, C) images in the compiled kernel (gradient for ``pred``)."""

    @staticmethod
    def forward(ctx, pred, target, window, sigma, data_range):
        from .native import native_status

        lib = native_status().lib
        sfx = "f32" if pred.dtype == torch.float32 else "f64"
        x = pred.detach().contiguous()
        y = target.detach().contiguous()
        if x.ndim == 3:
            x, y = x[None], y[None]
        B, H, W, C = x.shape
        Ho, Wo = H - window + 1, W - window + 1
        g = _gaussian_kernel_1d(window, sigma, x.dtype, x.device).contiguous()
        c1 = (SSIM_K1 * data_range) ** 2
        c2 = (SSIM_K2 * data_range) ** 2
        stats = torch.empty(B, Ho, Wo, C, 5, dtype=x.dtype)
        smap = torch.empty(B, Ho, Wo, C, dtype=x.dtype)
        nt = torch.get_num_threads()
        for b in range(B):
            getattr(lib, f"ssim_forward_{sfx}")(H, W, C, x[b].data_ptr(), y[b].data_ptr(), g.data_ptr(), window, c1,
                                                c2, stats[b].data_ptr(), smap[b].data_ptr(), nt)
        ctx.save_for_backward(x, y, g, stats)
        ctx.consts = (window, c1, c2, pred.ndim)
        return smap.mean()

    @staticmethod
    def backward(ctx, gout):
        from .native import native_status

        lib = native_status().lib
        x, y, g, stats = ctx.saved_tensors
        window, c1, c2, ndim = ctx.consts
        B, H, W, C = x.shape
        Ho, Wo = H - window + 1, W - window + 1
        scale = float(gout) / (B * Ho * Wo * C)
        gx = torch.empty_like(x)
        sfx = "f32" if x.dtype == torch.float32 else "f64"
        nt = torch.get_num_threads()
        for b in range(B):
            getattr(lib, f"ssim_backward_{sfx}")(H, W, C, x[b].data_ptr(), y[b].data_ptr(), g.data_ptr(), window, c1,
                                                 c2, stats[b].data_ptr(), scale, gx[b].data_ptr(), nt)
        return (gx[0] if ndim == 3 else gx), None, None, None, None


def dssim_loss(pred: Tensor, target: Tensor, **ssim_kwargs) -> Tensor:
    """D-SSIM loss ``(1 - SSIM) / 2`` in ``[0, 1]``, 0-d, mean over batch/pixels/channels.

    Args:
        pred, target: (H, W, C) or (B, H, W, C) images in ``[0, 1]``; gradients flow to both.
        **ssim_kwargs: forwarded to :func:`ssim` (window, sigma, data_range).
    """
    ssim_kwargs.pop("reduction", None)
    return (1.0 - ssim(pred, target, reduction="mean", **ssim_kwargs)) / 2.0


# --------------------------------------------------------------------------------------------
# Point sets and meshes
# --------------------------------------------------------------------------------------------


def _as_points(points: ArrayLike, name: str) -> np.ndarray:
    """(N, 3) float64 numpy copy of a numpy array / torch tensor; clear errors on bad input."""
    if isinstance(points, Tensor):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected points of shape (N, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: point set is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: points contain NaN or Inf")
    return arr


def _nn_distances(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(len(src),) Euclidean distance from each src point to its nearest dst point."""
    dist, _ = cKDTree(dst).query(src, k=1)
    return dist


def chamfer_distance(
    pred_points: ArrayLike, gt_points: ArrayLike, squared: bool = False
) -> dict:
    """Symmetric Chamfer distance between two point sets (world units).

    With ``d(p, S) = min_{s in S} ||p - s||_2``::

        accuracy     = mean_{p in pred} d(p, gt)        (pred -> gt)
        completeness = mean_{g in gt}   d(g, pred)      (gt -> pred)
        chamfer      = (accuracy + completeness) / 2

    With ``squared=True`` every ``d`` is replaced by ``d**2`` (the "L2-squared" Chamfer common in
    deep-learning papers; units are world units squared). Note some papers report the *sum*
    ``accuracy + completeness`` instead of the mean; this function uses the mean.

    Args:
        pred_points: (N, 3) numpy array or torch tensor, N >= 1.
        gt_points: (M, 3) numpy array or torch tensor, M >= 1.
        squared: use squared distances.

    Returns:
        dict of floats ``{'accuracy', 'completeness', 'chamfer'}``.

    Raises:
        ValueError: empty, non-finite or wrongly shaped input.
    """
    pred = _as_points(pred_points, "chamfer_distance pred_points")
    gt = _as_points(gt_points, "chamfer_distance gt_points")
    d_pg = _nn_distances(pred, gt)
    d_gp = _nn_distances(gt, pred)
    if squared:
        d_pg, d_gp = d_pg**2, d_gp**2
    acc, comp = float(d_pg.mean()), float(d_gp.mean())
    return {"accuracy": acc, "completeness": comp, "chamfer": 0.5 * (acc + comp)}


def fscore(pred: ArrayLike, gt: ArrayLike, threshold: float) -> dict:
    """Precision / recall / F-score at a distance threshold (Knapitsch et al. 2017, Tanks and
    Temples), as fractions in ``[0, 1]`` (not percent).

    ``precision = |{p in pred : d(p, gt) < threshold}| / |pred|``,
    ``recall = |{g in gt : d(g, pred) < threshold}| / |gt|``,
    ``fscore = 2 P R / (P + R)`` (0 when P + R = 0); ``d`` is the Euclidean nearest-neighbour
    distance (strict ``<``, as in the benchmark).

    Args:
        pred: (N, 3) reconstructed points (numpy or torch), world units.
        gt: (M, 3) ground-truth points (numpy or torch), world units.
        threshold: distance threshold > 0, world units.

    Returns:
        dict of floats ``{'precision', 'recall', 'fscore'}``.
    """
    if not (isinstance(threshold, (int, float, np.floating, np.integer)) and threshold > 0):
        raise ValueError(f"fscore: threshold must be a positive number, got {threshold!r}")
    p = _as_points(pred, "fscore pred")
    g = _as_points(gt, "fscore gt")
    precision = float((_nn_distances(p, g) < threshold).mean())
    recall = float((_nn_distances(g, p) < threshold).mean())
    denom = precision + recall
    f = 2.0 * precision * recall / denom if denom > 0 else 0.0
    return {"precision": precision, "recall": recall, "fscore": f}


def sample_mesh_points(
    vertices: ArrayLike,
    faces: ArrayLike,
    n: int,
    seed: Optional[int] = 0,
    return_face_index: bool = False,
):
    """Uniform random points on a triangle mesh's surface (area-weighted), in numpy.

    Faces are chosen with probability proportional to their area, then a point is drawn
    uniformly inside the triangle with the square-root barycentric trick.

    Args:
        vertices: (V, 3) float vertex positions (numpy or torch), world units.
        faces: (F, 3) integer vertex indices (numpy or torch).
        n: number of points, >= 1.
        seed: seed for ``numpy.random.default_rng`` (None -> nondeterministic).
        return_face_index: also return the (n,) int64 index of the face each point lies on.

    Returns:
        (n, 3) float64 points, or ``(points, face_index)`` when ``return_face_index``.

    Raises:
        ValueError: empty mesh, bad shapes, out-of-range indices, zero total area, n < 1.
    """
    v = _as_points(vertices, "sample_mesh_points vertices")
    if isinstance(faces, Tensor):
        faces = faces.detach().cpu().numpy()
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"sample_mesh_points: faces must have shape (F, 3), got {f.shape}")
    if f.shape[0] == 0:
        raise ValueError("sample_mesh_points: mesh has no faces")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"sample_mesh_points: faces must be integer indices, got {f.dtype}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError("sample_mesh_points: face indices out of range of the vertex array")
    if int(n) < 1:
        raise ValueError(f"sample_mesh_points: n must be >= 1, got {n}")
    n = int(n)

    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not total > 0:
        raise ValueError("sample_mesh_points: mesh has zero surface area")

    rng = np.random.default_rng(seed)
    face_idx = rng.choice(len(f), size=n, p=areas / total)
    r1 = np.sqrt(rng.random((n, 1)))
    r2 = rng.random((n, 1))
    pts = (1.0 - r1) * a[face_idx] + r1 * (1.0 - r2) * b[face_idx] + r1 * r2 * c[face_idx]
    if return_face_index:
        return pts, face_idx.astype(np.int64)
    return pts


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _to_number(value) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value.detach().cpu().item())
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    return None


def mean_metrics(metrics: Iterable[Mapping[str, object]]) -> dict:
    """Average a list of per-view / per-object metric dicts key by key.

    Each key is averaged over the dicts that contain it with a numeric value (Python/numpy
    numbers or one-element tensors/arrays); non-numeric values (names, paths, bools) are skipped.
    NaN values propagate; ``inf`` (e.g. PSNR of identical images) propagates too.

    Args:
        metrics: iterable of dicts ``{name: number}``.

    Returns:
        dict ``{name: mean float}`` with keys in first-seen order.

    Raises:
        ValueError: if ``metrics`` is empty.
    """
    items = list(metrics)
    if not items:
        raise ValueError("mean_metrics: no metric dicts to average")
    sums: dict = {}
    counts: dict = {}
    for d in items:
        for k, val in d.items():
            x = _to_number(val)
            if x is None:
                continue
            sums[k] = sums.get(k, 0.0) + x
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
