"""Shared by recon3d's exporters of ``ns-train`` runs (:mod:`.export_splats`, :mod:`.export_mesh`):
reading a run's ``config.yml`` and the map between nerfstudio's frame and the dataset's world."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.io.errors import DataError


def load_run_config(load_config: str | Path):
    """The nerfstudio ``TrainerConfig`` saved as a run's ``config.yml``; DataError when it is
    missing or not a nerfstudio config."""
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    path = Path(load_config)
    if not path.is_file():
        raise DataError(path, "no such run config (expected an ns-train run's config.yml)")
    try:
        config = yaml.load(path.read_text(), Loader=yaml.Loader)
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError, ImportError, TypeError) as e:
        raise DataError(path, f"not a readable ns-train config ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(config, TrainerConfig):
        raise DataError(path, f"not an ns-train config (holds {type(config).__name__})")
    return config


def data_to_nerfstudio(config) -> np.ndarray:
    """(4, 4) float64 similarity from the world of the run's dataset (its transforms.json) to the
    run's nerfstudio frame, from the run's ``dataparser_transforms.json`` and the dataset's
    ``applied_transform`` (:func:`recon3d.io.nerfstudio.nerfstudio_frame_transform`). Invert it to
    write a nerfstudio-frame result in the data's world (``--frame data``)."""
    from recon3d.io.nerfstudio import nerfstudio_frame_transform

    dp = Path(config.get_base_dir()) / "dataparser_transforms.json"
    dm = config.pipeline.datamanager
    data = next((Path(d) for d in (dm.data, config.data, getattr(dm.dataparser, "data", None)) if d), None)
    return nerfstudio_frame_transform(dp, data if data is not None and data.exists() else None)
