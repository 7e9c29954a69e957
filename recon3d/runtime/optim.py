"""Optimizer construction shared by the per-scene trainers."""

from __future__ import annotations

import torch


def adam(params, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with PyTorch's fused kernel when every parameter allows it (floating point,
    all on the CPU or all on one CUDA device): one pass over the parameters instead of a dozen
    elementwise ops per tensor, ~7x faster on CPU for the millions of Gaussian or hash-grid parameters
    of a fit. Same update rule and state keys as the default implementation (checkpoints and the
    densification's state edits are unchanged). ``params`` as for ``torch.optim.Adam``."""
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    devices = {p.device for p in tensors}
    fusable = (len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
               and all(p.is_floating_point() for p in tensors))
    if fusable and "fused" not in kwargs and "foreach" not in kwargs:
        kwargs["fused"] = True
    return torch.optim.Adam(params, **kwargs)
