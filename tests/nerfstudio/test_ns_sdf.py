"""``ns-train recon3d-sdf``: registration, recon3d's defaults, a short CPU training run, checkpoint
reload, the plugin rendering (and scoring) exactly what recon3d's NeuS renderer (and losses) do,
and the mesh exporter."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from .test_ns_nerf import _image_psnrs, _run, _scalars

pytestmark = pytest.mark.nerfstudio
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

STEPS = 80
RADIUS = 0.7  # bounding sphere in nerfstudio's frame: holds the object (farthest point ~0.58 from the
#               scene box's center), most cameras (0.74-1.15 from it) stay outside
SMALL_MODEL = [  # a CPU-sized MLP field (the method's defaults are recon3d's GPU preset)
    "--pipeline.model.field.geometry", "mlp", "--pipeline.model.field.hidden-dim", "32",
    "--pipeline.model.field.num-layers", "2", "--pipeline.model.field.num-frequencies", "4",
    "--pipeline.model.field.color-hidden-dim", "32", "--pipeline.model.field.color-hidden-layers", "1",
    "--pipeline.model.sampling.num-coarse", "16", "--pipeline.model.sampling.num-importance", "16",
    "--pipeline.model.sphere-radius", str(RADIUS), "--pipeline.model.cos-anneal-steps", "40",
]


def test_entry_point_and_help_list_method(capsys, ns_train_help):
    from importlib.metadata import entry_points

    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    eps = {ep.name: ep for ep in entry_points(group="nerfstudio.method_configs")}
    assert eps["recon3d-sdf"].value == "recon3d.integrations.nerfstudio.sdf_config:recon3d_sdf"
    assert "recon3d-sdf" in ns_train_help
    with pytest.raises(SystemExit) as done:
        tyro.cli(AnnotatedBaseConfigUnion, args=["recon3d-sdf", "--help"])
    assert done.value.code == 0
    sub = capsys.readouterr().out
    for flag in ("--pipeline.model.field.geometry", "--pipeline.model.sampling.num-importance",
                 "--pipeline.model.sphere-radius", "--pipeline.model.eikonal-weight", "--pipeline.model.mask-weight",
                 "--pipeline.model.cos-anneal-steps", "--pipeline.model.background-color",
                 "--optimizers.fields.optimizer.betas", "--optimizers.encoding.scheduler.warm-up-end"):
        assert flag in sub, flag


def test_method_defaults_are_recon3ds():
    """The method spec carries recon3d's ``high`` preset, optimizer settings and (nearly) its schedule."""
    from recon3d.integrations.nerfstudio.sdf_config import recon3d_sdf
    from recon3d.methods.sdf import PRESETS

    high, cfg = PRESETS["high"], recon3d_sdf.config
    model = cfg.pipeline.model
    assert model.field == high.field and model.sampling == high.sampling and model.sphere_radius == high.radius
    assert (model.eikonal_weight, model.mask_weight, model.cos_anneal_steps, model.seed) == (
        high.eikonal_weight, high.mask_weight, high.cos_anneal_steps, high.seed)
    assert cfg.max_num_iterations == high.max_steps and cfg.mixed_precision is False
    assert cfg.pipeline.datamanager.train_num_rays_per_batch == high.rays_per_batch
    for name, lr in (("fields", high.lr), ("encoding", high.lr_grid)):
        opt = cfg.optimizers[name]["optimizer"].setup([torch.nn.Parameter(torch.zeros(1))])
        group = opt.param_groups[0]
        assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (lr, (0.9, 0.99), 1e-15, 0)
        factor = cfg.optimizers[name]["scheduler"].setup().get_scheduler(opt, lr).lr_lambdas[0]
        # recon3d's SdfTrainer.lr_factor: warm-up times a cosine over all steps, down to lr_final_factor
        a, w, n = high.lr_final_factor, high.lr_warmup_steps, high.max_steps
        ours = [min(1, (s + 1) / w) * (a + (1 - a) * 0.5 * (1 + math.cos(math.pi * s / n))) for s in range(n + 1)]
        theirs = [factor(s) for s in range(n + 1)]
        assert max(abs(x - y) for x, y in zip(ours[w:], theirs[w:])) < 0.01
        assert theirs[-1] == pytest.approx(a) and ours[-1] == pytest.approx(a)


