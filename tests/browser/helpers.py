"""Helpers shared by the app's unit and browser tests."""

from __future__ import annotations

from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "data" / "sample_scene" / "images" / "r_0.png"


def untrained_lrm_data(data_dir: Path, example: Path = EXAMPLE, seed: int = 0) -> float:
    """Write ``data_dir/checkpoints/lrm.pt``: a randomly initialised (seeded) tiny LRM, for exercising the
    app's plumbing where no trained checkpoint is installed. Returns the median density of its field
    around ``example`` (1/world units): an iso-level sure to give a surface, for the mesh extraction."""
    from recon3d.feedforward.lrm.model import LRM
    from recon3d.feedforward.predict import canonical_source_cameras, load_input_images, model_input_size
    from recon3d.runtime.checkpoint import atomic_torch_save

    torch.manual_seed(seed)
    model = LRM().eval()
    atomic_torch_save(model.checkpoint_payload(), Path(data_dir) / "checkpoints" / "lrm.pt")
    size = model_input_size(model)
    images, _, _ = load_input_images([example], size)
    K, c2w = canonical_source_cameras(1, size)
    with torch.no_grad():
        latent = model.encode(images[None], K[None], c2w[None])
        pts = (torch.rand(1, 4096, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1) * model.scene_bound
        density, _ = model.query(latent, pts, None)
    return float(density.median())
