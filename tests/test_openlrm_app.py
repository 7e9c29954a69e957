"""The web app offers published OpenLRM checkpoints found in a folder the user names, beside the shipped models."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from apps import image_tab
from apps.settings import AppSettings
from recon3d.feedforward.openlrm import OpenLRM, save_checkpoint
from tests.test_openlrm import EXAMPLE, _median_density, tiny_config


@pytest.fixture
def published_dir(tmp_path):
    torch.manual_seed(0)
    model = OpenLRM(tiny_config())
    with torch.no_grad():
        model.synthesizer.decoder.net[-1].bias[0] = 4.0
    save_checkpoint(model, tmp_path / "ckpts" / "openlrm-tiny")
    return tmp_path / "ckpts"


def test_published_checkpoints_are_offered_and_run(published_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RECON3D_DATA", str(tmp_path / "no_shipped"))  # no shipped model: only the published one
    s = AppSettings(workdir=str(tmp_path / "work"), runs_roots=[], mesh_resolution=16, orbit_frames=2, num_views=1,
                    checkpoint_dirs=[str(published_dir)]).resolved()
    label = "openlrm-tiny (published lrm)"
    assert image_tab.available_models() == [] and image_tab.available_models(s) == [label]
    assert image_tab.published_models(s) == {label: ("lrm", published_dir / "openlrm-tiny")}
    s.density_threshold = _median_density(published_dir / "openlrm-tiny")
    r = image_tab.run_image_to_3d(s, EXAMPLE, label, user_name="cup.png")
    assert r.glb is not None and r.glb.is_file() and r.turntable is not None and len(r.views) == 1
    assert label in r.summary


def test_checkpoint_dirs_from_env_and_flag(tmp_path, monkeypatch):
    import os

    from apps.cli import add_demo_args

    monkeypatch.setenv("RECON3D_CHECKPOINTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert AppSettings.from_env().checkpoint_dirs == [str(tmp_path / "a"), str(tmp_path / "b")]
    p = argparse.ArgumentParser()
    add_demo_args(p)
    args = p.parse_args(["--checkpoints", str(tmp_path / "c"), "--checkpoints", "rel"])
    s = AppSettings.from_env(checkpoint_dirs=[str(c) for c in args.checkpoints], workdir=str(tmp_path / "w")).resolved()
    assert s.checkpoint_dirs == [str(tmp_path / "c"), str((Path.cwd() / "rel").resolve())]
    monkeypatch.delenv("RECON3D_CHECKPOINTS")
    assert AppSettings.from_env().checkpoint_dirs == []