def _sdf_model(scene_box, num_train_data=10, **kw):
    from recon3d.integrations.nerfstudio.sdf_model import Recon3dSdfModelConfig
    from recon3d.methods.sdf import NeusSamplingConfig, SdfFieldConfig

    field = kw.pop("field", SdfFieldConfig(hidden_dim=32, num_layers=2, num_frequencies=4, color_hidden_dim=32,
                                           color_hidden_layers=1))
    cfg = Recon3dSdfModelConfig(field=field, sampling=NeusSamplingConfig(num_coarse=16, num_importance=16), **kw)
    torch.manual_seed(0)  # the colour network's initialization
    return cfg.setup(scene_box=scene_box, num_train_data=num_train_data)


def test_sphere_and_param_groups_fit_nerfstudios_optimizers():
    """The sphere sits in the scene box (inscribed by default); the "encoding" group exists only for
    hash-grid geometry, and nerfstudio's Optimizers accept the method's config either way."""
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.optimizers import Optimizers

    from recon3d.integrations.nerfstudio.sdf_config import recon3d_sdf
    from recon3d.methods.sdf import SdfFieldConfig

    box = SceneBox(aabb=torch.tensor([[-1.0, -2.0, 0.0], [3.0, 2.0, 1.0]]))
    mlp = _sdf_model(box)
    torch.testing.assert_close(mlp.field.center, torch.tensor([1.0, 0.0, 0.5]))
    assert mlp.field.radius == 0.5 and _sdf_model(box, sphere_radius=1.5).field.radius == 1.5
    with pytest.raises(ValueError, match="sphere_radius"):
        _sdf_model(box, sphere_radius=0.0)
    grid = _sdf_model(box, field=SdfFieldConfig(geometry="hashgrid", hidden_dim=16, num_layers=1, num_levels=2,
                                                 log2_hashmap_size=8, max_resolution=32))
    for model, names in ((mlp, {"fields"}), (grid, {"fields", "encoding"})):
        groups = model.get_param_groups()
        assert set(groups) == names
        ids = [id(p) for ps in groups.values() for p in ps]
        assert sorted(ids) == sorted(id(p) for p in model.field.parameters())  # each parameter once
        opts = Optimizers(copy.deepcopy(recon3d_sdf.config.optimizers), groups)
        assert set(opts.optimizers) == names
    assert {id(p) for p in grid.get_param_groups()["encoding"]} == {id(p) for p in grid.field.grid.parameters()}


def test_warns_when_cameras_are_inside_the_sphere(caplog):
    from nerfstudio.data.scene_box import SceneBox

    model = _sdf_model(SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])))  # radius 1
    outside = torch.tensor([[3.0, 0.0, 0.0], [0.0, -2.0, 0.0]])
    with caplog.at_level("WARNING"):
        assert model.warn_cameras_inside(outside) == 0
        assert not caplog.records
        assert model.warn_cameras_inside(torch.cat([outside, torch.tensor([[0.0, 0.0, 0.8]])])) == 1
    assert "1 of 3 training cameras" in caplog.text and "sphere-radius 0.72" in caplog.text


