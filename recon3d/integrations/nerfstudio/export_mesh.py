"""Export a ``ns-train recon3d-sdf`` run's surface as a coloured triangle mesh.

Marching cubes of the SDF's zero level set inside the run's bounding sphere, vertex colours from
the colour network viewed along minus the normal (recon3d's
:func:`recon3d.methods.sdf.meshing.extract_sdf_mesh`, the code of ``recon3d fit --method sdf``),
written by recon3d's exporter (:func:`recon3d.mesh.export_mesh`: GLB / OBJ / PLY by the suffix,
Blender-correct axes)::

    python -m recon3d.integrations.nerfstudio.export_mesh --load-config outputs/x/recon3d-sdf/T/config.yml \\
        --output mesh.glb [--resolution 256] [--frame nerfstudio|data] [--max-faces 500000]

``--frame nerfstudio`` (default) keeps nerfstudio's dataparser frame (where ``ns-export`` files and
the viewer live); ``--frame data`` maps back to the world of the dataset's transforms.json (for a
recon3d-written one, the capture's units). ``--up-axis`` names that world's up direction (``z``
for nerfstudio's frame and for Blender / nerfstudio datasets).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from recon3d.io.errors import DataError

log = logging.getLogger(__name__)


def export_run(load_config: str | Path, output: str | Path, resolution: int = 256, frame: str = "nerfstudio",
               max_faces: int = 500_000, up_axis: str = "z", chunk: int = 1 << 16):
    """Load the run's latest checkpoint with nerfstudio's ``eval_setup``, mesh its SDF, write ``output``.

    Args:
        load_config: the run's ``config.yml``; output: .glb / .obj / .ply path.
        resolution: marching-cubes nodes per axis of the bounding sphere's cube.
        frame: ``nerfstudio`` or ``data`` (module docstring); max_faces: quadric decimation above
            this many faces (0: none); up_axis: the output world's up axis.
    Returns:
        (written paths, the :class:`recon3d.mesh.TriangleMesh` in nerfstudio's frame).
    Raises:
        DataError: not a recon3d-sdf run, no checkpoint, no surface, bad output suffix.
    """
    from recon3d.mesh import FORMATS, export_mesh
    from recon3d.methods.sdf.meshing import extract_sdf_mesh

    from .export_common import data_to_nerfstudio, load_run_config
    from .sdf_model import Recon3dSdfModelConfig

    load_config, output = Path(load_config), Path(output)
    if output.suffix.lower() not in FORMATS:  # checked before the (slow) checkpoint load
        raise DataError(output, f"unsupported mesh format {output.suffix!r}; use one of {', '.join(FORMATS)}")
    if frame not in ("nerfstudio", "data"):
        raise ValueError(f"frame must be 'nerfstudio' or 'data', got {frame!r}")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    config = load_run_config(load_config)
    if not isinstance(config.pipeline.model, Recon3dSdfModelConfig):
        raise DataError(load_config, f"not a recon3d-sdf run (method {config.method_name}, model "
                                     f"{type(config.pipeline.model).__name__}); use ns-export for nerfstudio's methods")
    ckpts = Path(config.get_checkpoint_dir())
    if not ckpts.is_dir() or not any(ckpts.glob("step-*.ckpt")):
        raise DataError(ckpts, "no checkpoint (step-*.ckpt) in the run's checkpoint folder")

    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(load_config, test_mode="inference")
    model = pipeline.model  # a Recon3dSdfModel: its config was checked above
    log.info("recon3d-sdf step %d: marching cubes at %d^3 in the sphere (center %s, radius %.4f)", step,
             resolution, [round(v, 3) for v in model.field.center.tolist()], model.field.radius)
    mesh = extract_sdf_mesh(model.field, resolution, max_faces, colors=True, chunk=chunk)
    if mesh.num_faces == 0:
        raise DataError(load_config, f"the SDF has no surface in its bounding sphere ({mesh.metadata.get('note')})")
    normalization = data_to_nerfstudio(config) if frame == "data" else None  # undone by export_mesh
    paths = export_mesh(mesh, output, normalization=normalization, up_axis=up_axis)
    return paths, mesh


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load-config", required=True, type=Path, help="the recon3d-sdf run's config.yml")
    ap.add_argument("--output", required=True, type=Path, help="output mesh: .glb, .obj or .ply")
    ap.add_argument("--resolution", type=int, default=256, help="marching-cubes nodes per axis (default 256)")
    ap.add_argument("--frame", choices=("nerfstudio", "data"), default="nerfstudio")
    ap.add_argument("--max-faces", type=int, default=500_000, help="decimate above this many faces (0: never)")
    ap.add_argument("--up-axis", choices=("x", "-x", "y", "-y", "z", "-z"), default="z",
                    help="the output world's up axis (z: nerfstudio's frame, Blender / nerfstudio datasets)")
    a = ap.parse_args(argv)
    if a.resolution < 8:
        ap.error(f"--resolution must be at least 8, got {a.resolution}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths, mesh = export_run(a.load_config, a.output, a.resolution, a.frame, a.max_faces, a.up_axis)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {paths[0]} ({mesh.num_vertices} vertices, {mesh.num_faces} faces, {a.frame} frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
