"""The DINOv2 ViT image encoder of OpenLRM v1.1 (Oquab et al. 2023; registers: Darcet et al. 2024).

Written from the papers and the layout of the released weights (parameter names under
``encoder.model.``). What it computes, for an RGB image in [0, 1] (no mean/std normalisation: OpenLRM
feeds [0, 1] directly) of side H x W, both multiples of the patch size p:

1. patch embedding: a p x p stride-p convolution -> (H/p)(W/p) tokens of width D, row-major;
2. a learned class token in front, then the position embeddings added: the stored table covers a
   G x G patch grid (518 px / 14 = 37) plus the class token; for another grid its patch part is
   resampled bicubically (with antialiasing for the register models) by the scale factor
   ((H/p + offset) / G, (W/p + offset) / G), the class entry kept as is;
3. the register tokens inserted right after the class token (they get no position embedding);
4. pre-norm blocks, each ``x + gamma1 * attn(LN(x))`` then ``x + gamma2 * mlp(LN(x))`` (LayerScale
   gammas; multi-head softmax attention with a fused qkv projection; MLP fc1 - exact GELU - fc2),
   LayerNorm eps 1e-6;
5. a final LayerNorm; the output is [class token, patch tokens] (registers dropped), (B, 1 + HW/p^2, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DinoV2Arch

LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D-wide tokens (row-major)."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention with one fused qkv projection (rows q; k; v)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, proj_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    def __init__(self, arch: DinoV2Arch) -> None:
        super().__init__()
        d = arch.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = SelfAttention(d, arch.num_heads, arch.qkv_bias, arch.proj_bias)
        self.ls1 = LayerScale(d) if arch.layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)
        self.mlp = FeedForward(d, arch.mlp_hidden, arch.ffn_bias)
        self.ls2 = LayerScale(d) if arch.layerscale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    """The ViT backbone (parameter names of the released ``encoder.model.*``)."""

    def __init__(self, arch: DinoV2Arch) -> None:
        super().__init__()
        self.arch = arch
        d = arch.embed_dim
        self.patch_embed = PatchEmbed(arch.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.pos_grid ** 2, d))
        self.register_tokens = (nn.Parameter(torch.zeros(1, arch.num_register_tokens, d))
                                if arch.num_register_tokens else None)
        self.blocks = nn.ModuleList([EncoderBlock(arch) for _ in range(arch.depth)])
        self.norm = nn.LayerNorm(d, eps=LN_EPS)

    def position_embedding(self, height: int, width: int) -> Tensor:
        """(1, 1 + (height/p)(width/p), D) position embeddings for a ``height`` x ``width`` image."""
        a = self.arch
        h, w = height // a.patch_size, width // a.patch_size
        G = a.pos_grid
        if h == G and w == G:
            return self.pos_embed
        table = self.pos_embed.float()
        cls, grid = table[:, :1], table[:, 1:].reshape(1, G, G, -1).permute(0, 3, 1, 2)
        scale = ((h + a.interpolate_offset) / G, (w + a.interpolate_offset) / G)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=a.interpolate_antialias)
        if grid.shape[-2:] != (h, w):
            raise ValueError(f"position embeddings resampled to {tuple(grid.shape[-2:])}, expected {(h, w)}")
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1).to(self.pos_embed.dtype)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) in [0, 1] -> final-norm tokens (B, 1 + R + HW/p^2, D) [class, registers, patches]."""
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.position_embedding(H, W)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class DinoV2Encoder(nn.Module):
    """``encoder``: the backbone as ``.model``; returns [class token, patch tokens] (registers dropped)."""

    def __init__(self, arch: DinoV2Arch) -> None:
        super().__init__()
        self.model = DinoV2(arch)

    def forward(self, images: Tensor) -> Tensor:
        x = self.model(images)
        r = self.model.arch.num_register_tokens
        return torch.cat([x[:, :1], x[:, 1 + r:]], dim=1)
