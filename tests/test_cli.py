"""The recon3d command line: fit end to end on a tiny generated scene, info/convert, bad input."""

from __future__ import annotations

import json

import pytest

from recon3d.cli import main


@pytest.fixture(scope="module")
def tiny_blender(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("cli") / "tiny"
    generate_scene(root, num_views=9, size=32, seed=1, object="random")
    return root


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
    # resume continues from the step-6 checkpoint to 9 steps
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


@pytest.mark.parametrize("method", ["nerf", "sdf"])
def test_fit_field_method_run_folder(method, tiny_blender, tmp_path, capsys):
    """--method nerf|sdf: the run folder (metrics, renders, orbit, mesh in three formats), --resume,
    and render / export --mesh / eval on it."""
    import numpy as np
    import trimesh

    out = tmp_path / method
    args = ["--threads", "1", "fit", "--data", str(tiny_blender), "--method", method, "--preset", "quick",
            "--max-steps", "40", "--orbit-frames", "2", "--mesh-resolution", "48", "--out", str(out)]
    assert main(args) == 0
    for name in ("config.json", "run.json", "metrics.json", "orbit.gif", "transforms.json",
                 "mesh.glb", "mesh.obj", "mesh.ply"):
        assert (out / name).is_file(), name
    assert not (out / "splats.ply").exists()
    assert len(list((out / "renders" / "test").glob("*.png"))) == 2
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == method and m["steps"] == 40 and m["test_views"] == 2 and 5 < m["test_psnr"] < 60
    assert m["mesh_faces"] > 50 and json.loads((out / "config.json").read_text())["mesh_resolution"] == 48
    # the mesh is in the capture's units: inside the generated object's bounds (radius ~1, unnormalized)
    ply = trimesh.load(out / "mesh.ply", force="mesh", process=False)
    assert len(ply.faces) == m["mesh_faces"] and np.abs(ply.vertices).max() < 2.0
    assert "test PSNR" in capsys.readouterr().out
    # --resume continues the same run (the config is reloaded from config.json)
    assert main(args[:-5] + ["--max-steps", "45", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 45
    assert main(["render", "--run", str(out), "--split", "test", "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "test").glob("*.png"))) == 2
    assert main(["export", "--run", str(out), "--mesh", str(tmp_path / "m.obj"), "--mesh-resolution", "32"]) == 0
    assert (tmp_path / "m.obj").is_file() and "faces" in capsys.readouterr().out
    assert main(["export", "--run", str(out), "--splats", str(tmp_path / "s.ply")]) == 2  # no Gaussians
    assert "no Gaussians" in capsys.readouterr().err
    assert main(["eval", "--run", str(out)]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["step"] == 45 and "gaussians" not in ev and ev["test_psnr"] > 5


def test_fit_unknown_method_is_exit_2(tiny_blender, tmp_path, capsys):
    assert main(["fit", "--data", str(tiny_blender), "--method", "nerv", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nerv" in err and "nerf" in err and "sdf" in err
