"""The NeuS field: a signed distance function with geometric initialization, a color network and
the learned sharpness ``s`` of the logistic density around the zero level set.

Everything is expressed in *unit coordinates* ``x_n = (x - center) / radius`` of the bounding
sphere, so the object lies in the unit ball whatever the scene scale: the SDF ``f(x_n)`` is in
units of ``radius`` (world SDF = ``radius * f``), and ``s`` is in 1 / those units.

Geometric initialization. The SDF is ``f(x) = (|x| - r0) + g(x)``: an analytic sphere of radius
``r0`` plus a learned residual ``g`` whose SDF output starts at exactly zero, so training starts
from the sphere exactly (the classic SAL/IDR initialization of the MLP alone, last-layer weights
``N(sqrt(pi / width), 1e-4)`` and bias ``-r0``, only approximates ``|x| - r0``, within ~0.1 for
the small widths usable on a CPU). The hidden layers use the SAL/IDR scheme: weights
``N(0, 2 / width)``, zero biases, and first-layer weights of every input but the raw coordinates
zero. ``inside_out`` negates the sphere (scenes seen from inside).

Geometry networks ``g``:
  * ``mlp``: frequency encoding + softplus MLP (NeuS/IDR style);
  * ``hashgrid``: multiresolution hash features concatenated to ``x_n`` and its frequency
    encoding, then the same MLP (smaller, converges in far fewer steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recon3d.core.encodings import FrequencyEncoding, HashGridEncoding, SHEncoding
from recon3d.core.fields import mlp


@dataclass
class SdfFieldConfig:
    geometry: str = "mlp"  # "mlp" or "hashgrid"
    num_frequencies: int = 6  # positional encoding of x_n
    hidden_dim: int = 64
    num_layers: int = 4  # hidden layers of the geometry MLP
    geo_feat_dim: int = 15
    init_radius: float = 0.5  # geometric init sphere radius, unit coordinates
    inside_out: bool = False  # for scenes seen from inside (negates the init)
    softplus_beta: float = 100.0
    # hash grid geometry
    num_levels: int = 12
    features_per_level: int = 2
    log2_hashmap_size: int = 17
    base_resolution: int = 16
    max_resolution: int = 512
    # color
    color_hidden_dim: int = 64
    color_hidden_layers: int = 2
    sh_degree: int = 2  # view direction encoding
    init_variance: float = 0.3  # s = exp(10 * variance): 0.3 -> s ~ 20


class SdfField(nn.Module):
    """SDF + color in unit coordinates of a bounding sphere (see module docstring).

    Args:
        center: (3,) sphere center, world units; radius: sphere radius, world units.
        cfg: :class:`SdfFieldConfig`.
        seed: initialization seed.
    """

    def __init__(self, center: Tensor, radius: float, cfg: SdfFieldConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).reshape(3).clone())
        self.radius = float(radius)
        gen = torch.Generator().manual_seed(seed)
        self.pos_encoding = FrequencyEncoding(3, cfg.num_frequencies, include_input=True)
        in_dim = self.pos_encoding.output_dim
        self.grid = None
        if cfg.geometry == "hashgrid":
            self.grid = HashGridEncoding(cfg.num_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                                         cfg.base_resolution, cfg.max_resolution, init_scale=1e-4, seed=seed)
            in_dim += self.grid.output_dim
        elif cfg.geometry != "mlp":
            raise ValueError(f"geometry must be 'mlp' or 'hashgrid', got {cfg.geometry!r}")
        self.act = nn.Softplus(beta=cfg.softplus_beta)
        dims = [in_dim] + [cfg.hidden_dim] * cfg.num_layers + [1 + cfg.geo_feat_dim]
        self.layers = nn.ModuleList([nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1)])
        self._geometric_init(gen)
        self.dir_encoding = SHEncoding(cfg.sh_degree)
        color_in = 3 + 3 + self.dir_encoding.output_dim + cfg.geo_feat_dim
        self.color_net = mlp(color_in, cfg.color_hidden_dim, 3, cfg.color_hidden_layers)
        self.variance = nn.Parameter(torch.tensor(float(cfg.init_variance)))

    @torch.no_grad()
    def _geometric_init(self, gen: torch.Generator) -> None:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            out_dim, in_dim = layer.weight.shape
            if i == n - 1:
                w = torch.randn(out_dim, in_dim, generator=gen) * math.sqrt(1.0 / in_dim)
                w[0] = 0.0  # the SDF residual starts at zero: f is exactly the sphere
                b = torch.zeros(out_dim)
            else:
                w = torch.randn(out_dim, in_dim, generator=gen) * math.sqrt(2.0) / math.sqrt(out_dim)
                b = torch.zeros(out_dim)
                if i == 0:
                    w[:, 3:] = 0.0  # only the raw coordinates at start: encodings and hash features off
            layer.weight.copy_(w)
            layer.bias.copy_(b)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(networks and variance, hash-grid tables): optimized at different learning rates
        (``lr`` / ``lr_grid``); the second list is empty with ``geometry='mlp'``."""
        grid = [] if self.grid is None else list(self.grid.parameters())
        ids = {id(p) for p in grid}
        return [p for p in self.parameters() if id(p) not in ids], grid

    # ------------------------------------------------------------------ coordinates
    def to_unit(self, x: Tensor) -> Tensor:
        """(..., 3) world points -> unit coordinates of the bounding sphere."""
        return (x - self.center) / self.radius

    def from_unit(self, xn: Tensor) -> Tensor:
        return xn * self.radius + self.center

    @property
    def inv_s(self) -> Tensor:
        """The sharpness s of the logistic density (1 / unit-coordinate length), a scalar tensor."""
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    # ------------------------------------------------------------------ evaluation (unit coordinates)
    def geometry(self, xn: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) unit coordinates -> (N,) SDF (unit coordinates), (N, F) geometry features."""
        h = self.pos_encoding(xn)
        if self.grid is not None:
            h = torch.cat([h, self.grid((xn * 0.5 + 0.5).clamp(0, 1))], dim=-1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        sphere = xn.norm(dim=-1) - self.cfg.init_radius
        if self.cfg.inside_out:
            sphere = -sphere
        return sphere + h[:, 0], h[:, 1:]

    def sdf(self, xn: Tensor) -> Tensor:
        return self.geometry(xn)[0]

    def sdf_and_gradient(self, xn: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SDF (N,), its gradient w.r.t. ``xn`` (N, 3) and features (N, F).

        ``create_graph=True`` keeps the gradient differentiable (eikonal loss, normals in the color).
        """
        with torch.enable_grad():
            xg = xn if xn.requires_grad else xn.detach().requires_grad_(True)
            f, feat = self.geometry(xg)
            (g,) = torch.autograd.grad(f.sum(), xg, create_graph=create_graph)
        return f, g, feat

    def color(self, xn: Tensor, normals: Tensor, dirs: Tensor, feat: Tensor) -> Tensor:
        """(N, 3) rgb in [0, 1] from position, (unnormalized) normal, view direction and features."""
        n = torch.nn.functional.normalize(normals, dim=-1)
        h = torch.cat([xn, n, self.dir_encoding(dirs), feat], dim=-1)
        return torch.sigmoid(self.color_net(h))

    # ------------------------------------------------------------------ world-space helpers
    def world_sdf(self, x: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) signed distances in world units."""
        return self.sdf(self.to_unit(x)) * self.radius
