"""The Gradio page: three tabs wired to :mod:`apps.image_tab`, :mod:`apps.fit_tab`, :mod:`apps.viewer_tab`.

The only module that imports gradio. Handlers never let an exception reach Gradio: input problems
(:class:`DataError`) become a one-line message in the tab's status box; anything else is logged with
its traceback on the server and shown as a short "internal error" line.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import gradio as gr

from recon3d.io.errors import DataError

from . import fit_tab, image_tab, viewer_tab
from .safety import collect_photos, new_job_dir
from .settings import AppSettings

log = logging.getLogger(__name__)

_CSS = ".status-box {min-height: 2.5em} .status-box p {margin: 0.2em 0}"


def _ok(text: str, notices=()) -> str:
    notes = "".join(f"\n\n**Note:** {n}" for n in notices)
    return f"**Done.** {text}{notes}"


def _err(e: BaseException) -> str:
    """The status line for a failed request: the DataError text, never a traceback."""
    if isinstance(e, DataError):
        return f"**Error:** {e.path.name or e.path}: {e.problem}"
    log.exception("internal error in the app")
    return f"**Internal error** ({type(e).__name__}); the server log has the details."


def _fit_methods() -> tuple[str, ...]:
    from recon3d.pipeline.fit import METHODS

    return tuple(METHODS)


# ------------------------------------------------------------------------------ image to 3D
def _image_tab(settings: AppSettings) -> None:
    models = image_tab.available_models()
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Photo of an object (PNG/JPEG; a cut-out on a plain background works best)",
                             file_count="single", type="filepath", elem_id="i2d-upload")
            examples = image_tab.list_examples(settings)
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Bundled examples")
            model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                interactive=bool(models), elem_id="i2d-model")
            texture = gr.Checkbox(label=f"UV texture ({settings.texture_size} px; slower, about 25 s for a detailed mesh)",
                                  value=False, elem_id="i2d-texture")
            run = gr.Button("Reconstruct", variant="primary", elem_id="i2d-run")
            status = gr.Markdown(
                "" if models else "**Note:** no image-to-3D checkpoint is installed (`data/checkpoints/lrm.pt` or "
                "`pixelnerf.pt`); train one with `recon3d train lrm`.",
                elem_id="i2d-status", elem_classes="status-box")
            seen = gr.Image(label="Input as the model saw it", type="filepath", interactive=False, height=200)
        with gr.Column(scale=2):
            view3d = gr.Model3D(label="3D mesh (drag to rotate)", clear_color=(0.95, 0.95, 0.95, 1.0), height=420,
                                elem_id="i2d-model3d")
            with gr.Row():
                turntable = gr.Image(label="Turntable", type="filepath", interactive=False, height=240,
                                     elem_id="i2d-turntable")
                views = gr.Gallery(label="Novel views", columns=4, height=240, elem_id="i2d-views")
            files = gr.File(label="Downloads (GLB, OBJ zip, PLY)", file_count="multiple", interactive=False,
                            elem_id="i2d-downloads")

    def handler(path, model_name, bake_texture):
        try:
            r = image_tab.run_image_to_3d(settings, path, model_name, user_name=Path(path).name if path else None,
                                          texture=bool(bake_texture))
        except Exception as e:  # noqa: BLE001 - every failure becomes a message in the page
            return _err(e), None, None, None, None, None
        return (_ok(r.summary, r.notices), str(r.model_input), str(r.glb) if r.glb else None,
                str(r.turntable) if r.turntable else None, [str(p) for p in r.views], [str(p) for p in r.downloads])

    run.click(handler, [upload, model, texture], [status, seen, view3d, turntable, views, files],
              concurrency_limit=1, concurrency_id="image_to_3d", show_progress="full", show_progress_on=[view3d])


# -------------------------------------------------------------------------- fit from photos
def _fit_tab(settings: AppSettings) -> None:
    methods = _fit_methods()
    sample = Path(settings.example_scene)
    with gr.Row():
        with gr.Column(scale=1):
            photos = gr.File(label="Photos (several views of one object) or a zip of them", file_count="multiple",
                             type="filepath", elem_id="fit-upload")
            use_sample = gr.Checkbox(label=f"Use the bundled sample scene ({sample.parent.name}, "
                                           f"{len(list(sample.glob('*.png')))} photos) instead",
                                     value=False, visible=sample.is_dir(), elem_id="fit-sample")
            with gr.Row():
                method = gr.Dropdown(list(methods), value="splat" if "splat" in methods else methods[0],
                                     label="Method", elem_id="fit-method",
                                     info="splat: Gaussian splats (fastest); sugar: splats + a mesh; "
                                          "nerf, sdf: neural fields + a mesh")
                preset = gr.Radio(["quick", "default", "high"], value=settings.fit_preset, label="Preset")
            steps = gr.Number(value=settings.fit_steps, precision=0, minimum=1, maximum=settings.fit_max_steps,
                              label="Optimization steps of the first stage (more: sharper, slower)",
                              elem_id="fit-steps")
            pose_opt = gr.Checkbox(label="Refine camera poses while fitting (splat, sugar; for poses a little off)",
                                   value=False, elem_id="fit-pose-opt")
            run = gr.Button("Fit", variant="primary", elem_id="fit-run")
            status = gr.Markdown("", elem_id="fit-status", elem_classes="status-box")
        with gr.Column(scale=2):
            view3d = gr.Model3D(label="Result (mesh, or Gaussian splats for --method splat)",
                                clear_color=(0.95, 0.95, 0.95, 1.0), height=420, elem_id="fit-model3d")
            with gr.Row():
                orbit = gr.Image(label="Turntable", type="filepath", interactive=False, height=240)
                metrics = gr.Markdown("", elem_id="fit-metrics")
            renders = gr.Gallery(label="Held-out views rendered by the fitted model", columns=6, height=200)
            files = gr.File(label="Downloads", file_count="multiple", interactive=False)

    def handler(uploads, sample_on, method_name, preset_name, n_steps, refine_poses, progress=gr.Progress()):
        skip = gr.skip()
        job = None
        try:
            n = fit_tab.validate_fit_request(method_name, preset_name, n_steps, methods, settings.fit_max_steps,
                                             pose_opt=bool(refine_poses))
            if sample_on:
                if not sample.is_dir():
                    raise DataError("sample scene", "is not installed")
                job, src, notices = new_job_dir(settings.fit_runs_dir, "sample"), sample, []
            else:
                if not uploads:
                    raise DataError("photos", "upload photos or a zip of them, or tick the sample scene")
                job = new_job_dir(settings.fit_runs_dir, "photos")
                ps = collect_photos([(p, Path(p).name) for p in uploads], job / "photos",
                                    min_photos=settings.min_photos, max_photos=settings.max_photos,
                                    max_pixels=settings.max_pixels, max_zip_members=settings.max_zip_members,
                                    max_zip_bytes=settings.max_zip_bytes)
                src, notices = ps.folder, ps.notices
        except Exception as e:  # noqa: BLE001
            if job is not None:  # nothing to keep from a request refused before fitting
                shutil.rmtree(job, ignore_errors=True)
            yield _err(e), None, None, "", None, None
            return
        cmd = fit_tab.fit_command(src, job / "run", method=method_name, preset=preset_name, steps=n,
                                  orbit_frames=settings.orbit_frames, threads=settings.fit_threads,
                                  device=settings.device, pose_opt=bool(refine_poses))
        notes = "".join(f"\n\n**Note:** {x}" for x in notices)
        try:
            with fit_tab.FitProcess(cmd, job / "fit.log", hide_prefix=str(job)) as proc:
                for snap in fit_tab.follow(proc, settings.fit_timeout_s):
                    progress(snap.fraction, desc=snap.describe())
                    recent = "\n".join(f"- {x}" for x in snap.lines[-4:])
                    yield f"**Running:** {snap.describe()}{notes}\n\n{recent}", skip, skip, skip, skip, skip
                rc = proc.poll()
                if rc != 0:
                    yield f"**Error:** {proc.error_message(rc)}", None, None, "", None, None
                    return
            view = viewer_tab.load_run_view(job / "run")
        except Exception as e:  # noqa: BLE001
            yield _err(e), None, None, "", None, None
            return
        shown = view.mesh or view.splats
        what = ("the mesh" if view.mesh else "the Gaussian splats" if view.splats
                else "no 3D file (" + str(view.metrics.get("mesh_note", "none was written")) + ")")
        rel = f"app/{job.name}/run"  # the viewer's label: the app's own runs root comes first, as "app"
        yield (_ok(f"Fitted in {view.metrics.get('total_seconds', '?')} s; showing {what}. "
                   f"The run is listed in the Viewer tab as `{rel}`.", notices),
               str(shown) if shown else None, str(view.orbit) if view.orbit else None,
               viewer_tab.metrics_markdown(view.metrics), [str(p) for p in view.renders],
               [str(p) for p in view.downloads])

    run.click(handler, [photos, use_sample, method, preset, steps, pose_opt], [status, view3d, orbit, metrics, renders, files],
              concurrency_limit=1, concurrency_id="fit", show_progress="full", show_progress_on=[view3d])


# ---------------------------------------------------------------------------------- viewer
def _viewer_tab(settings: AppSettings):
    """The viewer tab; returns its run dropdown and the function refreshing it (run on page load)."""
    roots = settings.runs_roots
    with gr.Row():
        run_list = gr.Dropdown(viewer_tab.list_runs(roots), label="Run folder", elem_id="viewer-run",
                               info="finished `recon3d fit` runs under " + ", ".join(f"`{r}`" for r in roots))
        refresh = gr.Button("Refresh list", size="sm")
        open_btn = gr.Button("Open", variant="primary", elem_id="viewer-open")
    status = gr.Markdown("", elem_id="viewer-status", elem_classes="status-box")
    with gr.Row():
        mesh3d = gr.Model3D(label="Mesh", clear_color=(0.95, 0.95, 0.95, 1.0), height=380, elem_id="viewer-mesh")
        splat3d = gr.Model3D(label="Gaussian splats", clear_color=(0.95, 0.95, 0.95, 1.0), height=380,
                             elem_id="viewer-splats")
    with gr.Row():
        orbit = gr.Image(label="Turntable", type="filepath", interactive=False, height=240)
        metrics = gr.Markdown("")
    renders = gr.Gallery(label="Held-out views rendered by the model", columns=6, height=200)
    files = gr.File(label="Downloads", file_count="multiple", interactive=False)

    def do_refresh():
        return gr.update(choices=viewer_tab.list_runs(roots))

    def do_open(label):
        try:
            view = viewer_tab.load_run_view(viewer_tab.resolve_run(label, roots))
        except Exception as e:  # noqa: BLE001
            return _err(e), None, None, None, "", None, None
        parts = [x for x, ok in (("mesh", view.mesh), ("splats", view.splats), ("turntable", view.orbit),
                                 (f"{len(view.renders)} renders", view.renders)) if ok]
        return (_ok(f"`{label}`: " + (", ".join(parts) or "no viewable files")),
                str(view.mesh) if view.mesh else None, str(view.splats) if view.splats else None,
                str(view.orbit) if view.orbit else None, viewer_tab.metrics_markdown(view.metrics),
                [str(p) for p in view.renders], [str(p) for p in view.downloads])

    refresh.click(do_refresh, None, run_list)
    open_btn.click(do_open, run_list, [status, mesh3d, splat3d, orbit, metrics, renders, files],
                   concurrency_limit=2, show_progress_on=[mesh3d, splat3d])
    return run_list, do_refresh


def build_app(settings: AppSettings) -> gr.Blocks:
    """The page for resolved ``settings`` (queue enabled: concurrent requests wait in line).

    Sets ``GRADIO_TEMP_DIR`` to ``workdir/gradio`` first: every component takes its upload/cache
    folder from it when it is created, so uploads and served copies stay inside the work folder.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(settings.upload_dir)
    # delete_cache: Gradio's copies of served files older than a day are removed hourly
    with gr.Blocks(title="recon3d", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# recon3d\nPhotos to 3D: a feed-forward model from one photo, or a per-scene fit from "
                    "several. Jobs run one at a time per tab; others wait in the queue.")
        with gr.Tab("Image to 3D", elem_id="tab-image"):
            _image_tab(settings)
        with gr.Tab("Fit from photos", elem_id="tab-fit"):
            _fit_tab(settings)
        with gr.Tab("Viewer", elem_id="tab-viewer"):
            run_list, do_refresh = _viewer_tab(settings)
        demo.load(do_refresh, None, run_list)
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo


def launch(settings: AppSettings, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True):
    """Serve the app. Gradio's uploads go to ``workdir/gradio``; only the app's folders are served."""
    demo = build_app(settings)
    allowed = [settings.workdir, *settings.runs_roots, *settings.example_dirs, settings.example_scene]
    return demo.launch(server_name=host, server_port=port, share=share, allowed_paths=allowed,
                       max_file_size=f"{settings.max_upload_mb}mb", show_error=False, ssr_mode=False,
                       footer_links=[], css=_CSS, prevent_thread_lock=not block, quiet=False)