@pytest.fixture(scope="module")
def trained(ns_scene, tmp_path_factory):
    """80 CPU steps through ns-train (small MLP field), evaluating every eval image at the last step
    (before the final checkpoint is written). Rays are drawn over whole images (ignore-mask), so the
    opacity BCE against the images' alpha sees the background too."""
    folder, _ = ns_scene
    out = tmp_path_factory.mktemp("ns_sdf_out")
    res = _run([
        "recon3d-sdf", "--data", str(folder), "--output-dir", str(out), "--experiment-name", "tiny",
        "--timestamp", "run", "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--max-num-iterations", str(STEPS),
        "--steps-per-save", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-batch", "0",
        "--steps-per-eval-all-images", str(STEPS - 1), "--logging.steps-per-log", "1",
        "--pipeline.datamanager.train-num-rays-per-batch", "256",
        "--pipeline.datamanager.pixel-sampler.ignore-mask", "True",
        *SMALL_MODEL,
        # a CPU learning rate for the small MLP, a short warm-up and (nearly) no decay within these steps
        "--optimizers.fields.optimizer.lr", "5e-3", "--optimizers.fields.scheduler.warm-up-end", "5",
        "--optimizers.fields.scheduler.max-steps", "2000",
    ])
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    return out / "tiny" / "recon3d-sdf" / "run"


