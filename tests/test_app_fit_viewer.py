"""The web app's fit runner (progress, subprocess), viewer (run listing, confinement), settings and CLI."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from apps import fit_tab, viewer_tab
from apps.settings import AppSettings
from recon3d.io.errors import DataError
from recon3d.methods.registry import METHOD_NAMES, get_method, names_with
from recon3d.runtime.progress import PROGRESS_FILE, JsonlSink, Progress, read_events


# -------------------------------------------------------------------------------- progress
def _events(path: Path, min_interval: float = 0.0) -> Progress:
    return Progress(JsonlSink(path, min_interval=min_interval))


def _apply_new(path: Path, st: fit_tab.FitProgress, offset: int) -> int:
    events, offset = read_events(path, offset)
    for ev in events:
        fit_tab.apply_event(st, ev)
    return offset


def test_progress_follows_a_real_event_file(tmp_path):
    path = tmp_path / "run" / PROGRESS_FILE
    ev, st = _events(path), fit_tab.FitProgress()
    ev.stage("sfm", "structure from motion (pycolmap)")
    ev.emit("log", "sfm", message="registered 48 of 48 images")
    off = _apply_new(path, st, 0)
    assert st.describe() == "sfm: structure from motion (pycolmap)" and st.fraction is None
    assert st.lines == ["sfm: structure from motion (pycolmap)", "sfm: registered 48 of 48 images"]
    ev.stage("fit", "fitting splat")
    ev.emit("start", "splat", step=0, total=1000)
    ev.emit("step", "splat", step=450, total=1000, loss=0.0123, psnr=24.1)
    off = _apply_new(path, st, off)
    assert (st.phase, st.done, st.total, st.fraction) == ("splat", 450, 1000, 0.45)
    assert st.describe() == "splat: step 450 / 1000 (45%), loss 0.0123, PSNR 24.10 dB"
    ev.emit("step", "splat", step=460, total=1000, loss=0.0120, psnr=24.2, gaussians=12000)
    ev.emit("eval", "splat", step=500, seconds=3.0, psnr=20.0, ssim=0.9, views=2)
    ev.emit("step", "splat", step=510, total=1000, loss=0.0110)  # psnr and gaussians keep their last values
    off = _apply_new(path, st, off)
    assert st.describe() == "splat: step 510 / 1000 (51%), loss 0.011, PSNR 24.20 dB, gaussians 12000"
    assert st.lines[-1] == "splat step 500: test PSNR 20.00 dB, SSIM 0.9000"
    ev.emit("end", "splat", step=1000, total=1000, seconds=20.0)
    off = _apply_new(path, st, off)
    assert st.fraction == 1.0 and st.lines[-1] == "splat: 1000 steps in 20 s"
    ev.stage("evaluate", "held-out views")
    off = _apply_new(path, st, off)
    assert st.describe() == "evaluate: held-out views" and st.fraction is None  # the phase gave way
    ev.emit("done", message="/srv/job/run/metrics.json", test_psnr=27.4, test_ssim=0.955, steps=1000)
    ev.close()
    off = _apply_new(path, st, off)
    assert st.finished and st.metrics == {"test_psnr": 27.4, "test_ssim": 0.955, "steps": 1000}
    assert st.describe() == "finished: test PSNR 27.40 dB, SSIM 0.9550" and st.error is None
    assert off == path.stat().st_size and len(st.lines) <= 8  # only the newest lines are kept


def test_progress_error_event_and_throttled_steps(tmp_path):
    path = tmp_path / PROGRESS_FILE
    ev = _events(path, min_interval=3600.0)  # the sink keeps the first step of a phase and its last
    ev.emit("start", "nerf", step=0, total=50)
    for i in range(1, 51):
        ev.emit("step", "nerf", step=i, total=50, loss=1.0 / i)
    ev.emit("error", message="/srv/job/photos: SfM registered only 2 of 40 photos")
    ev.close()
    st = fit_tab.FitProgress()
    _apply_new(path, st, 0)
    assert (st.done, st.total) == (50, 50) and st.values["loss"] == pytest.approx(0.02)
    assert st.error == "/srv/job/photos: SfM registered only 2 of 40 photos" and not st.finished


def test_errors_in_output():
    text = ("splat:  45%|####5 | 450/1000\rTraceback (most recent call last):\n  File \"x.py\", line 1\n"
            "ValueError: boom\nrecon3d fit: error: argument --max-steps: must be positive\n")
    assert fit_tab.errors_in_output(text) == ("argument --max-steps: must be positive", "ValueError: boom")
    assert fit_tab.errors_in_output("all fine\n") == (None, None)


def _fake_fit(tmp_path: Path, body: str) -> tuple[list[str], Path]:
    """A stand-in for ``recon3d fit``: ``body`` runs with ``ev`` emitting into ``run/progress.jsonl``
    through recon3d's own :class:`JsonlSink`; returns (command, events file)."""
    script, events = tmp_path / "fake_fit.py", tmp_path / "run" / PROGRESS_FILE
    script.write_text("import sys, time\nfrom recon3d.runtime.progress import JsonlSink, Progress\n"
                      "ev = Progress(JsonlSink(sys.argv[1], min_interval=0))\n" + body)
    return [sys.executable, str(script), str(events), "--threads", "1"], events


