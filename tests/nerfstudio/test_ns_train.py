"""``ns-train recon3d-splat``: registration, a short CPU training run, checkpoint reload, camera conversion."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from .conftest import run_ns_train

pytestmark = pytest.mark.nerfstudio

STEPS = 60
NUM_POINTS = 400  # the ns_scene's sparse_pc.ply: the Gaussians' seeds


_run = run_ns_train


def test_entry_point_registers_method():
    from importlib.metadata import entry_points

    from nerfstudio.plugins.registry import discover_methods

    eps = {ep.name: ep for ep in entry_points(group="nerfstudio.method_configs")}
    assert eps["recon3d-splat"].value == "recon3d.integrations.nerfstudio.splat_config:recon3d_splat"
    methods, descriptions = discover_methods()
    assert methods["recon3d-splat"].method_name == "recon3d-splat"
    assert "recon3d" in descriptions["recon3d-splat"]


def test_ns_train_help_lists_method(ns_train_help):
    assert "recon3d-splat" in ns_train_help
    sub = _run(["recon3d-splat", "--help"])
    assert sub.returncode == 0, sub.stderr[-2000:]
    for flag in ("--pipeline.model.densify.refine-every", "--pipeline.model.backend", "--optimizers.means"):
        assert flag in sub.stdout, flag


def _train_args(folder, out, timestamp, steps):
    return [
        "recon3d-splat", "--data", str(folder), "--output-dir", str(out), "--experiment-name", "tiny",
        "--timestamp", timestamp, "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--max-num-iterations", str(steps),
        "--steps-per-save", "1000", "--steps-per-eval-image", "8", "--steps-per-eval-all-images", "1000",
        "--logging.steps-per-log", "1", "--pipeline.model.background-color", "white",
        "--pipeline.model.scale-schedule-to-steps", "False",
        "--pipeline.model.densify.refine-start", "9", "--pipeline.model.densify.refine-every", "10",
        "--pipeline.model.densify.refine-stop", "25",
        "--pipeline.model.densify.grow-grad2d", "1e-7", "--pipeline.model.densify.reset-every", "1000",
        # colours start random; a 20x colour learning rate makes 60 steps move the fit measurably
        # (and checks that nerfstudio's --optimizers.* options reach recon3d's parameter groups)
        "--optimizers.sh0.optimizer.lr", "0.05",
    ]


@pytest.fixture(scope="module")
def trained(ns_scene, tmp_path_factory):
    """A short CPU run through ns-train with densification scheduled inside it."""
    folder, _ = ns_scene
    out = tmp_path_factory.mktemp("ns_out")
    res = _run(_train_args(folder, out, "run", STEPS))
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    return out / "tiny" / "recon3d-splat" / "run"


def test_few_training_steps_on_cpu(trained):
    ckpts = sorted((trained / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in ckpts] == [f"step-{STEPS - 1:09d}.ckpt"]
    ck = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert ck["step"] == STEPS - 1
    params = {k.split(".")[-1]: v for k, v in ck["pipeline"].items() if k.startswith("_model.gaussians.")}
    n = params["means"].shape[0]
    # densification ran inside nerfstudio's loop (after steps 10 and 20) and grew the set
    assert n > NUM_POINTS
    assert all(v.shape[0] == n and torch.isfinite(v).all() for v in params.values())
    # ...and edited nerfstudio's own Adam states consistently with the parameters
    for name, p in params.items():
        st = ck["optimizers"][name]["state"][0]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, name
    # nerfstudio logged every step's loss and the Gaussian count our metrics report
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained))
    acc.Reload()
    assert len(acc.Scalars("Train Loss")) == STEPS
    counts = [e.value for e in acc.Scalars("Train Metrics Dict/gaussian_count")]
    assert counts[0] == NUM_POINTS and counts[-1] == n


def _train_psnr(model, dataset) -> float:
    """Mean PSNR over a nerfstudio dataset's views inside their masks (the pixels training uses;
    the scene's masks cover the object), RGBA composited on the model's white background."""
    from recon3d.core.metrics import psnr

    vals = []
    for i in range(len(dataset)):
        data = dataset[i]
        pred = model.get_outputs_for_camera(dataset.cameras[i:i + 1])["rgb"]
        vals.append(float(psnr(pred, model._gt(data, torch.ones(3)), mask=data["mask"])))
    return float(np.mean(vals))


def test_checkpoint_reloads_through_eval_setup_and_improved(trained):
    """nerfstudio's eval_setup (used by ns-render, ns-eval, ns-viewer) rebuilds the model at its
    trained size, and the trained model fits the training views better than its initialization."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(trained / "config.yml", test_mode="val")
    ck = torch.load(trained / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt", map_location="cpu",
                    weights_only=False)
    model = pipeline.model
    assert step == STEPS - 1 and len(model.gaussians) == ck["pipeline"]["_model.gaussians.means"].shape[0]
    torch.testing.assert_close(model.gaussians.means.detach(), ck["pipeline"]["_model.gaussians.means"])
    dm = pipeline.datamanager
    meta = dm.train_dataparser_outputs.metadata
    init = model.config.setup(scene_box=dm.train_dataset.scene_box, num_train_data=len(dm.train_dataset),
                              seed_points=(meta["points3D_xyz"], meta["points3D_rgb"])).eval()
    assert len(init.gaussians) == NUM_POINTS
    before, after = _train_psnr(init, dm.train_dataset), _train_psnr(model, dm.train_dataset)
    print(f"train-view PSNR in the masks: {before:.2f} dB at init, {after:.2f} dB after {STEPS} steps")
    assert after > before + 0.5, (before, after)


