"""A run folder belongs to one run: no mixing without --resume/--overwrite, a lock against concurrent
fits, run ids in checkpoints, and no temporaries left by interrupted runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon3d.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("rf") / "tiny"
    generate_scene(root, num_views=9, size=32, seed=1, object="random")
    return root


def _fit(data, out, *extra):
    return main(["fit", "--data", str(data), "--preset", "quick", "--orbit-frames", "0", "--out", str(out), *extra])


def _sugar_config(path: Path, steps: int = 30) -> Path:
    from recon3d.methods.registry import get_method

    cfg = get_method("sugar").config("quick", max_steps=steps)
    cfg.splat.init_num_random, cfg.splat.init_opacity, cfg.splat.sh_degree = 1500, 0.5, 0
    cfg.splat.checkpoint_every = 10
    cfg.sugar.steps, cfg.sugar.entropy_steps, cfg.sugar.num_samples, cfg.sugar.prune_opacity = 4, 2, 500, 0.05
    cfg.sugar.points_per_view, cfg.sugar.poisson_depth, cfg.sugar.checkpoint_every = 500, 5, 2
    return cfg.save(path)


def test_refit_without_flags_is_refused_and_overwrite_replaces_everything(tiny, tmp_path, capsys):
    from recon3d.methods.splat import load_splat_ply
    from recon3d.pipeline.run import load_run

    out = tmp_path / "R"
    assert main(["fit", "--data", str(tiny), "--method", "sugar", "--config", str(_sugar_config(tmp_path / "c.json")),
                 "--orbit-frames", "0", "--out", str(out)]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    assert _fit(tiny, out, "--max-steps", "5") == 2  # another run into the folder: refused, nothing touched
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "--overwrite" in err and "sugar" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert _fit(tiny, out, "--max-steps", "5", "--method", "splat", "--resume") == 2  # resume another method
    assert "--method sugar" in capsys.readouterr().err

    assert _fit(tiny, out, "--max-steps", "5", "--overwrite") == 0
    assert not (out / "sugar").exists() and not list(out.glob("mesh.*"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000005.pt"]
    m = json.loads((out / "metrics.json").read_text())
    trainer, opts = load_run(out, device="cpu")
    assert opts.method == "splat" and trainer.step == 5 == m["steps"]
    assert len(trainer.model) == len(load_splat_ply(out / "splats.ply")) == m["gaussians"]
    assert json.loads((out / "run.json").read_text())["run_id"] == m["run_id"]


def test_a_checkpoint_of_another_run_is_refused(tiny, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _fit(tiny, a, "--max-steps", "8") == 0
    assert _fit(tiny, b, "--max-steps", "4") == 0
    shutil.copy(a / "checkpoints" / "step_0000008.pt", b / "checkpoints" / "step_0000008.pt")
    capsys.readouterr()
    assert main(["export", "--run", str(b)]) == 2
    err = capsys.readouterr().err
    assert "another run" in err and "step_0000008.pt" in err
    assert _fit(tiny, b, "--max-steps", "12", "--resume") == 2


def test_pruning_keeps_the_checkpoint_just_written(tmp_path):
    from recon3d.runtime.checkpoint import prune_checkpoints

    d = tmp_path / "ck"
    d.mkdir()
    for step in (500, 1000, 300):
        (d / f"step_{step:07d}.pt").write_bytes(b"x")
    prune_checkpoints(d, 2, protect=d / "step_0000300.pt")
    assert sorted(p.name for p in d.iterdir()) == ["step_0000300.pt", "step_0000500.pt", "step_0001000.pt"]


def test_a_busy_folder_is_refused_at_once_and_a_dead_lock_taken_over(tiny, tmp_path, capsys, caplog):
    from recon3d.runtime.run_lock import RunLock

    out = tmp_path / "busy"
    with RunLock(out, command="recon3d fit (test)"):
        t = time.perf_counter()
        assert _fit(tiny, out, "--max-steps", "3") == 2
        assert time.perf_counter() - t < 5
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "busy" in err and str(os.getpid()) in err
    assert not (out / "run.json").exists()
    # a lock file left by a process that died (SIGKILL leaves the file; the kernel drops the flock)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with caplog.at_level("WARNING"):
        assert _fit(tiny, out, "--max-steps", "3") == 0
    assert "taking over the lock" in caplog.text


def test_temporaries_of_an_interrupted_run_are_removed(tiny, tmp_path):
    out = tmp_path / "run"
    assert _fit(tiny, out, "--max-steps", "4") == 0
    junk = [out / ".mesh.abc123.tmp", out / "sfm" / ".sfm-xyz", out / "sfm" / ".images.old-q1"]
    for d in junk:
        d.mkdir(parents=True)
        (d / "mesh.glb").write_bytes(b"glTF truncated")
    (out / ".splats.k2j3.tmp.ply").write_bytes(b"partial")
    (out / "checkpoints" / ".step_0000008.a1.tmp.pt").write_bytes(b"partial")
    assert _fit(tiny, out, "--max-steps", "6", "--resume") == 0
    left = [p for p in out.rglob(".*") if p.name != ".lock"]
    assert not left, left
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6


def _wait_for(path: Path, pred, proc, timeout=300.0):
    from recon3d.runtime.progress import read_events

    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the fit ended (rc {proc.returncode}) before the point to kill it")
        events, _ = read_events(path)
        if any(pred(e) for e in events):
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the fit")


@pytest.mark.slow
def test_sigkill_during_sfm_training_and_meshing_then_resume(tmp_path):
    """Kill -9 a real `fit --images --method sugar` during SfM, during training and while meshing; each
    time the next `--resume` continues, and at the end every file loads and no temporary is left."""
    from recon3d.io import load_scene
    from recon3d.mesh import load_mesh
    from recon3d.methods.splat import load_splat_ply
    from tests.test_sfm import SAMPLE, SUBSET, _sample_file

    if not SAMPLE.is_dir():
        pytest.skip("data/sample_scene not present")
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in SUBSET:
        shutil.copy(_sample_file(stem), photos / f"{stem}.png")
    out = tmp_path / "run"
    cfg = _sugar_config(tmp_path / "c.json", steps=120)
    cmd = [sys.executable, "-m", "recon3d.cli", "--threads", "1", "fit", "--images", str(photos), "--method", "sugar",
           "--config", str(cfg), "--orbit-frames", "2", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    progress = out / "progress.jsonl"
    points = [lambda e: e.kind == "stage" and e.stage == "sfm",
              lambda e: e.kind == "step" and e.stage == "splat" and (e.step or 0) >= 40,
              lambda e: e.kind == "stage" and e.stage == "mesh"]
    for k, point in enumerate(points):
        proc = subprocess.Popen(cmd + (["--resume"] if k else []), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_for(progress, point, proc)
            if k == 0:
                time.sleep(0.5)  # inside the SfM work
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert subprocess.run(cmd + ["--resume"], env=env, capture_output=True).returncode == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 120 and m["sfm_registered"] == 16
    assert len(load_splat_ply(out / "splats.ply")) == m["sugar_gaussians"]
    for name in ("mesh.glb", "mesh.obj", "mesh.ply"):
        assert load_mesh(out / name).num_faces == m["mesh_faces"]
    assert len(load_scene(out, format="nerfstudio").cameras) == 16
    left = [p for p in out.rglob(".*") if p.name != ".lock"]
    assert not left, left
