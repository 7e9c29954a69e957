"""``ns-train recon3d-nerf``: registration, a short CPU training run, checkpoint reload, and the
plugin rendering exactly what recon3d's own renderer does."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from .conftest import run_ns_train

pytestmark = pytest.mark.nerfstudio

STEPS = 80
SMALL_MODEL = [  # a CPU-sized field (the method's defaults are recon3d's GPU preset)
    "--pipeline.model.field.num-levels", "6", "--pipeline.model.field.log2-hashmap-size", "14",
    "--pipeline.model.field.max-resolution", "128", "--pipeline.model.field.hidden-dim", "32",
    "--pipeline.model.march.num-steps", "128", "--pipeline.model.grid-resolution", "32",
    "--pipeline.model.grid-update-every", "8",
]


_run = run_ns_train


def test_entry_point_and_help_list_method(capsys, ns_train_help):
    from importlib.metadata import entry_points

    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    eps = {ep.name: ep for ep in entry_points(group="nerfstudio.method_configs")}
    assert eps["recon3d-nerf"].value == "recon3d.integrations.nerfstudio.nerf_config:recon3d_nerf"
    assert "recon3d-nerf" in ns_train_help
    # `ns-train recon3d-nerf --help`, parsed in-process by the same tyro union ns-train uses
    with pytest.raises(SystemExit) as done:
        tyro.cli(AnnotatedBaseConfigUnion, args=["recon3d-nerf", "--help"])
    assert done.value.code == 0
    sub = capsys.readouterr().out
    for flag in ("--pipeline.model.field.num-levels", "--pipeline.model.march.num-steps",
                 "--pipeline.model.grid-resolution", "--optimizers.encoding.optimizer.betas", "--optimizers.mlp"):
        assert flag in sub, flag


def test_method_defaults_are_recon3ds():
    """The method spec carries recon3d's GPU preset and optimizer settings (not nerfstudio's)."""
    from recon3d.integrations.nerfstudio.nerf_config import recon3d_nerf
    from recon3d.methods.nerf import PRESETS

    high, cfg = PRESETS["high"], recon3d_nerf.config
    model = cfg.pipeline.model
    assert model.field == high.field and model.march == high.march and model.grid_resolution == high.grid_resolution
    assert cfg.max_num_iterations == high.max_steps
    for name, wd in (("encoding", 0.0), ("mlp", high.weight_decay_mlp)):
        opt = cfg.optimizers[name]["optimizer"].setup([torch.nn.Parameter(torch.zeros(1))])
        group = opt.param_groups[0]
        assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (high.lr, (0.9, 0.99), 1e-15, wd)
        assert cfg.optimizers[name]["scheduler"].lr_final == pytest.approx(high.lr * high.lr_final_factor)


@pytest.fixture(scope="module")
def trained(ns_scene, tmp_path_factory):
    """80 CPU steps through ns-train, evaluating every eval image at the last step (before the
    final checkpoint is written). Rays are drawn over whole images (ignore-mask: the scene's masks
    cover the object only), so empty space is trained too."""
    folder, _ = ns_scene
    out = tmp_path_factory.mktemp("ns_nerf_out")
    res = _run([
        "recon3d-nerf", "--data", str(folder), "--output-dir", str(out), "--experiment-name", "tiny",
        "--timestamp", "run", "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--max-num-iterations", str(STEPS),
        "--steps-per-save", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-batch", "0",
        "--steps-per-eval-all-images", str(STEPS - 1), "--logging.steps-per-log", "1",
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "--pipeline.datamanager.pixel-sampler.ignore-mask", "True",
        *SMALL_MODEL,
        "--optimizers.encoding.scheduler.warmup-steps", "5", "--optimizers.mlp.scheduler.warmup-steps", "5",
        # a short warm-up and (nearly) no decay within these few steps
        "--optimizers.encoding.scheduler.max-steps", "2000", "--optimizers.mlp.scheduler.max-steps", "2000",
    ])
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    return out / "tiny" / "recon3d-nerf" / "run"


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _image_psnrs(model, dataset, masked: bool, views=None) -> list[float]:
    """PSNR of views of a nerfstudio dataset (default all; RGBA on the model's evaluation
    background), over the whole image or inside its mask."""
    from recon3d.core.metrics import psnr

    model.eval()
    vals = []
    for i in range(len(dataset)) if views is None else views:
        data = dataset[i]
        out = model.get_outputs_for_camera(dataset.cameras[i:i + 1])
        gt = model._gt(data, out["background"])
        vals.append(float(psnr(out["rgb"], gt, mask=data["mask"] if masked else None)))
    return vals


def test_training_on_cpu_writes_checkpoint_and_psnr_rises(trained):
    ckpts = sorted((trained / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in ckpts] == [f"step-{STEPS - 1:09d}.ckpt"]
    ck = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert ck["step"] == STEPS - 1 and set(ck["optimizers"]) == {"encoding", "mlp"}
    state = ck["pipeline"]
    assert all(torch.isfinite(v).all() for k, v in state.items() if k.startswith("_model.field."))
    # the occupancy grid was carved to the images' visual hull before the first step (RGBA images),
    # then refreshed from the field inside nerfstudio's loop (every 8 steps)
    occupancy = [v for _, v in _scalars(trained, "Train Metrics Dict/occupancy")]
    assert len(occupancy) == STEPS and occupancy[0] < 0.3
    assert float(state["_model.grid.occupied"].float().mean()) == pytest.approx(occupancy[-1], abs=1e-6)
    density = state["_model.grid.density"][state["_model.grid.visible"]]
    assert (density > 0).all() and occupancy[-1] != occupancy[0]
    # nerfstudio's per-batch training PSNR (our metrics) rises
    p = [v for _, v in _scalars(trained, "Train Metrics Dict/psnr")]
    first, last = float(np.mean(p[:10])), float(np.mean(p[-10:]))
    print(f"batch PSNR: {first:.2f} dB over the first 10 steps, {last:.2f} dB over the last 10")
    assert last > first + 3.0, (first, last)


def test_checkpoint_reloads_renders_as_before_saving_and_improved(trained):
    """eval_setup (ns-render, ns-eval, ns-viewer) restores field and occupancy grid: the eval
    images render as they did inside the training run (same PSNRs as logged there), and the
    trained model fits the training views far better than a fresh one."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(trained / "config.yml", test_mode="val")
    assert step == STEPS - 1
    model, dm = pipeline.model, pipeline.datamanager
    logged = _scalars(trained, "Eval Images Metrics Dict (all images)/psnr")
    assert [s for s, _ in logged] == [STEPS - 1]
    reloaded = float(np.mean(_image_psnrs(model, dm.eval_dataset, masked=False)))
    assert reloaded == pytest.approx(logged[0][1], abs=1e-4), (reloaded, logged)

    # whole images: what was trained (the scene's masks cover the object only); the untrained field
    # gets the same start-of-training grid carving, so only the learning is compared
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    torch.manual_seed(0)  # the networks' initialization
    init = model.config.setup(scene_box=dm.train_dataset.scene_box, num_train_data=len(dm.train_dataset))
    init.get_training_callbacks(TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=pipeline,
                                                           trainer=None))
    torch.testing.assert_close(init.grid.visible, model.grid.visible)
    gain = {}
    for masked in (False, True):
        before = float(np.mean(_image_psnrs(init, dm.train_dataset, masked, views=(0, 4))))
        after = float(np.mean(_image_psnrs(model, dm.train_dataset, masked, views=(0, 4))))
        print(f"train-view PSNR ({'in masks' if masked else 'whole images'}): {before:.2f} dB at init, "
              f"{after:.2f} dB after {STEPS} steps")
        gain[masked] = after - before
    # 80 steps mostly clear the visual hull around the object (whole images); the object's own
    # texture has barely begun to form (the in-mask figure, printed, is not asserted)
    assert gain[False] > 2.0, gain


