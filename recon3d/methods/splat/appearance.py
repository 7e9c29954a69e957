"""Per-image appearance compensation for Gaussian splatting (``SplatConfig.appearance``).

Handheld captures change exposure and white balance from shot to shot; one set of Gaussian colours
cannot match them all, and the fit bakes the differences into floaters and view-dependent colour.
As in the 3DGS update's exposure compensation, every training image ``i`` gets an affine colour
transform ``(A_i, b_i)`` (a 3x3 matrix and a bias, 12 numbers, identity at the start) applied to the
rendered image before the photometric loss, and trained with its own Adam::

    c' = A_i c + b_i                                  (opaque photos: the whole rendered image)
    c' = A_i f + b_i a + bg (1 - a),  f = c - bg (1 - a)   (cut-outs: the composited background stays)

where ``a`` is the rendered alpha, ``f`` the (premultiplied) foreground and ``bg`` the background the
images were composited on: for cut-out images (alpha in the files, or masks cutting the object out)
the background is synthetic and does not change with the camera's exposure. The result is clipped at
1 before the loss, as the photo's highlights are: without it, a brighter exposure of a white backdrop
(saturated in the photo) asks the transform for a gain on the object and none on the backdrop, which
an affine map cannot give (on the sample scene shot against white, compensation then lost 0.6 dB
instead of gaining 0.8).

The gauge (the Gaussians' colours x a global gain vs all transforms / that gain) is fixed by keeping
the mean transform over the training views at the identity (re-centred after every step), so the
Gaussians hold the *average* appearance of the capture. Novel views, the orbit, exports and the
viewer render with the identity: the transforms are used only for the loss.

Evaluation (:func:`half_image_metrics`, NeRF-in-the-Wild's protocol): a held-out view has no
transform of its own, so one is fitted in closed form (least squares, 12 numbers) on the *left half*
of the test image against the render, and PSNR / SSIM are scored on the *right half* only; the
uncompensated full-image PSNR / SSIM are reported beside them.

"auto" (:func:`resolve_appearance`) turns compensation on for photo captures -- scenes posed by
structure from motion (``scene.metadata['sfm']``, what ``fit --images`` / ``--video`` make) or by
VGGT (``source_format == 'vggt'``) -- with more than ``appearance_auto_views`` training views, and
off for posed datasets (Blender, nerfstudio, COLMAP, LLFF read with ``--data``), whose exposure is
usually constant. The outcome is saved in the checkpoints: reopening a run follows its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from recon3d.core.metrics import psnr, ssim

APPEARANCE_CHOICES = ("auto", "on", "off")
#: the evaluation protocol, as metrics.json / eval dictionaries name it
EVAL_PROTOCOL = "affine colour transform fitted on the left half of each view, PSNR/SSIM on the right half"


def check_appearance(choice: str) -> str:
    if choice not in APPEARANCE_CHOICES:
        raise ValueError(f"appearance must be one of {', '.join(APPEARANCE_CHOICES)}, got {choice!r}")
    return choice


def is_photo_capture(scene) -> bool:
    """Whether ``scene`` was posed from photos by recon3d (SfM or VGGT) rather than read as a posed dataset."""
    meta = getattr(scene, "metadata", None) or {}
    return "sfm" in meta or getattr(scene, "source_format", "") == "vggt" or bool(meta.get("photo_capture"))


def resolve_appearance(choice: str, scene, auto_views: int = 8) -> tuple[bool, str]:
    """``(on, why)`` for ``SplatConfig.appearance`` = ``choice`` on ``scene`` (see the module docstring)."""
    check_appearance(choice)
    if choice != "auto":
        return choice == "on", f"appearance={choice}"
    n = len(scene.train_indices)
    if not is_photo_capture(scene):
        return False, f"auto: a posed dataset ({getattr(scene, 'source_format', '') or 'synthetic'}), constant exposure"
    if n <= auto_views:
        return False, f"auto: only {n} training views (compensation needs more than {auto_views})"
    return True, f"auto: a photo capture with {n} training views"


def composites_background(scene) -> bool:
    """Whether the scene's images are cut-outs composited on a synthetic background (masks, or alpha in
    the files): then the transforms leave the background alone."""
    if getattr(scene, "masks_as_alpha", False):
        return True
    if getattr(scene, "background", None) is None or not scene.train_indices:
        return False
    from recon3d.io.images import image_has_alpha

    return bool(image_has_alpha(scene.image_paths[int(scene.train_indices[0])]))


def identity_affines(n: int, dtype=torch.float32, device=None) -> Tensor:
    """(n, 3, 4) identity transforms ``[I | 0]``."""
    eye = torch.zeros(3, 4, dtype=dtype, device=device)
    eye[:, :3] = torch.eye(3, dtype=dtype, device=device)
    return eye.expand(n, 3, 4).clone()


def apply_affine(colors: Tensor, affine: Tensor, alphas: Tensor | None = None,
                 background: Tensor | None = None) -> Tensor:
    """``colors`` (..., H, W, 3) through ``affine`` (3, 4) = ``[A | b]``.

    Without ``background``: ``A c + b`` everywhere. With ``background`` (3,) and ``alphas`` (..., H, W, 1):
    the foreground only, ``A f + b a + bg (1 - a)`` with ``f = c - bg (1 - a)``."""
    A, b = affine[:, :3], affine[:, 3]
    if background is None:
        return colors @ A.T + b
    if alphas is None:
        raise ValueError("apply_affine with a background needs the rendered alphas")
    rest = background * (1 - alphas)
    return (colors - rest) @ A.T + b * alphas + rest


class AppearanceTransforms(nn.Module):
    """One affine colour transform per scene view (``affine``: (N, 3, 4), identity at the start).

    Only training views are trained (the others stay the identity); ``composite`` says whether the
    background is kept out of the transform (cut-out images, :func:`composites_background`)."""

    def __init__(self, num_views: int, composite: bool = False) -> None:
        super().__init__()
        self.affine = nn.Parameter(identity_affines(num_views))
        self.composite = bool(composite)

    def __len__(self) -> int:
        return self.affine.shape[0]

    def forward(self, colors: Tensor, i: int, alphas: Tensor | None = None,
                background: Tensor | None = None) -> Tensor:
        """View ``i``'s transform applied to its render (``colors`` (H, W, 3), ``alphas`` (H, W, 1),
        ``background`` (3,) the colour it was rendered over)."""
        bg = background.reshape(3) if (self.composite and background is not None) else None
        return apply_affine(colors, self.affine[int(i)], alphas, bg)

    @torch.no_grad()
    def recenter_(self, indices: list[int]) -> None:
        """Keep the mean transform over views ``indices`` at the identity (fixes the colour gauge)."""
        if len(indices) < 2:
            return
        idx = torch.as_tensor(indices, device=self.affine.device)
        eye = identity_affines(1, self.affine.dtype, self.affine.device)[0]
        self.affine[idx] -= self.affine[idx].mean(0) - eye

    @torch.no_grad()
    def gains(self, indices: list[int] | None = None, reference=0.5) -> Tensor:
        """(n, 3) per-channel gains at a reference colour ``r`` (a gray level or 3 values):
        ``(A r + b) / r``. An exposure x white-balance change ``diag(e w)`` gives ``e w`` at any ``r``;
        a fitted transform trades gain for bias over the narrow range of colours a scene has, so take
        ``r`` near the images' typical colour."""
        aff = self.affine if indices is None else self.affine[torch.as_tensor(indices, device=self.affine.device)]
        r = torch.as_tensor(reference, dtype=aff.dtype, device=aff.device).reshape(-1).expand(3)
        return ((aff[..., :3] @ r) + aff[..., 3]) / r.clamp_min(1e-6)

    @torch.no_grad()
    def summary(self, indices: list[int]) -> dict:
        """Sizes of the fitted transforms for metrics.json."""
        aff = self.affine[torch.as_tensor(indices, device=self.affine.device)]
        dev = (aff - identity_affines(1, aff.dtype, aff.device)).abs().flatten(1).max(1).values
        g = self.gains(indices).mean(-1)
        return {"appearance_views": len(indices), "appearance_gain_min": round(float(g.min()), 4),
                "appearance_gain_max": round(float(g.max()), 4),
                "appearance_max_deviation": round(float(dev.max()), 4)}