def test_fit_process_success_and_progress(tmp_path):
    cmd, events = _fake_fit(tmp_path, (
        "ev.stage('sfm', 'structure from motion (pycolmap)')\n"
        "ev.emit('log', 'sfm', message='registered 3 of 3 images')\n"
        "ev.emit('start', 'splat', step=0, total=100)\n"
        "for i in range(0, 101, 20):\n"
        "    ev.emit('step', 'splat', step=i, total=100, loss=0.5 / (i + 1), psnr=10 + i / 10)\n"
        "    sys.stderr.write(f'\\rsplat: {i}%|##| {i}/100'); sys.stderr.flush(); time.sleep(0.1)\n"
        "ev.emit('end', 'splat', step=100, total=100, seconds=0.6)\n"
        "ev.stage('evaluate', 'held-out views')\n"
        f"ev.emit('done', message='{tmp_path}/run/metrics.json', test_psnr=22.25, test_ssim=0.85, steps=100)\n"))
    seen = []
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", events, hide_prefix=str(tmp_path)) as proc:
        for snap in fit_tab.follow(proc, timeout_s=60, interval_s=0.02):
            seen.append(snap)
        assert proc.poll() == 0
    last = seen[-1]
    assert last.finished and last.metrics == {"test_psnr": 22.25, "test_ssim": 0.85, "steps": 100}
    assert last.describe() == "finished: test PSNR 22.25 dB, SSIM 0.8500"
    assert "sfm: registered 3 of 3 images" in last.lines and "splat: 100 steps in 1 s" in last.lines
    running = [s.describe() for s in seen if s.phase == "splat" and 0 < s.done < 100]
    assert running and all(x.startswith("splat: step ") and " / 100 (" in x and "loss" in x for x in running)
    assert "splat: 40%" in (tmp_path / "fit.log").read_text()  # the console output is kept in the log


def test_fit_process_error_event_hides_server_paths(tmp_path):
    cmd, events = _fake_fit(tmp_path, (
        f"ev.emit('error', message='{tmp_path}/photos/x.jpg: cannot decode image')\n"
        f"print('recon3d fit: error: {tmp_path}/photos/x.jpg: cannot decode image', file=sys.stderr)\n"
        "sys.exit(2)\n"))
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", events, hide_prefix=str(tmp_path)) as proc:
        snaps = list(fit_tab.follow(proc, timeout_s=60, interval_s=0.02))
        rc = proc.poll()
    assert rc == 2 and proc.error_message(rc) == "photos/x.jpg: cannot decode image"
    assert snaps[-1].error == "photos/x.jpg: cannot decode image"


