"""Atomic, resumable checkpoints shared by every method's training loop."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon3d.io.atomic import atomic_path

_CKPT_RE = re.compile(r"step_(\d+)\.pt$")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def rng_state() -> dict:
    """Snapshot of every global RNG a training loop may touch (python, numpy, torch CPU/CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:07d}.pt"


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``ckpt_dir``, or None."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.glob("step_*.pt") if (m := _CKPT_RE.search(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int, protect: str | os.PathLike | None = None) -> None:
    """Delete all but the ``keep`` most recent checkpoints; ``protect`` (the one just written) is never deleted."""
    d = Path(ckpt_dir)
    found = sorted((int(m.group(1)), p) for p in d.glob("step_*.pt") if (m := _CKPT_RE.search(p.name)))
    keep_paths = {Path(protect)} if protect is not None else set()
    for _, p in found[:-keep] if keep > 0 else []:
        if p not in keep_paths:
            p.unlink(missing_ok=True)


def checkpoint_run_id(path: str | os.PathLike) -> str | None:
    """The run id a checkpoint carries (None for checkpoints written without one), read lazily (mmap)."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception:
        state = load_checkpoint(path)
    return state.get("run_id") if isinstance(state, dict) else None


def check_run_id(path: str | os.PathLike, run_id: str | None) -> None:
    """DataError when checkpoint ``path`` belongs to another run than ``run_id`` (None: no check)."""
    if run_id is None:
        return
    found = checkpoint_run_id(path)
    if found is not None and found != run_id:
        from recon3d.io.errors import DataError

        raise DataError(path, f"belongs to another run (id {found}, this run is {run_id}); refit with --overwrite")


def save_run_checkpoint(trainer, path: str | os.PathLike) -> Path:
    """``trainer.state_dict()`` plus the trainer's ``run_id`` (when set), written atomically."""
    state = trainer.state_dict()
    run_id = getattr(trainer, "run_id", None)
    if run_id is not None:
        state["run_id"] = run_id
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"{path}: not a readable recon3d checkpoint ({e.__class__.__name__}: {e})") from e
