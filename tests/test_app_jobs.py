"""The app's job folders stay within their bounds: oldest removed first, held (shown) ones kept."""

from __future__ import annotations

import os
import time

import pytest

from apps import jobs
from apps.settings import AppSettings


def _settings(tmp_path, **kw) -> AppSettings:
    return AppSettings(workdir=str(tmp_path / "work"), runs_roots=[], **kw).resolved()


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_more_jobs_than_the_bound_keeps_the_newest(tmp_path):
    s = _settings(tmp_path, max_jobs=3)
    store = jobs.image_jobs(s)
    made = []
    for i in range(7):
        job = store.create(f"img{i}")
        (job / "out").mkdir()
        (job / "out" / "mesh.glb").write_bytes(b"x" * 100)
        store.release(job)  # the request's session has moved on
        made.append(job)
    left = sorted(p.name for p in s.jobs_dir.iterdir())
    assert left == sorted(p.name for p in made[-3:])  # the newest survive, the count is the bound
    assert store.folders() == made[::-1][:3]  # newest first


def test_held_jobs_survive_the_bound_and_discard_removes(tmp_path):
    s = _settings(tmp_path, max_jobs=2)
    store = jobs.image_jobs(s)
    shown = store.create("shown")  # a live session still shows it (held), although it is the oldest
    others = []
    for i in range(4):
        others.append(store.create(f"other{i}"))
        store.release(others[-1])
    assert shown.is_dir() and store.is_held(shown / "out" / "mesh.glb")
    assert sorted(store.folders()) == sorted([shown, others[-1]])  # held ones count towards the bound
    store.discard(shown)  # the session started a new request: its old result goes
    assert not shown.exists()
    store.discard(tmp_path / "elsewhere")  # paths outside the store are ignored
    store.discard(None)
    assert others[-1].is_dir()


def test_fit_runs_have_their_own_bound_and_hold_by_any_path_inside(tmp_path):
    s = _settings(tmp_path, max_jobs=1, max_fit_runs=2)
    runs = jobs.fit_runs(s)
    first = runs.create("photos")
    runs.release(first)
    assert runs.hold(first / "run") == first  # the viewer shows first/run
    later = []
    for _ in range(3):
        later.append(runs.create("sample"))
        runs.release(later[-1])
    assert runs.folders() == [later[-1], first]  # the oldest is kept while it is shown
    runs.release(first / "run")  # the viewer session opened another run
    newest = runs.create("photos")
    assert not first.exists() and runs.folders() == [newest, later[-1]]
    assert jobs.image_jobs(s).folders() == []  # the image-to-3D store is separate
    assert jobs.fit_runs(s) is runs  # one store per folder: every request sees the same holds


def test_age_bound_and_no_limit(tmp_path):
    s = _settings(tmp_path, max_jobs=0, max_job_age_h=1.0)
    store = jobs.image_jobs(s)
    old, new = store.create("old"), store.create("new")
    for j in (old, new):
        store.release(j)
    _age(old, 2 * 3600)
    assert store.prune() == [old] and new.is_dir()
    for i in range(25):  # max_jobs 0: no count limit
        store.release(store.create(f"j{i}"))
    assert len(store.folders()) == 26


def test_prune_leaves_hidden_entries_files_and_symlinks(tmp_path):
    s = _settings(tmp_path, max_jobs=1)
    (s.jobs_dir / ".keep").mkdir()
    (s.jobs_dir / "note.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (s.jobs_dir / "link").symlink_to(outside)
    store = jobs.image_jobs(s)
    for _ in range(3):
        store.release(store.create("j"))
    assert len(store.folders()) == 1 and outside.is_dir()
    assert {".keep", "note.txt", "link"} <= {p.name for p in s.jobs_dir.iterdir()}


def test_bounds_from_env_and_command_line(tmp_path, monkeypatch):
    from recon3d.cli import build_parser

    assert (AppSettings().max_jobs, AppSettings().max_fit_runs, AppSettings().max_job_age_h) == (20, 10, 0.0)
    monkeypatch.setenv("RECON3D_APP_MAX_JOBS", "5")
    monkeypatch.setenv("RECON3D_APP_MAX_JOB_AGE_H", "1.5")
    s = AppSettings.from_env()
    assert (s.max_jobs, s.max_fit_runs, s.max_job_age_h) == (5, 10, 1.5)
    assert AppSettings.from_env(max_jobs=7).max_jobs == 7  # a flag beats the variable
    monkeypatch.setenv("RECON3D_APP_MAX_FIT_RUNS", "many")
    with pytest.raises(ValueError, match="RECON3D_APP_MAX_FIT_RUNS must be a whole number"):
        AppSettings.from_env()
    a = build_parser().parse_args(["demo", "--max-jobs", "3", "--max-fit-runs", "0", "--max-job-age", "24"])
    assert (a.max_jobs, a.max_fit_runs, a.max_job_age) == (3, 0, 24.0)
    assert build_parser().parse_args(["demo"]).max_jobs is None  # unset: the variable, then the default
    for bad in (["--max-jobs", "-1"], ["--max-fit-runs", "x"], ["--max-job-age", "nan"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", *bad])
