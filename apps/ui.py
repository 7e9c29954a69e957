"""The Gradio page: three tabs wired to :mod:`apps.image_tab`, :mod:`apps.fit_tab`, :mod:`apps.viewer_tab`.

The only module that imports gradio. Handlers never let an exception reach Gradio: input problems
(:class:`DataError`) become a one-line message in the tab's status box; anything else is logged with
its traceback on the server and shown as a short "internal error" line.

Each tab keeps, per browser session (``gr.State``), the job folder whose results it shows, held in
its :mod:`apps.jobs` store so the folder bound never removes it; the next request of that session
(or the session's end) lets it go: image-to-3D results are deleted then, fit runs stay for the viewer
until the bound removes them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr

from recon3d.io.errors import DataError
from recon3d.io.video import DEFAULT_FRAMES
from recon3d.methods.registry import get_method, names_with
from recon3d.runtime.config import PRESET_NAMES

from . import fit_tab, image_tab, jobs, viewer_tab
from .safety import check_video, collect_photos, pick_video
from .settings import AppSettings

log = logging.getLogger(__name__)

_CSS = ".status-box {min-height: 2.5em} .status-box p {margin: 0.2em 0}"


def _turntable(view=None) -> tuple:
    """Updates of a tab's (turntable GIF, turntable video) pair: the run's MP4 in place of its GIF when
    it has one, else the GIF (both cleared without a run)."""
    if view is not None and view.video:
        label = "Turntable" if view.video.name == "orbit.mp4" else f"Camera path ({view.video.stem})"
        return gr.update(value=None, visible=False), gr.update(value=str(view.video), visible=True, label=label)
    return (gr.update(value=str(view.orbit) if view is not None and view.orbit else None, visible=True),
            gr.update(value=None, visible=False))


def _ok(text: str, notices=()) -> str:
    notes = "".join(f"\n\n**Note:** {n}" for n in notices)
    return f"**Done.** {text}{notes}"


def _err(e: BaseException) -> str:
    """The status line for a failed request: the DataError text, never a traceback."""
    if isinstance(e, DataError):
        return f"**Error:** {e.path.name or e.path}: {e.problem}"
    log.exception("internal error in the app")
    return f"**Internal error** ({type(e).__name__}); the server log has the details."


def _shown_state(store: jobs.JobStore, discard: bool) -> gr.State:
    """Per-session state: the job folder whose results a tab shows (held in ``store``); when the
    session ends it is discarded (deleted) or released (left to the bound)."""
    return gr.State(None, delete_callback=lambda shown: (store.discard if discard else store.release)(shown))


# ------------------------------------------------------------------------------ image to 3D
def _image_tab(settings: AppSettings) -> None:
    models = image_tab.available_models(settings)
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
                "`pixelnerf.pt`); train one with `recon3d train lrm`, or name a folder of published checkpoints "
                "with `recon3d demo --checkpoints DIR`.",
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
    store = jobs.image_jobs(settings)
    shown = _shown_state(store, discard=True)

    def handler(path, model_name, bake_texture, previous):
        store.discard(previous)  # this session's last result is replaced now: its files go
        try:
            r = image_tab.run_image_to_3d(settings, path, model_name, user_name=Path(path).name if path else None,
                                          texture=bool(bake_texture))
        except Exception as e:  # noqa: BLE001 - every failure becomes a message in the page
            return _err(e), None, None, None, None, None, None
        return (_ok(r.summary, r.notices), str(r.model_input), str(r.glb) if r.glb else None,
                str(r.turntable) if r.turntable else None, [str(p) for p in r.views], [str(p) for p in r.downloads],
                str(r.job_dir))

    run.click(handler, [upload, model, texture, shown], [status, seen, view3d, turntable, views, files, shown],
              concurrency_limit=1, concurrency_id="image_to_3d", show_progress="full", show_progress_on=[view3d])


# -------------------------------------------------------------------------- fit from photos
def _fit_tab(settings: AppSettings) -> None:
    methods = fit_tab.fit_methods()
    refiners = names_with("pose_opt")
    sample = Path(settings.example_scene)
    with gr.Row():
        with gr.Column(scale=1):
            photos = gr.File(label="Photos (several views of one object), a zip of them, or one video moving "
                                   "around the object", file_count="multiple", type="filepath", elem_id="fit-upload")
            use_sample = gr.Checkbox(label=f"Use the bundled sample scene ({sample.parent.name}, "
                                           f"{len(list(sample.glob('*.png')))} photos) instead",
                                     value=False, visible=sample.is_dir(), elem_id="fit-sample")
            with gr.Row():
                method = gr.Dropdown(list(methods), value="splat" if "splat" in methods else methods[0],
                                     label="Method", elem_id="fit-method",
                                     info="; ".join(f"{m}: {get_method(m).summary}" for m in methods))
                preset = gr.Radio(list(PRESET_NAMES), value=settings.fit_preset, label="Preset")
            steps = gr.Number(value=settings.fit_steps, precision=0, minimum=1, maximum=settings.fit_max_steps,
                              label="Optimization steps of the first stage (more: sharper, slower)",
                              elem_id="fit-steps")
            pose_opt = gr.Checkbox(label=f"Refine camera poses while fitting ({', '.join(refiners)}; "
                                         "for poses a little off)", value=False, elem_id="fit-pose-opt")
            run = gr.Button("Fit", variant="primary", elem_id="fit-run")
            status = gr.Markdown("", elem_id="fit-status", elem_classes="status-box")
        with gr.Column(scale=2):
            view3d = gr.Model3D(label="Result (the mesh, or the Gaussian splats of methods without one)",
                                clear_color=(0.95, 0.95, 0.95, 1.0), height=420, elem_id="fit-model3d")
            with gr.Row():
                orbit = gr.Image(label="Turntable", type="filepath", interactive=False, height=240)
                orbit_video = gr.Video(label="Turntable", interactive=False, height=240, autoplay=True, loop=True,
                                       visible=False, elem_id="fit-turntable-video")
                metrics = gr.Markdown("", elem_id="fit-metrics")
            renders = gr.Gallery(label="Held-out views rendered by the fitted model", columns=6, height=200)
            files = gr.File(label="Downloads", file_count="multiple", interactive=False)

    store = jobs.fit_runs(settings)
    shown = _shown_state(store, discard=False)
    failed = (*_turntable(), "", None, None, None)  # after the status line: outputs cleared, nothing held

    def handler(uploads, sample_on, method_name, preset_name, n_steps, refine_poses, previous,
                progress=gr.Progress()):
        skip = gr.skip()
        store.release(previous)  # this session's last result gives way; the viewer lists it until the bound
        job, kept, from_video = None, False, False
        try:
            try:
                n = fit_tab.validate_fit_request(method_name, preset_name, n_steps, max_steps=settings.fit_max_steps,
                                                 pose_opt=bool(refine_poses))
                if sample_on:
                    if not sample.is_dir():
                        raise DataError("sample scene", "is not installed")
                    job, src, notices = store.create("sample"), sample, []
                elif uploads and (video := pick_video([(p, Path(p).name) for p in uploads])) is not None:
                    job = store.create("video")  # its frames are picked by `recon3d fit --video`
                    cv = check_video(video[0], job / "video", original_name=video[1])
                    src, notices, from_video = cv.path, [cv.notice] if cv.notice else [], True
                else:
                    if not uploads:
                        raise DataError("photos", "upload photos or a zip of them, or tick the sample scene")
                    job = store.create("photos")
                    ps = collect_photos([(p, Path(p).name) for p in uploads], job / "photos",
                                        min_photos=settings.min_photos, max_photos=settings.max_photos,
                                        max_pixels=settings.max_pixels, max_zip_members=settings.max_zip_members,
                                        max_zip_bytes=settings.max_zip_bytes)
                    src, notices = ps.folder, ps.notices
            except Exception as e:  # noqa: BLE001
                if job is not None:  # nothing to keep from a request refused before fitting
                    store.discard(job)
                    job = None
                yield (_err(e), *failed)
                return
            run_dir = job / "run"
            cmd = fit_tab.fit_command(src, run_dir, method=method_name, preset=preset_name, steps=n,
                                      orbit_frames=settings.orbit_frames, threads=settings.fit_threads,
                                      device=settings.device, pose_opt=bool(refine_poses), video=from_video,
                                      frames=min(settings.max_photos, DEFAULT_FRAMES))
            notes = "".join(f"\n\n**Note:** {x}" for x in notices)
            try:
                with fit_tab.FitProcess(cmd, job / "fit.log", fit_tab.events_file(run_dir),
                                        hide_prefix=str(job)) as proc:
                    for snap in fit_tab.follow(proc, settings.fit_timeout_s):
                        progress(snap.fraction, desc=snap.describe())
                        recent = "\n".join(f"- {x}" for x in snap.lines[-4:])
                        yield (f"**Running:** {snap.describe()}{notes}\n\n{recent}", skip, skip, skip, skip, skip,
                               skip)
                    rc = proc.poll()
                    if rc != 0:
                        log.warning("fit %s failed (exit status %s); the end of its output:\n%s", job.name, rc,
                                    proc.output_tail[-4000:])
                        yield (f"**Error:** {proc.error_message(rc)}", *failed)
                        return
                view = viewer_tab.load_run_view(run_dir)
            except Exception as e:  # noqa: BLE001
                yield (_err(e), *failed)
                return
            what = ("the mesh" if view.mesh else "the Gaussian splats" if view.splats
                    else "no 3D file (" + str(view.metrics.get("mesh_note", "none was written")) + ")")
            rel = f"app/{job.name}/run"  # the viewer's label: the app's own runs root comes first, as "app"
            yield (_ok(f"Fitted in {view.metrics.get('total_seconds', '?')} s; showing {what}. "
                       f"The run is listed in the Viewer tab as `{rel}`.", notices), *_turntable(view),
                   viewer_tab.metrics_markdown(view.metrics), [str(p) for p in view.renders],
                   [str(p) for p in view.downloads], str(job))
            kept = True  # shown: held until this session's next fit or its end
        finally:
            if job is not None and not kept:  # failed or cancelled: not shown, left to the bound
                store.release(job)

    def show_model(job):
        """The 3D view's file: the mesh or splats of the run this session now shows (None after a failure)."""
        try:
            model = viewer_tab.load_run_view(Path(job) / "run").model_3d if job else None
        except Exception:  # noqa: BLE001 - the status line already tells how the fit went
            log.exception("cannot show the 3D file of %s", job)
            return None
        return str(model) if model else None

    # The 3D view is set by a second, one-shot event once the fit's generator has ended, never by the
    # generator: Gradio sends a generator's last output again when it ends, and Model3D (gradio 6.x)
    # loses its lazily imported viewer when its value is set again while that import is under way
    # (its canvas then never appears). A loaded machine made that window wide enough to hit.
    run.click(handler, [photos, use_sample, method, preset, steps, pose_opt, shown],
              [status, orbit, orbit_video, metrics, renders, files, shown],
              concurrency_limit=1, concurrency_id="fit", show_progress="full", show_progress_on=[view3d]
              ).then(show_model, [shown], [view3d], concurrency_limit=None, show_progress="hidden",
                     api_visibility="private")


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
        orbit_video = gr.Video(label="Turntable", interactive=False, height=240, autoplay=True, loop=True,
                               visible=False, elem_id="viewer-turntable-video")
        metrics = gr.Markdown("")
    renders = gr.Gallery(label="Held-out views rendered by the model", columns=6, height=200)
    files = gr.File(label="Downloads", file_count="multiple", interactive=False)
    app_runs = jobs.fit_runs(settings)  # the app's own runs are held while a session views them
    shown = _shown_state(app_runs, discard=False)

    def do_refresh():
        return gr.update(choices=viewer_tab.list_runs(roots))

    def do_open(label, previous):
        app_runs.release(previous)
        try:
            view = viewer_tab.load_run_view(viewer_tab.resolve_run(label, roots))
        except Exception as e:  # noqa: BLE001
            return _err(e), None, None, *_turntable(), "", None, None, None
        held = app_runs.hold(view.folder)  # None for runs outside the app's own runs folder
        parts = [x for x, ok in (("mesh", view.mesh), ("splats", view.splats),
                                 ("turntable video" if view.video else "turntable", view.video or view.orbit),
                                 (f"{len(view.renders)} renders", view.renders)) if ok]
        return (_ok(f"`{label}`: " + (", ".join(parts) or "no viewable files")),
                str(view.mesh) if view.mesh else None, str(view.splats) if view.splats else None,
                *_turntable(view), viewer_tab.metrics_markdown(view.metrics),
                [str(p) for p in view.renders], [str(p) for p in view.downloads], str(held) if held else None)

    refresh.click(do_refresh, None, run_list)
    open_btn.click(do_open, [run_list, shown],
                   [status, mesh3d, splat3d, orbit, orbit_video, metrics, renders, files, shown],
                   concurrency_limit=2, show_progress_on=[mesh3d, splat3d])
    return run_list, do_refresh


def build_app(settings: AppSettings) -> gr.Blocks:
    """The page for resolved ``settings`` (queue enabled: concurrent requests wait in line).

    Sets ``GRADIO_TEMP_DIR`` to ``workdir/gradio`` first: every component takes its upload/cache
    folder from it when it is created, so uploads and served copies stay inside the work folder.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(settings.upload_dir)
    for store in (jobs.image_jobs(settings), jobs.fit_runs(settings)):
        store.prune()  # folders left by an earlier server beyond today's bounds
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

