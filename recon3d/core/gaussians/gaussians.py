""":class:`Gaussians`: the N activated 3D Gaussians that every rasterizer backend renders, as one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .sh import num_sh_bases

FIELDS = ("means", "quats", "scales", "opacities", "colors")


@dataclass(eq=False)  # no generated __eq__: comparing tensors elementwise would be ambiguous
class Gaussians:
    """N anisotropic 3D Gaussians with their *activated* parameters, ready to rasterize.

    Attributes:
        means: (N, 3) centers, world units.
        quats: (N, 4) rotations as (w, x, y, z) quaternions; need not be normalized (every backend
            normalizes). The rotation ``R`` maps the Gaussian's local axes to world axes.
        scales: (N, 3) standard deviations along the local axes, world units, linear (already
            activated, e.g. ``exp`` of stored log-scales). World covariance: ``R diag(scales^2) R^T``.
        opacities: (N,) peak opacity in [0, 1] (already activated, e.g. ``sigmoid`` of logits).
        colors: either (N, 3) RGB (rendered with ``sh_degree=None``, used as given, nominally in
            [0, 1]) or (N, K, 3) spherical-harmonics coefficients with ``K >= (sh_degree + 1) ** 2``
            for the ``sh_degree`` passed to :func:`~recon3d.core.gaussians.rasterize` (coefficients
            past that degree are ignored). SH follow the 3DGS convention of :mod:`.sh`: color
            ``= max(SH(dir) + 0.5, 0)``, ``dir`` from the camera center to the Gaussian center.

    All five tensors share one device and one floating dtype (float32 for training; float64 works
    with the PyTorch backends, for gradient checks; gsplat needs float32 CUDA tensors). They may
    require gradients: a :class:`Gaussians` only holds references, it copies nothing, so gradients
    flow to whatever tensors it was built from.

    The shapes are checked on construction (``ValueError`` if they disagree); whether ``colors`` fit
    an SH degree is checked by :meth:`check_sh_degree` (``rasterize`` calls it).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor

    def __post_init__(self) -> None:
        N = self.means.shape[0] if self.means.ndim >= 1 else -1
        if tuple(self.means.shape) != (N, 3):
            raise ValueError(f"means must be (N, 3), got {tuple(self.means.shape)}")
        for name, shape in (("quats", (N, 4)), ("scales", (N, 3)), ("opacities", (N,))):
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must be {shape}, got {tuple(t.shape)}")
        c = self.colors
        if not (tuple(c.shape) == (N, 3) or (c.ndim == 3 and c.shape[0] == N and c.shape[2] == 3)):
            raise ValueError(f"colors must be (N, 3) RGB or (N, K, 3) SH coefficients with N={N}, "
                             f"got {tuple(c.shape)}")

    # ------------------------------------------------------------------ shape information
    def __len__(self) -> int:
        """N, the number of Gaussians."""
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def is_sh(self) -> bool:
        """True when ``colors`` are (N, K, 3) SH coefficients, False for (N, 3) RGB."""
        return self.colors.ndim == 3

    def check_sh_degree(self, sh_degree: int | None) -> None:
        """Raise ``ValueError`` unless ``colors`` fit ``sh_degree`` ((N, 3) RGB for None, else
        (N, K >= (sh_degree + 1) ** 2, 3) SH coefficients)."""
        N, colors = len(self), self.colors
        if sh_degree is None:
            if colors.shape != (N, 3):
                hint = " (got SH coefficients? pass sh_degree)" if colors.ndim == 3 else ""
                raise ValueError(f"with sh_degree=None colors must be (N, 3) RGB, got {tuple(colors.shape)}{hint}")
        else:
            need = num_sh_bases(sh_degree)
            if colors.ndim != 3 or colors.shape[0] != N or colors.shape[2] != 3 or colors.shape[1] < need:
                raise ValueError(
                    f"sh_degree={sh_degree} needs colors of shape (N, K>={need}, 3), got {tuple(colors.shape)}"
                )

    # ------------------------------------------------------------------ derived copies
    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(means, quats, scales, opacities, colors)``, the same tensor objects (no copies)."""
        return self.means, self.quats, self.scales, self.opacities, self.colors

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Gaussians":
        """A new :class:`Gaussians` with ``fn`` applied to each of the five tensors."""
        return Gaussians(*(fn(t) for t in self.tensors()))

    def __getitem__(self, index) -> "Gaussians":
        """The Gaussians selected by ``index`` along N: a (N,) bool mask, an int64 index tensor or a
        slice (an int would drop the N axis and is refused)."""
        if isinstance(index, int):
            raise TypeError("index Gaussians with a slice, a bool mask or an index tensor, not an int")
        return self.map(lambda t: t[index])

    def detach(self) -> "Gaussians":
        return self.map(Tensor.detach)

    def to(self, *args, **kwargs) -> "Gaussians":
        """``Tensor.to`` on each tensor (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def __repr__(self) -> str:
        return (f"Gaussians(N={len(self)}, colors={tuple(self.colors.shape[1:])}, dtype={self.dtype}, "
                f"device={self.device})")
