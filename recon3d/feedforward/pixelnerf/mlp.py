"""pixelNeRF's conditioned MLP (ResNet-FC with per-view feature injection and view pooling) and its
positional encoding, with the parameter names of the published networks.

ResNet-FC (from DVR / pixelNeRF): ``h = lin_in(point_input)``; for block ``i`` in ``0..n-1``: before
block ``combine_layer`` the per-view hidden states are averaged over the source views; before each
earlier block the view's image feature is added, ``h += lin_z[i](feature)``; then
``h = blocks[i](h)`` with ``block(h) = h + fc_1(relu(fc_0(relu(h))))``. Output ``lin_out(relu(h))``:
4 values, RGB logits then the density pre-activation.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """``[x, sin(f_0 x), cos(f_0 x), sin(f_1 x), cos(f_1 x), ...]`` with ``f_k = freq_factor * 2^k``.

    The layout is frequency-major, sine before cosine, each a block of ``d_in`` values (the order the
    published MLP's ``lin_in`` weights expect), so this is kept here rather than using the core
    :class:`recon3d.core.encodings.FrequencyEncoding` (which groups all sines before all cosines).
    The buffers ``_freqs``/``_phases`` are persistent: they are part of the published state dicts.

    Input ``(..., d_in)``; output ``(..., d_in * (1 + 2 num_freqs))``.
    """

    def __init__(self, num_freqs: int = 6, d_in: int = 3, freq_factor: float = 1.5) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.d_in = d_in
        freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("_freqs", torch.repeat_interleave(freqs, 2).view(1, -1, 1))
        phases = torch.zeros(2 * num_freqs)
        phases[1::2] = math.pi / 2  # sin(x + pi/2) = cos(x)
        self.register_buffer("_phases", phases.view(1, -1, 1))

    @property
    def d_out(self) -> int:
        return self.d_in * (1 + 2 * self.num_freqs)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        flat = x.reshape(-1, 1, self.d_in)
        enc = torch.sin(flat * self._freqs + self._phases)  # (M, 2F, d_in)
        return torch.cat([x, enc.reshape(*shape, -1)], dim=-1)


class ResnetBlockFC(nn.Module):
    """``h + fc_1(relu(fc_0(relu(h))))`` at constant width; ``fc_1`` starts at zero (identity block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc_0 = nn.Linear(width, width)
        self.fc_1 = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.fc_0.weight, a=0, mode="fan_in")
        nn.init.zeros_(self.fc_0.bias)
        nn.init.zeros_(self.fc_1.weight)
        nn.init.zeros_(self.fc_1.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc_1(torch.relu(self.fc_0(torch.relu(h))))


def pool_views(h: Tensor, valid: Optional[Tensor]) -> Tensor:
    """Average per-view states over the source views (dim 1).

    Args:
        h: (B, S, N, C) per-view hidden states.
        valid: (B, S, N) bool, where the point projects inside that view (None: plain mean). Points
            seen by no view fall back to the plain mean.
    Returns:
        (B, N, C); invariant to permutations of the S views.
    """
    if valid is None:
        return h.mean(dim=1)
    w = valid.to(h.dtype)[..., None]
    count = w.sum(dim=1)
    masked = (h * w).sum(dim=1) / count.clamp_min(1.0)
    return torch.where(count > 0, masked, h.mean(dim=1))


class ResnetFC(nn.Module):
    """The conditioned MLP (names ``lin_in``, ``lin_z.{i}``, ``blocks.{i}.fc_0/fc_1``, ``lin_out``).

    Args:
        d_in: point input size (encoded position + direction); d_latent: image feature size.
        d_hidden, n_blocks, combine_layer: width, residual blocks, pooling position.
        d_out: outputs (4: RGB logits, density pre-activation).
    """

    def __init__(self, d_in: int, d_latent: int, d_hidden: int, n_blocks: int, combine_layer: int, d_out: int = 4):
        super().__init__()
        self.lin_in = nn.Linear(d_in, d_hidden)
        self.lin_z = nn.ModuleList([nn.Linear(d_latent, d_hidden) for _ in range(min(combine_layer, n_blocks))])
        self.blocks = nn.ModuleList([ResnetBlockFC(d_hidden) for _ in range(n_blocks)])
        self.lin_out = nn.Linear(d_hidden, d_out)
        self.combine_layer = combine_layer
        self.d_hidden = d_hidden
        for lin in [self.lin_in, self.lin_out, *self.lin_z]:
            nn.init.kaiming_normal_(lin.weight, a=0, mode="fan_in")
            nn.init.zeros_(lin.bias)

    def project_latent(self, features: Tensor) -> Tensor:
        """Apply the ``lin_z`` weights (no bias) to whole feature maps, before sampling.

        ``lin_z[i]`` is linear and bilinear sampling is a convex combination, so sampling these
        maps and adding the bias equals ``lin_z[i]`` of the sampled feature; doing it on the
        (small) feature maps instead of on every query point saves most of the MLP's input cost.

        Args:
            features: (..., d_latent, h, w) feature volumes.
        Returns:
            (..., n_lin_z * d_hidden, h, w): block-major projected maps (zero channels if no lin_z).
        """
        if len(self.lin_z) == 0:
            return features.new_zeros(*features.shape[:-3], 0, *features.shape[-2:])
        weight = torch.cat([lin.weight for lin in self.lin_z], dim=0)  # (n * d_hidden, d_latent)
        return torch.einsum("oc,...chw->...ohw", weight, features)

    def forward(self, point_input: Tensor, z_sampled: Tensor, pool_valid: Optional[Tensor] = None) -> Tensor:
        """Run the MLP on per-view inputs and pool views.

        Args:
            point_input: (B, S, N, d_in) per-view point/direction inputs.
            z_sampled: (B, S, N, n_lin_z * d_hidden) samples of :meth:`project_latent` maps (the
                ``lin_z`` terms without bias), zero where the point is not visible (so the term
                there is ``lin_z`` of a zero feature: the bias).
            pool_valid: (B, S, N) bool for masked pooling, or None for the plain mean.
        Returns:
            (B, N, d_out).
        """
        d = self.d_hidden
        return self._run(point_input, lambda i: z_sampled[..., i * d:(i + 1) * d] + self.lin_z[i].bias, pool_valid)

    def forward_features(self, point_input: Tensor, latent: Tensor, pool_valid: Optional[Tensor] = None) -> Tensor:
        """Reference path: the same MLP fed sampled image features (B, S, N, d_latent) directly."""
        return self._run(point_input, lambda i: self.lin_z[i](latent), pool_valid)

    def _run(self, point_input: Tensor, z_term, pool_valid: Optional[Tensor]) -> Tensor:
        """The ResNet-FC pass: ``z_term(i)`` is block i's (B, S, N, d_hidden) conditioning, added before
        the views are pooled (after block ``combine_layer - 1``)."""
        h = self.lin_in(point_input)
        pooled = False
        for i, block in enumerate(self.blocks):
            if i == self.combine_layer:
                h, pooled = pool_views(h, pool_valid), True
            if i < self.combine_layer:
                h = h + z_term(i)
            h = block(h)
        if not pooled:
            h = pool_views(h, pool_valid)
        return self.lin_out(torch.relu(h))