def appearance_lr_at(step: int, max_steps: int, lr: float, lr_final: float) -> float:
    """Log-linear decay from ``lr`` to ``lr_final`` over ``max_steps`` (then ``lr_final``), as 3DGS's exposure."""
    if max_steps <= 0 or lr_final <= 0 or lr <= 0:
        return lr
    t = min(max(step / max_steps, 0.0), 1.0)
    return float(np.exp((1 - t) * np.log(lr) + t * np.log(lr_final)))


# ---------------------------------------------------------------------- evaluation
def fit_affine(design: Tensor, target: Tensor, ridge: float = 1e-4, prior: Tensor | None = None) -> Tensor:
    """(D, 3) least-squares solution of ``design (N, D) @ X ~ target (N, 3)``, with a small ridge
    ``ridge * N`` pulling X toward ``prior`` (the identity map when None, D = 4 or 3 + 1) so that
    flat halves (a plain backdrop) stay well posed. float64 normal equations."""
    d = design.double().reshape(-1, design.shape[-1])
    t = target.double().reshape(-1, target.shape[-1])
    D = d.shape[1]
    if prior is None:
        prior = torch.zeros(D, t.shape[1], dtype=torch.float64, device=d.device)
        prior[:3, :3] = torch.eye(3, dtype=torch.float64, device=d.device)
    lam = ridge * max(d.shape[0], 1)
    lhs = d.T @ d + lam * torch.eye(D, dtype=torch.float64, device=d.device)
    rhs = d.T @ t + lam * prior.double().to(d.device)
    return torch.linalg.solve(lhs, rhs)


