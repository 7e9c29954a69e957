"""Viewer: finished ``recon3d fit`` run folders under the configured roots (no gradio here).

The page never takes a path: it offers the run folders found under ``AppSettings.runs_roots`` as
labels (``app/<job>/run``, ``outputs/sample_scene``), and :func:`resolve_run` maps a label back to
a folder and checks it still resolves inside its root (a symlink pointing elsewhere is refused).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from recon3d.io.errors import DataError
from recon3d.methods.registry import METHOD_NAMES, get_method

from .safety import confine

#: a folder is a finished run when it holds this file (``recon3d fit`` writes it last)
RUN_MARKER = "metrics.json"
_MESH_ORDER = ("mesh.glb", "mesh.obj", "mesh.ply")
_MESH_FILES = ("mesh.glb", "mesh.obj", "mesh.mtl", "mesh.png", "mesh.ply")  # offered as downloads
_MAX_RENDERS = 24


def root_labels(roots: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """A short unique label per root: ``app`` for the app's own runs (the first root), else the folder name."""
    labels: dict[str, Path] = {}
    for i, r in enumerate(roots):
        base = "app" if i == 0 else Path(r).name or "root"
        label, k = base, 2
        while label in labels:
            label, k = f"{base}{k}", k + 1
        labels[label] = Path(r)
    return labels


def list_runs(roots: Sequence[str | os.PathLike], max_depth: int = 3) -> list[str]:
    """Labels ``<root label>/<relative path>`` of finished run folders under ``roots``, newest first.

    Searches at most ``max_depth`` levels below each root, does not follow symlinked folders, and
    skips hidden folders and run internals (``checkpoints``, ``sfm``, ``renders``...).
    """
    found: list[tuple[float, str]] = []
    skip = {"checkpoints", "sfm", "renders", "sugar", "gradio", "jobs", "photos", "__pycache__"}
    for label, root in root_labels(roots).items():
        if not root.is_dir():
            continue
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            names = {e.name for e in entries}
            if RUN_MARKER in names and folder != root:
                rel = folder.relative_to(root).as_posix()
                found.append(((folder / RUN_MARKER).stat().st_mtime, f"{label}/{rel}"))
                continue
            if depth >= max_depth:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".") and e.name not in skip:
                    stack.append((Path(e.path), depth + 1))
    return [lab for _, lab in sorted(found, key=lambda t: -t[0])]


def resolve_run(label: str, roots: Sequence[str | os.PathLike]) -> Path:
    """The run folder of a label from :func:`list_runs`; DataError unless it is a finished run inside its root."""
    if not label or "/" not in label:
        raise DataError("run", "choose a run folder from the list")
    root_label, rel = label.split("/", 1)
    labels = root_labels(roots)
    if root_label not in labels or rel.startswith("/") or ".." in Path(rel).parts:
        raise DataError("run", "is not one of the listed run folders")
    root = labels[root_label]
    path = confine(root / rel, [root], what="run")
    if not (path / RUN_MARKER).is_file():
        raise DataError(label, f"is not a finished run folder (no {RUN_MARKER})")
    return path


@dataclass
class RunView:
    """The files of a run folder the viewer shows (paths inside the run folder; None when absent)."""

    folder: Path
    metrics: dict
    mesh: Optional[Path] = None  # the mesh to show in the 3D view (GLB preferred)
    splats: Optional[Path] = None  # 3DGS .ply
    orbit: Optional[Path] = None  # orbit.gif
    video: Optional[Path] = None  # orbit.mp4 (the turntable as H.264), else the newest renders/*.mp4
    renders: list[Path] = field(default_factory=list)  # renders/test/*.png (at most 24)
    downloads: list[Path] = field(default_factory=list)

    @property
    def method(self) -> Optional[str]:
        """The run's ``--method`` (metrics.json), when it is a registered one."""
        m = self.metrics.get("method")
        return m if isinstance(m, str) and m in METHOD_NAMES else None

    @property
    def model_3d(self) -> Optional[Path]:
        """What a single 3D view shows: the mesh when there is one, else the Gaussian splats."""
        return self.mesh or self.splats


def _may_have(method: Optional[str], capability: str) -> bool:
    """Whether a run of ``method`` can hold ``capability``'s files (``mesh``, ``splats``), asking the
    method registry; runs of an unknown method (older or foreign runs) are searched for everything."""
    return method is None or get_method(method).supports(capability)


def load_run_view(run_dir: Path) -> RunView:
    """Collect what to show from a finished run folder (files must lie inside it, symlinks refused).

    Which files are looked for follows the run's method in the registry: a mesh for methods with
    ``mesh``, splats for methods with ``splats``."""
    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / RUN_MARKER).read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as e:
        raise DataError(f"{run_dir.name}/{RUN_MARKER}", f"cannot be read ({type(e).__name__})") from None

    def inside(p: Path) -> Optional[Path]:
        """``p`` if it is a regular file (not a symlink) that resolves inside the run folder."""
        if not p.is_file() or p.is_symlink():
            return None
        try:
            return confine(p, [run_dir], "file")
        except DataError:
            return None

    view = RunView(run_dir, metrics)
    meshes, splats = _may_have(view.method, "mesh"), _may_have(view.method, "splats")
    if meshes:
        view.mesh = next((p for n in _MESH_ORDER if (p := inside(run_dir / n))), None)
    if splats:
        view.splats = inside(run_dir / "splats.ply")
    view.orbit = inside(run_dir / "orbit.gif")
    view.video = inside(run_dir / "orbit.mp4")  # shown in place of the GIF
    if view.video is None and (run_dir / "renders").is_dir():  # a `recon3d render --path ...` video
        videos = sorted((p for p in (run_dir / "renders").glob("*.mp4") if inside(p)), key=lambda p: -p.stat().st_mtime)
        view.video = videos[0] if videos else None
    rdir = run_dir / "renders" / "test"
    if rdir.is_dir():
        view.renders = [p for p in sorted(rdir.glob("*.png"))[:_MAX_RENDERS] if inside(p)]
    names = (("splats.ply",) if splats else ()) + (_MESH_FILES if meshes else ()) + (RUN_MARKER,)
    view.downloads = [p for n in names if (p := inside(run_dir / n))]
    return view


def metrics_markdown(m: dict) -> str:
    """A short Markdown table of the metrics a user cares about (missing ones left out)."""
    rows = [
        ("method", m.get("method")), ("preset", m.get("preset")), ("steps", m.get("steps")),
        ("test PSNR (dB)", _fmt(m.get("test_psnr"), 2)), ("test SSIM", _fmt(m.get("test_ssim"), 4)),
        ("held-out views", m.get("test_views")), ("Gaussians", m.get("gaussians")),
        ("mesh faces", m.get("mesh_faces")),
        ("SfM registered", f"{m['sfm_registered']} / {m['sfm_images']}" if "sfm_registered" in m else None),
        ("reprojection error (px)", _fmt(m.get("sfm_mean_reprojection_error_px"), 3)),
        ("render time (ms/view)", _fmt(m.get("render_ms_per_image"), 1)),
        ("training time (s)", m.get("train_seconds")), ("total time (s)", m.get("total_seconds")),
    ]
    body = "\n".join(f"| {k} | {v} |" for k, v in rows if v is not None)
    note = m.get("mesh_note") or m.get("test_note")
    return "| metric | value |\n| --- | --- |\n" + body + (f"\n\n{note}" if note else "")


def _fmt(v, digits: int):
    return None if v is None else f"{float(v):.{digits}f}"
