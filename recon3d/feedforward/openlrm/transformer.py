"""The image-to-triplane transformer of LRM (Hong et al. 2023, sec. 3.2), in the released OpenLRM layout.

- :class:`CameraEmbedder`: the 16-number source camera -> Linear - SiLU - Linear -> E (``mlp.0``, ``mlp.2``).
- :class:`ModulatedNorm`: adaptive layer norm driven by the camera embedding: an SiLU - Linear map of
  the embedding gives (shift, scale) and the output is ``LN(x) * (1 + scale) + shift`` (``norm.*``,
  ``mlp.1.*``).
- :class:`Attention`: multi-head softmax attention without biases. Queries come from the tokens (width
  D), keys/values from the same tokens or from the image features (width K). The weights are stored
  as one packed ``in_proj_weight`` [3D, D] (rows q; k; v) when K == D, else as separate
  ``q_proj_weight`` [D, D], ``k_proj_weight`` / ``v_proj_weight`` [D, K]; ``out_proj.weight`` [D, D].
- :class:`ModulatedBlock`: cross-attention to the image features, self-attention, MLP (Linear -
  exact GELU - Linear, ``mlp.0`` / ``mlp.3``), each pre-normed by its own :class:`ModulatedNorm` and
  added residually.
- :class:`TriplaneTransformer`: the blocks then a final LayerNorm; LayerNorm eps 1e-6 everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6


class CameraEmbedder(nn.Module):
    def __init__(self, raw_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(raw_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, camera: Tensor) -> Tensor:
        return self.mlp(camera)


class ModulatedNorm(nn.Module):
    def __init__(self, dim: int, mod_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(mod_dim, 2 * dim))

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        shift, scale = self.mlp(mod).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Bias-free multi-head attention; ``kv_dim`` != ``dim`` stores separate q/k/v projections."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads = heads
        self.packed = kv_dim == dim
        if self.packed:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(dim, dim))
            self.k_proj_weight = nn.Parameter(torch.empty(dim, kv_dim))
            self.v_proj_weight = nn.Parameter(torch.empty(dim, kv_dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters(recurse=False):
            nn.init.xavier_uniform_(p)

    def projections(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.packed:
            return self.in_proj_weight.chunk(3, dim=0)
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        Wq, Wk, Wv = self.projections()
        B, L, D = x.shape
        h = self.heads

        def split(t: Tensor) -> Tensor:
            return t.view(B, t.shape[1], h, D // h).transpose(1, 2)

        q, k, v = split(F.linear(x, Wq)), split(F.linear(context, Wk)), split(F.linear(context, Wv))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, D))


class ModulatedBlock(nn.Module):
    def __init__(self, dim: int, cond_dim: int, mod_dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = ModulatedNorm(dim, mod_dim)
        self.cross_attn = Attention(dim, heads, kv_dim=cond_dim)
        self.norm2 = ModulatedNorm(dim, mod_dim)
        self.self_attn = Attention(dim, heads)
        self.norm3 = ModulatedNorm(dim, mod_dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, cond: Tensor, mod: Tensor) -> Tensor:
        x = x + self.cross_attn(self.norm1(x, mod), cond)
        y = self.norm2(x, mod)
        x = x + self.self_attn(y, y)
        return x + self.mlp(self.norm3(x, mod))


class TriplaneTransformer(nn.Module):
    def __init__(self, layers: int, heads: int, dim: int, cond_dim: int, mod_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ModulatedBlock(dim, cond_dim, mod_dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: Tensor, cond: Tensor, mod: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, cond, mod)
        return self.norm(x)