def test_plugin_renders_what_recon3d_renders(ns_scene):
    """Same Gaussians, a nerfstudio camera (from its own dataparser) vs recon3d's camera mapped into
    nerfstudio's world: the plugin's OpenGL -> OpenCV conversion gives the same image."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from recon3d.core.gaussians import rasterize
    from recon3d.integrations.nerfstudio.splat_model import Recon3dSplatModelConfig
    from recon3d.io.normalize import Normalization
    from recon3d.methods.splat.model import GaussianModel

    folder, scene = ns_scene
    out = NerfstudioDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    cfg = Recon3dSplatModelConfig(background_color="white", num_random=8, sh_degree=1)
    model = cfg.setup(scene_box=out.scene_box, num_train_data=len(out.image_filenames)).eval()
    g = GaussianModel.random_in_box(300, -0.4 * torch.ones(3), 0.4 * torch.ones(3), max_sh_degree=1,
                                    generator=torch.Generator().manual_seed(3), init_opacity=0.6, init_scale=2.0)
    model.gaussians = g
    # capture world -> nerfstudio world: x -> s * (R x + t)
    T = torch.eye(4, dtype=torch.float64)
    T[:3] = out.dataparser_transform.double()
    T[:3] *= out.dataparser_scale
    to_ns = Normalization(T)
    index = {p.resolve(): i for i, p in enumerate(scene.image_paths)}
    for j in (0, 3):
        i = index[out.image_filenames[j].resolve()]
        ns_img = model.get_outputs_for_camera(out.cameras[j:j + 1])["rgb"]
        cam = to_ns.apply_cameras(scene.normalization.inverse().apply_cameras(scene.cameras[i]))
        ref = rasterize(g.gaussians(), cam.w2c, cam.K, int(cam.width[0]), int(cam.height[0]), sh_degree=1,
                        backgrounds=torch.ones(1, 3)).colors[0].clamp(0, 1)
        assert (ref < 0.9).float().mean() > 0.05  # the Gaussians are in view
        torch.testing.assert_close(ns_img, ref, atol=2e-4, rtol=0)


def test_export_splats_of_a_run(trained, ns_scene, tmp_path):
    """recon3d-splat's counterpart of ns-export gaussian-splat, in nerfstudio's frame and in the data's."""
    import json

    from recon3d.integrations.nerfstudio.export_splats import main
    from recon3d.io.nerfstudio import nerfstudio_frame_transform
    from recon3d.methods.splat.ply import load_splat_ply

    ck = torch.load(trained / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt", map_location="cpu",
                    weights_only=False)["pipeline"]
    means = ck["_model.gaussians.means"]
    assert main(["--load-config", str(trained / "config.yml"), "--output", str(tmp_path / "ns.ply")]) == 0
    ns = load_splat_ply(tmp_path / "ns.ply")
    torch.testing.assert_close(ns.means.detach(), means)
    torch.testing.assert_close(ns.sh0.detach(), ck["_model.gaussians.sh0"])
    assert main(["--load-config", str(trained / "config.yml"), "--output", str(tmp_path / "data.ply"),
                 "--frame", "data"]) == 0
    data = load_splat_ply(tmp_path / "data.ply")
    M = nerfstudio_frame_transform(json.loads((trained / "dataparser_transforms.json").read_text()), ns_scene[0])
    back = data.means.detach().double() @ torch.from_numpy(M[:3, :3]).T + torch.from_numpy(M[:3, 3])
    torch.testing.assert_close(back.float(), means, atol=1e-5, rtol=0)
    # the data frame is the capture's world, where the scene's cameras are (the object sits inside them)
    _, scene = ns_scene
    centers = scene.normalization.inverse_c2w(scene.cameras.c2w)[:, :3, 3]
    assert data.means.detach().median(0).values.sub(centers.mean(0)).norm() < centers.sub(centers.mean(0)).norm(dim=1).min()


def test_ns_train_resumes_from_checkpoint(trained, ns_scene):
    """``ns-train --load-dir``: the Gaussians are resized in place, so the restored optimizers keep training them."""
    folder, _ = ns_scene
    out = trained.parents[2]
    # nerfstudio counts --max-num-iterations from the restored step: 8 more steps
    res = _run([*_train_args(folder, out, "resumed", 8), "--load-dir", str(trained / "nerfstudio_models")])
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    old = torch.load(trained / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt", map_location="cpu",
                     weights_only=False)
    new = torch.load(out / "tiny" / "recon3d-splat" / "resumed" / "nerfstudio_models" / f"step-{STEPS + 7:09d}.ckpt",
                     map_location="cpu", weights_only=False)
    for name in ("means", "sh0", "opacity_logits"):
        a, b = old["pipeline"][f"_model.gaussians.{name}"], new["pipeline"][f"_model.gaussians.{name}"]
        assert a.shape == b.shape and not torch.equal(a, b), name  # same Gaussians (no refine), trained further
        st = new["optimizers"][name]["state"][0]
        assert st["exp_avg"].shape == b.shape and int(st["step"]) > int(old["optimizers"][name]["state"][0]["step"])
