"""The NeRF field: hash-grid density with a small MLP, view-dependent color from an SH direction
encoding, optional per-image appearance embedding.

``density(x)``: world points -> hash grid features (unit cube of the scene box, contracted for
unbounded scenes) -> MLP -> ``trunc_exp(raw + density_bias)`` (1 / world units), 0 outside the box.
``forward(x, d, cam)``: also the color, ``sigmoid(MLP([SH(d), geometry features, appearance]))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from recon3d.core.encodings import HashGridEncoding, SHEncoding
from recon3d.core.fields import SceneBox, mlp, trunc_exp


@dataclass
class FieldConfig:
    num_levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 1024  # finest cells per axis of the scene box
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    color_hidden_layers: int = 2
    sh_degree: int = 3  # direction encoding: (degree + 1)^2 SH bases (3 -> 16)
    appearance_dim: int = 0  # per-image appearance embedding size (0: off)
    density_bias: float = -1.0


class NerfField(nn.Module):
    """Density and color of a scene inside a :class:`SceneBox`.

    Args:
        box: the scene box (bounded) or the box contracted around (unbounded).
        cfg: sizes, see :class:`FieldConfig`.
        num_images: number of images for the appearance embedding.
        seed: initialization seed of the hash tables.
    """

    def __init__(self, box: SceneBox, cfg: FieldConfig, num_images: int = 1, seed: int = 0):
        super().__init__()
        self.box = box
        self.cfg = cfg
        self.encoding = HashGridEncoding(cfg.num_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                                         cfg.base_resolution, cfg.max_resolution, seed=seed)
        self.density_net = mlp(self.encoding.output_dim, cfg.hidden_dim, 1 + cfg.geo_feat_dim, 1)
        self.dir_encoding = SHEncoding(cfg.sh_degree)
        self.appearance = nn.Embedding(num_images, cfg.appearance_dim) if cfg.appearance_dim > 0 else None
        if self.appearance is not None:
            nn.init.zeros_(self.appearance.weight)
        in_color = self.dir_encoding.output_dim + cfg.geo_feat_dim + cfg.appearance_dim
        self.color_net = mlp(in_color, cfg.hidden_dim, 3, cfg.color_hidden_layers)
        self._compiled: dict[str, object] = {}

    # ------------------------------------------------------------------ compile
    def compile(self, enabled: bool = True) -> "NerfField":  # type: ignore[override]
        """Use ``torch.compile`` (dynamic shapes) for the per-point networks; a no-op if ``not enabled``."""
        self._compiled = {}
        if enabled:
            self._compiled = {"density": torch.compile(self._density_impl, dynamic=True),
                              "full": torch.compile(self._full_impl, dynamic=True)}
        return self

    # ------------------------------------------------------------------ evaluation
    def _density_impl(self, u: Tensor) -> tuple[Tensor, Tensor]:
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        h = self.density_net(self.encoding(u))
        sigma = trunc_exp(h[:, 0].float() + self.cfg.density_bias) * inside
        return sigma, h[:, 1:]

    def _full_impl(self, u: Tensor, d: Tensor, app: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        sigma, geo = self._density_impl(u)
        parts = [self.dir_encoding(d), geo]
        if app is not None:
            parts.append(app)
        rgb = torch.sigmoid(self.color_net(torch.cat(parts, dim=-1)))
        return sigma, rgb

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(hash-grid tables, network weights): optimized with different weight decay (none on the tables)."""
        enc = list(self.encoding.parameters())
        ids = {id(p) for p in enc}
        return enc, [p for p in self.parameters() if id(p) not in ids]

    def density(self, x: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) densities, 1 / world units."""
        fn = self._compiled.get("density", self._density_impl)
        return fn(self.box.to_unit(x))[0]

    def forward(self, x: Tensor, d: Tensor, camera_indices: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """(N, 3) points, (N, 3) unit directions, optional (N,) image indices -> (N,) density, (N, 3) rgb.

        Without ``camera_indices`` the appearance embedding (if any) is its mean over images.
        """
        app = None
        if self.appearance is not None:
            if camera_indices is None:
                app = self.appearance.weight.mean(0, keepdim=True).expand(x.shape[0], -1)
            else:
                app = self.appearance(camera_indices)
        fn = self._compiled.get("full", self._full_impl)
        return fn(self.box.to_unit(x), d, app)
