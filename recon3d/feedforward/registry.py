"""Feed-forward model names, their classes, their shipped checkpoints, and checkpoint loading.

``recon3d train NAME`` and ``recon3d predict --model NAME`` resolve ``NAME`` here. A model class is
imported only when asked for, so the CLI stays fast and one model's import error does not break
the others.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Optional

import torch

from recon3d.io.errors import DataError

from .base import FeedForwardModel, load_payload

#: registry name -> "module:Class" of a :class:`FeedForwardModel` subclass.
MODELS: dict[str, str] = {
    "pixelnerf": "recon3d.feedforward.pixelnerf.model:PixelNeRF",
    "lrm": "recon3d.feedforward.lrm.model:LRM",
    "vggt": "recon3d.feedforward.vggt.model:VGGT",
}

#: registry name -> "module:function" loading a published checkpoint *folder* as users download it (or the
#: ``.safetensors`` file in it): ``--model lrm --checkpoint DIR`` is a released OpenLRM v1.1 model.
FOLDER_LOADERS: dict[str, str] = {
    "lrm": "recon3d.feedforward.openlrm.loader:load_checkpoint",
}


def folder_loader(name: str, path: Path):
    """The published-folder loader of model ``name`` when it has one and ``path`` is a folder or a
    ``.safetensors`` file; None otherwise (the file goes through :func:`load_payload`)."""
    if name not in FOLDER_LOADERS or not (path.is_dir() or path.suffix == ".safetensors"):
        return None
    module, attr = FOLDER_LOADERS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def published_checkpoints(root: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """(model name, short label, checkpoint folder) of every published checkpoint folder at or under
    ``root`` (today: OpenLRM folders for model ``lrm``, labelled by folder or Hugging Face repository
    name); [] when ``root`` is not a folder."""
    from recon3d.feedforward.openlrm.loader import checkpoint_label, find_checkpoints

    return [("lrm", checkpoint_label(p), p) for p in find_checkpoints(root)]


def data_dir() -> Path:
    """The project's bundled data folder (``$RECON3D_DATA`` overrides)."""
    env = os.environ.get("RECON3D_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def shipped_checkpoint(name: str) -> Path:
    """Path of the checkpoint recon3d trained and ships for model ``name`` (may not exist)."""
    return data_dir() / "checkpoints" / f"{name}.pt"


def model_class(name: str) -> type[FeedForwardModel]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    module, attr = MODELS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def load_model(
    name: str,
    checkpoint: Optional[str | os.PathLike] = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
    variant: Optional[str] = None,
) -> FeedForwardModel:
    """Build model ``name`` with weights from ``checkpoint`` (default: the shipped one), in eval mode.

    A folder or ``.safetensors`` file goes to the model's :data:`FOLDER_LOADERS` entry (a published
    OpenLRM download for ``lrm``). A recon3d checkpoint (``format == "recon3d-feedforward"``, written by the trainer) rebuilds the
    model from its stored config. Any other file is handed to the class's
    ``from_external_checkpoint(path, payload)`` (published pixelNeRF / VGGT weights), if it has one;
    ``variant`` (``recon3d predict --variant``) names the released variant of such a file and is handed
    to the loader as ``variant=`` (pixelNeRF: srn_car, srn_chair, sn64, sn64_unseen, dtu).
    Raises DataError naming the file when it cannot be used.
    """
    path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint(name)
    if checkpoint is None and not path.is_file():
        raise DataError(path, f"no shipped checkpoint for model {name!r}; train one with `recon3d train {name}`")
    loader = folder_loader(name, path)
    if loader is not None:  # a published folder (OpenLRM: model.safetensors + config.json)
        if variant is not None:
            raise DataError(path, f"a published {name} folder has no variants (drop --variant)")
        return loader(path).to(device).eval()
    model = model_from_payload(name, path, load_payload(path), strict=strict, variant=variant)
    return model.to(device).eval()


def model_from_payload(name: str, path: Path, payload: dict, strict: bool = True,
                       variant: Optional[str] = None) -> FeedForwardModel:
    """Model ``name`` from a checkpoint file's already-read ``payload`` (see :func:`load_model`;
    ``path`` names the file in errors and is handed to external loaders); not moved to a device."""
    cls = model_class(name)
    if payload.get("format") == "recon3d-feedforward":
        if variant is not None:
            raise DataError(path, f"a recon3d {name} checkpoint has no released variants (drop --variant)")
        if payload.get("model") != name:
            raise DataError(path, f"checkpoint is for model {payload.get('model')!r}, not {name!r}")
        try:
            return cls.from_payload(payload, strict=strict)
        except (RuntimeError, ValueError, TypeError, KeyError) as e:
            raise DataError(path, f"checkpoint does not fit model {name!r}: {str(e).splitlines()[0]}") from e
    loader = getattr(cls, "from_external_checkpoint", None)
    if loader is None:
        raise DataError(path, f"not a recon3d {name} checkpoint and {name} reads no other format")
    if variant is None:
        return loader(path, payload)
    import inspect

    if "variant" not in inspect.signature(loader).parameters:
        raise DataError(path, f"model {name!r} has no released variants (drop --variant)")
    return loader(path, payload, variant=variant)