def half_image_metrics(pred: Tensor, gt: Tensor, alphas: Tensor | None = None,
                       background: Tensor | None = None, ridge: float = 1e-4) -> dict:
    """Appearance-compensated PSNR / SSIM of one view (NeRF-W protocol, see the module docstring).

    Args:
        pred, gt: (H, W, 3) render and image in [0, 1].
        alphas, background: (H, W, 1) rendered alpha and the (3,) background colour, for cut-out
            scenes (the background is kept out of the transform, as in training); None: whole image.
    Returns:
        ``psnr``, ``ssim`` (right half, after the transform fitted on the left half), ``affine``
        ((3, 4) ``[A | b]``), ``columns`` (the first scored column).
    """
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"half_image_metrics: expected two (H, W, 3) images, got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")
    H, W, _ = pred.shape
    if W < 2:
        raise ValueError("half_image_metrics: the image needs at least 2 columns")
    h = W // 2
    pred, gt = pred.float(), gt.float()
    if background is not None:
        if alphas is None:
            raise ValueError("half_image_metrics with a background needs the rendered alphas")
        a = alphas.float().reshape(H, W, 1)
        rest = background.float().reshape(3).to(pred) * (1 - a)
        design = torch.cat([pred - rest, a], dim=-1)
        target = gt - rest
    else:
        rest = torch.zeros_like(pred)
        design = torch.cat([pred, torch.ones_like(pred[..., :1])], dim=-1)
        target = gt
    X = fit_affine(design[:, :h], target[:, :h], ridge=ridge)  # (4, 3)
    right = (design[:, h:].double() @ X).float() + rest[:, h:]
    right = right.clamp(0, 1)
    g = gt[:, h:]
    win = min(11, H, W - h)
    win = win if win % 2 == 1 else win - 1
    return {"psnr": float(psnr(right, g)), "ssim": float(ssim(right, g, window=max(win, 1))),
            "affine": X.T.float(), "columns": h}


@torch.no_grad()
def evaluate_compensated(render, scene, cameras, device: torch.device, indices: list[int],
                         composite: bool = False, background: Tensor | None = None) -> dict:
    """:func:`half_image_metrics` over the views ``indices`` of ``scene`` (renders by ``render(camera)``,
    a RenderResult). Returns mean ``psnr`` / ``ssim`` and ``per_view_psnr``."""
    psnrs, ssims = [], []
    for i in indices:
        gt = scene.image(i).to(device)
        res = render(cameras[i])
        m = half_image_metrics(res.colors[0], gt, res.alphas[0] if composite else None,
                               background if composite else None)
        psnrs.append(m["psnr"])
        ssims.append(m["ssim"])
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "per_view_psnr": psnrs}


def appearance_state(module: AppearanceTransforms | None, optimizer) -> dict | None:
    if module is None:
        return None
    return {"affine": module.affine.detach().clone(), "composite": module.composite,
            "optimizer": optimizer.state_dict()}


def refuse_mismatch(path: str | Path, has_state: bool, choice: str) -> None:
    """The checkpoint / config combinations that cannot continue: ``on`` without saved transforms,
    ``off`` with them (``auto`` follows the checkpoint)."""
    if choice == "on" and not has_state:
        raise ValueError(f"{path}: checkpoint has no per-image appearance transforms but this run has "
                         f"appearance='on'; resume it with appearance 'auto' or 'off' (--appearance), or fit "
                         f"with appearance on into a new run folder")
    if choice == "off" and has_state:
        raise ValueError(f"{path}: checkpoint has per-image appearance transforms but this run has "
                         f"appearance='off'; resume it with appearance 'auto' or 'on' (--appearance)")
