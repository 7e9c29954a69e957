"""What a per-scene method is: the interface every trainer (splat, sugar, nerf, sdf) offers the
pipeline, the CLI and the web app, with the defaults most methods share.

A method object is built by its :class:`recon3d.methods.registry.MethodSpec` from
``(scene, config, run_dir, device)`` and then

* ``fit(resume, progress) -> summary`` trains (checkpoints in ``run_dir``; ``summary`` has ``steps``
  and ``train_seconds``), or ``load_latest()`` reopens the newest checkpoint of a finished run;
* ``render(cameras) -> RenderResult`` and ``evaluate(split) -> {psnr, ssim, ...}`` use the fitted model,
  ``render_cameras()`` gives the scene's cameras as fitted (pose-refined where the method refines them);
* ``model_facts()`` (numbers for metrics.json), ``write_model(out)`` (model files such as
  ``splats.ply``), ``extract_mesh()`` / ``write_mesh(out)`` (methods that mesh), ``export_splats(path)``
  (methods with Gaussians) and ``pose_refinement()`` (methods that refine poses) produce outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class PerSceneMethod:
    """Base of the per-scene trainers (see the module docstring). Subclasses set ``method_name``."""

    method_name = ""
    #: checkpoint folders of the run, in the order they are trained (relative to ``run_dir``)
    checkpoint_dirs: tuple[str, ...] = ("checkpoints",)
    #: the run this trainer writes (``run.json``'s id): stored in its checkpoints, checked when loading
    run_id: str | None = None

    # ------------------------------------------------------------------ reopening
    def load_latest(self) -> Path:
        """Load the newest checkpoint of this run; DataError when the run never saved one."""
        from recon3d.io.errors import DataError
        from recon3d.runtime.checkpoint import latest_checkpoint

        ckpt = latest_checkpoint(self.run_dir / self.checkpoint_dirs[0])
        if ckpt is None:
            raise DataError(self.run_dir / self.checkpoint_dirs[0],
                            "no checkpoint found; the run never saved (rerun `recon3d fit`)")
        from recon3d.runtime.checkpoint import check_run_id

        check_run_id(ckpt, self.run_id)
        try:
            self.load(ckpt)
        except (ValueError, KeyError, RuntimeError) as e:  # foreign, corrupt or mismatched checkpoint
            raise DataError(ckpt, f"cannot load this {self.method_name} checkpoint: "
                                  f"{str(e).splitlines()[0][:200]}") from e
        log.info("loaded %s (%s, step %d)", ckpt, self.method_name, self.step)
        return ckpt

    # ------------------------------------------------------------------ outputs (defaults)
    def render_cameras(self):
        """All the scene's cameras as fitted (normalized frame, on the method's device)."""
        return self.cameras

    def pose_refinement(self):
        """``(refined cameras, metrics)`` when this fit refined the camera poses, else None."""
        return None

    def model_facts(self) -> dict:
        """Numbers describing the fitted model for metrics.json / eval.json (e.g. its Gaussians)."""
        return {}

    def write_model(self, out: Path) -> dict:
        """Write the model's own files into run folder ``out``; metrics.json entries naming them."""
        return {}

    def write_mesh(self, out: Path) -> dict:
        """Extract the mesh and write ``mesh.glb/.obj/.ply`` (capture units, Blender axes) into ``out``;
        metrics.json entries (``mesh`` None with a ``mesh_note`` when there is none)."""
        return {"mesh": None, "mesh_note": f"no mesh for --method {self.method_name}; use --method sugar"}


def mesh_files_metrics(mesh, out: Path, scene, seconds_key: str = "seconds") -> dict:
    """Write a fitted mesh as ``out/mesh.glb/.obj/.ply`` (capture units, the scene's up axis) and
    return its metrics.json entries; an empty mesh gives ``mesh`` None and a note."""
    from recon3d.mesh import export_mesh_formats, scene_up_axis

    if not mesh.num_faces:
        return {"mesh": None, "mesh_seconds": mesh.metadata.get(seconds_key),
                "mesh_note": f"empty mesh: {mesh.metadata.get('note', 'no surface found')}"}
    files = export_mesh_formats(mesh, out, "mesh", normalization=scene.normalization, up_axis=scene_up_axis(scene))
    return {"mesh": str(files["glb"][0]), "mesh_files": [str(p) for paths in files.values() for p in paths],
            "mesh_faces": mesh.num_faces, "mesh_seconds": mesh.metadata.get(seconds_key)}