def test_training_on_cpu_writes_checkpoint_and_lowers_loss(trained):
    ckpts = sorted((trained / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in ckpts] == [f"step-{STEPS - 1:09d}.ckpt"]
    ck = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert ck["step"] == STEPS - 1 and set(ck["optimizers"]) == {"fields"}  # MLP geometry: no hash tables
    state = ck["pipeline"]
    assert all(torch.isfinite(v).all() for k, v in state.items() if k.startswith("_model.field."))
    # every recon3d loss term was logged; the anneal ran 0 -> 1 over its 40 steps
    for key in ("rgb_loss", "eikonal_loss", "mask_loss"):
        assert len(_scalars(trained, f"Train Loss Dict/{key}")) == STEPS, key
    ratio = [v for _, v in _scalars(trained, "Train Metrics Dict/cos_anneal_ratio")]
    assert ratio[0] == 0.0 and ratio[20] == pytest.approx(0.5) and ratio[-1] == 1.0
    loss = [v for _, v in _scalars(trained, "Train Loss")]
    p = [v for _, v in _scalars(trained, "Train Metrics Dict/psnr")]
    print(f"loss: {np.mean(loss[:10]):.4f} over the first 10 steps, {np.mean(loss[-10:]):.4f} over the last 10; "
          f"batch PSNR: {np.mean(p[:10]):.2f} -> {np.mean(p[-10:]):.2f} dB")
    assert np.mean(loss[-10:]) < 0.5 * np.mean(loss[:10])
    assert np.mean(p[-10:]) > np.mean(p[:10]) + 3.0


def test_checkpoint_reloads_renders_as_before_saving_and_improved(trained):
    """eval_setup restores the field: eval images render as inside the training run (same PSNR as
    logged there), and the trained field fits whole training views better than a fresh one."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(trained / "config.yml", test_mode="val")
    assert step == STEPS - 1
    model, dm = pipeline.model, pipeline.datamanager
    assert model.field.radius == RADIUS
    logged = _scalars(trained, "Eval Images Metrics Dict (all images)/psnr")
    assert [s for s, _ in logged] == [STEPS - 1]
    reloaded = float(np.mean(_image_psnrs(model, dm.eval_dataset, masked=False)))
    assert reloaded == pytest.approx(logged[0][1], abs=1e-4), (reloaded, logged)

    torch.manual_seed(0)
    init = model.config.setup(scene_box=dm.train_dataset.scene_box, num_train_data=len(dm.train_dataset))
    before = float(np.mean(_image_psnrs(init, dm.train_dataset, masked=False, views=(0, 4))))
    after = float(np.mean(_image_psnrs(model, dm.train_dataset, masked=False, views=(0, 4))))
    print(f"train-view PSNR (whole images): {before:.2f} dB at init, {after:.2f} dB after {STEPS} steps")
    assert after > before + 2.0, (before, after)


def test_plugin_renders_and_scores_what_recon3d_does(ns_scene):
    """Same field and rays (nerfstudio's, from its dataparser): the plugin's outputs equal recon3d's
    render_neus at evaluation (pruned) and in training (jitter, random backgrounds, cos anneal), and
    its loss terms are recon3d's formulas."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from recon3d.core.rays import RayBundle
    from recon3d.methods.sdf import render_neus

    folder, _ = ns_scene
    out = NerfstudioDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    model = _sdf_model(out.scene_box, sphere_radius=RADIUS, seed=3)
    with torch.no_grad():  # a surface that is not the initial sphere, colours that vary
        g = torch.Generator().manual_seed(1)
        for layer in model.field.layers:
            layer.weight.add_(torch.randn(layer.weight.shape, generator=g) * 0.05)
    field = model.field
    bundle = out.cameras[2:3].generate_rays(camera_indices=0).flatten()
    # the plugin renders unit directions (nerfstudio's are, up to float rounding)
    unit = torch.nn.functional.normalize(bundle.directions.reshape(-1, 3), dim=-1)
    rays = RayBundle(bundle.origins.reshape(-1, 3), unit)

    model.eval()
    with torch.no_grad():  # as nerfstudio evaluates
        ns = model(bundle)
    ref = render_neus(field, rays, model.config.sampling, False, background=torch.zeros(3), create_graph=False,
                      prune=True)
    hit = (ref["opacity"] > 0.5).float().mean()
    assert 0.05 < hit < 0.95, hit  # some rays meet the surface, some pass by
    diffs = {k: float((ns[k] - ref[r]).abs().max()) for k, r in
             (("rgb", "rgb"), ("accumulation", "opacity"), ("depth", "depth"))}
    diffs["normals"] = float((ns["normals"] - (ref["normals"] + 1) / 2).abs().max())
    print("eval max |plugin - render_neus|:", diffs)
    assert max(diffs.values()) < 1e-5, diffs
    assert "gradients" not in ns  # no per-sample tensors gathered into evaluation images
    rgba = model.get_rgba_image(ns)  # straight colour + alpha, recomposited = the render
    torch.testing.assert_close(rgba[:, :3] * rgba[:, 3:], ns["rgb"], atol=1e-5, rtol=0)

    model.train()
    model.set_step(100)  # cos_anneal_steps 500: ratio 0.2
    model.generator.manual_seed(7)
    ns = model(bundle)
    gen = torch.Generator().manual_seed(7)  # the model draws backgrounds first, then the jitter
    bg = torch.rand(len(rays), 3, generator=gen)
    ref = render_neus(field, rays, model.config.sampling, True, background=bg, cos_anneal_ratio=0.2,
                      create_graph=True, generator=gen)
    for k, r in (("rgb", "rgb"), ("accumulation", "opacity"), ("depth", "depth"), ("gradients", "gradients")):
        torch.testing.assert_close(ns[k], ref[r], atol=1e-5, rtol=0)
    assert torch.equal(ns["inside"], ref["inside"]) and not ns["inside"].all()
    ref1 = render_neus(field, rays, model.config.sampling, True, background=bg, cos_anneal_ratio=1.0,
                       create_graph=True, generator=torch.Generator().manual_seed(7))
    assert (ref1["rgb"] - ns["rgb"]).abs().max() > 1e-4  # ...and the anneal mattered

    # losses: recon3d's formulas on an RGBA batch (L1 colour on the rays' background, eikonal inside
    # the sphere, opacity BCE against alpha), each weighted term its own key
    rgba_gt = torch.rand(len(rays), 4, generator=torch.Generator().manual_seed(2))
    losses = model.get_loss_dict(ns, {"image": rgba_gt})
    a = rgba_gt[:, 3:]
    gt = a * rgba_gt[:, :3] + (1 - a) * bg
    inside = ref["inside"]
    eik = ((ref["gradients"].norm(dim=-1)[inside] - 1) ** 2).mean()
    op = ref["opacity"].clamp(1e-3, 1 - 1e-3)
    bce = -(a * op.log() + (1 - a) * (1 - op).log()).mean()
    expected = {"rgb_loss": (ref["rgb"] - gt).abs().mean(), "eikonal_loss": 0.1 * eik, "mask_loss": 0.1 * bce}
    assert set(losses) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(losses[k], v, atol=1e-6, rtol=1e-5)
    sum(losses.values()).backward()  # the eikonal term trains the SDF through its gradient
    assert field.layers[0].weight.grad is not None and field.variance.grad is not None
    model.config.mask_weight = 0.0
    assert set(model.get_loss_dict(ns, {"image": rgba_gt})) == {"rgb_loss", "eikonal_loss"}


def test_export_mesh_of_a_run(trained, ns_scene, tmp_path, capsys):
    """The exporter's command line meshes the run's zero level set (vertex colours, on the surface),
    in nerfstudio's frame and in the data's; it refuses runs of other methods with one clear line."""
    import trimesh

    from recon3d.integrations.nerfstudio.export_mesh import main
    from recon3d.io.nerfstudio import nerfstudio_frame_transform
    from recon3d.mesh import load_mesh
    from recon3d.methods.sdf import SdfField

    cfg = trained / "config.yml"
    res = subprocess.run([sys.executable, "-m", "recon3d.integrations.nerfstudio.export_mesh", "--load-config",
                          str(cfg), "--output", str(tmp_path / "ns.glb"), "--resolution", "48"],
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote" in res.stdout and (tmp_path / "ns.glb").stat().st_size > 1000
    tm = trimesh.load(tmp_path / "ns.glb", force="mesh", process=False)
    assert len(tm.faces) > 100 and tm.visual.kind == "vertex"
    ns_mesh = load_mesh(tmp_path / "ns.glb")  # back to nerfstudio's frame (glTF is Y-up)
    assert ns_mesh.vertex_colors is not None and np.ptp(ns_mesh.vertex_colors, axis=0).max() > 0.05
    # the vertices lie on the trained field's zero level set, inside its sphere
    state = torch.load(trained / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt", map_location="cpu",
                       weights_only=False)["pipeline"]
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(cfg, test_mode="inference")
    field: SdfField = pipeline.model.field
    torch.testing.assert_close(field.layers[0].weight, state["_model.field.layers.0.weight"])
    v = torch.from_numpy(ns_mesh.vertices).float()
    with torch.no_grad():
        sdf = field.world_sdf(v)
    cell = 2 * RADIUS / 47
    assert sdf.abs().max() < cell and (field.to_unit(v).norm(dim=-1) < 1.0 + 1e-3).all()

    assert main(["--load-config", str(cfg), "--output", str(tmp_path / "data.ply"), "--frame", "data",
                 "--resolution", "48"]) == 0
    data = load_mesh(tmp_path / "data.ply")
    M = nerfstudio_frame_transform(json.loads((trained / "dataparser_transforms.json").read_text()), ns_scene[0])
    back = data.vertices @ M[:3, :3].T + M[:3, 3]
    assert data.num_faces == ns_mesh.num_faces and np.abs(back - ns_mesh.vertices).max() < 1e-4

    # another method's run: refused before anything is loaded, with one line naming the file
    from nerfstudio.configs.method_configs import all_methods

    other = copy.deepcopy(all_methods["recon3d-nerf"])
    other.output_dir, other.experiment_name, other.timestamp = tmp_path / "nerf", "x", "t"
    other.pipeline.datamanager.data = ns_scene[0]
    other.save_config()
    capsys.readouterr()
    assert main(["--load-config", str(other.get_base_dir() / "config.yml"), "--output", str(tmp_path / "x.glb")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "config.yml: not a recon3d-sdf run (method recon3d-nerf" in lines[0], lines
    assert not (tmp_path / "x.glb").exists()
    assert main(["--load-config", str(tmp_path / "missing.yml"), "--output", str(tmp_path / "y.glb")]) == 2
    assert main(["--load-config", str(cfg), "--output", str(tmp_path / "y.stl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.yml: no such run config" in err[0] and "y.stl: unsupported mesh format" in err[1]