def test_fit_process_without_an_error_event_uses_its_output(tmp_path):
    cmd, events = _fake_fit(tmp_path, "print('recon3d fit: error: argument --max-steps: bad value', "
                                      "file=sys.stderr)\nsys.exit(2)\n")
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", events) as proc:  # a bad flag: no event is written
        list(fit_tab.follow(proc, timeout_s=60, interval_s=0.02))
        rc = proc.poll()
    assert rc == 2 and proc.error_message(rc) == "argument --max-steps: bad value"


def test_fit_process_crash_shows_exception_line_not_traceback(tmp_path):
    cmd, events = _fake_fit(tmp_path, "ev.stage('fit', 'fitting splat')\n"
                                      "def f():\n    raise RuntimeError('out of cheese')\nf()\n")
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", events) as proc:
        snaps = list(fit_tab.follow(proc, timeout_s=60, interval_s=0.02))
        rc = proc.poll()
    assert rc == 1 and proc.error_message(rc) == "RuntimeError: out of cheese"
    assert snaps[-1].describe() == "fit: fitting splat"
    assert "Traceback" in proc.output_tail and "Traceback" in (tmp_path / "fit.log").read_text()


def test_fit_process_timeout_and_exit_kill(tmp_path):
    cmd, events = _fake_fit(tmp_path, "time.sleep(60)\n")
    t0 = time.monotonic()
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", events) as proc:
        snaps = list(fit_tab.follow(proc, timeout_s=0.3, interval_s=0.05))
        assert snaps[-1].error.startswith("fitting took longer than")
        assert proc.poll() is not None and proc.error_message(proc.poll()).startswith("fitting took longer than")
    assert time.monotonic() - t0 < 20
    with fit_tab.FitProcess(cmd, tmp_path / "fit2.log", events) as proc2:  # leaving the block early kills it
        pass
    assert proc2.proc.poll() is not None


def test_fit_command_parses_with_the_real_cli(tmp_path):
    from recon3d.cli import build_parser

    cmd = fit_tab.fit_command(tmp_path / "photos", tmp_path / "run", method="sugar", preset="quick", steps=300,
                              orbit_frames=8, threads=1, device="cpu")
    assert cmd[:3] == [sys.executable, "-m", "recon3d.cli"]
    args = build_parser().parse_args(cmd[3:])
    assert (args.images, args.out, args.method, args.preset, args.max_steps, args.orbit_frames, args.threads) == (
        tmp_path / "photos", tmp_path / "run", "sugar", "quick", 300, 8, 1)
    assert not args.pose_opt
    refine = fit_tab.fit_command(tmp_path / "p", tmp_path / "r", method="splat", preset="quick", steps=3,
                                 orbit_frames=0, pose_opt=True)
    assert build_parser().parse_args(refine[3:]).pose_opt


def test_validate_fit_request():
    assert fit_tab.validate_fit_request("splat", "quick", 300.0, max_steps=1000) == 300
    for args, msg in [(("nerf2", "quick", 3), "unknown method 'nerf2'"), (("splat", "fast", 3), "unknown preset"),
                      (("splat", "quick", 0), "between 1 and 1000"), (("splat", "quick", None), "whole number"),
                      (("splat", "quick", 5000), "between 1 and 1000")]:
        with pytest.raises(DataError, match=msg):
            fit_tab.validate_fit_request(*args, max_steps=1000)
    for m in names_with("pose_opt"):
        assert fit_tab.validate_fit_request(m, "quick", 3, max_steps=10, pose_opt=True) == 3
    assert fit_tab.fit_methods() == METHOD_NAMES