def _small_model(ns_scene, appearance_dim=0, scene_type="object"):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from recon3d.integrations.nerfstudio.nerf_model import Recon3dNerfModelConfig
    from recon3d.methods.nerf import FieldConfig, MarchConfig

    folder, _ = ns_scene
    out = NerfstudioDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    cfg = Recon3dNerfModelConfig(
        field=FieldConfig(num_levels=4, log2_hashmap_size=12, max_resolution=64, hidden_dim=16,
                          appearance_dim=appearance_dim, density_bias=1.0),
        march=MarchConfig(num_steps=96), grid_resolution=16, grid_update_every=1, scene_type=scene_type, seed=2)
    torch.manual_seed(0)
    model = cfg.setup(scene_box=out.scene_box, num_train_data=len(out.image_filenames))
    with torch.no_grad():  # a field with structure: random hash tables, a random appearance code
        for p in model.field.encoding.parameters():
            p.uniform_(-1.0, 1.0)
        if model.field.appearance is not None:
            model.field.appearance.weight.normal_()
    model.mark_unseen_cells(out.cameras)
    assert model.update_grid(1) is not None
    grid = model.grid
    with torch.no_grad():  # matter only in a ball at the center: rays that miss it see nothing
        centers = grid.cell_points(torch.arange(grid.num_cells), jitter=False)
        grid.occupied &= centers.norm(dim=-1) < 0.3
        grid._bump()
    assert 0.001 < grid.occupancy_fraction() < 0.5, grid.occupancy_fraction()
    return model, out


