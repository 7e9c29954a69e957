"""Device choice shared by every fit, prediction and training run: one resolver for ``--device``."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (or None) -> CUDA when available, else CPU; ``'cuda'``/``'cuda:N'`` without a GPU
    and unknown names are errors (ValueError with a one-line message)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return dev


def maybe_compile(module, mode: str, device: torch.device, probe) -> bool:
    """Turn on ``module.compile()`` when ``mode`` is ``'on'``, or ``'auto'`` and a probe call works.

    ``probe`` runs the module once on a tiny input; with ``'auto'`` any failure falls back to eager.
    """
    if mode == "off":
        return False
    module.compile(True)
    if mode == "on":
        return True
    try:
        probe()
        return True
    except Exception as e:  # no compiler, unsupported backend...
        log.warning("torch.compile unavailable here (%s: %s); running eagerly", e.__class__.__name__, str(e)[:200])
        module.compile(False)
        return False


def check_device(text: str) -> str:
    """``--device`` value check (for :func:`recon3d.runtime.options.option`): a known device that exists
    on this machine; ValueError with a one-line reason otherwise."""
    resolve_device(text)
    return text
