"""Export a ``ns-train recon3d-splat`` run's Gaussians as a 3DGS ``.ply``.

``ns-export gaussian-splat`` accepts only splatfacto models; this is its counterpart for
recon3d-splat, writing the same file layout through :func:`recon3d.methods.splat.ply.save_splat_ply`::

    python -m recon3d.integrations.nerfstudio.export_splats --load-config outputs/x/recon3d-splat/T/config.yml \\
        --output splats.ply [--frame nerfstudio|data] [--min-opacity 0.0039] [--color-mode rgb]

``--frame nerfstudio`` (default) keeps nerfstudio's dataparser frame, where ``ns-export`` files and the
viewer live; ``--frame data`` maps back to the world of the dataset's transforms.json (for a
recon3d-written one, the capture's units: the frame of recon3d's own ``splats.ply`` and meshes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def export_run(load_config: Path, output: Path, frame: str = "nerfstudio", min_opacity: float = 0.0,
               color_mode: str = "sh_coeffs") -> tuple[Path, int]:
    """Load the run's latest checkpoint with nerfstudio's ``eval_setup`` and write its Gaussians.

    Returns (written path, number of Gaussians in the model).
    """
    from nerfstudio.utils.eval_utils import eval_setup

    from recon3d.methods.splat.ply import save_splat_ply

    from .export_common import data_to_nerfstudio
    from .splat_model import Recon3dSplatModel

    config, pipeline, _, _ = eval_setup(Path(load_config), test_mode="inference")
    model = pipeline.model
    if not isinstance(model, Recon3dSplatModel):
        raise SystemExit(f"{load_config}: not a recon3d-splat run (model {type(model).__name__}); "
                         "use ns-export gaussian-splat for splatfacto")
    transform = None
    if frame == "data":
        transform = np.linalg.inv(data_to_nerfstudio(config))
    elif frame != "nerfstudio":
        raise ValueError(f"frame must be 'nerfstudio' or 'data', got {frame!r}")
    path = save_splat_ply(model.gaussians, output, transform=transform, min_opacity=min_opacity,
                          color_mode=color_mode)
    return path, len(model.gaussians)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load-config", required=True, type=Path, help="the run's config.yml")
    ap.add_argument("--output", required=True, type=Path, help="output .ply")
    ap.add_argument("--frame", choices=("nerfstudio", "data"), default="nerfstudio")
    ap.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians below (ns-export: 1/255)")
    ap.add_argument("--color-mode", choices=("sh_coeffs", "rgb"), default="sh_coeffs")
    a = ap.parse_args(argv)
    path, n = export_run(a.load_config, a.output, a.frame, a.min_opacity, a.color_mode)
    print(f"wrote {path} ({n} Gaussians, {a.frame} frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
