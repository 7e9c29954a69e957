"""pixelNeRF's image encoder: a ResNet whose stage outputs form a multi-scale feature volume.

The ResNet follows torchvision's layout and parameter names (``conv1``, ``bn1``, ``layer{i}.{j}.conv1``,
``.bn1``, ``.conv2``, ``.bn2``, ``.downsample.0`` / ``.downsample.1``), written here without
torchvision, so the published ResNet-34 weights load by name. The feature volume is the stem output
(stride 2) and the outputs of the first ``num_layers - 1`` stages, each resized bilinearly to the stem
resolution and concatenated along channels.

Resizing: ``align_corners=True`` for the official networks (``feature_sampling="official"``: the first and
last cells of every level line up, as in sxyu/pixel-nerf), ``align_corners=False`` for the recon3d-trained
model (feature cell ``j`` of a map ``w`` wide covers image columns ``[j W / w, (j + 1) W / w)``). How
points sample the volume is in :mod:`.projection`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"``: BatchNorm2d (running statistics); ``"group"``: GroupNorm with <= 8 groups."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with a residual (1x1 strided projection if needed)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            make_norm(norm, out_ch))

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """A ResNet trunk (no pooling head): stem ``conv1``/``bn1``/``relu``/``maxpool``, stages ``layer1..``.

    ``ResNet(64, [64, 128, 256, 512], [3, 4, 6, 3], "batch")`` is ResNet-34 with torchvision's
    parameter names. Stage 1 keeps the resolution; each later stage halves it.
    """

    def __init__(self, stem_width: int, widths: list[int], blocks: list[int], norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = stem_width
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(in_ch, width, stride, norm)] + [BasicBlock(width, width, 1, norm) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_ch = width
        self.num_stages = len(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stage(self, i: int) -> nn.Sequential:
        return getattr(self, f"layer{i}")


class SpatialEncoder(nn.Module):
    """Images -> pixel-aligned feature volume.

    Args:
        stem_width, widths, blocks, norm: the :class:`ResNet` (held as ``self.model``).
        num_layers: feature levels concatenated (stem = level 1, ``layer{l-1}`` = level ``l``).
        first_pool: max-pool after the stem (the published ShapeNet-64 model skips it).
        align_corners: how deeper levels are resized bilinearly to the stem resolution (True: official).

    ``forward(images)``: (N, 3, H, W) RGB in [0, 1] (normalized here to [-1, 1] as the published
    networks expect) -> (N, latent_size, ceil(H / 2), ceil(W / 2)) features.
    """

    def __init__(self, stem_width: int, widths: list[int], blocks: list[int], norm: str,
                 num_layers: int, first_pool: bool, align_corners: bool = False) -> None:
        super().__init__()
        self.model = ResNet(stem_width, widths, blocks, norm)
        self.num_layers = num_layers
        self.first_pool = first_pool
        self.align_corners = bool(align_corners)
        self.latent_size = stem_width + sum(widths[: num_layers - 1])

    def forward(self, images: Tensor) -> Tensor:
        m = self.model
        x = m.relu(m.bn1(m.conv1(images * 2.0 - 1.0)))
        levels = [x]
        for level in range(2, self.num_layers + 1):
            if level == 2 and self.first_pool:
                x = m.maxpool(x)
            x = m.stage(level - 1)(x)
            levels.append(x)
        size = levels[0].shape[-2:]
        levels = [levels[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=self.align_corners)
                                for f in levels[1:]]
        return torch.cat(levels, dim=1)
