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


# -------------------------------------------------------------------------------- progress
def test_parse_line_tqdm_log_and_error():
    st = fit_tab.FitProgress()
    fit_tab.parse_line("11:20:01 INFO recon3d.sfm.colmap_sfm: SfM: exhaustive matching of 1128 image pairs", st)
    assert st.stage == "SfM: exhaustive matching of 1128 image pairs" and st.fraction is None
    fit_tab.parse_line("splat:  45%|####5     | 450/1000 [00:10<00:12, 44.1it/s, loss=0.0123]", st)
    assert (st.bar, st.done, st.total, st.fraction) == ("splat", 450, 1000, 0.45)
    assert st.describe() == "splat: step 450 / 1000"
    fit_tab.parse_line("11:20:09 INFO recon3d.pipeline.fit: test PSNR 20.00 dB", st)  # bar unfinished: kept
    assert st.describe() == "splat: step 450 / 1000"
    fit_tab.parse_line("splat: 100%|##########| 1000/1000 [00:20<00:00, 50.0it/s]", st)
    fit_tab.parse_line("11:20:30 INFO recon3d.pipeline.fit: test PSNR 27.40 dB, SSIM 0.9550", st)
    assert st.bar is None and st.describe() == "test PSNR 27.40 dB, SSIM 0.9550"
    assert st.lines[-1] == "info: test PSNR 27.40 dB, SSIM 0.9550"
    fit_tab.parse_line("ValueError: boom", st)
    fit_tab.parse_line("recon3d fit: error: /srv/job/photos: SfM registered only 2 of 40 photos", st)
    assert st.error == "/srv/job/photos: SfM registered only 2 of 40 photos" and st.last_exception == "ValueError: boom"


def _fake_fit(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_fit.py"
    script.write_text("import sys, time\n" + body)
    return [sys.executable, str(script), "--threads", "1"]


def test_fit_process_success_and_progress(tmp_path):
    cmd = _fake_fit(tmp_path, (
        "print('12:00:00 INFO recon3d.sfm: SfM: registered 3 of 3 images', flush=True)\n"
        "for i in range(0, 101, 20):\n"
        "    sys.stderr.write(f'\\rsplat: {i}%|##| {i}/100 [00:01<00:01]'); sys.stderr.flush(); time.sleep(0.1)\n"
        "print('\\n12:00:02 INFO recon3d.pipeline.fit: wrote " + str(tmp_path) + "/run/metrics.json', flush=True)\n"))
    seen = []
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", hide_prefix=str(tmp_path)) as proc:
        for snap in fit_tab.follow(proc, timeout_s=60, interval_s=0.02):
            seen.append(snap.describe())
        assert proc.poll() == 0
    assert seen[-1] == "wrote run/metrics.json"  # the job's server folder is hidden
    assert any(x.startswith("splat: step ") and x.endswith(" / 100") for x in seen)  # the bar was followed
    assert "SfM: registered 3 of 3 images" in (tmp_path / "fit.log").read_text()


def test_fit_process_error_message_hides_server_paths(tmp_path):
    cmd = _fake_fit(tmp_path, (f"print('recon3d fit: error: {tmp_path}/photos/x.jpg: cannot decode image', "
                               "file=sys.stderr)\nsys.exit(2)\n"))
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log", hide_prefix=str(tmp_path)) as proc:
        list(fit_tab.follow(proc, timeout_s=60, interval_s=0.02))
        rc = proc.poll()
    assert rc == 2 and proc.error_message(rc) == "photos/x.jpg: cannot decode image"


def test_fit_process_crash_shows_exception_line_not_traceback(tmp_path):
    cmd = _fake_fit(tmp_path, "def f():\n    raise RuntimeError('out of cheese')\nf()\n")
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log") as proc:
        list(fit_tab.follow(proc, timeout_s=60, interval_s=0.02))
        rc = proc.poll()
    assert rc == 1 and proc.error_message(rc) == "RuntimeError: out of cheese"
    assert "Traceback" in (tmp_path / "fit.log").read_text()  # the full trace stays in the server log


def test_fit_process_timeout_and_exit_kill(tmp_path):
    cmd = _fake_fit(tmp_path, "time.sleep(60)\n")
    t0 = time.monotonic()
    with fit_tab.FitProcess(cmd, tmp_path / "fit.log") as proc:
        snaps = list(fit_tab.follow(proc, timeout_s=0.3, interval_s=0.05))
        assert snaps[-1].error.startswith("fitting took longer than")
        assert proc.poll() is not None
    assert time.monotonic() - t0 < 20
    with fit_tab.FitProcess(cmd, tmp_path / "fit2.log") as proc2:  # leaving the block early kills it
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
    assert fit_tab.validate_fit_request("splat", "quick", 300.0, ("splat", "sugar"), 1000) == 300
    for args, msg in [(("nerf2", "quick", 3), "unknown method"), (("splat", "fast", 3), "unknown preset"),
                      (("splat", "quick", 0), "between 1 and 1000"), (("splat", "quick", None), "whole number"),
                      (("splat", "quick", 5000), "between 1 and 1000")]:
        with pytest.raises(DataError, match=msg):
            fit_tab.validate_fit_request(*args, ("splat", "sugar"), 1000)
    assert fit_tab.validate_fit_request("sugar", "quick", 3, ("splat", "sugar", "nerf"), 10, pose_opt=True) == 3
    with pytest.raises(DataError, match="not nerf"):
        fit_tab.validate_fit_request("nerf", "quick", 3, ("splat", "sugar", "nerf"), 10, pose_opt=True)


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
    (run / "metrics.json").write_text("{broken")
    with pytest.raises(DataError, match="run/metrics.json: cannot be read"):
        viewer_tab.load_run_view(run)


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
