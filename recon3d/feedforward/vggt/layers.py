"""Transformer building blocks of the VGGT-style model (names match the published checkpoint).

Module and parameter names follow the public VGGT / DINOv2 code so that published weights map onto
them one to one: a :class:`Block` holds ``norm1``, ``attn.qkv``, ``attn.q_norm``/``attn.k_norm``
(only with ``qk_norm``), ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``,
``ls2.gamma``; the DINOv2-style patch embedder :class:`DinoPatchEmbed` holds ``cls_token``,
``pos_embed``, ``register_tokens``, ``mask_token``, ``patch_embed.proj``, ``blocks.N`` and ``norm``.
Written from the architecture description, not copied.

Shapes: tokens are (B, N, C) float32; 2D token positions (B, N, 2) int64 as (row, column).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RotaryEmbedding2D(nn.Module):
    """2D rotary position embedding: the first half of each head's channels rotates with the token's
    row, the second half with its column (1D RoPE, "rotate half" pairing, ``base`` frequency).

    No parameters. Applied to queries and keys (B, heads, N, head_dim) with positions (B, N, 2).
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)

    def _rope1d(self, x: Tensor, pos: Tensor) -> Tensor:
        d = x.shape[-1]
        inv_freq = 1.0 / (self.base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
        ang = pos.to(torch.float32)[..., None] * inv_freq  # (B, N, d/2)
        ang = torch.cat([ang, ang], dim=-1)[:, None]  # (B, 1, N, d)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        if x.shape[-1] % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {x.shape[-1]}")
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat([self._rope1d(rows, pos[..., 0]), self._rope1d(cols, pos[..., 1])], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q/k and optional 2D RoPE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, rope: Optional[RotaryEmbedding2D] = None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    """Per-channel learned residual scale ``gamma`` (C,)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: Optional[float] = None,
                 qk_norm: bool = False, rope: Optional[RotaryEmbedding2D] = None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: (B, 3, H, W) -> (B, H/p * W/p, C) via a strided conv ``proj``.

    With ``abs_pos=True`` a fixed (parameter-free) sine-cosine embedding of each patch's normalized
    patch grid position (:func:`sincos_grid_embedding`, as in MAE's ViTs) is added. RoPE alone only makes attention *weights*
    position-aware; the values a token receives from another frame then carry no image position, so
    the camera token cannot see where a matched patch lies. The DINOv2 embedder has a learned absolute
    embedding for this; the small conv embedder needs this one to learn relative poses.
    """

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3, abs_pos: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.abs_pos = abs_pos
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        _check_patch_multiple(x, self.patch_size)
        return _grid_to_tokens(self.proj(x), self.abs_pos)


class ConvStemPatchEmbed(nn.Module):
    """Overlapping convolutional stem -> tokens (Xiao et al. 2021, "Early convolutions help transformers
    see better"): log2(p) 3x3 stride-2 convs with GELU (channels doubling up to ``embed_dim``), then a
    1x1 projection, so each token is a local descriptor with overlapping support, which makes patches
    easier to match across views than one strided linear projection. Adds the same fixed absolute
    position embedding as :class:`PatchEmbed` when ``abs_pos``. (B, 3, H, W) -> (B, H/p * W/p, C).
    """

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3, abs_pos: bool = True) -> None:
        super().__init__()
        n = int(round(math.log2(patch_size)))
        if 2 ** n != patch_size:
            raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
        self.patch_size = patch_size
        self.abs_pos = abs_pos
        layers: list[nn.Module] = []
        c_in, c = in_chans, max(16, embed_dim // 2 ** (n - 1))
        for _ in range(n):
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GELU()]
            c_in, c = c, min(embed_dim, c * 2)
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_patch_multiple(x, self.patch_size)
        return _grid_to_tokens(self.proj(self.stem(x)), self.abs_pos)


def _check_patch_multiple(x: Tensor, patch_size: int) -> None:
    H, W = x.shape[-2:]
    if H % patch_size or W % patch_size:
        raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {patch_size}")


def _grid_to_tokens(y: Tensor, abs_pos: bool) -> Tensor:
    """(B, C, h, w) feature grid -> (B, h*w, C) tokens, plus :func:`sincos_grid_embedding` if ``abs_pos``."""
    if abs_pos:
        y = y + sincos_grid_embedding(y.shape[1], y.shape[-2], y.shape[-1], y.device, y.dtype)[None]
    return y.flatten(2).transpose(1, 2)


class DinoPatchEmbed(nn.Module):
    """A DINOv2-with-registers ViT used as VGGT's patch embedder; returns normalized patch tokens.

    Tokens: [cls, registers..., patches]; a learned absolute position embedding (for ``img_size``,
    bicubically resized to other sizes) is added to cls + patches before the registers are inserted.

    Args:
        img_size: the square image size the position embedding is stored for (518 published).
        patch_size, embed_dim, depth, num_heads, num_register_tokens: ViT sizes (ViT-L/14: 14, 1024, 24, 16, 4).
    """

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 num_register_tokens: int, mlp_ratio: float = 4.0, init_values: float = 1.0) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.num_register_tokens = num_register_tokens
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # kept for checkpoint compatibility (masked-image pre-training); unused and frozen here
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)

    def _pos_embed(self, h: int, w: int) -> Tensor:
        if h == self.grid and w == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        C = patch_pos.shape[-1]
        grid = patch_pos.float().reshape(1, self.grid, self.grid, C).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(1, h * w, C).to(patch_pos.dtype)], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalized images -> (B, H/p * W/p, C) normalized patch tokens."""
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self._pos_embed(h, w)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]


def patch_positions(batch: int, h: int, w: int, num_special: int, device) -> Tensor:
    """(batch, num_special + h*w, 2) int64 (row, col) token positions: special tokens at (0, 0),
    patch (i, j) at (i + 1, j + 1) so that no patch shares the special tokens' position."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1) + 1
    pos = torch.cat([torch.zeros(num_special, 2, dtype=pos.dtype, device=device), pos], dim=0)
    return pos[None].expand(batch, -1, -1)


