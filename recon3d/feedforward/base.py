"""The interface shared by every feed-forward model, and the batch format they all consume.

Batch format
------------
Training and validation batches come from :class:`recon3d.feedforward.data.MultiViewDataset` with
torch's default collate. ``B`` objects, ``V`` views of each (sampled per item), images ``H x W``:

- ``images``: (B, V, 3, H, W) float32 RGB in [0, 1], composited over a white background.
- ``masks``: (B, V, 1, H, W) float32 object coverage in [0, 1] (anti-aliased edges).
- ``depths``: (B, V, 1, H, W) float32 camera z-depth, world units; 0 on background pixels.
- ``K``: (B, V, 3, 3) float32 intrinsics, pixels, pixel centers at +0.5.
- ``c2w``: (B, V, 4, 4) float32 camera-to-world, OpenCV camera axes (x right, y down, z forward).
  World frame: +Z up, objects centered at the origin inside the unit-ish sphere (radius <= ~1),
  cameras on a sphere around it.
- ``object_index``: (B,) int64 index of the object in the data set.

Which of the V views are inputs and which are supervision is the model's choice (typically the
first ``num_source_views`` are inputs and the rest are targets).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]


class FeedForwardModel(nn.Module, ABC):
    """An ``nn.Module`` trained by :mod:`recon3d.feedforward.train` and run by ``recon3d predict``.

    Subclasses set ``name`` (the registry name, e.g. ``"pixelnerf"``) and ``config_cls`` (a dataclass
    with :class:`recon3d.runtime.config.ConfigIO`), and build themselves from ``config``.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type] = type(None)

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @abstractmethod
    def training_step(self, batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        """Loss (scalar tensor with grad) on one batch, and named floats to log."""

    @abstractmethod
    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Validation metrics (e.g. ``psnr``) on one batch; called under ``torch.no_grad()``."""

    def validation_images(self, batch: Batch) -> dict[str, Tensor]:
        """Optional named (H, W, 3) float images in [0, 1] to save as validation renders."""
        return {}

    # ---- checkpoints --------------------------------------------------------------------
    def checkpoint_payload(self) -> dict:
        """What a model checkpoint holds: enough to rebuild the model without its training state."""
        cfg = self.config.to_dict() if hasattr(self.config, "to_dict") else asdict(self.config)
        return {"format": "recon3d-feedforward", "model": self.name, "config": cfg, "state_dict": self.state_dict()}

    @classmethod
    def from_payload(cls, payload: dict, strict: bool = True) -> "FeedForwardModel":
        config = cls.config_cls.from_dict(payload["config"]) if is_dataclass(cls.config_cls) else payload["config"]
        model = cls(config)
        model.load_state_dict(payload["state_dict"], strict=strict)
        return model


class ConditionedRadianceField(FeedForwardModel):
    """A model that turns source images into a latent scene code, queried like a NeRF.

    pixelNeRF (latent = image feature volumes + cameras) and LRM (latent = a triplane) both are one;
    :mod:`recon3d.feedforward.rendering` renders views and extracts meshes from any of them through
    the shared core sampler and volume renderer.
    """

    #: half-size of the world-space cube [-bound, bound]^3 that holds the object (world units).
    scene_bound: float = 1.0

    @abstractmethod
    def encode(self, images: Tensor, K: Tensor, c2w: Tensor) -> Any:
        """Latent code from source views: images (B, S, 3, H, W) in [0, 1], K (B, S, 3, 3), c2w (B, S, 4, 4)."""

    @abstractmethod
    def query(self, latent: Any, points: Tensor, directions: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Density (B, N) in 1/world units and RGB (B, N, 3) in [0, 1] at world points (B, N, 3).

        ``directions``: (B, N, 3) unit viewing directions, or None where the caller wants
        view-independent color (meshing).
        """


def load_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a recon3d feed-forward checkpoint file; raises DataError naming the file on bad input."""
    from recon3d.io.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt files
        raise DataError(path, f"not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict):
        raise DataError(path, "checkpoint does not hold a dict")
    return payload
