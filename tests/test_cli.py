"""The recon3d command line: fit end to end on a tiny generated scene, info/convert, bad input."""

from __future__ import annotations

import json

import pytest

from recon3d.cli import main


def test_fit_writes_the_run_folder_and_resumes(tiny_blender, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "--data", str(tiny_blender), "--preset", "quick", "--max-steps", "6", "--orbit-frames", "3",
            "--out", str(out)]
    assert main(args) == 0
    for name in ("config.json", "metrics.json", "splats.ply", "orbit.gif", "transforms.json"):
        assert (out / name).is_file(), name
    assert list((out / "renders" / "test").glob("*.png"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 6 and m["test_views"] == 2 and 0 < m["test_psnr"] < 60
    assert m["mesh"] is None and "--method sugar" in m["mesh_note"]
    assert "test PSNR" in capsys.readouterr().out
    # resume continues from the step-6 checkpoint to 9 steps (pose refinement cannot be added on resume)
    assert main(args[:-4] + ["--max-steps", "9", "--out", str(out), "--resume", "--pose-opt"]) == 2
    assert "without --pose-opt" in capsys.readouterr().err
    assert main(args[:-4] + ["--max-steps", "9", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9
    # companion commands reopen the run folder
    assert main(["render", "--run", str(out), "--split", "all", "--orbit", "2", "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "train").glob("*.png"))) == 7 and (tmp_path / "r" / "orbit.gif").is_file()
    assert main(["export", "--run", str(out), "--splats", str(tmp_path / "e.ply")]) == 0
    from recon3d.methods.splat import load_splat_ply

    assert len(load_splat_ply(tmp_path / "e.ply")) == m2_gaussians(out)
    assert main(["eval", "--run", str(out), "--gt", str(tiny_blender)]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["step"] == 9 and ev["pose_vs_gt"]["mean_center_error"] < 1e-4  # same cameras as the GT
    assert main(["render", "--run", str(tmp_path)]) == 2  # not a run folder


def m2_gaussians(run) -> int:
    return json.loads((run / "metrics.json").read_text())["gaussians"]


def test_info_and_convert(tiny_blender, tmp_path, capsys):
    assert main(["info", "--data", str(tiny_blender)]) == 0
    assert "train 7" in capsys.readouterr().out
    out = tmp_path / "transforms.json"
    assert main(["convert", "--data", str(tiny_blender), "--out", str(out)]) == 0
    from recon3d.io import load_scene

    assert len(load_scene(out.parent, format="nerfstudio").cameras) == 9


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text("{ not json")
    assert main(["fit", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "transforms.json" in err and "malformed JSON" in err
    assert main(["info", "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: --images and --data are exclusive
        main(["fit", "--data", "a", "--images", "b"])
    assert e.value.code == 2


def _tiny_field_config(method: str, path):
    """A small nerf/sdf config (what a user passes with --config) that fits a 32 px scene in seconds."""
    if method == "nerf":
        from recon3d.methods.nerf import FieldConfig, MarchConfig, NerfConfig

        cfg = NerfConfig(rays_per_batch=256, target_samples=0, lr=3e-2, lr_warmup_steps=10, grid_resolution=32,
                         grid_update_every=8, grid_warmup_steps=0, background="scene", checkpoint_every=50,
                         field=FieldConfig(num_levels=6, log2_hashmap_size=12, base_resolution=4, max_resolution=64,
                                           hidden_dim=32, color_hidden_layers=1, sh_degree=1),
                         march=MarchConfig(num_steps=64), mesh_threshold=5.0)
    else:
        from recon3d.methods.sdf import NeusSamplingConfig, SdfConfig, SdfFieldConfig

        cfg = SdfConfig(rays_per_batch=128, lr=5e-3, lr_warmup_steps=5, cos_anneal_steps=10, checkpoint_every=50,
                        field=SdfFieldConfig(hidden_dim=32, num_layers=2, num_frequencies=4, color_hidden_dim=32,
                                             color_hidden_layers=1),
                        sampling=NeusSamplingConfig(num_coarse=16, num_importance=16))
    cfg.save(path)
    return path


@pytest.mark.parametrize("method,steps", [("nerf", 150), ("sdf", 40)])
def test_fit_field_method_run_folder(method, steps, tiny_blender, tmp_path, capsys):
    """--method nerf|sdf: the run folder (metrics, renders, orbit, mesh in three formats), --resume,
    and render / export --mesh / eval on it."""
    import numpy as np
    import trimesh

    out = tmp_path / method
    cfg = _tiny_field_config(method, tmp_path / "cfg.json")
    args = ["--threads", "1", "fit", "--data", str(tiny_blender), "--method", method, "--config", str(cfg),
            "--orbit-frames", "2", "--mesh-resolution", "48", "--out", str(out)]
    assert main(args + ["--max-steps", str(steps)]) == 0
    for name in ("config.json", "run.json", "metrics.json", "orbit.gif", "transforms.json",
                 "mesh.glb", "mesh.obj", "mesh.ply"):
        assert (out / name).is_file(), name
    assert not (out / "splats.ply").exists()
    assert len(list((out / "renders" / "test").glob("*.png"))) == 2
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == method and m["steps"] == steps and m["test_views"] == 2 and 12 < m["test_psnr"] < 60
    saved = json.loads((out / "config.json").read_text())
    assert saved["mesh_resolution"] == 48 and saved["rays_per_batch"] in (128, 256)  # --config was used
    assert m["mesh_faces"] > 50
    # the mesh is in the capture's units (the generated object: radius about 1 around the origin)
    ply = trimesh.load(out / "mesh.ply", force="mesh", process=False)
    assert len(ply.faces) == m["mesh_faces"] and 0.2 < np.abs(ply.vertices).max() < 2.0
    assert "test PSNR" in capsys.readouterr().out
    # --resume continues the same run (the config is reloaded from config.json)
    assert main(args + ["--max-steps", str(steps + 5), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == steps + 5
    assert main(["render", "--run", str(out), "--split", "test", "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "test").glob("*.png"))) == 2
    assert main(["export", "--run", str(out), "--mesh", str(tmp_path / "m.obj"), "--mesh-resolution", "32"]) == 0
    assert (tmp_path / "m.obj").is_file() and "faces, 32^3 grid" in capsys.readouterr().out
    assert main(["export", "--run", str(out), "--splats", str(tmp_path / "s.ply")]) == 2  # no Gaussians
    assert "no Gaussians" in capsys.readouterr().err
    assert main(["export", "--run", str(out), "--mesh", str(tmp_path / "t.glb"), "--texture-size", "64"]) == 2
    assert "for sugar runs" in capsys.readouterr().err and not (tmp_path / "t.glb").exists()
    assert main(["eval", "--run", str(out)]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["step"] == steps + 5 and "gaussians" not in ev and ev["test_psnr"] > 12


def test_fit_unknown_method_is_exit_2(tiny_blender, tmp_path, capsys):
    assert main(["fit", "--data", str(tiny_blender), "--method", "nerv", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nerv" in err and "nerf" in err and "sdf" in err


def test_fit_pose_opt_writes_refined_cameras(tiny_blender, tmp_path, capsys):
    from recon3d.methods.splat import preset

    out, cfg = tmp_path / "run", tmp_path / "splat.json"
    preset("quick", init_num_random=2000, pose_test_steps=10).save(cfg)
    args = ["--threads", "1", "fit", "--data", str(tiny_blender), "--config", str(cfg), "--max-steps", "8",
            "--orbit-frames", "0", "--pose-opt", "--out", str(out)]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["pose_opt"] and m["pose_rotation_deg_mean"] > 0 and m["test_pose_alignment_steps"] == 10
    assert json.loads((out / "config.json").read_text())["pose_opt"] is True
    from recon3d.io import load_scene

    refined = load_scene(out / "transforms_refined.json", format="nerfstudio")
    assert len(refined.cameras) == 9 and (out / "transforms.json").is_file()
    assert main(["eval", "--run", str(out), "--gt", str(tiny_blender)]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["pose_vs_gt"]["mean_center_error"] < 1e-4  # the given cameras are the ground truth
    assert "refined_pose_vs_gt" in ev and "refined poses vs" in capsys.readouterr().out
    # resuming keeps the pose corrections (the checkpoint has them; config.json has pose_opt)
    assert main(args[:-5] + ["--max-steps", "10", "--orbit-frames", "0", "--out", str(out), "--resume"]) == 0


def test_fit_pose_opt_is_refused_for_field_methods(tiny_blender, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["fit", "--data", str(tiny_blender), "--method", "nerf", "--pose-opt", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--pose-opt" in err and "splat" in err and not (out / "metrics.json").exists()