@pytest.mark.parametrize("method", [m for m in METHOD_NAMES if not get_method(m).supports("pose_opt")])
def test_pose_refinement_refused_as_recon3d_fit_refuses_it(method, tmp_path):
    from recon3d.pipeline.fit import method_config
    from recon3d.pipeline.options import FitOptions

    with pytest.raises(DataError) as app:
        fit_tab.validate_fit_request(method, "quick", 3, max_steps=10, pose_opt=True)
    with pytest.raises(DataError) as cli:
        method_config(FitOptions(method=method, pose_opt=True), get_method(method), tmp_path)
    assert str(app.value) == str(cli.value)
    assert app.value.problem == (f"pose refinement is available for --method {' and '.join(names_with('pose_opt'))}"
                                 f", not {method}")


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("app_fit") / "tiny"
    generate_scene(root, num_views=9, size=32, seed=1, object="random")
    return root


def test_real_fit_progress_through_its_event_file(tiny_scene, tmp_path):
    """A real ``recon3d fit`` subprocess, followed the way the page follows it."""
    run = tmp_path / "job" / "run"
    cmd = fit_tab.fit_command(tiny_scene, run, method="splat", preset="quick", steps=12, orbit_frames=2, device="cpu")
    cmd[cmd.index("--images")] = "--data"  # a posed synthetic scene: no SfM
    seen = []
    with fit_tab.FitProcess(cmd, tmp_path / "job" / "fit.log", fit_tab.events_file(run),
                            hide_prefix=str(tmp_path / "job")) as proc:
        for snap in fit_tab.follow(proc, timeout_s=300, interval_s=0.05):
            seen.append(snap)
        rc = proc.poll()
    assert rc == 0, (tmp_path / "job" / "fit.log").read_text()[-2000:]
    last = seen[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert last.finished and last.error is None and last.metrics["steps"] == 12
    assert last.metrics["test_psnr"] == pytest.approx(metrics["test_psnr"], abs=1e-5)
    assert any(x.startswith("load: ") for x in last.lines) and "splat: 12 steps" in " ".join(last.lines)
    assert last.describe().startswith("finished: test PSNR ")
    phase = [s for s in seen if s.phase == "splat"]
    assert all(s.total == 12 and 0 <= s.fraction <= 1 for s in phase)
    view = viewer_tab.load_run_view(run)
    assert view.method == "splat" and view.model_3d == view.splats == run / "splats.ply" and view.mesh is None


# ---------------------------------------------------------------------------------- viewer
def _run(folder: Path, mesh: bool = True) -> Path:
    (folder / "renders" / "test").mkdir(parents=True)
    (folder / "renders" / "test" / "r_0.png").write_bytes(b"png")
    (folder / "splats.ply").write_bytes(b"ply")
    if mesh:
        for n in ("mesh.glb", "mesh.obj", "mesh.mtl", "mesh.ply"):
            (folder / n).write_bytes(b"x")
    (folder / "metrics.json").write_text(json.dumps({"method": "sugar", "test_psnr": 27.4012, "steps": 10,
                                                     "sfm_registered": 47, "sfm_images": 48}))
    return folder


def test_list_and_resolve_runs(tmp_path):
    app_runs, outputs, elsewhere = tmp_path / "work" / "runs", tmp_path / "outputs", tmp_path / "elsewhere"
    _run(app_runs / "20260101-job-ab12" / "run")
    _run(outputs / "sample_scene")
    time.sleep(0.01)
    _run(outputs / "nested" / "deeper" / "r2", mesh=False)
    (outputs / "not_a_run").mkdir()
    _run(elsewhere / "secret")
    (outputs / "linked").symlink_to(elsewhere / "secret")  # a symlinked run outside: not listed
    roots = [str(app_runs), str(outputs)]
    labels = viewer_tab.list_runs(roots)
    assert set(labels) == {"app/20260101-job-ab12/run", "outputs/sample_scene", "outputs/nested/deeper/r2"}
    assert labels[0] == "outputs/nested/deeper/r2"  # newest first
    assert viewer_tab.resolve_run("outputs/sample_scene", roots) == (outputs / "sample_scene").resolve()
    for bad, msg in [("outputs/../elsewhere/secret", "not one of the listed"),
                     ("outputs/linked", "outside the folders"),
                     ("nope/sample_scene", "not one of the listed"), ("outputs//etc", "not one of the listed"),
                     ("outputs/not_a_run", "not a finished run"), ("", "choose a run folder")]:
        with pytest.raises(DataError, match=msg):
            viewer_tab.resolve_run(bad, roots)


def test_load_run_view_and_metrics(tmp_path):
    run = _run(tmp_path / "run")
    (tmp_path / "secret.png").write_bytes(b"s")
    (run / "renders" / "test" / "zz_link.png").symlink_to(tmp_path / "secret.png")
    v = viewer_tab.load_run_view(run)
    assert v.mesh == run / "mesh.glb" and v.splats == run / "splats.ply" and v.orbit is None
    assert v.renders == [run / "renders" / "test" / "r_0.png"]  # the symlink is skipped
    assert [p.name for p in v.downloads] == ["splats.ply", "mesh.glb", "mesh.obj", "mesh.mtl", "mesh.ply",
                                             "metrics.json"]
    md = viewer_tab.metrics_markdown(v.metrics)
    assert "| test PSNR (dB) | 27.40 |" in md and "| SfM registered | 47 / 48 |" in md and "SSIM" not in md
    assert v.method == "sugar" and v.model_3d == v.mesh
    (run / "metrics.json").write_text("{broken")
    with pytest.raises(DataError, match="run/metrics.json: cannot be read"):
        viewer_tab.load_run_view(run)


@pytest.mark.parametrize("method", [*METHOD_NAMES, "someone-elses", None])
def test_run_view_shows_what_the_method_makes(tmp_path, method):
    run = _run(tmp_path / "run")
    m = json.loads((run / "metrics.json").read_text())
    m.pop("method") if method is None else m.update(method=method)
    (run / "metrics.json").write_text(json.dumps(m))
    v = viewer_tab.load_run_view(run)
    spec = get_method(method) if method in METHOD_NAMES else None
    assert (v.mesh is not None) == (spec is None or spec.supports("mesh"))
    assert (v.splats is not None) == (spec is None or spec.supports("splats"))
    assert v.model_3d == (v.mesh or v.splats) and v.method == (method if spec else None)
    assert ("mesh.glb" in {p.name for p in v.downloads}) == (v.mesh is not None)


# --------------------------------------------------------------------------- settings, CLI
def test_settings_fast_mode_and_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON3D_APP_FAST", "1")
    s = AppSettings.from_env(workdir=str(tmp_path / "w"), runs_roots=[str(tmp_path / "o"), str(tmp_path / "o")])
    assert s.fast and s.mesh_resolution <= 40 and s.orbit_frames <= 8 and s.num_views <= 4
    r = s.resolved()
    assert r.runs_roots == [str(tmp_path / "w" / "runs"), str(tmp_path / "o")]
    assert all((tmp_path / "w" / d).is_dir() for d in ("gradio", "jobs", "runs"))
    monkeypatch.delenv("RECON3D_APP_FAST")
    assert not AppSettings.from_env().fast and AppSettings.from_env().mesh_resolution == 96


def test_demo_command_line():
    from recon3d.cli import build_parser

    a = build_parser().parse_args(["demo"])
    assert (a.host, a.port, a.share, a.workdir, a.fast) == ("127.0.0.1", 7860, False, Path("outputs/app"), False)
    a = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--port", "9000", "--share", "false",
                                   "--workdir", "/tmp/w", "--runs-root", "a", "--runs-root", "b", "--fast"])
    assert (a.host, a.port, a.share, a.runs_root, a.fast) == ("0.0.0.0", 9000, False, [Path("a"), Path("b")], True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--share", "maybe"])


def test_cli_help_does_not_import_gradio():
    import subprocess

    code = "import sys; from recon3d.cli import build_parser; build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
