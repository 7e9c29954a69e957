"""Image to 3D: one photo in; a mesh (GLB, OBJ zip, PLY), novel views and a turntable out (no gradio here).

Each request gets its own folder ``workdir/jobs/<job id>/`` holding ``inputs/`` (the checked,
sanitized copy of the upload) and ``out/`` (what :func:`recon3d.feedforward.predict.image_to_3d`
writes), made by the bounded store :func:`apps.jobs.image_jobs`: the folder is held (kept from the
bound) until the caller releases or discards it. The model list holds the models whose shipped
checkpoint exists, then the published checkpoints found in ``settings.checkpoint_dirs`` (``recon3d demo
--checkpoints DIR``; e.g. OpenLRM folders), each under its own label.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from recon3d.io.atomic import atomic_path
from recon3d.io.errors import DataError
from recon3d.io.images import IMAGE_EXTENSIONS

from .jobs import image_jobs
from .safety import check_image, sanitize_filename
from .settings import AppSettings

log = logging.getLogger(__name__)

#: feed-forward models that turn one photo into a mesh, in the order the page offers them
IMAGE_MODELS = ("lrm", "pixelnerf")
#: views of the bundled sample scene offered as examples when data/examples holds none
_SAMPLE_VIEWS = ("r_0.png", "r_13.png", "r_30.png")


def available_models(settings: Optional[AppSettings] = None) -> list[str]:
    """Image-to-3D models with a shipped checkpoint (``data/checkpoints/<name>.pt``), preferred first, then
    (with ``settings``) the labels of the published checkpoints in its ``checkpoint_dirs``."""
    from recon3d.feedforward.registry import MODELS, shipped_checkpoint

    shipped = [m for m in IMAGE_MODELS if m in MODELS and shipped_checkpoint(m).is_file()]
    return shipped + (list(published_models(settings)) if settings is not None else [])


def published_models(settings: AppSettings) -> dict[str, tuple[str, Path]]:
    """label -> (registry model name, checkpoint folder) for every published image-to-3D checkpoint found
    in ``settings.checkpoint_dirs`` (labels like ``openlrm-mix-base-1.1 (published lrm)``, made unique)."""
    from recon3d.feedforward.registry import published_checkpoints

    found: dict[str, tuple[str, Path]] = {}
    for root in settings.checkpoint_dirs:
        for name, label, path in published_checkpoints(root):
            if name not in IMAGE_MODELS or any(p == path for _, p in found.values()):
                continue
            text, n = f"{label} (published {name})", 2
            while text in found:
                text, n = f"{label} (published {name}, {n})", n + 1
            found[text] = (name, path)
    return found


def list_examples(settings: AppSettings, limit: int = 8) -> list[Path]:
    """Bundled example photos: images in ``settings.example_dirs``, else a few sample-scene views."""
    found: list[Path] = []
    for d in map(Path, settings.example_dirs):
        if d.is_dir():
            found += sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        scene = Path(settings.example_scene)
        found = [scene / n for n in _SAMPLE_VIEWS if (scene / n).is_file()]
    return found[:limit]


@dataclass
class ImageTo3DResult:
    """Files of one finished request (all inside its job folder) and the text shown in the page."""

    job_dir: Path
    model_input: Path  # the prepared model input (object cut out, centred, on white)
    glb: Optional[Path]  # None when the prediction held no surface
    obj_zip: Optional[Path]  # mesh.obj + mesh.mtl (+ texture) zipped
    ply: Optional[Path]
    turntable: Optional[Path]  # orbit GIF
    views: list[Path] = field(default_factory=list)  # novel-view PNGs
    notices: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def downloads(self) -> list[Path]:
        return [p for p in (self.glb, self.obj_zip, self.ply) if p is not None]


def zip_files(files: Sequence[Path], out: Path) -> Path:
    """Write ``files`` (flat, by base name) into the zip ``out`` atomically."""
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=Path(f).name)
    return out


def predict_options(settings: AppSettings, texture: bool = False) -> dict:
    """Keyword options for ``image_to_3d`` from the app settings (fast mode: coarse mesh, few frames);
    ``texture``: also bake a ``settings.texture_size`` UV texture into the GLB/OBJ."""
    opts = {"mesh_resolution": int(settings.mesh_resolution), "orbit_frames": int(settings.orbit_frames),
            "num_views": int(settings.num_views), "texture_size": int(settings.texture_size) if texture else 0}
    if settings.density_threshold is not None:
        opts["density_threshold"] = float(settings.density_threshold)
    return opts


def run_image_to_3d(settings: AppSettings, upload: Optional[str | os.PathLike], model: str,
                    user_name: Optional[str] = None, texture: bool = False) -> ImageTo3DResult:
    """Check the upload, run the model, package the downloads. DataError for any input problem.

    ``upload``: server path of the uploaded (or example) file; ``user_name``: the name the user gave it;
    ``texture``: bake a UV texture into the mesh (GLB/OBJ) instead of vertex colours only.
    The result's job folder stays held in :func:`apps.jobs.image_jobs` until the caller discards it.
    """
    if upload is None or str(upload) == "":
        raise DataError("image", "upload a photo or pick one of the examples first")
    models = available_models(settings)
    if not models:
        raise DataError("data/checkpoints", "no image-to-3D checkpoint is installed (lrm.pt or pixelnerf.pt, "
                                            "or a published one in `recon3d demo --checkpoints DIR`)")
    if model not in models:
        raise DataError("model", f"unknown model {model!r}; choose one of {', '.join(models)}")
    name, checkpoint = published_models(settings).get(model, (model, None))
    from recon3d.feedforward.predict import image_to_3d

    shown_name = sanitize_filename(user_name or Path(upload).name, "image")
    jobs = image_jobs(settings)
    job = jobs.create(os.path.splitext(shown_name)[0])
    try:
        checked = check_image(upload, job / "inputs", original_name=shown_name, max_side=settings.max_side,
                              max_pixels=settings.max_pixels)
        t0 = time.perf_counter()
        try:
            res = image_to_3d(name, [checked.path], job / "out", checkpoint=checkpoint, device=settings.device,
                              **predict_options(settings, texture))
        except DataError as e:  # e.g. "no object found": name the user's file, never a server path
            raise DataError(shown_name if e.path.name == checked.path.name else e.path.name, e.problem) from None
    except BaseException:
        jobs.discard(job)  # a failed request leaves nothing behind
        raise
    seconds = time.perf_counter() - t0
    notices = ([checked.notice] if checked.notice else []) + [n.replace(checked.path.name, shown_name)
                                                              for n in res.notes]
    meshes = {k: [Path(p) for p in v] for k, v in res.meshes.items() if v}
    obj_zip = None
    if meshes.get("obj"):
        obj_zip = zip_files(meshes["obj"], job / "out" / f"{os.path.splitext(shown_name)[0]}_obj.zip")
    if res.mesh is not None:
        what = f"a {res.mesh.num_faces}-face mesh"
    else:
        what = "novel views but no mesh (the predicted density has no surface)"
    summary = f"**{model}** made {what} from `{shown_name}` in {seconds:.1f} s."
    return ImageTo3DResult(job_dir=job, model_input=res.inputs[0] if res.inputs else checked.path,
                           glb=(meshes.get("glb") or [None])[0], obj_zip=obj_zip, ply=(meshes.get("ply") or [None])[0],
                           turntable=res.orbit, views=list(res.views), notices=notices, summary=summary)
