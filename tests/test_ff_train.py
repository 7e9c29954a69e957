"""Shared feed-forward training loop: exact resume, checkpoints, registry round trip, DDP (gloo), CLI."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from recon3d.feedforward import registry
from recon3d.feedforward.data import GenerationConfig, generate_dataset
from recon3d.feedforward.train import TrainConfig, apply_overrides, lr_factor, resolve_train_config, train
from tests import ff_tiny_models
from tests.ff_tiny_models import NAME, TinyConfig, TinyField

BASE = {"steps": 6, "batch_size": 2, "num_workers": 0, "val_every": 3, "val_batches": 1, "ckpt_every": 2,
        "log_every": 1, "warmup": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("fftrain") / "set"
    generate_dataset(out, GenerationConfig(num_objects=6, views=4, image_size=12, seed=1, num_val=1, num_test=1,
                                           objects_per_shard=3), show_progress=False)
    return out


@pytest.fixture(autouse=True)
def tiny_registered():
    ff_tiny_models.register()
    yield
    registry.MODELS.pop(NAME, None)


def _losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines()) if r["split"] == "train"]


def test_resume_is_exact(data, tmp_path):
    full = train(NAME, data, tmp_path / "full", BASE, show_progress=False)
    assert full.step == 6 and full.final == tmp_path / "full" / "final.pt"
    part = train(NAME, data, tmp_path / "part", BASE, stop_at=3, show_progress=False)
    assert part.step == 3 and part.final is None and (tmp_path / "part" / "checkpoints" / "step_0000003.pt").is_file()
    torch.manual_seed(999)  # the resumed run must not depend on the caller's RNG state
    resumed = train(NAME, data, tmp_path / "part", BASE, resume=True, show_progress=False)
    assert resumed.step == 6
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    init = TinyField(TinyConfig())
    assert not torch.equal(init.mlp[0].weight, a["mlp.0.weight"])  # it trained
    # the log of the resumed run (lines past step 3 were dropped and rewritten) matches the full run
    assert _losses(tmp_path / "part" / "log.jsonl") == _losses(tmp_path / "full" / "log.jsonl")
    # 2 epochs of 2 batches: data order spans an epoch boundary; checkpoints pruned to keep_checkpoints
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == [
        "step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    assert {p.name for p in (tmp_path / "full" / "val").iterdir()} >= {"step_0000003_render.png", "step_0000006_target.png"}


def test_final_checkpoint_loads_through_registry(data, tmp_path):
    res = train(NAME, data, tmp_path / "run", {**BASE, "steps": 2}, {"hidden": 8}, show_progress=False)
    model = registry.load_model(NAME, checkpoint=res.final)
    assert model.config.hidden == 8 and not model.training
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in model.state_dict().items())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"] == NAME and cfg["views_per_item"] == 3  # from TinyConfig.num_views
    assert cfg["train_config"]["steps"] == 2


def test_schedule_and_config_merging():
    cfg = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.55)

    class WithDefaults(TinyField):
        @staticmethod
        def default_train_config():
            return {"batch_size": 7, "lr": 1e-3, "warmup_steps": 11}

    merged = resolve_train_config(WithDefaults, {"lr": 5e-4})
    assert (merged.batch_size, merged.lr, merged.warmup, merged.steps) == (7, 5e-4, 11, TrainConfig().steps)
    with pytest.raises(KeyError, match="no option 'nope'"):
        apply_overrides(TrainConfig(), {"nope": 1})
    assert apply_overrides(TrainConfig(), {"betas": [0.8, 0.9], "lr": 1}).betas == (0.8, 0.9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_ranks_end_identical(data, tmp_path):
    import torch.multiprocessing as mp

    res_dir = tmp_path / "res"
    res_dir.mkdir()
    mp.spawn(ff_tiny_models.ddp_worker, args=(2, _free_port(), str(data), str(tmp_path / "ddp"), str(res_dir), 3),
             nprocs=2, join=True)
    r0, r1 = (torch.load(res_dir / f"rank{r}.pt") for r in (0, 1))
    assert r0["step"] == r1["step"] == 3
    assert all(torch.equal(v, r1["state_dict"][k]) for k, v in r0["state_dict"].items())
    assert r0["final"].endswith("final.pt") and r1["final"] == "None"  # only rank 0 writes
    saved = torch.load(tmp_path / "ddp" / "final.pt", weights_only=False)
    assert saved["train"]["world_size"] == 2
    assert all(torch.equal(v, r0["state_dict"][k]) for k, v in saved["state_dict"].items())
    assert not torch.equal(TinyField(TinyConfig()).mlp[0].weight, r0["state_dict"]["mlp.0.weight"])


def test_cli_train(data, tmp_path, capsys):
    from recon3d.cli import main

    out = tmp_path / "cli"
    rc = main(["train", NAME, "--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2",
               "--workers", "0", "--set", "hidden=6", "--set", "train.val_every=1", "--device", "cpu"])
    assert rc == 0 and (out / "final.pt").is_file()
    assert "trained tinyff to step 2" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["model_config"]["hidden"] == 6
    assert main(["train", NAME, "--data", str(data), "--out", str(out), "--set", "bogus=1"]) == 2
    assert "no option 'bogus'" in capsys.readouterr().err
    assert main(["train", NAME, "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_init_from_starts_from_given_weights(data, tmp_path):
    """init_from: a new run starts from another run's weights (final.pt or a training checkpoint) and
    config, with a fresh optimizer; lr 0 keeps them bit for bit, a shape-changing override fails."""
    first = train(NAME, data, tmp_path / "a", {**BASE, "steps": 2}, {"hidden": 8}, show_progress=False)
    for src in (first.final, tmp_path / "a" / "checkpoints" / "step_0000002.pt"):
        out = tmp_path / f"b_{src.stem}"
        res = train(NAME, data, out, {**BASE, "steps": 1, "lr": 0.0, "init_from": str(src)}, show_progress=False)
        assert res.model.config.hidden == 8
        a, b = first.model.state_dict(), res.model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    moved = train(NAME, data, tmp_path / "c", {**BASE, "steps": 2, "init_from": str(first.final)}, show_progress=False)
    assert any(not torch.equal(v, moved.model.state_dict()[k]) for k, v in first.model.state_dict().items())
    with pytest.raises(RuntimeError):
        train(NAME, data, tmp_path / "d", {**BASE, "steps": 1, "init_from": str(first.final)}, {"hidden": 16},
              show_progress=False)


def test_device_resolution_keeps_the_ddp_local_rank(monkeypatch):
    """``auto``/``cuda`` go through resolve_device; a bare ``cuda`` is this rank's GPU, ``cuda:N`` stays."""
    from recon3d.feedforward.train import _pick_device

    cfg = TrainConfig()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _pick_device(cfg, 3, None) == torch.device("cpu")  # cfg.device "auto" without a GPU
    assert _pick_device(cfg, 3, "cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        _pick_device(cfg, 0, "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _pick_device(cfg, 3, None) == torch.device("cuda:3")
    assert _pick_device(cfg, 3, "cuda") == torch.device("cuda:3")
    assert _pick_device(cfg, 3, "cuda:1") == torch.device("cuda:1")