def sincos_grid_embedding(channels: int, h: int, w: int, device, dtype) -> Tensor:
    """(channels, h, w) fixed 2D sine-cosine embedding of patch grid indices (MAE-style): half of the
    channels encode the column, half the row, each as [sin(i * omega), cos(i * omega)] with
    omega = 10000^(-k/(C/4)), i in patch units."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return _sincos_2d(cols, rows, channels, 10000.0).to(dtype)


def _sincos_2d(u: Tensor, v: Tensor, channels: int, base: float) -> Tensor:
    """(channels, h, w): half the channels encode the (h, w) grid ``u``, half ``v``, each as
    [sin(p * omega), cos(p * omega)] with omega = base^(-k/(C/4)), k = 0 .. C/4 - 1."""
    if channels % 4:
        raise ValueError(f"channels must be divisible by 4, got {channels}")
    q = channels // 4
    omega = 1.0 / (base ** (torch.arange(q, device=u.device, dtype=torch.float32) / q))

    def enc(p: Tensor) -> Tensor:
        a = p[..., None] * omega
        return torch.cat([a.sin(), a.cos()], dim=-1)

    return torch.cat([enc(u), enc(v)], dim=-1).permute(2, 0, 1)


def sincos_uv_embedding(channels: int, h: int, w: int, aspect: float, device, dtype) -> Tensor:
    """(channels, h, w) sine-cosine embedding of a normalized (u, v) pixel grid (DPT positional term).

    u spans [-a, a], v [-b, b] with a/b = ``aspect`` (width / height) and a^2 + b^2 = 1; half of the
    channels encode u, half v, each as [sin(pos * omega), cos(pos * omega)] with omega = 100^(-k/(C/4)).
    """
    diag = math.sqrt(aspect ** 2 + 1.0)
    su, sv = aspect / diag, 1.0 / diag
    u = torch.linspace(-su * (w - 1) / w, su * (w - 1) / w, w, device=device, dtype=torch.float32)
    v = torch.linspace(-sv * (h - 1) / h, sv * (h - 1) / h, h, device=device, dtype=torch.float32)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return _sincos_2d(uu, vv, channels, 100.0).to(dtype)