@pytest.mark.parametrize("scene_type", ["object", "unbounded"])
def test_plugin_renders_what_recon3d_renders(ns_scene, scene_type):
    """Same field, grid and rays (nerfstudio's, from its dataparser): the plugin's rgb equals
    recon3d's render_rays at evaluation, and in training (jitter, random backgrounds, appearance)."""
    from recon3d.core.rays import RayBundle
    from recon3d.methods.nerf import render_rays

    model, out = _small_model(ns_scene, appearance_dim=4, scene_type=scene_type)
    # the field's bound is the dataparser's scene box (contracted beyond it for unbounded scenes)
    torch.testing.assert_close(model.field.box.aabb, out.scene_box.aabb.float())
    assert model.field.box.contraction == (None if scene_type == "object" else "linf")
    bundle = out.cameras[2:3].generate_rays(camera_indices=0).flatten()
    rays = RayBundle(bundle.origins.reshape(-1, 3), bundle.directions.reshape(-1, 3))

    model.eval()
    ns = model(bundle)
    ref = render_rays(model.field, model.grid, rays, model.config.march, False, background=torch.zeros(3))
    hit = (ref["opacity"] > 0.5).float().mean()
    assert 0.05 < hit < 0.95, hit  # some rays meet matter, some pass through emptied cells
    torch.testing.assert_close(ns["rgb"], ref["rgb"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ns["accumulation"], ref["opacity"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ns["depth"], ref["depth"], atol=1e-5, rtol=0)
    rgba = model.get_rgba_image(ns)  # straight colour + alpha, recomposited = the render
    torch.testing.assert_close(rgba[:, :3] * rgba[:, 3:], ns["rgb"], atol=1e-5, rtol=0)

    model.train()
    bundle.camera_indices = torch.full_like(bundle.camera_indices, 3)
    model.generator.manual_seed(7)
    ns = model(bundle)
    gen = torch.Generator().manual_seed(7)  # the model draws backgrounds first, then the jitter
    bg = torch.rand(len(rays), 3, generator=gen)
    ref = render_rays(model.field, model.grid, rays, model.config.march, True, background=bg, generator=gen,
                      camera_indices=torch.full((len(rays),), 3))
    assert ns["num_samples"] == ref["num_samples"] > 0
    torch.testing.assert_close(ns["rgb"], ref["rgb"], atol=1e-5, rtol=0)
    # ...and the appearance code of camera 3 mattered (the mean code renders differently)
    gen = torch.Generator().manual_seed(7)
    bg = torch.rand(len(rays), 3, generator=gen)
    ref_mean = render_rays(model.field, model.grid, rays, model.config.march, True, background=bg, generator=gen)
    assert (ref_mean["rgb"] - ref["rgb"]).abs().max() > 1e-3
