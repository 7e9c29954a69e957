"""Shared test fixtures: small deterministic cameras, paths to optional shared data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def orbit_c2w(n: int, radius: float = 4.0, elevation_deg: float = 30.0, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """(n, 4, 4) OpenCV camera-to-world matrices on a circle, looking at ``target`` (world z up)."""
    mats = []
    tgt = torch.tensor(target, dtype=torch.float32)
    el = math.radians(elevation_deg)
    for i in range(n):
        az = 2 * math.pi * i / n
        eye = tgt + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        fwd = tgt - eye
        fwd = fwd / fwd.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0]))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        m = torch.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
        mats.append(m)
    return torch.stack(mats)


@pytest.fixture
def orbit_cameras():
    from recon3d.core import Cameras

    return Cameras(orbit_c2w(6), fx=60.0, fy=62.0, cx=32.5, cy=23.0, width=64, height=48)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def tiny_blender(tmp_path_factory):
    """A 9-view 32 px synthetic Blender-format scene (random object), one per test module."""
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("tiny_blender") / "tiny"
    generate_scene(root, num_views=9, size=32, seed=1, object="random")
    return root


def fit_straight_and_resumed(scene, cfg, root: Path, interrupt_at: int = 10):
    """Two splat fits of ``scene`` with ``cfg``: one straight through (``root/a``), one stopped after
    ``interrupt_at`` steps, checkpointed and resumed by a fresh trainer (``root/b``). Returns the two
    trainers; a resume that restores everything makes them equal."""
    from recon3d.methods.splat import SplatTrainer
    from recon3d.runtime.checkpoint import checkpoint_path

    straight = SplatTrainer(scene, cfg, root / "a", device="cpu")
    straight.fit(progress=False)
    first = SplatTrainer(scene, cfg, root / "b", device="cpu")
    for _ in range(interrupt_at):
        first.train_step()
    first.save(checkpoint_path(root / "b" / "checkpoints", first.step))
    resumed = SplatTrainer(scene, cfg, root / "b", device="cpu")
    resumed.fit(resume=True, progress=False)
    return straight, resumed
