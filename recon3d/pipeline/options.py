"""The options of ``recon3d fit``: one dataclass, from which the command line is generated
(:mod:`recon3d.runtime.options`), saved in each run folder as ``run.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from recon3d.io import FORMATS
from recon3d.io.errors import DataError
from recon3d.methods.registry import METHOD_NAMES
from recon3d.runtime.config import PRESET_NAMES
from recon3d.runtime.device import check_device
from recon3d.runtime.options import at_most, between, non_negative, option

RUN_FILE = "run.json"
DATA_FORMATS = ("auto", *FORMATS)
MAX_STEPS_LIMIT = 10_000_000  # a larger --max-steps is a typo, not a plan


def check_background(text: str) -> str:
    """``--background`` value check: auto, none, white, black or three numbers in [0, 1]."""
    if text in ("auto", "none", "white", "black"):
        return text
    try:
        rgb = [float(x) for x in text.split(",")]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0.0 <= x <= 1.0 for x in rgb):
        raise ValueError("must be auto, none, white, black or R,G,B with values in [0, 1]")
    return text


@dataclass
class FitOptions:
    images: Path | None = option(None, "folder of photos (poses by pycolmap SfM)")
    data: Path | None = option(None, "posed dataset folder (Blender, nerfstudio, COLMAP or LLFF)")
    video: Path | None = option(None, "video file (mp4, mov, webm, ...): sharp, well-spread frames are extracted "
                                      "into OUT/video_frames/ and posed like --images")
    frames: int | None = option(None, "--video: frames to keep, the sharpest of each of N equal time windows "
                                      "(default 300)", check=between(3, 10_000))
    format: str = option("auto", "dataset format of --data (default: detect)", choices=DATA_FORMATS)
    downscale: float = option(1.0, "load images downscaled by this factor", check=at_most(64))
    method: str = option("splat", "per-scene method: splat (default), sugar (splats + mesh), nerf (hash-grid NeRF), "
                                  "sdf (NeuS-style surface)", metavar="{" + ",".join(METHOD_NAMES) + "}")
    preset: str = option("default", "quick, default or high (GPU-sized)", choices=PRESET_NAMES)
    max_steps: int | None = option(None, "training steps (default: the preset's)", check=at_most(MAX_STEPS_LIMIT))
    device: str = option("auto", "auto, cpu or cuda", check=check_device)
    backend: str | None = option(None, "rasterizer backend (splat, sugar)", choices=("auto", "cpp", "torch", "gsplat"))
    out: Path | None = option(None, "output folder (default outputs/<scene>-<method>)")
    resume: bool = option(False, "continue the run in --out from its latest checkpoint")
    overwrite: bool = option(False, "replace the run in --out (every file of the old run is removed first)")
    orbit_frames: int = option(48, "frames of the orbit GIF (0: none)", check=at_most(3600, non_negative))
    matcher: str = option("auto", "SfM feature matching for --images (auto: exhaustive up to 100 images)",
                          choices=("auto", "exhaustive", "sequential"))
    poses: str = option("colmap", "camera poses for --images: pycolmap SfM or the VGGT feed-forward model",
                        choices=("colmap", "vggt"))
    masks: Path | None = option(None, "--images: folder of object masks (same file names or stems as the photos, "
                                      "PNG/JPEG, thresholded at 128): SfM features and the fit only use the object")
    vggt_checkpoint: Path | None = option(None, "VGGT weights for --poses vggt (default: the shipped tiny model, "
                                                "rough poses; for real captures the published VGGT-1B model.pt)")
    vggt_refine: bool = option(False, "--poses vggt: refine the cameras by coloured ICP of the predicted depth maps")
    pose_opt: bool = option(False, "splat/sugar: refine the camera poses jointly with the model (for poses that "
                                   "are a little off); writes transforms_refined.json, test views are aligned "
                                   "before scoring")
    appearance: str | None = option(None, "splat/sugar: per-image exposure and white-balance compensation (an "
                                          "affine colour transform per training photo, used only in the loss): "
                                          "auto (default: on for --images/--video with more than 8 training "
                                          "views, off for --data), on, off",
                                    choices=("auto", "on", "off"))
    mesh_resolution: int | None = option(None, "--method nerf/sdf: marching-cubes nodes per axis (default: the "
                                               "preset's)", check=at_most(2048))
    background: str = option("auto", "background of opaque photos: auto (a plain backdrop colour found along the "
                                     "image borders, else none), none, white, black, or R,G,B in [0, 1]",
                             check=lambda v: check_background(v))
    config: Path | None = option(None, "method config JSON (a run's config.json, edited) instead of --preset")
    progress: bool = option(True, cli=False)  # console progress bars (progress.jsonl is always written)
    run_id: str | None = option(None, cli=False)  # set by the fit: the identity its checkpoints carry


PATH_FIELDS = tuple(f.name for f in fields(FitOptions) if "Path" in str(f.type))


def default_out_dir(opts: FitOptions) -> Path:
    if opts.video is not None and opts.data is None and opts.images is None:  # clip.mp4 -> "clip"
        return Path("outputs") / f"{Path(opts.video).stem}-{opts.method}"
    src = Path(opts.data if opts.data is not None else opts.images).resolve()
    if src.name.lower() in ("images", "photos", "input", "imgs"):  # scene/images -> "scene"
        src = src.parent
    return Path("outputs") / f"{src.name}-{opts.method}"


def save_run_options(opts: FitOptions, out: Path) -> None:
    from recon3d.io.atomic import atomic_write_json

    d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "progress"}
    atomic_write_json(out / RUN_FILE, d)


def load_run_options(run_dir: Path) -> FitOptions:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DataError(run_dir, f"not a recon3d run folder (no {RUN_FILE}); make one with `recon3d fit`")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    names = {f.name for f in fields(FitOptions)}
    opts = FitOptions(**{k: v for k, v in d.items() if k in names})
    for k in PATH_FIELDS:
        if getattr(opts, k) is not None:
            setattr(opts, k, Path(getattr(opts, k)))
    return opts
