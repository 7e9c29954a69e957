"""The alternating-attention aggregator: frames -> per-layer tokens (VGGT's backbone).

Each frame is patch-embedded (a conv, or a DINOv2-style ViT as in the published model), and a camera
token plus ``num_register_tokens`` register tokens are put in front of its patch tokens. The first
frame gets its own learned camera/register tokens (index 0 of ``camera_token``/``register_token``),
all other frames share the second set, so the network knows which frame defines the world frame.
Then ``depth`` rounds of [frame attention (tokens of one frame attend to each other), global
attention (all tokens of all frames)] run, both with 2D RoPE on patch positions. The output of
round ``i`` is the concatenation of the frame- and global-block outputs, (B, S, P, 2C).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Block, ConvStemPatchEmbed, DinoPatchEmbed, PatchEmbed, RotaryEmbedding2D, patch_positions

#: ImageNet statistics the patch embedder expects (images come in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Aggregator(nn.Module):
    """Alternating frame/global attention over S frames.

    Args:
        img_size: image size the DINO position embedding is stored for.
        patch_size: pixels per patch side.
        embed_dim, depth, num_heads, mlp_ratio: sizes of the frame and global blocks.
        num_register_tokens: register tokens per frame.
        patch_embed: ``"conv"`` (one strided conv), ``"convstem"`` (:class:`~.layers.ConvStemPatchEmbed`) or ``"dinov2"`` (a ViT with ``dino_depth`` blocks
            of ``dino_num_heads`` heads and its own registers).
        qk_norm, rope_freq, init_values: attention q/k LayerNorm, RoPE base (<= 0 disables), LayerScale init.
        conv_abs_pos: add a fixed sine-cosine absolute position embedding to the conv embedder's tokens.
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_register_tokens: int = 4,
                 patch_embed: str = "dinov2", dino_depth: int = 24, dino_num_heads: int = 16,
                 qk_norm: bool = True, rope_freq: float = 100.0, init_values: float = 0.01,
                 conv_abs_pos: bool = False) -> None:
        super().__init__()
        if patch_embed == "conv":
            self.patch_embed = PatchEmbed(patch_size, embed_dim, abs_pos=conv_abs_pos)
        elif patch_embed == "convstem":
            self.patch_embed = ConvStemPatchEmbed(patch_size, embed_dim, abs_pos=conv_abs_pos)
        elif patch_embed == "dinov2":
            self.patch_embed = DinoPatchEmbed(img_size, patch_size, embed_dim, dino_depth, dino_num_heads,
                                              num_register_tokens, mlp_ratio)
        else:
            raise ValueError(f"patch_embed must be 'conv', 'convstem' or 'dinov2', got {patch_embed!r}")
        self.rope = RotaryEmbedding2D(rope_freq) if rope_freq > 0 else None

        def blocks() -> nn.ModuleList:
            return nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm,
                                        rope=self.rope) for _ in range(depth)])

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, embed_dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, num_register_tokens, embed_dim) * 1e-6)
        self.patch_size = patch_size
        self.depth = depth
        self.patch_start_idx = 1 + num_register_tokens
        self.reset_normalization()

    def reset_normalization(self, device=None) -> None:
        """(Re)create the non-persistent ImageNet mean/std buffers ``_mean``/``_std`` (on ``device``,
        default CPU). No checkpoint holds them, so a model built on the ``meta`` device and given its
        weights by ``load_state_dict(assign=True)`` needs this before it can be moved or run."""
        for name, values in (("_mean", IMAGENET_MEAN), ("_std", IMAGENET_STD)):
            self.register_buffer(name, torch.tensor(values, device=device).view(1, 1, 3, 1, 1), persistent=False)

    @staticmethod
    def _frame_tokens(token: Tensor, B: int, S: int) -> Tensor:
        """(1, 2, n, C) learned tokens -> (B*S, n, C): set 0 for frame 0, set 1 for frames 1..S-1."""
        first = token[:, :1].expand(B, 1, *token.shape[2:])
        rest = token[:, 1:].expand(B, S - 1, *token.shape[2:])
        return torch.cat([first, rest], dim=1).reshape(B * S, *token.shape[2:])

    def forward(self, images: Tensor) -> list[Tensor]:
        """images (B, S, 3, H, W) in [0, 1], H and W multiples of the patch size ->
        ``depth`` tensors (B, S, P, 2C), P = patch_start_idx + (H/p)(W/p)."""
        B, S, _, H, W = images.shape
        x = ((images - self._mean) / self._std).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x)  # (B*S, hw, C)
        C = patches.shape[-1]
        tokens = torch.cat([self._frame_tokens(self.camera_token, B, S),
                            self._frame_tokens(self.register_token, B, S), patches], dim=1)
        P = tokens.shape[1]
        pos = patch_positions(B * S, H // self.patch_size, W // self.patch_size, self.patch_start_idx, images.device)
        pos_global = pos.reshape(B, S * P, 2)
        outputs = []
        for i in range(self.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, P, C), pos=pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self.global_blocks[i](tokens.reshape(B, S * P, C), pos=pos_global)
            outputs.append(torch.cat([frame_out, tokens.reshape(B, S, P, C)], dim=-1))
        return outputs
