"""LRM's networks: the ViT image encoder, the camera embedding and the image-to-triplane decoder.

- :class:`ViTEncoder`: patch embedding (a stride-``p`` convolution), a class token, learned position
  embeddings, pre-norm transformer blocks, a final layer norm -> image tokens (B, 1 + N, D).
- :func:`camera_vector` / :class:`CameraEmbedder`: the 16-vector of a source camera (flattened 3x4
  camera-to-world + fx/W, fy/H, cx/W, cy/H) and its MLP embedding.
- :class:`TriplaneDecoder`: 3 * h * w learned triplane tokens; per block a cross-attention to the
  image tokens, a self-attention among triplane tokens and an MLP, each behind an adaptive layer norm
  whose scale/shift come from the camera embedding (:class:`ModulatedNorm`); then a transposed
  convolution upsamples every plane to (C, Hp, Wp).
- :func:`projected_token_features` (optional, recon3d's addition; off in the published config): each
  token cell's centre, on its plane through the origin, is projected into the source image with the
  source camera and the patch-token grid is sampled there; a linear map of it (zero-initialized and
  scaled by 0.1, so Adam's first steps on this path stay small) is added to the learned tokens. The decoder then starts from image-aligned tokens instead of discovering the image-to-plane
  correspondence from scratch, which a small model trained for minutes on a CPU cannot afford.
  (Initializing triplane tokens from the input images is also what M-LRM, Li et al. 2024, does.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention (scaled dot product) with separate query and key/value inputs.

    ``forward(x (B, Lq, D), context (B, Lk, Dc) or None) -> (B, Lq, D)``; None means self-attention.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        B, L, D = x.shape
        ctx = x if context is None else context
        h = self.heads
        q = self.q(x).reshape(B, L, h, D // h).transpose(1, 2)
        k, v = self.kv(ctx).reshape(B, ctx.shape[1], 2, h, D // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


def _mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Vision transformer image encoder (DINO ViT layout).

    ``forward(images (B, 3, S, S) in [0, 1]) -> tokens (B, 1 + (S/p)**2, D)``: the class token first,
    then the patch tokens in row-major order. Images are normalized with ImageNet statistics (as DINO
    expects) inside the module.
    """

    def __init__(self, image_size: int, patch_size: int, dim: int, layers: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.image_size, self.patch_size = image_size, patch_size
        n = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + n, dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch((images - self.mean) / self.std)  # (B, D, S/p, S/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def camera_vector(K: Tensor, c2w: Tensor, width: int, height: int) -> Tensor:
    """The raw camera code LRM modulates with: (B, 16) = [c2w[:3, :4] row-major (12), fx/W, fy/H, cx/W, cy/H].

    Args:
        K: (B, 3, 3) intrinsics in pixels; c2w: (B, 4, 4) OpenCV camera-to-world (world units);
        width, height: the source image size in pixels (normalizes the intrinsics).
    """
    ext = c2w[:, :3, :4].reshape(-1, 12)
    intr = torch.stack([K[:, 0, 0] / width, K[:, 1, 1] / height, K[:, 0, 2] / width, K[:, 1, 2] / height], -1)
    return torch.cat([ext, intr], dim=-1)


class CameraEmbedder(nn.Module):
    """(B, 16) raw camera code -> (B, E) embedding (Linear, SiLU, Linear)."""

    def __init__(self, embed_dim: int, raw_dim: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(raw_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, cam: Tensor) -> Tensor:
        return self.net(cam)


class ModulatedNorm(nn.Module):
    """Adaptive layer norm: ``LN(x) * (1 + scale(c)) + shift(c)`` with (scale, shift) = Linear(SiLU(c)).

    ``forward(x (B, L, D), cond (B, E)) -> (B, L, D)``.
    """

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.proj(F.silu(cond)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class TriplaneBlock(nn.Module):
    """Cross-attention to image tokens, self-attention, MLP; each pre-normed by a camera-modulated norm."""

    def __init__(self, dim: int, heads: int, image_dim: int, cond_dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = ModulatedNorm(dim, cond_dim)
        self.cross = Attention(dim, heads, context_dim=image_dim)
        self.norm2 = ModulatedNorm(dim, cond_dim)
        self.self_attn = Attention(dim, heads)
        self.norm3 = ModulatedNorm(dim, cond_dim)
        self.mlp = _mlp(dim, mlp_ratio)

    def forward(self, x: Tensor, image_tokens: Tensor, cam: Tensor) -> Tensor:
        x = x + self.cross(self.norm1(x, cam), image_tokens)
        x = x + self.self_attn(self.norm2(x, cam))
        return x + self.mlp(self.norm3(x, cam))


class TriplaneDecoder(nn.Module):
    """Image tokens + camera embedding -> triplanes (B, 3, C, Hp, Wp).

    Learned tokens (3 * h * h, D) in plane-major, row-major order (plane ``i``, row ``r``, column ``c``)
    pass through the blocks; a final layer norm, then each plane's (D, h, h) token grid is upsampled by
    a ``ConvTranspose2d(D, C, k, stride=k)`` with ``k = Hp / h``. Plane order and axes: see
    :mod:`recon3d.feedforward.lrm.triplane`.
    """

    def __init__(self, dim: int, layers: int, heads: int, mlp_ratio: float, image_dim: int, cond_dim: int,
                 low_res: int, high_res: int, channels: int, projected_tokens: bool = False) -> None:
        super().__init__()
        self.low_res, self.high_res, self.channels = low_res, high_res, channels
        self.tokens = nn.Parameter(torch.randn(1, 3 * low_res * low_res, dim) * dim ** -0.5)
        self.project = nn.Linear(image_dim, dim) if projected_tokens else None
        self.project_scale = 0.1
        if self.project is not None:  # start as the plain decoder; the image-aligned path is learned
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
        self.blocks = nn.ModuleList(TriplaneBlock(dim, heads, image_dim, cond_dim, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        k = high_res // low_res
        self.upsample = nn.ConvTranspose2d(dim, channels, kernel_size=k, stride=k)

    def forward(self, image_tokens: Tensor, cam: Tensor, projected: Tensor | None = None) -> Tensor:
        """image_tokens (B, L, D_img), cam (B, E); ``projected`` (B, 3 h h, D_img): image features at
        the token cells' projections (:func:`projected_token_features`), used when built with
        ``projected_tokens``."""
        B = image_tokens.shape[0]
        h = self.low_res
        x = self.tokens.expand(B, -1, -1)
        if self.project is not None:
            if projected is None:
                raise ValueError("this decoder needs the projected image features of its token cells")
            x = x + self.project(projected) * self.project_scale
        for blk in self.blocks:
            x = blk(x, image_tokens, cam)
        x = self.norm(x)  # (B, 3 h h, D)
        x = x.reshape(B * 3, h, h, -1).permute(0, 3, 1, 2)  # (3B, D, h, h)
        planes = self.upsample(x)  # (3B, C, Hp, Wp)
        return planes.reshape(B, 3, self.channels, self.high_res, self.high_res)


def projected_token_features(patch_tokens: Tensor, K: Tensor, c2w: Tensor, width: int, height: int,
                             cell_points: Tensor) -> Tensor:
    """Image features where each triplane token cell projects into the source image.

    Args:
        patch_tokens: (B, N, D) ViT patch tokens (no class token) of a g x g patch grid (N = g * g),
            row-major, covering the whole image.
        K: (B, 3, 3) source intrinsics (pixels of the original width x height image); c2w: (B, 4, 4)
            OpenCV source camera-to-world in the triplane frame.
        cell_points: (P, 3) triplane-frame points, one per token (the cell centres, on each plane
            through the origin).
    Returns:
        (B, P, D) bilinear samples of the patch-token grid at the points' pixel projections (border
        values outside the image; points behind the camera are clamped to just in front of it).
    """
    B, N, D = patch_tokens.shape
    g = int(round(N ** 0.5))
    grid = patch_tokens.transpose(1, 2).reshape(B, D, g, g)
    R, t = c2w[:, :3, :3], c2w[:, :3, 3]
    pc = torch.einsum("bji,bpj->bpi", R, cell_points[None].to(R.dtype) - t[:, None])  # camera frame
    z = pc[..., 2].clamp_min(1e-3)
    u = K[:, None, 0, 0] * pc[..., 0] / z + K[:, None, 0, 2]
    v = K[:, None, 1, 1] * pc[..., 1] / z + K[:, None, 1, 2]
    uv = torch.stack([2 * u / width - 1, 2 * v / height - 1], dim=-1)  # grid_sample's [-1, 1], pixel edges
    out = F.grid_sample(grid, uv[:, None].to(grid.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)
