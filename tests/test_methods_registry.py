"""The per-scene method registry, presets, and the run folder as the source of truth."""

from __future__ import annotations

import json

import pytest

from recon3d.cli import main
from recon3d.io.errors import DataError
from recon3d.methods.registry import METHODS, get_method, names_with
from recon3d.runtime.config import PRESET_NAMES, Presets


def test_every_method_declares_config_presets_and_trainer():
    from recon3d.methods.base import PerSceneMethod

    assert set(METHODS) == {"splat", "sugar", "nerf", "sdf"}
    for name, spec in METHODS.items():
        assert issubclass(spec.trainer_cls, PerSceneMethod), name
        assert isinstance(spec.presets, Presets) and tuple(spec.presets.names) == PRESET_NAMES
        for preset in PRESET_NAMES:
            cfg = spec.config(preset)
            assert isinstance(cfg, spec.config_cls)
            assert spec.get_option(cfg, "max_steps") > 0
        assert spec.supports("mesh") == (name != "splat")
    assert names_with("pose_opt") == ("splat", "sugar")
    assert names_with("splats") == ("splat", "sugar")


def test_default_preset_is_the_dataclass_defaults():
    """One definition: the 'default' preset is the config class's defaults (NeRF adds torch.compile)."""
    for name, spec in METHODS.items():
        d, default = spec.config_cls().to_dict(), spec.config("default").to_dict()
        if name == "nerf":
            assert default.pop("compile") == "auto"
            d.pop("compile")
        assert d == default, name


def test_fit_options_map_onto_config_fields():
    sugar = get_method("sugar")
    cfg = sugar.config("quick", max_steps=77, backend="torch", pose_opt=True)
    assert (cfg.splat.max_steps, cfg.splat.backend, cfg.splat.pose_opt) == (77, "torch", True)
    assert cfg.sugar.steps == 600  # the quick SuGaR schedule
    nerf = get_method("nerf").config("quick", mesh_resolution=40)
    assert nerf.mesh_resolution == 40 and nerf.max_steps == 600
    with pytest.raises(DataError, match="--mesh-resolution.*does not apply to --method splat"):
        get_method("splat").config("quick", mesh_resolution=64)
    with pytest.raises(DataError, match="--method"):
        get_method("nerv")
    with pytest.raises(DataError, match="unknown preset"):
        get_method("splat").config("fast")


def test_sugar_run_config_round_trip_and_older_runs(tmp_path):
    from recon3d.methods.splat.config import SplatConfig
    from recon3d.methods.sugar.config import RUN_PRESETS, SugarRunConfig

    cfg = RUN_PRESETS("quick", splat={"max_steps": 123})
    path = cfg.save(tmp_path / "config.json")
    back = SugarRunConfig.load(path)
    assert back == cfg and back.splat.max_steps == 123 and back.sugar.steps == 600
    SplatConfig(max_steps=9).save(tmp_path / "old.json")  # a run folder written before SugarRunConfig
    old = SugarRunConfig.load(tmp_path / "old.json")
    assert old.splat.max_steps == 9 and old.sugar == RUN_PRESETS("default").sugar


def test_sugar_fit_saves_its_config_and_reopens(tiny_blender, tmp_path):
    from recon3d.methods.sugar.config import SugarRunConfig
    from recon3d.pipeline.run import load_run

    out = tmp_path / "sugar"
    cfg = get_method("sugar").config("quick", max_steps=40)
    cfg.splat.init_num_random, cfg.splat.init_opacity, cfg.splat.sh_degree = 1500, 0.5, 0
    cfg.sugar.steps, cfg.sugar.entropy_steps, cfg.sugar.num_samples, cfg.sugar.prune_opacity = 4, 2, 500, 0.05
    cfg.sugar.points_per_view, cfg.sugar.poisson_depth, cfg.sugar.checkpoint_every = 500, 5, 2
    cfg.save(tmp_path / "cfg.json")
    assert main(["fit", "--data", str(tiny_blender), "--method", "sugar", "--config", str(tmp_path / "cfg.json"),
                 "--orbit-frames", "0", "--out", str(out)]) == 0
    saved = SugarRunConfig.load(out / "config.json")
    assert saved.sugar.steps == 4 and saved.splat.max_steps == 40
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 40 and m["sugar_gaussians"] > 0 and (out / "mesh.glb").is_file()
    trainer, opts = load_run(out, device="cpu")
    assert trainer.step == 44 and trainer.splat.step == 44 and trainer.pruned
    assert len(trainer.model) == m["sugar_gaussians"]


def test_reopening_a_run_reads_its_scene_not_the_source(tiny_blender, tmp_path, monkeypatch):
    """render / eval use RUN/scene.json: the dataset (or SfM, VGGT) is not read again."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_blender, data)
    out = tmp_path / "run"
    assert main(["fit", "--data", str(data), "--preset", "quick", "--max-steps", "5", "--orbit-frames", "0",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    scene = json.loads((out / "scene.json").read_text())
    assert len(scene["frames"]) == 9 and len(scene["test_indices"]) == 2

    import recon3d.io
    import recon3d.pipeline.scene_source as source

    def refuse(*a, **k):
        raise AssertionError("the run's source was loaded again")

    monkeypatch.setattr(source, "load_fit_scene", refuse)
    monkeypatch.setattr(recon3d.io, "load_scene", refuse)
    for f in data.glob("transforms_*.json"):  # the dataset's poses are gone: only the run's own remain
        f.unlink()
    assert main(["eval", "--run", str(out)]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["test_psnr"] == pytest.approx(m["test_psnr"], abs=1e-4)
    assert main(["render", "--run", str(out), "--split", "train", "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "train").glob("*.png"))) == 7


def test_fit_writes_progress_events(tiny_blender, tmp_path):
    from recon3d.runtime.progress import read_events

    out = tmp_path / "run"
    assert main(["fit", "--data", str(tiny_blender), "--preset", "quick", "--max-steps", "12", "--orbit-frames",
                 "2", "--out", str(out)]) == 0
    events, offset = read_events(out / "progress.jsonl")
    assert offset == (out / "progress.jsonl").stat().st_size
    kinds = [(e.kind, e.stage) for e in events]
    assert ("stage", "load") in kinds and ("stage", "fit") in kinds and ("stage", "orbit") in kinds
    start = next(e for e in events if e.kind == "start")
    end = next(e for e in events if e.kind == "end")
    assert (start.stage, start.step, start.total) == ("splat", 0, 12) and (end.step, end.total) == (12, 12)
    assert any(e.kind == "step" and "loss" in e.values for e in events)
    done = events[-1]
    m = json.loads((out / "metrics.json").read_text())
    assert done.kind == "done" and done.values["test_psnr"] == pytest.approx(m["test_psnr"], abs=1e-5)
    # a fit whose source is missing writes nothing; one that fails later records its one-line error
    assert main(["fit", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text("{ not json")
    assert main(["fit", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    last = read_events(tmp_path / "o" / "progress.jsonl")[0][-1]
    assert last.kind == "error" and "malformed JSON" in last.message


def test_read_events_leaves_a_partial_line_for_later(tmp_path):
    from recon3d.runtime.progress import Event, read_events

    path = tmp_path / "p.jsonl"
    path.write_text(Event("stage", "sfm").to_json() + "\n" + '{"kind": "st')
    events, off = read_events(path)
    assert [e.stage for e in events] == ["sfm"]
    with open(path, "a") as f:
        f.write('ep", "stage": "fit", "step": 3, "total": 9}\n')
    more, off2 = read_events(path, off)
    assert [(e.kind, e.step) for e in more] == [("step", 3)] and off2 == path.stat().st_size
